"""The runtime's ``auto`` backend and OpenVINO's automatic precision (issue 28).

``auto`` must pick OpenVINO only where it is installed and no GPU is in reach, fall back to
onnxruntime when OpenVINO cannot take a file, and OpenVINO's automatic precision must keep
graphs that make discrete decisions (the gan's cluster lookup) in fp32, where bf16 rounding
would flip them. ``gankit restore`` runs ``auto`` by default; its output stays within a level
or two of onnxruntime's fp32 result.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from gankit import runtime
from gankit.runtime import engines
from tests.restore_models import make_torch_restorer

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO has no wheel for this platform")


def test_auto_resolves_to_the_engine_the_machine_and_the_arguments_call_for(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "openvino_installed", lambda: True)
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    assert engines.resolve_backend("auto") == "openvino"
    assert engines.resolve_backend("onnxruntime") == "onnxruntime"  # a named backend is kept
    # onnxruntime-only arguments mean onnxruntime, OpenVINO's mean OpenVINO
    assert engines.resolve_backend("auto", providers=["CPUExecutionProvider"]) == "onnxruntime"
    assert engines.resolve_backend("auto", options={"optimized_path": str(tmp_path / "o.onnx")}) == "onnxruntime"
    assert engines.resolve_backend("auto", options={"precision": "f32"}) == "openvino"
    # a GPU goes to onnxruntime's CUDA provider; no OpenVINO, onnxruntime (OpenVINO's hints or not)
    monkeypatch.setattr(engines, "default_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engines.resolve_backend("auto") == "onnxruntime"
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    assert engines.resolve_backend("auto") == "onnxruntime"
    assert engines.resolve_backend("auto", options={"precision": "f32"}) == "onnxruntime"


def test_auto_without_openvino_drops_its_hints_and_keeps_onnxruntime_errors(monkeypatch, tiny_runs):
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto", precision="f32")
    assert m.backend == "onnxruntime" and m.fallback_reason == ""
    with pytest.raises(runtime.RuntimeInputError, match="unknown option 'turbo'"):
        runtime.load(tiny_runs["cgan"]["onnx"], backend="auto", turbo=True)


def _graph(path, op: str):
    """A tiny float graph: a 3x3 Conv (``op="Conv"``), a comparison of x with 0 cast back to
    float (``op="Greater"``, the shape of the gan's cluster lookup), or x times an integer
    input's comparison with 0 (``op="IntGreater"``, the shape of stylegan's crossover)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    rng = np.random.default_rng(0)
    inputs = [x]
    if op == "Conv":
        w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], rng.standard_normal(144).astype(np.float32))
        nodes, inits = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [w]
    elif op == "IntGreater":  # stylegan's crossover: a layer index compared with an integer input
        inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
        zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
        nodes = [helper.make_node("Greater", ["k", "zero"], ["b"]), helper.make_node("Cast", ["b"], ["f"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["x", "f"], ["y"])]
        inits = [zero]
    elif op in ("CastInt", "CastBool"):  # a float truncated to an integer, or thresholded to a bool
        to = TensorProto.INT64 if op == "CastInt" else TensorProto.BOOL
        nodes = [helper.make_node("Mul", ["x", "three"], ["t"]), helper.make_node("Cast", ["t"], ["i"], to=to),
                 helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
        inits = [helper.make_tensor("three", TensorProto.FLOAT, [], [3.0])]
    else:
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
        nodes = [helper.make_node(op, ["x", "zero"], ["b"]), helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
        inits = [zero]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [y], inits), opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


@needs_openvino
def test_openvino_auto_precision_keeps_decisions_in_fp32(monkeypatch, tmp_path):
    conv, greater = _graph(tmp_path / "conv.onnx", "Conv"), _graph(tmp_path / "greater.onnx", "Greater")
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)  # so the rule is checked on any CPU
    assert engines.OpenVINOEngine(conv, 1).precision == "bf16"
    assert engines.OpenVINOEngine(greater, 1).precision == "f32"
    for cast in ("CastInt", "CastBool"):
        assert engines.OpenVINOEngine(_graph(tmp_path / f"{cast}.onnx", cast), 1).precision == "f32", cast
    # integers compare exactly in any precision: no reason to give up bf16
    assert engines.OpenVINOEngine(_graph(tmp_path / "int.onnx", "IntGreater"), 1).precision == "bf16"
    assert engines.OpenVINOEngine(greater, 1, precision="bf16").precision == "bf16"  # asked for: given
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    assert engines.OpenVINOEngine(conv, 1).precision == "f32"


@needs_openvino
def test_the_gan_export_counts_as_a_graph_with_decisions(monkeypatch, tiny_runs):
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)
    model = onnx.load(str(tiny_runs["gan"]["onnx"]))
    ops = {n.op_type for n in model.graph.node}
    assert ops & engines.DECISION_OPS, ops  # its cluster lookup: OpenVINO's auto precision keeps it fp32
    m = runtime.load(tiny_runs["gan"]["onnx"], backend="openvino")
    assert "f32" in m.providers[0]


