"""Reading user images and masks for the runtime: :mod:`gankit.images` (the one decoder the CLI,
the runtime and the datasets share), with its errors raised as :class:`RuntimeInputError`.
Pillow's decompression-bomb limit applies."""

from __future__ import annotations

import os

import numpy as np

from gankit import images
from gankit.images import before_after
from gankit.runtime.errors import RuntimeInputError


def read_image(path: str | os.PathLike, *, keep_depth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels ``[H, W, 1|3]`` at the file's depth (uint8, uint16, or float32 in [0, 1] for float
    files) plus the alpha channel (uint8; uint16 from a 16-bit colour file) or None. See :func:`gankit.images.pil_to_array`.
    A colour file with 16 bits per channel is read at 16 by OpenCV (refused where it is not
    installed), or at 8 with ``keep_depth=False``."""
    try:
        return images.read_image(path, keep_depth=keep_depth)
    except images.ImageError as exc:
        raise RuntimeInputError(str(exc)) from None


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """bool ``[H, W]``: True where the pixel is missing (brighter than half the mask's range)."""
    try:
        return images.read_mask(path)
    except images.ImageError as exc:
        raise RuntimeInputError(str(exc)) from None


__all__ = ["read_image", "read_mask", "before_after"]
