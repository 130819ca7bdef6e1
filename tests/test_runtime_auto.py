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
    # a GPU goes to onnxruntime's CUDA provider; no OpenVINO, onnxruntime
    monkeypatch.setattr(engines, "default_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engines.resolve_backend("auto") == "onnxruntime"
    monkeypatch.setattr(engines, "default_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(engines, "openvino_installed", lambda: False)
    assert engines.resolve_backend("auto") == "onnxruntime"


def _graph(path, op: str):
    """A tiny float graph: a 3x3 Conv (``op="Conv"``), or a comparison of x with 0 cast back to
    float (``op="Greater"``), the shape of the gan's cluster lookup."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    rng = np.random.default_rng(0)
    if op == "Conv":
        w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], rng.standard_normal(144).astype(np.float32))
        nodes, inits = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [w]
    else:
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
        nodes = [helper.make_node(op, ["x", "zero"], ["b"]), helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
        inits = [zero]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


@needs_openvino
def test_openvino_auto_precision_keeps_decisions_in_fp32(monkeypatch, tmp_path):
    conv, greater = _graph(tmp_path / "conv.onnx", "Conv"), _graph(tmp_path / "greater.onnx", "Greater")
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)  # so the rule is checked on any CPU
    assert engines.OpenVINOEngine(conv, 1).precision == "bf16"
    assert engines.OpenVINOEngine(greater, 1).precision == "f32"
    assert engines.OpenVINOEngine(greater, 1, precision="bf16").precision == "bf16"  # asked for: given
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    assert engines.OpenVINOEngine(conv, 1).precision == "f32"


@needs_openvino
def test_the_gan_export_counts_as_a_graph_with_decisions(tiny_runs):
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

    monkeypatch.setattr(engines.OpenVINOEngine, "__init__", refuse)
    m = runtime.load(tiny_runs["cgan"]["onnx"], backend="auto")
    assert m.backend == "onnxruntime"
    with pytest.raises(runtime.ModelFormatError, match="made up"):  # OpenVINO named explicitly: its error
        runtime.load(tiny_runs["cgan"]["onnx"], backend="openvino")


@needs_openvino
def test_gankit_restore_runs_auto_by_default_close_to_onnxruntime(cli, tmp_path):
    path, _ = make_torch_restorer(tmp_path / "conv.onnx", "conv", c=3, scale=2, layers=4, conv_width=8)
    img = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    assert runtime.load(path, backend="auto").backend == "openvino"
    for backend, out in ((None, "auto.png"), ("onnxruntime", "ort.png")):
        args = ["--backend", backend] if backend else []
        r = cli("restore", path, "--image", tmp_path / "in.png", "--out", tmp_path / out, "--tile", "32", *args)
        assert r.code == 0, r.err
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
