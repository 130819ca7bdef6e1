"""Masks for inpainting: 1 (True) = missing pixel, 0 = known.

Two seedable generators, mixed during training (a user's mask PNG is read by
:func:`gankit.runtime.io.read_mask`: grey above 127 = missing):

* :func:`rectangles`: axis-aligned holes (``count`` of them, each side a random fraction of
  the image side within ``size``);
* :func:`strokes`: free-form brush strokes, random polylines of random thickness
  (the irregular masks of Liu et al. 2018 and Yu et al. 2019, drawn procedurally).

All return float32 ``[N, 1, H, W]`` arrays and depend only on their arguments and ``seed``.
"""

from __future__ import annotations

import numpy as np


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def rectangles(n: int, h: int, w: int, seed=0, count: tuple[int, int] = (1, 2),
               size: tuple[float, float] = (0.25, 0.5)) -> np.ndarray:
    """``n`` masks, each with ``count[0]..count[1]`` rectangles of side ``size`` x image side."""
    rng = _rng(seed)
    out = np.zeros((n, 1, h, w), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            rh = max(1, int(round(h * rng.uniform(*size))))
            rw = max(1, int(round(w * rng.uniform(*size))))
            t = int(rng.integers(0, h - rh + 1))
            l = int(rng.integers(0, w - rw + 1))
            out[i, 0, t : t + rh, l : l + rw] = 1
    return out


def fixed_rectangle(n: int, h: int, w: int, side: int, seed=0) -> np.ndarray:
    """``n`` masks with one ``side`` x ``side`` hole at a seeded random position (evaluation)."""
    rng = _rng(seed)
    out = np.zeros((n, 1, h, w), np.float32)
    side = min(side, h, w)
    for i in range(n):
        t, l = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        out[i, 0, t : t + side, l : l + side] = 1
    return out


def strokes(n: int, h: int, w: int, seed=0, count: tuple[int, int] = (1, 4),
            thickness: tuple[int, int] | None = None, vertices: tuple[int, int] = (2, 5)) -> np.ndarray:
    """``n`` masks of ``count`` random polylines (``vertices`` points) of random ``thickness`` px."""
    from PIL import Image, ImageDraw

    rng = _rng(seed)
    if thickness is None:
        t0 = max(1, round(min(h, w) / 14))
        thickness = (t0, 2 * t0)
    out = np.zeros((n, 1, h, w), np.float32)
    for i in range(n):
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            k = int(rng.integers(vertices[0], vertices[1] + 1))
            pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(k)]
            width = int(rng.integers(thickness[0], thickness[1] + 1))
            draw.line(pts, fill=255, width=width, joint="curve")
            r = width / 2
            for x, y in (pts[0], pts[-1]):  # round caps
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        out[i, 0] = np.asarray(im, dtype=np.float32) / 255.0 > 0.5
    return out


def mixed_masks(n: int, h: int, w: int, seed=0) -> np.ndarray:
    """Half rectangles, half strokes, shuffled: what the inpainting trainer sees."""
    rng = _rng(seed)
    n_rect = n // 2
    m = np.concatenate([rectangles(n_rect, h, w, rng), strokes(n - n_rect, h, w, rng)])
    return m[rng.permutation(n)]
