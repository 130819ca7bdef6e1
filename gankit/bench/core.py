"""The benchmark engine behind ``gankit bench`` and ``benchmarks/bench.py``."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gankit.errors import UsageError

RunFn = Callable[[], np.ndarray]


# --------------------------------------------------------------------------- models
@dataclass
class BenchModel:
    name: str
    family: Any
    config: dict[str, Any]
    module: Any  # BatchNorm-folded fp32 generator in eval mode (what the exporter sees)
    onnx_path: Path
    weights: str
    dataset: Any = None
    int8_paths: dict[bool, Path] = field(default_factory=dict)  # quantised files, by conv_transpose
    flops: dict[int, float] = field(default_factory=dict)


def _newest_run(plugin: str, runs_dir: Path = Path("runs")) -> Path | None:
    from gankit.train import checkpoint as ckpt
    from gankit.train.run import RunDir

    found = []
    for d in runs_dir.glob("*"):
        try:
            cfg = RunDir(d).read_config()
        except Exception:
            continue
        if cfg.get("plugin") == plugin and ckpt.latest(d / "checkpoints") is not None:
            found.append((d.stat().st_mtime, d))
    return max(found)[1] if found else None


def prepare_model(spec: str, workdir: Path, fresh: bool = False) -> BenchModel:
    """``spec``: an installed family name (newest trained run under runs/, else a fresh init)
    or a run directory."""
    from gankit.data import load_dataset
    from gankit.export import export_generator, load_run_generator, prepare_for_export
    from gankit.plugins import get_family

    path = Path(spec)
    if path.is_dir():
        family, config, G, step = load_run_generator(path)
        # a run dir is named after its run, so two runs of one family can share a table
        weights, name = f"trained: {path} step {step}", f"{family.name}@{path.name}"
    else:
        family = get_family(spec)
        run = None if fresh else _newest_run(spec)
        if run is not None:
            family, config, G, step = load_run_generator(run)
            weights = f"trained: {run} step {step}"
        else:
            import torch

            from gankit.train.api import build_config

            data = family.defaults.get("data", "mnist5k")
            config = build_config(family, load_dataset(data), data=data, seed=0, device="cpu", overrides={})
            torch.manual_seed(0)
            G = family.build_generator(config)
            weights = "fresh init (no trained run found under runs/)"
        name = spec
    module = prepare_for_export(family.export_module(G, config)).eval()
    onnx_path = workdir / f"{name}.onnx"
    export_generator(family, config, G, onnx_path)
    dataset = load_dataset(config["data"]) if config.get("data") else None
    return BenchModel(name, family, config, module, onnx_path, weights, dataset)


def example_inputs(model: BenchModel, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.family.export_inputs(model.config, batch, seed=seed).items()}


def count_flops(model: BenchModel, batch: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if batch not in model.flops:
        inputs = {k: torch.from_numpy(v) for k, v in example_inputs(model, batch).items()}
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.module(**inputs)
        model.flops[batch] = float(counter.get_total_flops())
    return model.flops[batch]


# --------------------------------------------------------------------------- backends
class Backend:
    """A way to run a model. ``prepare(inputs)`` returns a zero-argument function that runs
    one forward pass on those inputs and returns the output as float32 numpy."""

    name = "?"
    precision = "fp32"
    kind = "pytorch"  # pytorch | onnx
    device = "cpu"

    def __init__(self, model: BenchModel, threads: int):
        self.model, self.threads = model, threads

    def prepare(self, inputs: dict[str, np.ndarray]) -> RunFn:  # pragma: no cover - interface
        raise NotImplementedError


class TorchEager(Backend):
    name, precision = "pytorch eager fp32", "fp32"
    channels_last = False
    autocast: str | None = None  # torch dtype name for torch.autocast, None = full precision

    def autocast_context(self, device: str):
        import contextlib

        import torch

        return torch.autocast(device, dtype=getattr(torch, self.autocast)) if self.autocast else contextlib.nullcontext()

    def __init__(self, model, threads):
        super().__init__(model, threads)
        import copy

        import torch

        self.net = copy.deepcopy(model.module).to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.net = self.wrap(self.net)

    def wrap(self, net):
        return net

    def prepare(self, inputs):
        import torch

        t = {}
        for k, v in inputs.items():
            x = torch.from_numpy(v).to(self.device)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            t[k] = x
        net, autocast = self.net, self.autocast_context(self.device)

        def run():
            with torch.inference_mode():
                with autocast:  # one context object, entered once per call (never nested)
                    y = net(**t)
                return y.float().cpu().numpy()

        return run


class TorchChannelsLast(TorchEager):
    name, channels_last = "pytorch eager fp32 channels_last", True


class TorchBF16(TorchEager):
    name, precision, channels_last = "pytorch bf16 autocast channels_last", "bf16", True
    autocast = "bfloat16"


class TorchCompile(TorchEager):
    name = "pytorch torch.compile fp32"

    def wrap(self, net):
        import torch

        return torch.compile(net, dynamic=True)  # one compile serves every batch size


class OrtCPU(Backend):
    name, kind = "onnxruntime fp32", "onnx"
    providers = ("CPUExecutionProvider",)

    def __init__(self, model, threads, path: Path | None = None):
        super().__init__(model, threads)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        src = path or model.onnx_path
        so.optimized_model_filepath = str(src.with_suffix(f".{self.tag()}.opt.onnx"))
        ort.InferenceSession(str(src), so, providers=list(self.providers))  # optimise once, saved to disk
        so2 = ort.SessionOptions()
        so2.log_severity_level = 3
        so2.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # already optimised
        so2.intra_op_num_threads, so2.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(so.optimized_model_filepath, so2, providers=list(self.providers))

    def tag(self) -> str:
        return "fp32"

    def prepare(self, inputs):
        sess = self.session
        return lambda: sess.run(None, inputs)[0]


class OrtInt8(OrtCPU):
    name, precision = "onnxruntime int8 QDQ", "int8"

    def __init__(self, model, threads):
        super().__init__(model, threads, quantize_int8(model))

    def tag(self) -> str:
        return "int8"


def quantize_int8(model: BenchModel, conv_transpose: bool = False) -> Path:
    """Static QDQ int8, per-channel weights, calibrated on real inputs. ConvTranspose is left
    in float unless ``conv_transpose``: onnxruntime has no int8 ConvTranspose kernel, so
    quantising it only adds QuantizeLinear/DequantizeLinear pairs there; OpenVINO does run
    it in int8 (cgan, batch 64: 24.8 vs 28.5 ms fp32 in a first measurement)."""
    if conv_transpose in model.int8_paths:
        return model.int8_paths[conv_transpose]
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [calibration_inputs(model, 32, seed=s) for s in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    pre = model.onnx_path.with_suffix(".pre.onnx")
    quant_pre_process(str(_defaults_as_constants(model.onnx_path)), str(pre), skip_symbolic_shape=True)
    out = model.onnx_path.with_suffix(".int8ct.onnx" if conv_transpose else ".int8.onnx")
    vnni = any(f in _cpu_flags() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"] + (["ConvTranspose"] if conv_transpose else []),
                    reduce_range=not vnni)
    model.int8_paths[conv_transpose] = out
    return out


def _defaults_as_constants(path: Path) -> Path:
    """The file with its optional inputs (initializers that are also graph inputs, e.g.
    stylegan's truncation) turned into constants at their defaults: the bench feeds only the
    contract's inputs, and onnxruntime's calibrator cannot range tensors fed by overridable
    initializers ("scale issue")."""
    import onnx

    m = onnx.load(str(path))
    names = {init.name for init in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in names]
    if len(keep) == len(m.graph.input):
        return path
    del m.graph.input[:]
    m.graph.input.extend(keep)
    out = path.with_suffix(".const.onnx")
    onnx.save(m, str(out))
    return out


def calibration_inputs(model: BenchModel, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs drawn as in real use: noise (+ labels), or real test images with real masks."""
    if model.family.task == "inpaint" and model.dataset is not None:
        from gankit.data import to_float
        from gankit.data.masks import mixed_masks

        rng = np.random.default_rng(seed)
        x = to_float(model.dataset.x_test[rng.choice(len(model.dataset.x_test), batch)])
        m = mixed_masks(batch, x.shape[2], x.shape[3], seed=seed).astype(np.float32)
        return {"image": x * (1 - m), "mask": m}
    return example_inputs(model, batch, seed=100 + seed)


class OpenVINO(Backend):
    kind = "onnx"

    def __init__(self, model, threads, precision: str = "f32"):
        super().__init__(model, threads)
        from gankit.runtime.engines import OpenVINOEngine

        # int8: OpenVINO reads the QDQ file (ConvTranspose included) and runs it in int8
        OpenVINOEngine.require()  # before quantising for a backend that cannot run
        path = quantize_int8(model, conv_transpose=True) if precision == "int8" else model.onnx_path
        self.engine = OpenVINOEngine(path, threads, precision="f32" if precision == "int8" else precision)
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "int8": "int8"}[precision]
        self.name = f"openvino {self.precision}" + (" QDQ" if precision == "int8" else "")

    def prepare(self, inputs):
        eng = self.engine
        return lambda: eng.run(inputs)


