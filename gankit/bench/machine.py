"""The machine a benchmark ran on, and its roofs: the GFLOP/s a large matmul reaches in this
process, per precision, measured in the same run as every number it is compared with."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from gankit.bench.timing import _once, time_it
from gankit.sysinfo import cpu_flags, cpu_has_bf16, cpu_model


def machine() -> dict[str, Any]:
    import platform

    import onnxruntime as ort
    import torch

    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni") if f in flags]
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "isa": isa, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "torch_threads": torch.get_num_threads()}
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        info["openvino"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def measure_roofs(threads: int, n: int = 1024, budget_s: float = 0.5) -> dict[str, float]:
    """Peak GFLOP/s this process reaches on a large matmul, per precision, taking the best
    engine: fp32 from PyTorch, onnxruntime (MLAS) and OpenVINO (oneDNN) where installed; bf16
    from PyTorch and OpenVINO; int8 from onnxruntime's MatMulInteger (u8 x s8) and OpenVINO's
    int8 MatMul (see :func:`_int8_roof`). One engine
    alone can understate the hardware: PyTorch's fp32 matmul (MKL) reached 160 GFLOP/s on a
    Zen 5 EPYC where onnxruntime's and OpenVINO's reached 270 (benchmarks/RESULTS.md, speed
    v4), and a roof below what the convolutions reach makes every share look better than it
    is. The best of two sizes; a precision the CPU only emulates (bf16 without AVX-512
    bf16/AMX) is measured on the smaller size only."""
    import torch

    roofs = {}
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        sizes = (n, 2 * n) if prec == "fp32" or cpu_has_bf16() else (n // 2,)
        for size in sizes:
            a = torch.randn(size, size).to(dtype)
            b = torch.randn(size, size).to(dtype)
            t0 = time.perf_counter()
            torch.mm(a, b)
            if time.perf_counter() - t0 > 0.5:  # emulated: one more timing of this size is enough
                med = min(_once(lambda: torch.mm(a, b)) for _ in range(2))
                best = max(best, 2 * size**3 / med / 1e9)
                break
            med, _, _ = time_it(lambda: torch.mm(a, b), warmup=1, min_runs=5, budget_s=budget_s)
            best = max(best, 2 * size**3 / (med / 1e3) / 1e9)
            if prec == "fp32":
                best = max(best, _onnx_matmul_roof(threads, size, "onnxruntime", budget_s=budget_s))
            if prec == "fp32" or cpu_has_bf16():
                best = max(best, _onnx_matmul_roof(threads, size, "openvino", "f32" if prec == "fp32" else "bf16", budget_s=budget_s))
        roofs[prec] = round(best, 1)
    roofs["int8"] = round(_int8_roof(threads, n, budget_s), 1)
    return roofs


def _onnx_matmul_roof(threads: int, n: int, engine: str, precision: str = "f32", budget_s: float = 0.5) -> float:
    """GFLOP/s of an [n, n] x [n, n] fp32 MatMul (the right factor a constant, as a layer's
    weights are) in onnxruntime or OpenVINO (``precision``: its inference precision hint);
    0 when OpenVINO is not installed."""
    import tempfile

    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    w = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    if engine == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        run = lambda: sess.run(None, {"a": a})  # noqa: E731
    else:
        try:
            import openvino as ov
        except ImportError:
            return 0.0
        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "mm.onnx")
            with open(path, "wb") as f:
                f.write(model)
            try:
                compiled = core.compile_model(core.read_model(path), "CPU", {
                    "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
            except Exception:  # an OpenVINO that cannot run here leaves the roof to the other engines
                return 0.0
        request = compiled.create_infer_request()
        run = lambda: request.infer({0: a})  # noqa: E731
    med, _, _ = time_it(run, warmup=2, min_runs=5, budget_s=budget_s)
    return 2 * n**3 / (med / 1e3) / 1e9


def _int8_roof(threads: int, n: int, budget_s: float = 0.5) -> float:
    """GOP/s of an [n, n] x [n, n] int8 matmul, the best of onnxruntime's ``MatMulInteger``
    (u8 x s8; the right factor fed as an input and, as a layer's weights are, as a constant,
    which lets MLAS pack it once) and OpenVINO's int8 (a QDQ MatMul with constant weights, the
    form ``gankit export --int8`` writes; AMX or VNNI where the CPU has them)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a8 = rng.integers(0, 255, (n, n), dtype=np.uint8)
    b8 = rng.integers(-127, 127, (n, n), dtype=np.int8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    best = 0.0
    for constant in (False, True):
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])]
        if not constant:
            inputs.append(helper.make_tensor_value_info("b", TensorProto.INT8, [n, n]))
        g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
                              [numpy_helper.from_array(b8, "b")] if constant else [])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feed = {"a": a8} if constant else {"a": a8, "b": b8}
        med, _, _ = time_it(lambda: sess.run(None, feed), warmup=2, min_runs=5, budget_s=budget_s)
        best = max(best, 2 * n**3 / (med / 1e3) / 1e9)
    return max(best, _openvino_int8_roof(threads, n, budget_s))


def _openvino_int8_roof(threads: int, n: int, budget_s: float = 0.5) -> float:
    """GOP/s of a QDQ int8 MatMul with constant weights in OpenVINO; 0 where it is missing."""
    import tempfile

    from onnx import TensorProto, helper, numpy_helper

    try:
        import openvino as ov
    except ImportError:
        return 0.0
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "w8"),
             numpy_helper.from_array(np.array(0.02, np.float32), "sa"), numpy_helper.from_array(np.array(0, np.uint8), "za"),
             numpy_helper.from_array(np.array(0.01, np.float32), "sw"), numpy_helper.from_array(np.array(0, np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["a", "sa", "za"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["ad"]),
             helper.make_node("DequantizeLinear", ["w8", "sw", "zw"], ["wd"]),
             helper.make_node("MatMul", ["ad", "wd"], ["y"])]
    g = helper.make_graph(nodes, "qmm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "qmm.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        try:
            compiled = core.compile_model(core.read_model(path), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        except Exception:  # an OpenVINO that cannot run here leaves the roof to onnxruntime
            return 0.0
    request = compiled.create_infer_request()
    a = rng.uniform(0, 4, (n, n)).astype(np.float32)
    med, _, _ = time_it(lambda: request.infer({0: a}), warmup=2, min_runs=5, budget_s=budget_s)
    return 2 * n**3 / (med / 1e3) / 1e9
