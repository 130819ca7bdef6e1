"""Exported files run in ONNX consumers nobody here wrote, with onnxruntime's numbers.

Every installed family (the built-ins and any family a plugin adds later) is trained for a few
steps, exported, and its file run by onnx's reference evaluator and by OpenCV's DNN module with
both of its ONNX importers (the classic one and OpenCV 5's new engine) at batch 1 and 7, on the
family's own example inputs; each must match onnxruntime within 1e-4.

onnx2torch is run when it is importable. It is not installed here: it needs torchvision, and
PyPI's torchvision wheels do not load against the CPU build of torch these machines use (its
CPU wheels live on PyTorch's own index). What it refused before (``allowzero=1`` on Reshape) is
checked directly instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from gankit import plugins

TOLERANCE = 1e-4
BUILTIN = ("gan", "cgan", "inpaint")  # trained once per session by conftest's tiny_runs


def _installed_families() -> list[str]:
    try:
        return sorted(plugins.get_manager().families)
    finally:
        plugins.reset()


FAMILIES = _installed_families()


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory):
    """``exported(name)`` -> (family, config, path of its tiny run's ONNX file)."""
    files: dict[str, tuple[Path, Path]] = {}

    def get(name: str):
        if name not in files:
            if name in BUILTIN:
                tiny = request.getfixturevalue("tiny_runs")[name]
                files[name] = (tiny["run"], tiny["onnx"])
            else:
                from gankit.pipeline import train

                root = tmp_path_factory.mktemp(f"consumer-{name}")
                cwd = os.getcwd()
                os.chdir(root)
                try:
                    plugins.reset()
                    summary = train(plugin=name, steps=3, batch_size=8, out=Path("runs") / name, evaluate=False,
                                    export=True, quiet=True, overrides={"sample_every": 3})
                finally:
                    os.chdir(cwd)
                    plugins.reset()
                files[name] = (root / summary["run"], root / summary["exported"])
        run, path = files[name]
        return plugins.get_family(name), json.loads((run / "config.json").read_text()), path

    return get


def _opencv(*engines: str):
    """OpenCV's DNN importer by engine name: the first of ``engines`` this OpenCV has. OpenCV
    5.0 has ENGINE_CLASSIC and ENGINE_NEW; 5.1 dropped the classic importer and calls the new
    one ENGINE_OPENCV. A missing classic importer is a skip, not a pass."""
    def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import cv2

        found = [getattr(cv2.dnn, e) for e in engines if hasattr(cv2.dnn, e)]
        if not found:
            pytest.skip(f"OpenCV {cv2.__version__} has none of the engines {', '.join(engines)}")
        net = cv2.dnn.readNetFromONNX(str(path), engine=found[0])
        for name, value in feeds.items():
            net.setInput(value, name)
        return np.asarray(net.forward())

    return run


def _reference(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(onnx.load(str(path))).run(None, feeds)[0]


def _onnx2torch(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    onnx2torch = pytest.importorskip("onnx2torch", reason="onnx2torch needs a torchvision that loads with CPU torch")
    import torch

    module = onnx2torch.convert(onnx.load(str(path))).eval()
    with torch.no_grad():
        return module(*[torch.from_numpy(v) for v in feeds.values()]).numpy()


CONSUMERS = {
    "onnx-reference": _reference,
    "opencv-classic": _opencv("ENGINE_CLASSIC"),
    "opencv-new": _opencv("ENGINE_NEW", "ENGINE_OPENCV"),
    "onnx2torch": _onnx2torch,
}


def test_every_builtin_family_is_covered():
    assert set(BUILTIN) <= set(FAMILIES)


@pytest.mark.parametrize("consumer", list(CONSUMERS))
@pytest.mark.parametrize("name", FAMILIES)
def test_consumers_match_onnxruntime(exported, name, consumer):
    import onnxruntime as ort

    family, config, path = exported(name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        # the family's own example inputs, in the file's input order (the exporter's parity check uses them too)
        inputs = family.export_inputs(config, batch, seed=100 + batch)
        feeds = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
        expected = session.run(None, feeds)[0]
        got = CONSUMERS[consumer](path, feeds)
        assert got.shape == expected.shape, (consumer, batch)
        diff = float(np.max(np.abs(got.astype(np.float32) - expected)))
        assert diff <= TOLERANCE, f"{consumer} differs from onnxruntime by {diff:.3g} on {name} at batch {batch}"


@pytest.mark.parametrize("name", FAMILIES)
def test_no_reshape_needs_allowzero(exported, name):
    """onnx2torch (and runtimes before opset 14) refuse ``allowzero=1``; the exporter clears it."""
    _, _, path = exported(name)
    graph = onnx.load(str(path)).graph
    flagged = [n.name for n in graph.node if n.op_type == "Reshape" and any(a.name == "allowzero" and a.i for a in n.attribute)]
    assert not flagged, f"{name}: Reshape nodes with allowzero=1: {flagged}"


def test_portable_reshapes_clears_allowzero_only_where_it_cannot_matter():
    from onnx import TensorProto, helper

    from gankit.export import portable_reshapes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 12])
    y = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(3)]
    inits = [helper.make_tensor("no_zero", TensorProto.INT64, [3], [-1, 3, 4]),
             helper.make_tensor("has_zero", TensorProto.INT64, [3], [0, 3, 4])]
    nodes = [
        helper.make_node("Constant", [], ["const_shape"], value=helper.make_tensor("v", TensorProto.INT64, [2], [-1, 12])),
        helper.make_node("Reshape", ["x", "no_zero"], ["y0"], allowzero=1),
        helper.make_node("Reshape", ["x", "has_zero"], ["y1"], allowzero=1),  # 0 means "size 0" here: must stay
        helper.make_node("Shape", ["x"], ["computed"]),
        helper.make_node("Reshape", ["x", "computed"], ["y2"], allowzero=1),  # unknown at export: stays
        helper.make_node("Reshape", ["x", "const_shape"], ["y3"], allowzero=1),
    ]
    y.append(helper.make_tensor_value_info("y3", TensorProto.FLOAT, None))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], y, inits), opset_imports=[helper.make_opsetid("", 18)])
    assert portable_reshapes(model) == 2
    allow = {n.output[0]: [a.i for a in n.attribute if a.name == "allowzero"] for n in model.graph.node if n.op_type == "Reshape"}
    assert allow == {"y0": [], "y1": [1], "y2": [1], "y3": []}