# -- CUDA (used when a GPU is present; see benchmarks/gpu.sh) ---------------------------------
class TorchCUDA(TorchEager):
    name, device = "pytorch cuda eager fp32", "cuda"

    def prepare(self, inputs):
        import torch

        run = super().prepare(inputs)
        t = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
        net, autocast = self.net, self.autocast_context("cuda")

        def run_sync():  # output stays on the GPU; synchronise so the time is real
            with torch.inference_mode(), autocast:
                y = net(**t)
            torch.cuda.synchronize()
            return y

        run_sync.fetch = run  # type: ignore[attr-defined]
        return run_sync


class TorchCUDAfp16(TorchCUDA):
    name, precision = "pytorch cuda fp16 autocast", "fp16"
    autocast = "float16"


class TorchCUDACompile(TorchCUDA):
    name = "pytorch cuda torch.compile fp32"

    def wrap(self, net):
        import torch

        return torch.compile(net, mode="max-autotune")


class OrtCUDA(Backend):
    """onnxruntime CUDA EP, inputs and outputs bound on the GPU, CUDA graph replay."""

    kind, device = "onnx", "cuda"
    name = "onnxruntime cuda fp32 (io-binding, cuda graph)"
    fp16 = False
    provider = "CUDAExecutionProvider"

    def __init__(self, model, threads):
        super().__init__(model, threads)
        self.path = fp16_model(model) if self.fp16 else model.onnx_path
        if self.fp16:
            self.precision = "fp16"

    def prepare(self, inputs):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        opts = {"enable_cuda_graph": "1"} if self.provider == "CUDAExecutionProvider" else {"trt_fp16_enable": "1"}
        sess = ort.InferenceSession(str(self.path), so, providers=[(self.provider, opts)])
        binding = sess.io_binding()
        dev_inputs = {}
        for i in sess.get_inputs():
            v = inputs[i.name]
            if self.fp16 and v.dtype == np.float32:
                v = v.astype(np.float16)
            dev_inputs[i.name] = ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0)
            binding.bind_ortvalue_input(i.name, dev_inputs[i.name])
        out_name = sess.get_outputs()[0].name
        ref = sess.run(None, {k: v.numpy() for k, v in dev_inputs.items()})[0]
        out = ort.OrtValue.ortvalue_from_shape_and_type(ref.shape, ref.dtype, "cuda", 0)
        binding.bind_ortvalue_output(out_name, out)

        def run():
            sess.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return out

        run.fetch = lambda: (run(), out.numpy().astype(np.float32))[1]  # type: ignore[attr-defined]
        return run


