"""Reading user images and masks safely (Pillow's decompression-bomb limit applies)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from gankit.runtime.errors import RuntimeInputError


def _open(path: str | os.PathLike):
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise RuntimeInputError(f"image not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
            im.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise RuntimeInputError(f"{p} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RuntimeInputError(f"cannot read image {p}: {str(exc).splitlines()[0] if str(exc) else 'corrupt file'}") from None
    return im


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 ``[H, W, 1|3]`` plus the alpha channel (or None)."""
    im = _open(path)
    alpha = None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[..., 3].copy()
        gray = im.mode in ("LA",)
        arr = np.asarray(im.convert("L"))[..., None] if gray else rgba[..., :3]
        return np.ascontiguousarray(arr), alpha
    if im.mode in ("L", "1", "I", "I;16", "F"):
        return np.asarray(im.convert("L"))[..., None], None
    return np.asarray(im.convert("RGB")), None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """bool ``[H, W]``: True where the pixel is missing (white / nonzero in the mask PNG)."""
    im = _open(path)
    return np.asarray(im.convert("L")) > 127


def before_after(image: np.ndarray, mask: np.ndarray, restored: np.ndarray, pad: int = 4) -> np.ndarray:
    """[input with holes shown in magenta | restored] side by side, uint8 RGB."""
    def rgb(a):
        return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]

    before = rgb(image).copy()
    before[mask] = (255, 0, 255)
    after = rgb(restored)
    h, w = mask.shape
    out = np.full((h, 2 * w + pad, 3), 255, np.uint8)
    out[:, :w], out[:, w + pad :] = before, after
    return out
