"""The ONNX file contract, checked when a file is loaded: the runtime trusts nothing in it.

:func:`parse_metadata` turns ``metadata_props`` into a :class:`ModelInfo` with every value
parsed and range-checked; :func:`check_graph` compares the graph's declared inputs and outputs
(names, dtypes, ranks, static sizes) with that info; :func:`probe` runs the graph once at
batch 1 and compares what comes out with the metadata. Each failure is one
:class:`ModelFormatError` line naming the file and the broken promise.

The contract (README "The ONNX file", DESIGN.md): generate families take ``z`` float32
``[N, latent_dim]`` and, when conditional, ``label`` int64 ``[N]``, and return ``image``;
inpainting takes ``image`` float32 ``[N, C, H, W]`` and ``mask`` float32 ``[N, 1, H, W]`` and
returns ``restored``; outputs are float32 ``[N, C, H, W]``, the batch axis dynamic. Every file
of format "1" written so far satisfies it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gankit.errors import first_line
from gankit.runtime.errors import ModelFormatError, show

FORMATS = ("1",)
TASKS = ("generate", "inpaint")
CHANNELS = (1, 3)  # what the runtime can turn into pictures (gray, RGB)
MAX_SIDE = 16384
MAX_PIXELS = 1 << 24  # per image: 4096 x 4096; keeps the batch-1 probe small
MAX_LATENT = 1 << 16
MAX_CLASSES = 1 << 20
OUTPUT_NAME = {"generate": "image", "inpaint": "restored"}
_INT = re.compile(r"[+-]?[0-9]{1,12}")


@dataclass(frozen=True)
class ModelInfo:
    """What the file's metadata promises, parsed and checked."""

    format: str
    task: str
    plugin: str
    latent_dim: int
    num_classes: int
    class_names: tuple[str, ...]
    channels: int
    height: int
    width: int
    version: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return self.task == "generate" and self.num_classes > 0

    def expected_inputs(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        """Input name -> (dtype, shape with None for the batch axis)."""
        c, h, w = self.channels, self.height, self.width
        if self.task == "inpaint":
            return {"image": ("float32", (None, c, h, w)), "mask": ("float32", (None, 1, h, w))}
        out = {"z": ("float32", (None, self.latent_dim))}
        if self.conditional:
            out["label"] = ("int64", (None,))
        return out

    @property
    def output_name(self) -> str:
        return OUTPUT_NAME[self.task]


def _bad(path: Path, what: str) -> ModelFormatError:
    return ModelFormatError(f"{path} breaks the gankit file contract: {what}")


def _int_key(meta: dict[str, str], key: str, path: Path, lo: int, hi: int, default: str | None = None) -> int:
    raw = meta.get(key, default)
    if raw is None:
        raise _bad(path, f"metadata lacks {key}")
    text = raw.strip()
    if not _INT.fullmatch(text):
        raise _bad(path, f"{key} is {show(raw)}, not an integer")
    value = int(text)
    if not lo <= value <= hi:
        raise _bad(path, f"{key} is {value}; it must be between {lo} and {hi}")
    return value


def parse_metadata(meta: dict[str, str], path: Path) -> ModelInfo:
    """Every contract key parsed and range-checked; unknown keys are kept in ``extra``."""
    required = ("gankit.format", "gankit.task", "gankit.channels", "gankit.height", "gankit.width")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ModelFormatError(f"{path} is not a gankit model (metadata lacks {', '.join(missing)})")
    fmt = meta["gankit.format"].strip()
    if fmt not in FORMATS:
        raise ModelFormatError(f"{path} uses gankit format {show(meta['gankit.format'])}; "
                               f"this runtime reads format {', '.join(FORMATS)}")
    task = meta["gankit.task"].strip()
    if task not in TASKS:
        raise _bad(path, f"unknown task {show(meta['gankit.task'])} (known: {', '.join(TASKS)})")
    channels = _int_key(meta, "gankit.channels", path, 1, 4)
    if channels not in CHANNELS:
        raise _bad(path, f"gankit.channels is {channels}; the runtime reads 1 (gray) or 3 (RGB)")
    height = _int_key(meta, "gankit.height", path, 1, MAX_SIDE)
    width = _int_key(meta, "gankit.width", path, 1, MAX_SIDE)
    if height * width > MAX_PIXELS:
        raise _bad(path, f"{height}x{width} images exceed the runtime's {MAX_PIXELS} pixels per image")
    if task == "generate":
        latent_dim = _int_key(meta, "gankit.latent_dim", path, 1, MAX_LATENT)
    else:  # no noise input: the exporter writes 0
        latent_dim = _int_key(meta, "gankit.latent_dim", path, 0, 0, default="0")
    num_classes = _int_key(meta, "gankit.num_classes", path, 0, MAX_CLASSES, default="0")
    class_names = _class_names(meta.get("gankit.class_names", "[]"), num_classes, path)
    value_range = meta.get("gankit.value_range", "-1,1")
    try:
        lo, hi = (float(v) for v in value_range.split(","))
    except ValueError:
        raise _bad(path, f"gankit.value_range is {show(value_range)}, not 'LOW,HIGH'") from None
    if (lo, hi) != (-1.0, 1.0):
        raise _bad(path, f"gankit.value_range is {show(value_range)}; format 1 models work in -1,1")
    known = {"gankit.format", "gankit.task", "gankit.plugin", "gankit.latent_dim", "gankit.num_classes",
             "gankit.class_names", "gankit.channels", "gankit.height", "gankit.width", "gankit.value_range",
             "gankit.version"}
    return ModelInfo(format=fmt, task=task, plugin=meta.get("gankit.plugin", ""), latent_dim=latent_dim,
                     num_classes=num_classes, class_names=class_names, channels=channels, height=height,
                     width=width, version=meta.get("gankit.version", ""),
                     extra={k: v for k, v in meta.items() if k not in known})


def _class_names(raw: str, num_classes: int, path: Path) -> tuple[str, ...]:
    try:
        names = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad(path, f"gankit.class_names is {show(raw)}, not a JSON list") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _bad(path, f"gankit.class_names is {show(raw)}; it must be a JSON list of strings")
    if names and len(names) != num_classes:
        raise _bad(path, f"gankit.class_names has {len(names)} names for gankit.num_classes {num_classes}")
    if len(set(names)) != len(names):
        raise _bad(path, "gankit.class_names repeats a name, so a label given by name would be ambiguous")
    return tuple(names)


def _fmt_shape(shape) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def check_graph(info: ModelInfo, inputs, outputs, path: Path) -> None:
    """The graph's declared inputs/outputs against the contract and the metadata."""
    expected = info.expected_inputs()
    names = [i.name for i in inputs]
    if sorted(names) != sorted(expected):
        kind = f"a conditional ({info.num_classes}-class) generate" if info.conditional else f"a gankit {info.task}"
        raise ModelFormatError(f"{path} has inputs {names}, {kind} model has {list(expected)}")
    declared_inputs = info.extra.get("gankit.inputs")
    if declared_inputs is not None and sorted(declared_inputs.split(",")) != sorted(expected):
        raise _bad(path, f"gankit.inputs says {show(declared_inputs)} but the graph takes {list(expected)}")
    for spec in inputs:
        _check_tensor(spec, *expected[spec.name], "input", path)
    if not outputs:
        raise _bad(path, "the graph has no output")
    out = outputs[0]
    if out.name != info.output_name:
        raise _bad(path, f"the output is named {show(out.name)}; a {info.task} model's is {info.output_name!r}")
    declared_output = info.extra.get("gankit.output")
    if declared_output is not None and declared_output != out.name:
        raise _bad(path, f"gankit.output says {show(declared_output)} but the graph's output is {out.name!r}")
    _check_tensor(out, "float32", (None, info.channels, info.height, info.width), "output", path)


def _check_tensor(spec, dtype: str, shape: tuple[int | None, ...], role: str, path: Path) -> None:
    if spec.dtype != dtype:
        raise _bad(path, f"{role} {spec.name!r} is {spec.dtype}; the contract says {dtype}")
    if spec.shape is None:  # rank unknown to the backend: the probe decides
        return
    if len(spec.shape) != len(shape):
        raise _bad(path, f"{role} {spec.name!r} has shape {_fmt_shape(spec.shape)}; the contract says {_fmt_shape(shape)}")
    if spec.shape[0] is not None:
        raise _bad(path, f"{role} {spec.name!r} has a fixed batch size {spec.shape[0]}; the batch axis must be dynamic")
    for got, want in zip(spec.shape[1:], shape[1:]):
        if got is not None and got != want:
            raise _bad(path, f"{role} {spec.name!r} has shape {_fmt_shape(spec.shape)} but the metadata "
                             f"implies {_fmt_shape(shape)}")


def probe_feed(info: ModelInfo) -> dict[str, np.ndarray]:
    """The batch-1 inputs of the load-time probe: zero noise / a blank image fully masked.

    A conditional model is probed with its highest class, so a file whose ``num_classes``
    is larger than its graph's label table fails here rather than on a user's label later."""
    if info.task == "inpaint":
        return {"image": np.zeros((1, info.channels, info.height, info.width), np.float32),
                "mask": np.ones((1, 1, info.height, info.width), np.float32)}
    feed = {"z": np.zeros((1, info.latent_dim), np.float32)}
    if info.conditional:
        feed["label"] = np.full(1, info.num_classes - 1, np.int64)
    return feed


def probe(info: ModelInfo, run: Callable[[dict[str, np.ndarray]], np.ndarray], path: Path) -> None:
    """One run at batch 1; its output must be float32 ``[1, C, H, W]`` as the metadata says, and finite."""
    try:
        out = run(probe_feed(info))
    except Exception as exc:  # the backend's own error: shape mismatch inside the graph, bad op...
        raise _bad(path, f"a probe run at batch 1 failed ({first_line(exc, with_type=False)})") from None
    want = (1, info.channels, info.height, info.width)
    shape = tuple(getattr(out, "shape", ()))
    if shape != want:
        raise _bad(path, f"a probe run gives {_fmt_shape(shape)} images but the metadata says {_fmt_shape(want)}")
    if getattr(out, "dtype", None) != np.float32:
        raise _bad(path, f"a probe run gives {getattr(out, 'dtype', type(out).__name__)}, not float32")
    if not np.isfinite(out).all():
        raise _bad(path, "a probe run at batch 1 gives NaN or infinite values")


def fits(n: int, item_bytes: int, limit: int) -> bool:
    """``n * item_bytes <= limit`` without building a huge number first."""
    return n <= limit // max(1, item_bytes)


__all__ = ["ModelInfo", "parse_metadata", "check_graph", "probe", "probe_feed", "fits", "FORMATS", "TASKS"]