class OrtCUDAfp16(OrtCUDA):
    name, fp16 = "onnxruntime cuda fp16 model (io-binding, cuda graph)", True


class OrtTensorRT(OrtCUDA):
    name, provider, precision = "onnxruntime tensorrt fp16", "TensorrtExecutionProvider", "fp16"


def fp16_model(model: BenchModel) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = model.onnx_path.with_suffix(".fp16.onnx")
    if not out.exists():
        m = convert_float_to_float16(onnx.load(str(model.onnx_path)), keep_io_types=False)
        onnx.save(m, str(out))
    return out


def cpu_backends(openvino_bf16: bool) -> list[tuple[str, Callable[[BenchModel, int], Backend]]]:
    rows: list[tuple[str, Callable]] = [
        ("pytorch eager fp32", TorchEager),
        ("pytorch eager fp32 channels_last", TorchChannelsLast),
        ("pytorch bf16 autocast channels_last", TorchBF16),
        ("pytorch torch.compile fp32", TorchCompile),
        ("onnxruntime fp32", OrtCPU),
        ("onnxruntime int8 QDQ", OrtInt8),
        ("openvino fp32", lambda m, t: OpenVINO(m, t, "f32")),
        ("openvino int8 QDQ", lambda m, t: OpenVINO(m, t, "int8")),
    ]
    if openvino_bf16:
        rows.append(("openvino bf16", lambda m, t: OpenVINO(m, t, "bf16")))
    return rows


