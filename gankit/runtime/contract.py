"""The ONNX file contract, checked when a file is loaded: the runtime trusts nothing in it.

:func:`parse_metadata` turns ``metadata_props`` into a :class:`ModelInfo` with every value
parsed and range-checked; :func:`check_graph` compares the graph's declared inputs and outputs
(names, dtypes, ranks, static sizes) with that info; :func:`probe` runs the graph once at
batch 1 and compares what comes out with the metadata. Each failure is one
:class:`ModelFormatError` line naming the file and the broken promise.

The contract (README "The ONNX file", DESIGN.md): generate families take ``z`` float32
``[N, latent_dim]`` and, when conditional, ``label`` int64 ``[N]``, and return ``image``;
inpainting takes ``image`` float32 ``[N, C, H, W]`` and ``mask`` float32 ``[N, 1, H, W]`` and
returns ``restored``; outputs are float32 ``[N, C, H, W]``, the batch axis dynamic. Restore
models take ``image`` float32 ``[N, C, H, W]`` with H and W dynamic as well and return
``restored`` ``[N, C, s*H, s*W]`` (s = ``gankit.scale``); their ``gankit.height`` / ``gankit.width``
are the output patch they were trained on, which the probe checks from an input
``scale`` times smaller. Every file of format "1" written so far satisfies it.
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
TASKS = ("generate", "inpaint", "restore")
CHANNELS = (1, 3)  # what the runtime can turn into pictures (gray, RGB)
MAX_SIDE = 16384
MAX_PIXELS = 1 << 24  # per image: 4096 x 4096; keeps the batch-1 probe small
MAX_LATENT = 1 << 16
MAX_CLASSES = 1 << 20
OUTPUT_NAME = {"generate": "image", "inpaint": "restored", "restore": "restored"}
MAX_SCALE = 8  # x2 and x4 in practice; x8 is the largest a single-image SR model is commonly trained for
MAX_SIZE_MULTIPLE = 256
MAX_LAYERS = 256  # style layers of a generator (stylegan at 1024x1024 has 18)
MAX_DEGRADATION = 64  # characters: it is displayed (CLI, serve's page), never interpreted
MAX_PLUGIN_NAME = 100  # characters of gankit.plugin, shown the same way
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
    scale: int = 1  # restore: output side / input side
    degradation: str = ""  # restore: what it was trained to undo (display only)
    size_multiple: int = 1  # restore: input H and W must be multiples of this

    @property
    def conditional(self) -> bool:
        return self.task == "generate" and self.num_classes > 0

    def expected_inputs(self) -> dict[str, tuple[str, tuple[int | None, ...]]]:
        """Input name -> (dtype, shape with None for the batch axis and, for restore, H and W)."""
        c, h, w = self.channels, self.height, self.width
        if self.task == "restore":
            return {"image": ("float32", (None, c, None, None))}
        if self.task == "inpaint":
            return {"image": ("float32", (None, c, h, w)), "mask": ("float32", (None, 1, h, w))}
        out = {"z": ("float32", (None, self.latent_dim))}
        if self.conditional:
            out["label"] = ("int64", (None,))
        return out

    def expected_output(self) -> tuple[int | None, ...]:
        if self.task == "restore":
            return (None, self.channels, None, None)
        return (None, self.channels, self.height, self.width)

    @property
    def output_name(self) -> str:
        return OUTPUT_NAME[self.task]

    @property
    def probe_input_size(self) -> tuple[int, int]:
        """(H, W) of the probe's input: the output patch for generate/inpaint, ``scale`` times smaller for restore."""
        return self.height // self.scale, self.width // self.scale


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
    if task == "generate":
        _latent_keys(meta, path)
        known |= {"gankit.optional_inputs", "gankit.num_layers", "gankit.mix_crossover"}
    restore: dict = {}
    if task == "restore":  # the keys mean nothing for other tasks: there they stay in extra, unread
        restore = _restore_keys(meta, height, width, path)
        known |= {"gankit.scale", "gankit.degradation", "gankit.size_multiple"}
    plugin = meta.get("gankit.plugin", "").strip()
    # shown in repr(), error messages and serve's page: a name, not text that could span lines
    if len(plugin) > MAX_PLUGIN_NAME or not plugin.isprintable() or any(ch.isspace() for ch in plugin):
        raise _bad(path, f"gankit.plugin is {show(plugin)}; it must be a plugin name (at most {MAX_PLUGIN_NAME} "
                         "printable characters, no spaces)")
    return ModelInfo(format=fmt, task=task, plugin=plugin, latent_dim=latent_dim,
                     num_classes=num_classes, class_names=class_names, channels=channels, height=height,
                     width=width, version=meta.get("gankit.version", ""),
                     extra={k: v for k, v in meta.items() if k not in known}, **restore)