@needs_openvino
def test_auto_loads_openvino_on_a_cpu_and_falls_back_to_onnxruntime(monkeypatch, tiny_runs):
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto")
    assert m.backend == "openvino" and m.providers[0].startswith("OpenVINO")
    assert "openvino" in repr(m)
    ref = runtime.load(tiny_runs["cgan"]["onnx"])
    assert ref.backend == "onnxruntime"  # the Python default is unchanged
    diff = np.abs(m.generate(8, labels=2, seed=0).astype(int) - ref.generate(8, labels=2, seed=0).astype(int))
    assert diff.mean() < 2, diff.mean()

    def refuse(*args, **kwargs):
        raise runtime.ModelFormatError("OpenVINO cannot compile it (made up by the test)")

    with monkeypatch.context() as mp:
        mp.setattr(engines.OpenVINOEngine, "__init__", refuse)
        m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto")
        assert m.backend == "onnxruntime" and "made up" in m.fallback_reason
        with pytest.raises(runtime.ModelFormatError, match="made up"):  # OpenVINO named explicitly: its error
            runtime.load(tiny_runs["cgan"]["onnx"], backend="openvino")
    # compiled, but the probe run gives the wrong shape: the contract check fails, auto falls back
    with monkeypatch.context() as mp:
        mp.setattr(engines.OpenVINOEngine, "run", lambda self, feed: np.zeros((1, 1, 3, 3), np.float32))
        m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto")
        assert m.backend == "onnxruntime" and m.fallback_reason
        assert m.generate(2, labels=1, seed=0).shape[0] == 2
    # OpenVINO itself failing (its CPU plugin, not the file) is a reason to fall back too, not a traceback
    import openvino

    def broken_core(*args, **kwargs):
        raise RuntimeError("CPU plugin failed to load (made up by the test)")

    with monkeypatch.context() as mp:
        mp.setattr(openvino, "Core", broken_core)
        m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto")
        assert m.backend == "onnxruntime" and "CPU plugin" in m.fallback_reason
        with pytest.raises(runtime.ModelFormatError, match="CPU plugin"):
            runtime.load(tiny_runs["cgan"]["onnx"], backend="openvino")
    with pytest.raises(runtime.RuntimeInputError, match="precision"):  # a bad argument is not a reason to fall back
        runtime.load(tiny_runs["cgan"]["onnx"], backend="auto", precision="f64")


def _spy_on_load(monkeypatch) -> list:
    """Record every model the CLI loads, with the options it asked for."""
    loaded = []
    real = runtime.load

    def load(path, **kwargs):
        m = real(path, **kwargs)
        loaded.append((m, kwargs))
        return m

    monkeypatch.setattr(runtime, "load", load)
    return loaded


