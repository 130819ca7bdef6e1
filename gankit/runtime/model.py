"""Loading an exported model and running it: :func:`load` and :class:`GankitModel`.

Nothing is trusted: at load the file's metadata is parsed and range-checked, the graph's
inputs and outputs are compared with the contract, and one batch-1 probe run must give the
image shape the metadata promises (:mod:`gankit.runtime.contract`). Every public method checks
its arguments' types and ranges and refuses NaN and infinity, so a caller only ever sees
:class:`RuntimeInputError` (fix the arguments) or :class:`ModelFormatError` (the file is bad).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gankit.errors import first_line
from gankit.images import ImageError, mask_from_pil, nchw_to_hwc_uint8, pil_to_array, to_uint8
from gankit.runtime.contract import check_graph, fits, parse_metadata, probe
from gankit.runtime.engines import BACKENDS, default_providers, open_engine
from gankit.runtime.errors import ModelFormatError, RuntimeInputError, show

MAX_BATCH = 256
MAX_THREADS = 4096
# What one call may return (bytes of the result array). Beyond this a request is refused up
# front instead of failing half-way in an allocation (or being killed by the OOM killer).
MAX_RESULT_BYTES = 2 << 30
_IMAGE_TOLERANCE = 1e-4  # float32 rounding of x / 127.5 - 1 stays far inside this


def load(path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
         backend: str = "onnxruntime", **options: Any) -> "GankitModel":
    """Open an exported gankit ``.onnx`` file.

    ``backend``: ``"onnxruntime"`` (default) or ``"openvino"`` (``pip install gankit[openvino]``;
    bf16 on CPUs with AMX, else fp32; ``precision="f32"|"bf16"`` forces one).
    ``providers``: onnxruntime execution providers (default: :func:`default_providers`).
    ``threads``: intra-op threads (default: the backend's choice, one per physical core).
    Raises :class:`ModelFormatError` for a missing, non-ONNX or non-gankit file, or one that
    breaks the file contract; :class:`RuntimeInputError` for a bad argument.
    """
    return GankitModel(path, providers=providers, threads=threads, backend=backend, **options)


class GankitModel:
    """An exported generator or inpainting model, checked and ready to run."""

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[Any] | None = None, threads: int | None = None,
                 backend: str = "onnxruntime", **options: Any):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise RuntimeInputError(f"unknown backend {show(backend)}; available: {', '.join(BACKENDS)}")
        if threads is not None:
            threads = _whole("threads", threads, 1, MAX_THREADS)
        self.path = _model_path(path)
        if not self.path.is_file():
            raise ModelFormatError(f"model file not found: {self.path}")
        self.engine = open_engine(self.path, backend, providers, threads, **options)
        self.backend = backend
        self.session = getattr(self.engine, "session", None)  # the onnxruntime session, when that is the backend
        self.metadata: dict[str, str] = dict(self.engine.metadata)
        self.info = parse_metadata(self.metadata, self.path)
        check_graph(self.info, self.engine.inputs, self.engine.outputs, self.path)
        t0 = time.perf_counter()
        probe(self.info, self.engine.run, self.path)
        self.probe_ms = (time.perf_counter() - t0) * 1e3
        info = self.info
        self.task, self.plugin = info.task, info.plugin
        self.latent_dim, self.num_classes, self.class_names = info.latent_dim, info.num_classes, list(info.class_names)
        self.channels, self.height, self.width = info.channels, info.height, info.width
        self.input_names = list(self.engine.input_names)
        self.output_name = self.engine.output_names[0]

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (after any fallback)."""
        return self.engine.providers

    def __repr__(self) -> str:
        shape = f"{self.channels}x{self.height}x{self.width}"
        cls = f", {self.num_classes} classes" if self.num_classes else ""
        return f"GankitModel({self.path.name}: {self.plugin} {self.task} {shape}{cls}, {self.backend}: {self.providers})"

    # -- running -------------------------------------------------------------------------
    def _require(self, task: str) -> None:
        if self.task != task:
            raise RuntimeInputError("this is an inpainting model; use inpaint()" if task == "generate"
                                    else "this is a generator; use generate()")

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """One engine call; the backend's failures and non-finite outputs become gankit errors
        (a NaN is never passed on, nor cast to a pixel value)."""
        try:
            out = self.engine.run(feed)
        except MemoryError:
            raise RuntimeInputError("out of memory running the model; use a smaller batch_size") from None
        except Exception as exc:
            raise ModelFormatError(f"{self.path} failed to run ({first_line(exc)})") from None
        if not np.isfinite(out).all():
            raise ModelFormatError(f"{self.path} produced NaN or infinite values for finite inputs")
        return out

    def _check_result_size(self, n: int, item_bytes: int, what: str) -> None:
        if not fits(n, item_bytes, MAX_RESULT_BYTES):
            per_call = MAX_RESULT_BYTES // item_bytes
            raise RuntimeInputError(f"{what}={show(n)} is too many for one call: at most {per_call} "
                                    f"{self.channels}x{self.height}x{self.width} images ({MAX_RESULT_BYTES >> 30} GiB); "
                                    "split the request")

    # -- generate ------------------------------------------------------------------------
    def _label_index(self, lab: Any) -> int:
        if isinstance(lab, str):
            if lab not in self.class_names:
                shown = ", ".join(self.class_names[:12]) + (", ..." if len(self.class_names) > 12 else "")
                raise RuntimeInputError(f"unknown class name {show(lab)}; classes: {shown or '(none named)'}")
            return self.class_names.index(lab)
        if isinstance(lab, (bool, np.bool_)):
            raise RuntimeInputError(f"label {lab!r} is not an integer class index")
        if isinstance(lab, (int, np.integer)):
            value = int(lab)
        elif isinstance(lab, (float, np.floating)) and np.isfinite(lab) and float(lab).is_integer():
            value = int(lab)
        else:
            raise RuntimeInputError(f"label {show(lab)} is not an integer class index or class name")
        if not 0 <= value < self.num_classes:
            raise RuntimeInputError(f"label {show(value)} out of range: this model has classes 0..{self.num_classes - 1}")
        return value

    def _labels(self, n: int, labels: Any) -> np.ndarray | None:
        """int64 ``[n]`` class indices from one label, a sequence of ``n`` or None (cycle through classes)."""
        if not self.num_classes:
            if labels is not None:
                raise RuntimeInputError("this model is unconditional; it takes no labels")
            return None
        if labels is None:
            return (np.arange(n) % self.num_classes).astype(np.int64)
        if isinstance(labels, (str, int, float, np.generic)):
            return np.full(n, self._label_index(labels.item() if isinstance(labels, np.generic) else labels), np.int64)
        if isinstance(labels, np.ndarray) and labels.ndim == 0:
            return np.full(n, self._label_index(labels.item()), np.int64)
        if isinstance(labels, np.ndarray):
            if labels.ndim != 1:
                raise RuntimeInputError(f"labels must be one class or a flat sequence, got an array of shape {list(labels.shape)}")
            if len(labels) != n:
                raise RuntimeInputError(f"got {len(labels)} labels for {n} images")
            if labels.dtype.kind in "iu":  # the common case, checked without a Python loop
                if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                    bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
                    raise RuntimeInputError(f"label {int(bad)} out of range: this model has classes 0..{self.num_classes - 1}")
                return labels.astype(np.int64)
            items = labels.tolist()
        elif isinstance(labels, (list, tuple, range)):
            items = labels
        else:
            raise RuntimeInputError(f"labels must be a class index or name, or a list of them, got {type(labels).__name__}")
        try:
            count = len(items)
        except OverflowError:  # range(10**30)
            count = -1
        if count != n:
            raise RuntimeInputError(f"got {count if count >= 0 else 'too many'} labels for {n} images")
        return np.fromiter((self._label_index(x) for x in items), dtype=np.int64, count=n)

    def _generate_batch(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        feed = {"z": z}
        if labels is not None:
            feed["label"] = labels
        return self._run(feed)

    def run_raw(self, z: Any, labels: Any = None, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 ``[N, C, H, W]`` in [-1, 1] from noise ``z`` ``[N, latent_dim]`` (and ``labels`` ``[N]``,
        required for a conditional model). NaN and infinity are refused."""
        self._require("generate")
        batch_size = _whole("batch_size", batch_size, 1)
        z = _real_array("z", z, (None, self.latent_dim), lambda n: self._check_result_size(
            n, 4 * self.channels * self.height * self.width, "len(z)"))
        n = len(z)
        if self.num_classes and labels is None:
            raise RuntimeInputError(f"this model is conditional: run_raw needs labels (int64 [N], 0..{self.num_classes - 1})")
        lab = self._labels(n, labels)
        out = np.empty((n, self.channels, self.height, self.width), np.float32)
        for i in range(0, n, batch_size):
            out[i : i + batch_size] = self._generate_batch(z[i : i + batch_size], None if lab is None else lab[i : i + batch_size])
        return out

    def generate(self, n: int, labels: Any = None, seed: int | None = None, *, as_pil: bool = False,
                 batch_size: int = MAX_BATCH):
        """``n`` images as uint8 ``[n, H, W, C]`` (or a list of PIL images with ``as_pil=True``).

        ``labels``: one class (index or name) for all, a sequence of ``n``, or None (cycles
        through the classes for a conditional model). ``seed`` (a non-negative integer) fixes
        the noise. Noise is drawn and run ``batch_size`` images at a time, so memory holds the
        result and one batch; one call returns at most ``MAX_RESULT_BYTES`` of images.
        """
        self._require("generate")
        n = _whole("n", n, 1)
        batch_size = _whole("batch_size", batch_size, 1)
        as_pil = _flag("as_pil", as_pil)
        rng = _rng(seed)
        self._check_result_size(n, self.channels * self.height * self.width, "n")
        lab = self._labels(n, labels)
        images = np.empty((n, self.height, self.width, self.channels), np.uint8)
        for i in range(0, n, batch_size):
            k = min(batch_size, n - i)
            # drawn per batch: the same stream as one (n, latent_dim) draw, without holding it all
            z = rng.standard_normal((k, self.latent_dim)).astype(np.float32)
            images[i : i + k] = nchw_to_hwc_uint8(self._generate_batch(z, None if lab is None else lab[i : i + k]))
        return _as_pil(images) if as_pil else images

    # -- inpaint -------------------------------------------------------------------------
    def run_raw_inpaint(self, images: Any, masks: Any, batch_size: int = MAX_BATCH) -> np.ndarray:
        """float32 NCHW in [-1, 1] from images NCHW in [-1, 1] and masks N1HW in [0, 1] (1 = missing).
        Values outside those ranges, NaN and infinity are refused."""
        self._require("inpaint")
        batch_size = _whole("batch_size", batch_size, 1)
        c, h, w = self.channels, self.height, self.width
        images = _real_array("images", images, (None, c, h, w),
                             lambda n: self._check_result_size(n, 4 * c * h * w, "len(images)"))
        masks = _real_array("masks", masks, (len(images), 1, h, w))
        _in_range("images", images, -1.0, 1.0)
        _in_range("masks", masks, 0.0, 1.0)
        out = np.empty((len(images), c, h, w), np.float32)
        for i in range(0, len(images), batch_size):
            m = masks[i : i + batch_size]
            out[i : i + batch_size] = self._run({"image": images[i : i + batch_size] * (1 - m), "mask": m})
        return out

    def inpaint(self, image: Any, mask: Any, *, as_pil: bool = False, batch_size: int = 64):
        """Fill the masked pixels of one image of any size.

        ``image``: a PIL image of any mode, or an array ``[H, W]`` / ``[H, W, C]`` (C = 1, 3 or 4)
        whose dtype says its range: uint8 0..255, uint16 0..65535, float in [0, 1] (other
        integer dtypes must hold 0..255). The result has the same dtype (a PIL ``I;16`` image
        gives uint16, ``F`` float32, ``LA``/``RGBA``/transparent palette images RGBA).
        ``mask``: ``[H, W]`` bool/integer/float array or PIL image; true, nonzero (0/1 masks),
        above 127 (8-bit) or above half range (uint16, float) = missing. Known pixels come back
        unchanged. Images larger than the model are processed in overlapping model-sized
        tiles (only tiles that touch a hole are run; overlapping predictions are averaged);
        smaller ones are padded by reflection. A colour image through a grayscale model is
        restored channel by channel; alpha passes through untouched.
        """
        from gankit.runtime.tiles import inpaint_any_size

        self._require("inpaint")
        batch_size = _whole("batch_size", batch_size, 1)
        as_pil = _flag("as_pil", as_pil)
        img = _as_image(image)
        msk = _as_mask(mask)
        if msk.shape != img.shape[:2]:
            raise RuntimeInputError(f"mask is {msk.shape[1]}x{msk.shape[0]} but image is {img.shape[1]}x{img.shape[0]}; they must match")
        alpha = img[..., 3] if img.shape[2] == 4 else None
        rgb = img[..., :3] if img.shape[2] == 4 else img
        encode, decode = _CODECS[rgb.dtype.name]

        def fill(a: np.ndarray) -> np.ndarray:
            return decode(inpaint_any_size(self, encode(a), msk, batch_size))

        if self.channels == 1 and rgb.shape[2] == 3:
            out = np.concatenate([fill(rgb[..., c : c + 1]) for c in range(3)], axis=2)
        elif self.channels == 3 and rgb.shape[2] == 1:
            out = fill(np.repeat(rgb, 3, axis=2)).mean(axis=2, keepdims=True)
            out = out.astype(np.float32) if rgb.dtype == np.float32 else \
                np.clip(np.rint(out), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
        else:
            out = fill(rgb)
        out = np.where(msk[..., None], out, rgb)  # known pixels exactly as given
        if alpha is not None:
            out = np.concatenate([out, alpha[..., None]], axis=2)
        if as_pil:
            return _as_pil(out[None])[0]
        return out


# -- argument checking ----------------------------------------------------------------------
def _model_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise RuntimeInputError(f"model path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        p = Path(path)
    except TypeError:  # a PathLike that returns bytes
        raise RuntimeInputError("model path must be a text path") from None
    if "\x00" in str(p):
        raise ModelFormatError(f"model file not found: {show(str(p))}")
    return p


def _whole(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """An integer argument (not bool, not float) within [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise RuntimeInputError(f"{name} must be an integer, got {show(value)}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"at least {lo}") if hi is None \
            else f"between {lo} and {hi}"
        raise RuntimeInputError(f"{name} must be {bound}, got {show(v)}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise RuntimeInputError(f"{name} must be True or False, got {show(value)}")
    return bool(value)


def _rng(seed: Any) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(_whole("seed", seed, 0))


def _asarray(name: str, value: Any) -> np.ndarray:
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise RuntimeInputError(f"{name} must be an array, got {show(value)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError):
        raise RuntimeInputError(f"{name} must be a rectangular numeric array, got {show(value)}") from None


def _real_array(name: str, value: Any, shape: tuple[int | None, ...], check_length=None) -> np.ndarray:
    """float32, C-contiguous, the given shape (None = any length), every value finite.
    ``check_length(N)`` runs before any copy is made (a broadcast view may be huge)."""
    a = _asarray(name, value)
    if a.dtype.kind not in "iuf":
        raise RuntimeInputError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != len(shape) or any(want is not None and got != want for got, want in zip(a.shape, shape)):
        want = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
        raise RuntimeInputError(f"{name} must have shape {want}, got {list(a.shape)}")
    if check_length is not None:
        check_length(a.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(f).all():
        raise RuntimeInputError(f"{name} contains NaN or infinite values (or values beyond float32)")
    return f


def _in_range(name: str, a: np.ndarray, lo: float, hi: float) -> None:
    if a.size and (a.min() < lo - _IMAGE_TOLERANCE or a.max() > hi + _IMAGE_TOLERANCE):
        raise RuntimeInputError(f"{name} must lie in [{lo:g}, {hi:g}], got values in [{a.min():g}, {a.max():g}]")


def _is_pil(obj: Any) -> bool:
    return hasattr(obj, "mode") and hasattr(obj, "size") and hasattr(obj, "convert")


def _as_image(image: Any) -> np.ndarray:
    """``[H, W, 1|3|4]`` uint8, uint16 or float32 in [0, 1]."""
    if _is_pil(image):
        try:
            pixels, alpha = pil_to_array(image)
        except ImageError as exc:
            raise RuntimeInputError(str(exc)) from None
        if alpha is not None:
            if pixels.shape[2] == 1:  # gray + alpha: RGBA, as the array contract has no 2-channel form
                pixels = np.repeat(pixels, 3, axis=2)
            pixels = np.concatenate([pixels, alpha[..., None].astype(pixels.dtype)], axis=2)
        return pixels
    a = _asarray("image", image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise RuntimeInputError(f"image must be [H, W] or [H, W, 1|3|4], got shape {list(a.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise RuntimeInputError("image is empty")
    if a.dtype in (np.uint8, np.uint16):
        return a
    if a.dtype.kind in "iu":
        if a.min() < 0 or a.max() > 255:
            raise RuntimeInputError(f"integer image values must lie in 0..255 (uint16 arrays: 0..65535), "
                                    f"got {a.min()}..{a.max()}")
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            raise RuntimeInputError("image contains NaN or infinite values")
        if f.min() < 0.0 or f.max() > 1.0:
            raise RuntimeInputError(f"float image values must lie in [0, 1], got [{f.min():g}, {f.max():g}]; "
                                    "pass uint8 (0..255) or uint16 (0..65535) arrays for other ranges")
        return f
    raise RuntimeInputError(f"image must be a uint8, uint16 or float array or a PIL image, got dtype {a.dtype}")


def _as_mask(mask: Any) -> np.ndarray:
    """bool ``[H, W]``, True = missing."""
    if _is_pil(mask):
        try:
            if mask.mode in ("I", "F") or mask.mode.startswith("I;16"):
                return mask_from_pil(mask)
            mask = np.asarray(mask.convert("L"))
        except (ImageError, ValueError, OSError) as exc:
            raise RuntimeInputError(f"cannot read the mask image: {first_line(exc)}") from None
    m = _asarray("mask", mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise RuntimeInputError(f"mask must be [H, W], got shape {list(m.shape)}")
    if m.dtype == bool:
        return m
    if m.dtype.kind == "f":
        if not np.isfinite(m).all():
            raise RuntimeInputError("mask contains NaN or infinite values")
        return m > 0.5
    if m.dtype.kind not in "iu":
        raise RuntimeInputError(f"mask must be a bool, integer or float array or a PIL image, got dtype {m.dtype}")
    if m.size and m.min() < 0:
        raise RuntimeInputError(f"mask values must not be negative, got {m.min()}")
    if m.dtype == np.uint16:
        return m > 32767
    return m != 0 if m.max(initial=0) <= 1 else m > 127


def _codec(scale: float, dtype):
    """[-1, 1] floats from pixels and back: pixel / scale - 1, then round and clip (the uint8
    formulas are the ones the runtime always used, so results are bit-identical)."""
    top = float(np.iinfo(dtype).max)

    def encode(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / scale - 1.0

    def decode(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((x + 1.0) * scale), 0, top).astype(dtype)

    return encode, decode


_CODECS = {
    "uint8": _codec(127.5, np.uint8),
    "uint16": _codec(32767.5, np.uint16),
    "float32": (lambda a: a * np.float32(2.0) - np.float32(1.0),
                lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)),
}


def _as_pil(images: np.ndarray):
    """PIL images from ``[N, H, W, C]``: uint8 as is; one-channel uint16 as ``I;16`` and float as ``F``;
    multi-channel uint16/float (no Pillow mode holds them) rounded to uint8."""
    from PIL import Image

    out = []
    for im in images:
        if im.shape[2] == 1 and im.dtype in (np.uint16, np.float32):
            out.append(Image.fromarray(np.ascontiguousarray(im[..., 0])))
            continue
        im = to_uint8(im)
        out.append(Image.fromarray(im[..., 0] if im.shape[2] == 1 else im))
    return out


__all__ = ["load", "GankitModel", "default_providers", "BACKENDS", "MAX_BATCH", "MAX_RESULT_BYTES"]