def optional_input_names(meta: dict[str, str]) -> list[str]:
    return [name for name in meta.get("gankit.optional_inputs", "").split(",") if name]


def _latent_keys(meta: dict[str, str], path: Path) -> None:
    """The latent tools' part of ``gankit.optional_inputs`` (a family may declare other optional
    inputs of its own): z2 and crossover together; a file that mixes styles says how many
    layers it has (``gankit.num_layers``) and where its mixing grid crosses over
    (``gankit.mix_crossover``, default half of them)."""
    names = optional_input_names(meta)
    if ("z2" in names) != ("crossover" in names):
        raise _bad(path, "gankit.optional_inputs names one of z2 and crossover without the other")
    if "crossover" in names:
        layers = _int_key(meta, "gankit.num_layers", path, 1, MAX_LAYERS)
        _int_key(meta, "gankit.mix_crossover", path, 0, layers, default=str(max(1, layers // 2)))


def check_optional_inputs(meta: dict[str, str], overridable: set[str] | None, path: Path) -> None:
    """Every name in ``gankit.optional_inputs`` is an input the engine can be fed (an
    initializer that is also a graph input); ``overridable`` None: the engine cannot say."""
    if overridable is None:
        return
    missing = [n for n in optional_input_names(meta) if n not in overridable]
    if missing:
        raise _bad(path, f"gankit.optional_inputs names {', '.join(missing)}, which the graph has no input for")


def _restore_keys(meta: dict[str, str], height: int, width: int, path: Path) -> dict:
    """``gankit.scale`` (required), ``gankit.size_multiple`` (default 1), ``gankit.degradation`` (default "")."""
    scale = _int_key(meta, "gankit.scale", path, 1, MAX_SCALE)
    multiple = _int_key(meta, "gankit.size_multiple", path, 1, MAX_SIZE_MULTIPLE, default="1")
    if height % scale or width % scale:
        raise _bad(path, f"the trained patch {height}x{width} (gankit.height x gankit.width) is not a multiple of "
                         f"gankit.scale {scale}")
    if (height // scale) % multiple or (width // scale) % multiple:
        raise _bad(path, f"the probe input {height // scale}x{width // scale} is not a multiple of "
                         f"gankit.size_multiple {multiple}")
    raw = meta.get("gankit.degradation", "")
    degradation = " ".join(raw.split())
    if len(degradation) > MAX_DEGRADATION or not degradation.isprintable():
        raise _bad(path, f"gankit.degradation is {show(raw)}; it must be printable text of at most "
                         f"{MAX_DEGRADATION} characters")
    return {"scale": scale, "size_multiple": multiple, "degradation": degradation}


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
        _check_tensor(spec, *expected[spec.name], "input", path, info.task)
    if not outputs:
        raise _bad(path, "the graph has no output")
    out = outputs[0]
    if out.name != info.output_name:
        raise _bad(path, f"the output is named {show(out.name)}; a {info.task} model's is {info.output_name!r}")
    declared_output = info.extra.get("gankit.output")
    if declared_output is not None and declared_output != out.name:
        raise _bad(path, f"gankit.output says {show(declared_output)} but the graph's output is {out.name!r}")
    _check_tensor(out, "float32", info.expected_output(), "output", path, info.task)


def _check_tensor(spec, dtype: str, shape: tuple[int | None, ...], role: str, path: Path, task: str = "") -> None:
    """``shape``'s None entries must be dynamic in the graph (batch axis; restore's H and W)."""
    if spec.dtype != dtype:
        raise _bad(path, f"{role} {spec.name!r} is {spec.dtype}; the contract says {dtype}")
    if spec.shape is None:  # rank unknown to the backend: the probe decides
        return
    if len(spec.shape) != len(shape):
        raise _bad(path, f"{role} {spec.name!r} has shape {_fmt_shape(spec.shape)}; the contract says {_fmt_shape(shape)}")
    if spec.shape[0] is not None:
        raise _bad(path, f"{role} {spec.name!r} has a fixed batch size {spec.shape[0]}; the batch axis must be dynamic")
    for axis, got, want in zip(("height", "width"), spec.shape[2:], shape[2:]):
        if want is None and got is not None:  # a restore graph traced at one size runs at that size only
            raise _bad(path, f"{role} {spec.name!r} has a fixed {axis} {got}; a {task} model's H and W must be "
                             "dynamic (export it with dynamic axes)")
    for got, want in zip(spec.shape[1:], shape[1:]):
        if got is not None and want is not None and got != want:
            raise _bad(path, f"{role} {spec.name!r} has shape {_fmt_shape(spec.shape)} but the metadata "
                             f"implies {_fmt_shape(shape)}")


def probe_feed(info: ModelInfo) -> dict[str, np.ndarray]:
    """The batch-1 inputs of the load-time probe: zero noise / a blank image fully masked.

    A conditional model is probed with its highest class, so a file whose ``num_classes``
    is larger than its graph's label table fails here rather than on a user's label later.
    A restore model gets a mid-gray image of its trained input size."""
    if info.task == "restore":
        return {"image": np.zeros((1, info.channels, *info.probe_input_size), np.float32)}
    if info.task == "inpaint":
        return {"image": np.zeros((1, info.channels, info.height, info.width), np.float32),
                "mask": np.ones((1, 1, info.height, info.width), np.float32)}
    feed = {"z": np.zeros((1, info.latent_dim), np.float32)}
    if info.conditional:
        feed["label"] = np.full(1, info.num_classes - 1, np.int64)
    return feed


def probe(info: ModelInfo, run: Callable[[dict[str, np.ndarray]], np.ndarray], path: Path) -> None:
    """One run at batch 1; its output must be float32 ``[1, C, H, W]`` as the metadata says, and finite.

    A restore model runs twice: at its trained size, then at a second, non-square input size
    (one ``size_multiple`` taller, two wider), so a graph whose declared dynamic H and W are
    not really dynamic (a reshape baked at trace time) is refused at load, not on a user's image."""
    _probe_once(info, run, path, probe_feed(info), (1, info.channels, info.height, info.width))
    if info.task == "restore":
        h, w = info.probe_input_size
        m, s = info.size_multiple, info.scale
        feed = {"image": np.zeros((1, info.channels, h + m, w + 2 * m), np.float32)}
        _probe_once(info, run, path, feed, (1, info.channels, s * (h + m), s * (w + 2 * m)), other_size=True)


def _probe_once(info: ModelInfo, run, path: Path, feed: dict[str, np.ndarray], want: tuple[int, ...],
                other_size: bool = False) -> None:
    at = f" at input size {feed['image'].shape[2]}x{feed['image'].shape[3]}" if other_size else ""
    try:
        out = run(feed)
    except Exception as exc:  # the backend's own error: shape mismatch inside the graph, bad op...
        if other_size:
            raise _bad(path, f"a restore model must run at any input size, but a probe run{at} failed "
                             f"({first_line(exc, with_type=False)})") from None
        raise _bad(path, f"a probe run at batch 1 failed ({first_line(exc, with_type=False)})") from None
    shape = tuple(getattr(out, "shape", ()))
    if shape != want:
        what = "the scale implies" if other_size else "the metadata says"
        raise _bad(path, f"a probe run{at} gives {_fmt_shape(shape)} images but {what} {_fmt_shape(want)}")
    if getattr(out, "dtype", None) != np.float32:
        raise _bad(path, f"a probe run gives {getattr(out, 'dtype', type(out).__name__)}, not float32")
    if not np.isfinite(out).all():
        raise _bad(path, "a probe run at batch 1 gives NaN or infinite values")


def fits(n: int, item_bytes: int, limit: int) -> bool:
    """``n * item_bytes <= limit`` without building a huge number first."""
    return n <= limit // max(1, item_bytes)


__all__ = ["ModelInfo", "parse_metadata", "check_graph", "probe", "probe_feed", "fits", "FORMATS", "TASKS"]