def cuda_backends() -> list[tuple[str, Callable[[BenchModel, int], Backend]]]:
    import onnxruntime as ort

    rows: list[tuple[str, Callable]] = [("pytorch cuda eager fp32", TorchCUDA), ("pytorch cuda fp16 autocast", TorchCUDAfp16),
                                        ("pytorch cuda torch.compile fp32", TorchCUDACompile)]
    avail = ort.get_available_providers()
    if "CUDAExecutionProvider" in avail:
        rows += [("onnxruntime cuda fp32 (io-binding, cuda graph)", OrtCUDA),
                 ("onnxruntime cuda fp16 model (io-binding, cuda graph)", OrtCUDAfp16)]
    if "TensorrtExecutionProvider" in avail:
        rows.append(("onnxruntime tensorrt fp16", OrtTensorRT))
    return rows


# --------------------------------------------------------------------------- measuring
def sample_times(fn: Callable[[], Any], *, warmup: int = 3, min_runs: int = 10, max_runs: int = 300,
                 budget_s: float = 1.0) -> list[float]:
    """Seconds per call after ``warmup`` calls; runs until ``min_runs`` and ``budget_s``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize_times(times: list[float]) -> tuple[float, float, int]:
    """(median ms, p90 ms, runs)."""
    times = sorted(times)
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(math.ceil(0.9 * len(times))) - 1)] * 1e3, len(times)


def time_it(fn: Callable[[], Any], **kw) -> tuple[float, float, int]:
    """(median ms, p90 ms, runs); see :func:`sample_times`."""
    return summarize_times(sample_times(fn, **kw))


def time_interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int = 4, budget_s: float = 1.0) -> dict[str, tuple[float, float, int]]:
    """Time several functions in ``rounds`` alternating rounds (``budget_s`` per function in
    all) and pool each one's samples.

    On a shared 2-core VM the machine's speed drifts by up to ~30% over tens of seconds;
    timing backend A fully and then backend B puts that drift into the A/B ratio.
    Alternating spreads it over every backend alike."""
    pooled: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            pooled[name] += sample_times(fn, warmup=3 if r == 0 else 1, min_runs=max(3, 10 // rounds), budget_s=budget_s / rounds)
    return {k: summarize_times(v) for k, v in pooled.items()}


def psnr_db(a: np.ndarray, b: np.ndarray, value_range: float = 2.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(value_range**2 / mse)


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def machine() -> dict[str, Any]:
    import platform

    import onnxruntime as ort
    import torch

    name = ""
    try:
        name = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor()
    flags = _cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni") if f" {f}" in flags]
    info = {"cpu": name, "cores": os.cpu_count(), "isa": isa, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "torch_threads": torch.get_num_threads()}
    try:
        import openvino

        info["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        info["openvino"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def measure_roofs(threads: int, n: int = 1024) -> dict[str, float]:
    """Peak GFLOP/s this process reaches on a large matmul: fp32 and bf16 (PyTorch), int8
    (onnxruntime MatMulInteger, u8 x s8). The best of two sizes; a precision the CPU only
    emulates (bf16 without AVX-512 bf16/AMX) is measured on the smaller size only."""
    import torch

    from gankit.runtime.engines import cpu_has_bf16

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
            med, _, _ = time_it(lambda: torch.mm(a, b), warmup=1, min_runs=5, budget_s=0.5)
            best = max(best, 2 * size**3 / (med / 1e3) / 1e9)
        roofs[prec] = round(best, 1)
    roofs["int8"] = round(_int8_roof(threads, n), 1)
    return roofs


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _int8_roof(threads: int, n: int) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]), helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    med, _, _ = time_it(lambda: sess.run(None, feed), warmup=2, min_runs=5, budget_s=0.5)
    return 2 * n**3 / (med / 1e3) / 1e9


# --------------------------------------------------------------------------- quality
def quality(model: BenchModel, backend: Backend, samples: int = 512, batch: int = 64) -> dict[str, float]:
    """Judge metrics (generators) or hole PSNR (inpainting) computed through ``backend``."""

    def call(inputs):
        run = backend.prepare(inputs)
        out = getattr(run, "fetch", run)()
        return np.asarray(out, dtype=np.float32)

    ds = model.dataset
    if model.family.task == "inpaint":
        from gankit.data import to_float
        from gankit.evaluate.inpainting import eval_masks

        n = min(samples, len(ds.x_test)) // batch * batch
        x = to_float(ds.x_test[:n])
        res = {}
        for kind in ("rect", "strokes"):
            m = eval_masks(kind, n, x.shape[2], x.shape[3], seed=0).astype(np.float32)
            out = np.concatenate([call({"image": x[i:i + batch] * (1 - m[i:i + batch]), "mask": m[i:i + batch]})
                                  for i in range(0, n, batch)])
            hole = np.broadcast_to(m, x.shape).astype(bool)
            err = (out[hole] - x[hole]) / 2  # [0, 1] units
            res[f"hole_psnr_{kind}_db"] = round(10 * math.log10(1 / max(float(np.mean(err**2)), 1e-12)), 3)
        return res
    from gankit.evaluate import evaluate_generator

    conditional = model.family.condition == "label"

    def sample(z, labels):
        outs = []
        for i in range(0, len(z), batch):
            feed = {"z": z[i:i + batch]}
            if conditional:
                feed["label"] = labels[i:i + batch]
            outs.append(call(feed))
        return np.concatenate(outs)

    rec = evaluate_generator(sample, ds, latent_dim=int(model.config["latent_dim"]), conditional=conditional,
                             samples=samples // batch * batch, seed=0)
    keys = ("conditional_accuracy", "fd_ratio", "coverage") if conditional else ("coverage", "fd_ratio")
    return {k: rec[k] for k in keys}


def quality_failing(ref: dict[str, float], got: dict[str, float]) -> list[str]:
    """Metrics that dropped by more than one point: 0.01 of accuracy/coverage, 1 dB of PSNR."""
    bad = []
    for k, v in ref.items():
        if k not in got:
            continue
        if k.endswith("_db") and got[k] < v - 1.0:
            bad.append(f"{k} {v:.2f} -> {got[k]:.2f}")
        elif k in ("conditional_accuracy", "coverage") and got[k] < v - 0.01:
            bad.append(f"{k} {v:.3f} -> {got[k]:.3f}")
    return bad


# --------------------------------------------------------------------------- the run
def run_bench(models: list[str], batches: list[int], *, threads: int | None = None, compile: bool = True,
              check_quality: bool = True, train: bool = True, cold: bool = True, device: str = "auto",
              budget_s: float = 0.8, fresh: bool = False, quality_samples: int = 512, time_to_quality: bool = False,
              log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Everything in one process; returns the list of records (see ``gankit bench --help``)."""
    import torch

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    threads = threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    torch.set_num_threads(threads)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    if use_cuda:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN libraries from PyTorch's nvidia packages
            try:
                ort.preload_dlls()
            except Exception as exc:  # pragma: no cover - GPU machines only
                log(f"onnxruntime.preload_dlls: {_first(exc)}")
    records: list[dict[str, Any]] = []
    info = machine()
    info["threads"] = threads
    records.append({"kind": "machine", **info})
    log(f"machine: {info['cpu']} ({info['cores']} cores, {', '.join(info['isa'])}); measuring roofs ...")
    roofs = measure_roofs(threads)
    records.append({"kind": "roof", **{f"{k}_gflops": v for k, v in roofs.items()}})
    from gankit.runtime.engines import cpu_has_bf16

    has_ov = info["openvino"] is not None
    tmp = tempfile.TemporaryDirectory(prefix="gankit-bench-")
    work = Path(tmp.name)
    try:
        for spec in models:
            t_model = time.perf_counter()
            model = prepare_model(spec, work, fresh=fresh)
            log(f"{model.name}: {model.weights}")
            backends = cpu_backends(openvino_bf16=has_ov and cpu_has_bf16())
            if use_cuda:
                backends += cuda_backends()
            ref_quality: dict[str, float] | None = None
            live: dict[str, Backend] = {}
            for bname, factory in backends:
                if bname.startswith("openvino") and not has_ov:
                    records.append(_skipped(model, bname, "not installed (pip install 'gankit[openvino]')"))
                    continue
                if "torch.compile" in bname and not compile:
                    records.append(_skipped(model, bname, "skipped (--no-compile)"))
                    continue
                try:
                    live[bname] = factory(model, threads)
                except Exception as exc:
                    records.append(_skipped(model, bname, f"error: {_first(exc)}"))
                    log(f"  {bname}: {_first(exc)}")
            for b in batches:
                inputs = example_inputs(model, b, seed=7)
                runs: dict[str, Callable[[], Any]] = {}
                outs: dict[str, np.ndarray] = {}
                for bname, backend in live.items():
                    try:
                        run = backend.prepare(inputs)
                        outs[bname] = np.asarray(getattr(run, "fetch", run)(), dtype=np.float32)
                        runs[bname] = run
                    except Exception as exc:
                        records.append(_skipped(model, bname, f"error: {_first(exc)}", batch=b))
                        log(f"  {bname} batch {b}: {_first(exc)}")
                timed = time_interleaved(runs, budget_s=budget_s)
                ref = outs.get("pytorch eager fp32")
                flops = count_flops(model, b)
                for bname, (med, p90, n) in timed.items():
                    backend, out = live[bname], outs[bname]
                    gfs = flops / (med / 1e3) / 1e9
                    prec = backend.precision
                    roof = roofs.get(prec if prec in roofs else "fp32")
                    rec = {"kind": "inference", "model": model.name, "backend": bname, "batch": b,
                           "median_ms": round(med, 4), "p90_ms": round(p90, 4), "images_per_s": round(b / (med / 1e3), 1),
                           "gflops_per_s": round(gfs, 2),
                           "max_abs_diff_vs_fp32": None if ref is None else float(np.max(np.abs(out - ref))),
                           "psnr_vs_fp32_db": None if ref is None else round(min(psnr_db(out, ref), 999.0), 2),
                           "precision": prec, "file": backend.kind == "onnx", "device": backend.device,
                           "roof_share": round(gfs / roof, 4) if roof and backend.device == "cpu" else None,
                           "runs": n, "weights": model.weights, "status": "ok"}
                    records.append(rec)
                    log(f"  {bname:<42} batch {b:>3}: {med:8.3f} ms  {rec['images_per_s']:>9.0f} img/s  "
                        f"{gfs:6.1f} GFLOP/s  psnr {rec['psnr_vs_fp32_db']}")
            for bname, backend in live.items():
                if check_quality and model.dataset is not None and (backend.precision != "fp32" or bname == "pytorch eager fp32"):
                    try:
                        q = quality(model, backend, samples=quality_samples, batch=min(64, quality_samples))
                    except Exception as exc:
                        log(f"  quality through {bname}: {_first(exc)}")
                        continue
                    if bname == "pytorch eager fp32":
                        ref_quality = q
                    bad = quality_failing(ref_quality or {}, q)
                    for rec in records:
                        if rec.get("model") == model.name and rec.get("backend") == bname and rec["kind"] == "inference":
                            rec["quality"] = q
                            if bad:
                                rec["status"] = "failing: " + "; ".join(bad)
                    log(f"  quality through {bname}: {q}" + (f"  FAILING ({'; '.join(bad)})" if bad else ""))
            live.clear()
            log(f"{model.name}: {time.perf_counter() - t_model:.0f} s")
        if cold:
            from gankit.bench.cold import cold_start

            target = prepare_model(models[0], work, fresh=fresh).onnx_path
            records.append({"kind": "cold_start", "model": models[0], **cold_start(target, repeats=3, batch=16)})
            log(f"cold start: {records[-1]}")
        if train:
            from gankit.bench.training import training_speed

            for rec in training_speed(threads=threads, log=log):
                records.append(rec)
        if time_to_quality:
            from gankit.bench.training import time_to_quality as ttq

            records += ttq(threads=threads, log=log)
    finally:
        tmp.cleanup()
    return records