@needs_openvino
def test_gankit_restore_runs_auto_by_default_close_to_onnxruntime(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])  # as on a CPU machine
    loaded = _spy_on_load(monkeypatch)
    path, _ = make_torch_restorer(tmp_path / "conv.onnx", "conv", c=3, scale=2, layers=4, conv_width=8)
    img = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    for backend, out in ((None, "auto.png"), ("onnxruntime", "ort.png")):
        args = ["--backend", backend] if backend else []
        r = cli("restore", path, "--image", tmp_path / "in.png", "--out", tmp_path / out, "--tile", "32", *args)
        assert r.code == 0, r.err
    assert [m.backend for m, _ in loaded] == ["openvino", "onnxruntime"]
    assert "precision" not in loaded[0][1]  # an 8-bit image: OpenVINO's automatic precision
    a = np.asarray(Image.open(tmp_path / "auto.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "ort.png")).astype(int)
    assert a.shape == b.shape == (140, 180, 3)
    exact = runtime.load(path).restore(img, tile=32)
    assert np.array_equal(b, exact)  # --backend onnxruntime: the fp32 result
    assert np.abs(a - b).max() <= 3 and np.abs(a - b).mean() < 0.5


def test_unknown_backend_is_one_line(cli, tmp_path):
    path, _ = make_torch_restorer(tmp_path / "id.onnx", "identity", c=1)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in.png")
    r = cli("restore", path, "--image", tmp_path / "in.png", "--out", tmp_path / "o.png", "--backend", "tensorrt")
    assert r.code == 2 and "unknown backend 'tensorrt'" in r.err and "auto" in r.err
    assert not (tmp_path / "o.png").exists()


@needs_openvino
@pytest.mark.parametrize("backend", [None, "openvino"])
def test_gankit_restore_runs_sixteen_bit_images_in_fp32_on_openvino(cli, tmp_path, monkeypatch, backend):
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    loaded = _spy_on_load(monkeypatch)
    # a model with arithmetic (an identity Resize would pass even in bf16)
    path, _ = make_torch_restorer(tmp_path / "conv.onnx", "conv", c=1, scale=2, layers=4, conv_width=8)
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(src / "a.png")
    deep = np.random.default_rng(2).integers(0, 65536, (24, 24)).astype(np.uint16)
    Image.fromarray(deep).save(src / "b.png")  # one 16-bit image: the folder runs fp32
    args = ["--backend", backend] if backend else []
    r = cli("restore", path, "--input-dir", src, "--output-dir", tmp_path / "out", *args)
    assert r.code == 0, r.err
    (m, kwargs), = loaded
    assert m.backend == "openvino" and kwargs.get("precision") == "f32" and "f32" in m.providers[0]
    with Image.open(tmp_path / "out" / "b.png") as im:
        got = np.asarray(im).astype(np.int64)
    exact = runtime.load(path).restore(deep).astype(np.int64)  # onnxruntime fp32
    # fp32 in both: a few of 65,536 levels at most; bf16 (8 significant bits) misses by tens (47 here)
    assert got.shape == exact.shape and np.abs(got - exact).max() <= 16


@needs_openvino
def test_gankit_restore_says_when_it_fell_back_to_onnxruntime(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])

    def refuse(*args, **kwargs):
        raise runtime.ModelFormatError("OpenVINO cannot compile it (made up by the test)")

    monkeypatch.setattr(engines.OpenVINOEngine, "__init__", refuse)
    path, _ = make_torch_restorer(tmp_path / "id.onnx", "identity", c=1)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in.png")
    r = cli("restore", path, "--image", tmp_path / "in.png", "--out", tmp_path / "o.png")
    assert r.code == 0, r.err
    assert "note: running on onnxruntime" in r.err and "made up" in r.err and "Traceback" not in r.err
    assert (tmp_path / "o.png").is_file()


@needs_openvino
def test_gankit_inpaint_runs_a_sixteen_bit_image_in_fp32_on_openvino(cli, tmp_path, monkeypatch, tiny_runs):
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    loaded = _spy_on_load(monkeypatch)
    deep = np.random.default_rng(3).integers(0, 65536, (28, 28)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "in.png")
    mask = np.zeros((28, 28), np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for backend, out in (("openvino", "ov.png"), ("onnxruntime", "ort.png")):
        r = cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", tmp_path / "in.png", "--mask", tmp_path / "mask.png",
                "--out", tmp_path / out, "--backend", backend)
        assert r.code == 0, r.err
    assert [kw.get("precision") for _, kw in loaded] == ["f32", None]
    with Image.open(tmp_path / "ov.png") as a, Image.open(tmp_path / "ort.png") as b:
        got, exact = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    assert exact.max() > 255 and np.abs(got - exact).max() <= 16  # 16-bit kept: fp32 both ways
