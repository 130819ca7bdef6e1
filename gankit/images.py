"""Pictures: sample grids, before/after strips, PNG writing. numpy + Pillow only (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gankit.fileio import atomic_path


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images ``[N, H, W, C]`` into one ``[H', W', C]`` image, ``nrow`` per row."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out


def to_pil(array: np.ndarray, scale: int = 1):
    from PIL import Image

    a = np.asarray(array, dtype=np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    im = Image.fromarray(a)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    return im


def save_png(array_or_image, path: str | os.PathLike, scale: int = 1) -> Path:
    """Write a PNG atomically (temporary name, then rename): a reader never sees half a file."""
    im = array_or_image if hasattr(array_or_image, "save") else to_pil(array_or_image, scale)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped), same layout."""
    return np.clip(np.rint((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def nchw_to_hwc_uint8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] ``[N, C, H, W]`` -> uint8 ``[N, H, W, C]``."""
    return to_uint8(x).transpose(0, 2, 3, 1)