def _skipped(model: BenchModel, backend: str, why: str, batch: int | None = None) -> dict[str, Any]:
    return {"kind": "inference", "model": model.name, "backend": backend, "batch": batch, "status": why}


def _first(exc: BaseException) -> str:
    return (next((l.strip() for l in str(exc).splitlines() if l.strip()), type(exc).__name__))[:160]


# --------------------------------------------------------------------------- reporting
def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, computed from the records: speed-up of the best file backend over
    the best PyTorch variant per model and batch, roof share of the best backend, training
    ratio, cold start."""
    ok = [r for r in records if r.get("kind") == "inference" and r.get("median_ms") and r.get("status") == "ok"
          and r.get("device", "cpu") == "cpu"]
    out: dict[str, Any] = {"speedup": [], "roof": []}
    for model in sorted({r["model"] for r in ok}):
        for b in sorted({r["batch"] for r in ok if r["model"] == model}):
            rows = [r for r in ok if r["model"] == model and r["batch"] == b]
            files = [r for r in rows if r["file"]]
            torchs = [r for r in rows if not r["file"]]
            if files and torchs:
                bf, bt = min(files, key=lambda r: r["median_ms"]), min(torchs, key=lambda r: r["median_ms"])
                out["speedup"].append({"model": model, "batch": b, "best_file": bf["backend"], "best_pytorch": bt["backend"],
                                       "ratio": round(bt["median_ms"] / bf["median_ms"], 2)})
            best = min(rows, key=lambda r: r["median_ms"])
            out["roof"].append({"model": model, "batch": b, "backend": best["backend"], "precision": best["precision"],
                                "roof_share": best.get("roof_share")})
    out["training"] = [r for r in records if r.get("kind") == "training_ratio"]
    out["cold_start"] = next((r for r in records if r.get("kind") == "cold_start"), None)
    return out


def markdown(records: list[dict[str, Any]]) -> str:
    m = next((r for r in records if r.get("kind") == "machine"), {})
    roof = next((r for r in records if r.get("kind") == "roof"), {})
    lines = [f"Machine: {m.get('cpu')} ({m.get('threads')} threads; {', '.join(m.get('isa', []))}), torch {m.get('torch')}, "
             f"onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}" + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
             "", f"Roofs (large matmul, this process): fp32 {roof.get('fp32_gflops')} GFLOP/s, bf16 {roof.get('bf16_gflops')}, "
             f"int8 {roof.get('int8_gflops')} GOP/s", "",
             "| model | backend | batch | median ms | p90 ms | images/s | GFLOP/s | roof share | PSNR vs fp32 dB | quality | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        if r.get("kind") != "inference":
            continue
        if not r.get("median_ms"):
            lines.append(f"| {r['model']} | {r['backend']} | {r.get('batch') or '-'} | | | | | | | | {r['status']} |")
            continue
        q = ", ".join(f"{k} {v}" for k, v in (r.get("quality") or {}).items())
        share = f"{100 * r['roof_share']:.0f}%" if r.get("roof_share") is not None else "-"
        lines.append(f"| {r['model']} | {r['backend']} | {r['batch']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
                     f"{r['images_per_s']:.0f} | {r['gflops_per_s']:.1f} | {share} | {r['psnr_vs_fp32_db']} | {q} | {r['status']} |")
    s = summarize(records)
    lines += ["", "| model | batch | best file backend | best PyTorch variant | speed-up |", "|---|---:|---|---|---:|"]
    for x in s["speedup"]:
        lines.append(f"| {x['model']} | {x['batch']} | {x['best_file']} | {x['best_pytorch']} | {x['ratio']:.2f}x |")
    for t in s["training"]:
        lines.append("")
        lines.append(f"Training ({t['model']}, batch {t['batch']}): gankit {t['gankit_images_per_s']:.0f} images/s, "
                     f"plain PyTorch loop {t['plain_images_per_s']:.0f} images/s: {t['ratio']:.2f}x")
    for t in (r for r in records if r.get("kind") == "time_to_quality"):
        def fmt(side):
            return (f"{side['train_s'] / 60:.1f} min (step {side['step']}, FD {side['fd_ratio']:.1f}x then)" if side.get("reached")
                    else f"not reached in {t['max_steps']} steps ({side['spent_s'] / 60:.1f} min; best accuracy "
                         f"{max(c['conditional_accuracy'] for c in side['curve']):.3f})")
        lines.append("")
        lines.append(f"Time to quality ({t['model']}, conditional accuracy >= judge's {t['target_accuracy']:.3f}, "
                     f"training time only): gankit {fmt(t['gankit'])}; plain loop {fmt(t['plain'])}"
                     + (f": {t['speedup']:.2f}x" if t.get("speedup") else ""))
    if s["cold_start"]:
        c = s["cold_start"]
        lines.append("")
        lines.append(f"Cold start ({c['model']}): import {c['import_ms']} ms + load {c['load_ms']} ms + first batch of 16 "
                     f"{c['first_batch_ms']} ms = {c['in_process_ms']} ms in process; {c['process_ms']} ms whole process")
    return "\n".join(lines) + "\n"


def chart(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.get("kind") == "inference" and r.get("median_ms")]
    models = sorted({r["model"] for r in ok})
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), dpi=100, squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in ok if r["model"] == model]
        backends = list(dict.fromkeys(r["backend"] for r in rows))
        batches = sorted({r["batch"] for r in rows})
        width = 0.8 / max(1, len(backends))
        for i, b in enumerate(backends):
            ys = [next((r["images_per_s"] for r in rows if r["backend"] == b and r["batch"] == bs), 0) for bs in batches]
            failing = any(r["status"] != "ok" for r in rows if r["backend"] == b)
            ax.bar([j + i * width for j in range(len(batches))], ys, width, label=b + (" (failing)" if failing else ""),
                   hatch="//" if failing else None)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set_yscale("log")
        ax.set_ylabel("images/s (log)")
        ax.set_title(model)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_json(records: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, indent=1, default=float))
    os.replace(tmp, path)
