"""Hand-made restore ONNX files for the runtime, CLI and serve tests.

Two makers: :func:`make_torch_restorer` traces a tiny torch module with dynamic batch, height
and width (the legacy TorchScript exporter, ``dynamo=False``: quick and deterministic), and
:func:`make_resize_restorer` writes a single ``Resize`` node with ``onnx.helper`` (no torch, for
tests that must not import it). Both write the restore contract's metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def restore_meta(*, c: int = 3, scale: int = 2, height: int = 32, width: int = 32, degradation: str = "sr2",
                 size_multiple: int | None = None, plugin: str = "restore-test") -> dict[str, str]:
    meta = {"gankit.format": "1", "gankit.plugin": plugin, "gankit.task": "restore", "gankit.latent_dim": "0",
            "gankit.num_classes": "0", "gankit.class_names": "[]", "gankit.channels": str(c),
            "gankit.height": str(height), "gankit.width": str(width), "gankit.value_range": "-1,1",
            "gankit.version": "test", "gankit.scale": str(scale), "gankit.degradation": degradation}
    if size_multiple is not None:
        meta["gankit.size_multiple"] = str(size_multiple)
    return meta


def write_meta(path: Path, meta: dict[str, str]) -> Path:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def conv_stack(c: int = 3, scale: int = 2, layers: int = 4, width: int = 8, seed: int = 0):
    """A random fully convolutional x``scale`` model: ``layers`` 3x3 convolutions (zero padding)
    at input resolution, then nearest upsampling and a global residual from the upsampled input,
    through tanh. Its receptive field reaches ``layers`` input pixels on each side."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvStack(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [c] + [width] * (layers - 1) + [c]
            self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:]))

        def forward(self, x):
            h = x
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < len(self.convs) - 1:
                    h = torch.relu(h)
            if scale > 1:
                h = F.interpolate(h, scale_factor=scale, mode="nearest")
                x = F.interpolate(x, scale_factor=scale, mode="nearest")
            return torch.tanh(x + 0.3 * h)

    torch.manual_seed(seed)
    return ConvStack().eval()


class _Upsample:
    @staticmethod
    def module(scale: int, mode: str):
        import torch.nn.functional as F
        from torch import nn

        class Up(nn.Module):
            def forward(self, x):
                if scale == 1:
                    return x * 1.0  # identity (an exported graph needs at least one node)
                return F.interpolate(x, scale_factor=scale, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))

        return Up().eval()


def make_torch_restorer(path: Path, kind: str = "identity", *, c: int = 3, scale: int | None = None,
                        layers: int = 4, conv_width: int = 8, height: int = 32, width: int = 32,
                        size_multiple: int | None = None, degradation: str | None = None, plugin: str = "restore-test"):
    """``kind``: ``identity`` (x1), ``nearest`` / ``bilinear`` (x``scale``, default 2) or ``conv``
    (:func:`conv_stack`). Returns ``(path, torch module)``."""
    import torch

    if kind == "identity":
        scale = 1 if scale is None else scale
        net = _Upsample.module(scale, "nearest")
    elif kind in ("nearest", "bilinear"):
        scale = 2 if scale is None else scale
        net = _Upsample.module(scale, kind)
    elif kind == "conv":
        scale = 2 if scale is None else scale
        net = conv_stack(c=c, scale=scale, layers=layers, width=conv_width)
    else:
        raise ValueError(kind)
    x = torch.zeros(1, c, height // scale, width // scale)
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["restored"], opset_version=18,
                      dynamo=False, dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                  "restored": {0: "batch", 2: "out_height", 3: "out_width"}})
    write_meta(Path(path), restore_meta(c=c, scale=scale, height=height, width=width, size_multiple=size_multiple,
                                        degradation=degradation or (f"sr{scale}" if scale > 1 else "noise"), plugin=plugin))
    return Path(path), net


def make_resize_restorer(path: Path, *, c: int = 3, scale: int = 2, height: int = 16, width: int = 16,
                         extra_meta: dict[str, str] | None = None) -> Path:
    """restored = nearest-neighbour upsampling x``scale`` (one ``Resize`` node; no torch)."""
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)])
    node = helper.make_node("Resize", ["image", "", "scales"], ["restored"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    graph = helper.make_graph([node], "restore", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                ["batch", c, "height", "width"])],
                              [helper.make_tensor_value_info("restored", TensorProto.FLOAT,
                                                             ["batch", c, "out_height", "out_width"])],
                              initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="gankit-tests")
    model.ir_version = 9
    for k, v in {**restore_meta(c=c, scale=scale, height=height, width=width, degradation=f"sr{scale}"),
                 **(extra_meta or {})}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def torch_run(net, x: np.ndarray) -> np.ndarray:
    """The torch module on float32 NCHW (the reference for whole-image comparisons)."""
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
