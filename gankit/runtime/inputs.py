"""Checking and converting the arguments of :class:`gankit.runtime.GankitModel`'s methods.

Each function takes whatever a caller passed (any type, any shape, NaN, huge integers) and
returns a value of the documented type or raises a one-line :class:`RuntimeInputError`:
nothing numpy or Pillow raises on odd input escapes from here.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import first_line
from gankit.images import ImageError, mask_from_pil, pil_to_array, to_uint8
from gankit.runtime.errors import ModelFormatError, RuntimeInputError, show

_IMAGE_TOLERANCE = 1e-4  # float32 rounding of x / 127.5 - 1 stays far inside this


def model_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise RuntimeInputError(f"model path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        p = Path(path)
    except TypeError:  # a PathLike that returns bytes
        raise RuntimeInputError("model path must be a text path") from None
    if "\x00" in str(p):
        raise ModelFormatError(f"model file not found: {show(str(p))}")
    return p


def whole(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """An integer argument (not bool, not float) within [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise RuntimeInputError(f"{name} must be an integer, got {show(value)}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"at least {lo}") if hi is None \
            else f"between {lo} and {hi}"
        raise RuntimeInputError(f"{name} must be {bound}, got {show(v)}")
    return v


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise RuntimeInputError(f"{name} must be True or False, got {show(value)}")
    return bool(value)


def seeded_rng(seed: Any) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(whole("seed", seed, 0))


def asarray(name: str, value: Any) -> np.ndarray:
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise RuntimeInputError(f"{name} must be an array, got {show(value)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError):
        raise RuntimeInputError(f"{name} must be a rectangular numeric array, got {show(value)}") from None


def real_array(name: str, value: Any, shape: tuple[int | None, ...], check_length=None) -> np.ndarray:
    """float32, C-contiguous, the given shape (None = any length), every value finite.
    ``check_length(N)`` runs before any copy is made (a broadcast view may be huge)."""
    a = asarray(name, value)
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


def in_range(name: str, a: np.ndarray, lo: float, hi: float) -> None:
    if a.size and (a.min() < lo - _IMAGE_TOLERANCE or a.max() > hi + _IMAGE_TOLERANCE):
        raise RuntimeInputError(f"{name} must lie in [{lo:g}, {hi:g}], got values in [{a.min():g}, {a.max():g}]")


def is_pil(obj: Any) -> bool:
    return hasattr(obj, "mode") and hasattr(obj, "size") and hasattr(obj, "convert")


def as_image(image: Any) -> np.ndarray:
    """``[H, W, 1|3|4]`` uint8, uint16 or float32 in [0, 1]."""
    if is_pil(image):
        try:
            pixels, alpha = pil_to_array(image)
        except ImageError as exc:
            raise RuntimeInputError(str(exc)) from None
        if pixels.shape[0] < 1 or pixels.shape[1] < 1:
            raise RuntimeInputError("image is empty")
        if alpha is not None:
            if pixels.shape[2] == 1:  # gray + alpha: RGBA, as the array contract has no 2-channel form
                pixels = np.repeat(pixels, 3, axis=2)
            pixels = np.concatenate([pixels, alpha[..., None].astype(pixels.dtype)], axis=2)
        return pixels
    a = asarray("image", image)
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


def image_shape(image: Any) -> tuple[int, int, int]:
    """(H, W, C) of an image argument before any conversion (a conversion may be the large copy
    a size check is there to refuse); (0, 0, 0) when it has no image shape (:func:`as_image`
    says why). C as :func:`as_image` will give it: gray+alpha counts as RGBA."""
    if is_pil(image):
        w, h = image.size
        bands = len(image.getbands())
        return int(h), int(w), 4 if bands in (2, 4) or "transparency" in image.info else bands
    shape = getattr(image, "shape", None)
    if not isinstance(shape, tuple) or len(shape) not in (2, 3):
        return 0, 0, 0
    return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1


def caller_dtype(image: Any) -> np.dtype | None:
    """The dtype a result goes back in when the caller's array is not already the runtime's
    uint8, uint16 or float32 (float64 stays float64, int64 holding 0..255 stays int64); None
    for PIL images, lists and those three."""
    dtype = getattr(image, "dtype", None)
    if not isinstance(image, np.ndarray) or dtype in (np.uint8, np.uint16, np.float32) or dtype.kind not in "iuf":
        return None
    if dtype.kind in "iu" and not np.can_cast(np.uint8, dtype):  # int8 cannot hold 128..255: uint8 it is
        return None
    return dtype


def as_mask(mask: Any) -> np.ndarray:
    """bool ``[H, W]``, True = missing."""
    if is_pil(mask):
        try:
            if mask.mode in ("I", "F") or mask.mode.startswith("I;16"):
                return mask_from_pil(mask)
            mask = np.asarray(mask.convert("L"))
        except (ImageError, ValueError, OSError) as exc:
            raise RuntimeInputError(f"cannot read the mask image: {first_line(exc, with_type=False)}") from None
    m = asarray("mask", mask)
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
    top = m.max(initial=0)
    if top <= 1:  # a 0/1 mask, whatever the integer type
        return m != 0
    if m.dtype == np.uint16:
        return m > 32767
    return m > 127


def codec(scale: float, dtype):
    """[-1, 1] floats from pixels and back: pixel / scale - 1, then round and clip (the uint8
    formulas are the ones the runtime always used, so results are bit-identical)."""
    top = float(np.iinfo(dtype).max)

    def encode(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / scale - 1.0

    def decode(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((x + 1.0) * scale), 0, top).astype(dtype)

    return encode, decode


CODECS = {
    "uint8": codec(127.5, np.uint8),
    "uint16": codec(32767.5, np.uint16),
    "float32": (lambda a: a * np.float32(2.0) - np.float32(1.0),
                lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)),
}


def pil_images(images: np.ndarray):
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
