"""Tiny gankit-format ONNX files built with onnx.helper (no torch, no training), for the serve tests.

They follow the file contract exactly (inputs, outputs, dynamic batch, metadata), so the
runtime loads them like any export; their arithmetic is trivial, which keeps tests fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _meta(task, plugin, latent, classes, c, h, w):
    names = [str(i) for i in range(classes)]
    return {"gankit.format": "1", "gankit.plugin": plugin, "gankit.task": task, "gankit.latent_dim": str(latent),
            "gankit.num_classes": str(classes), "gankit.class_names": json.dumps(names), "gankit.channels": str(c),
            "gankit.height": str(h), "gankit.width": str(w), "gankit.value_range": "-1,1", "gankit.version": "test"}


def _save(graph, meta, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="gankit-tests")
    model.ir_version = 9  # what onnxruntime reads (onnx.helper defaults to its newest)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_generator(path: Path, *, latent=8, classes=10, c=1, h=8, w=8, seed=0) -> Path:
    """image = tanh(z @ W (+ E[label])) reshaped to [N, c, h, w]."""
    rng = np.random.default_rng(seed)
    px = c * h * w
    inits = [numpy_helper.from_array(rng.standard_normal((latent, px)).astype(np.float32) * 0.5, "W"),
             numpy_helper.from_array(np.array([-1, c, h, w], np.int64), "shape")]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent])]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"])]
    pre = "zw"
    if classes:
        inits.append(numpy_helper.from_array(rng.standard_normal((classes, px)).astype(np.float32), "E"))
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
        nodes += [helper.make_node("Gather", ["E", "label"], ["emb"], axis=0), helper.make_node("Add", ["zw", "emb"], ["pre"])]
        pre = "pre"
    nodes += [helper.make_node("Tanh", [pre], ["t"]), helper.make_node("Reshape", ["t", "shape"], ["image"])]
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w])
    graph = helper.make_graph(nodes, "gen", inputs, [out], inits)
    return _save(graph, _meta("generate", "cgan" if classes else "gan", latent, classes, c, h, w), path)


def make_inpainter(path: Path, *, c=1, h=8, w=8) -> Path:
    """restored = image * (1 - mask) + 0.5 * mask: known pixels pass through, holes turn light gray."""
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "one"), numpy_helper.from_array(np.array(0.5, np.float32), "fill")]
    nodes = [helper.make_node("Sub", ["one", "mask"], ["keep"]), helper.make_node("Mul", ["image", "keep"], ["kept"]),
             helper.make_node("Mul", ["mask", "fill"], ["hole"]), helper.make_node("Add", ["kept", "hole"], ["restored"])]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, h, w])]
    out = helper.make_tensor_value_info("restored", TensorProto.FLOAT, ["N", c, h, w])
    graph = helper.make_graph(nodes, "inpaint", inputs, [out], inits)
    return _save(graph, _meta("inpaint", "inpaint", 0, 0, c, h, w), path)


def make_truncation_generator(path: Path, *, latent=4, c=1, h=4, w=4, seed=0) -> Path:
    """image = tanh((z @ W) * truncation[:, None]): a generator with an optional-style truncation input."""
    rng = np.random.default_rng(seed)
    px = c * h * w
    inits = [numpy_helper.from_array(rng.standard_normal((latent, px)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([-1, c, h, w], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"]), helper.make_node("Unsqueeze", ["truncation", "axis1"], ["t2"]),
             helper.make_node("Mul", ["zw", "t2"], ["scaled"]), helper.make_node("Tanh", ["scaled"], ["t"]),
             helper.make_node("Reshape", ["t", "shape"], ["image"])]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", latent]),
              helper.make_tensor_value_info("truncation", TensorProto.FLOAT, ["N"])]
    out = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", c, h, w])
    graph = helper.make_graph(nodes, "gen_trunc", inputs, [out], inits)
    return _save(graph, _meta("generate", "stylegan-test", latent, 0, c, h, w), path)


def with_truncation_input(plain: Path, truncated: Path):
    """A runtime model as a runtime that knows optional inputs will present a truncation model.

    Today's runtime accepts only ``z`` (+ ``label``), so the plain twin is loaded and its engine
    swapped for the truncation graph's.
    """
    import gankit.runtime as gr
    from gankit.runtime.engines import OnnxRuntimeEngine

    model = gr.load(plain)
    model.engine = OnnxRuntimeEngine(truncated, None, None)
    model.session = model.engine.session
    model.input_names = list(model.engine.input_names)
    model.path = truncated
    return model
