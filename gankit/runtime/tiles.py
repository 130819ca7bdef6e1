"""Running models on images of any size: inpainting (fixed-size model) and restore (any size, in tiles).

Inpainting: the image is covered by model-sized tiles on a grid with half-tile stride (edges aligned
to the border); only tiles that contain missing pixels are run, in batches, and the
predictions for each missing pixel are averaged over the tiles that saw it. An image
smaller than the model is reflect-padded up to the model size first.

Restore (:func:`restore_any_size`): the image is cut into a grid of tiles whose *own regions*
partition it; each tile is run with ``pad`` pixels of real neighbouring context on every side
(the whole image is reflect-padded by ``pad`` first, so border tiles get mirrored context;
sizes are rounded up to the model's ``size_multiple``, see :class:`RestoreGeometry`), and
only the tile's own region of the output (times the scale) is kept. Outputs never overlap and
are never blended, so a pointwise model reassembles exactly and a convolutional one gives the
same pixels as a whole-image run wherever ``pad`` covers its receptive field: no seams to hide.
Every window has one shape (the last tile of a row or column is shifted inward to end at the
border, its own region trimmed accordingly), so windows run in batches of equal size.

Pixels here are floats in the model's range [-1, 1], so images of any bit depth take the
same path; :meth:`gankit.runtime.GankitModel.inpaint` and ``restore`` convert from and to the
caller's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, tile // 2)
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def inpaint_any_size(model, x: np.ndarray, mask: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """float32 ``[H, W, C]`` in [-1, 1] (C = model channels) + bool ``[H, W]`` -> float32 ``[H, W, C]``
    with the model's predictions where tiles were run (unchanged elsewhere)."""
    th, tw = model.height, model.width
    h, w = mask.shape
    ph, pw = max(0, th - h), max(0, tw - w)
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        mask = np.pad(mask, ((0, ph), (0, pw)), mode="constant")
    H, W = mask.shape
    acc = np.zeros((H, W, x.shape[2]), np.float32)
    cnt = np.zeros((H, W, 1), np.float32)
    boxes = [(t, l) for t in _starts(H, th) for l in _starts(W, tw) if mask[t : t + th, l : l + tw].any()]
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        imgs = np.stack([x[t : t + th, l : l + tw].transpose(2, 0, 1) for t, l in chunk])
        msks = np.stack([mask[t : t + th, l : l + tw][None].astype(np.float32) for t, l in chunk])
        out = model.run_raw_inpaint(imgs, msks)
        for (t, l), o in zip(chunk, out):
            acc[t : t + th, l : l + tw] += o.transpose(1, 2, 0)
            cnt[t : t + th, l : l + tw] += 1
    filled = np.where(cnt > 0, acc / np.maximum(cnt, 1), x)
    return filled[:h, :w]


def _cuts(length: int, tile: int) -> list[tuple[int, int, int]]:
    """(own start, own stop, window start) per tile along one axis; the window is ``tile`` long."""
    return [(a, min(a + tile, length), min(a, length - tile)) for a in range(0, length, tile)]


def _up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class RestoreGeometry:
    """Where the tiles of an ``h x w`` image go, every size a multiple of the model's ``size_multiple`` m.

    The image is extended to ``H x W`` (h, w rounded up to m, reflected at the bottom/right)
    and reflect-padded by ``pad`` (tile_pad rounded up to m) on every side. Tiles of ``th x tw``
    (tile rounded up to m, at most the image) start at multiples of m from the padded origin, so
    a model that works on m x m blocks (strided or pixel-unshuffled layers) sees the same block
    grid in every window as in a whole-image run: tiles agree with it, and with each other."""

    H: int
    W: int
    th: int
    tw: int
    pad: int

    @property
    def window(self) -> tuple[int, int]:
        return self.th + 2 * self.pad, self.tw + 2 * self.pad

    @property
    def count(self) -> int:
        return -(-self.H // self.th) * -(-self.W // self.tw)


def restore_geometry(h: int, w: int, tile: int, pad: int, multiple: int = 1) -> RestoreGeometry:
    """``tile``: the own-region side in input pixels (0 or more than the image: the whole image)."""
    m = multiple
    H, W = _up(h, m), _up(w, m)
    t = _up(tile, m) if tile else max(H, W)
    return RestoreGeometry(H=H, W=W, th=min(t, H), tw=min(t, W), pad=_up(pad, m))


def restore_any_size(run, x: np.ndarray, *, channels: int, scale: int, tile: int, pad: int, multiple: int = 1,
                     batch_size: int = 4) -> np.ndarray:
    """float32 ``[H, W, C]`` in [-1, 1] -> float32 ``[scale*H, scale*W, C]``.

    ``run(batch)`` takes float32 ``[n, channels, wh, ww]`` and returns ``[n, channels, scale*wh, scale*ww]``.
    When the model has one channel and the image more, each channel is a row of the batch.
    ``tile``: own-region side in input pixels (0 = the whole image); ``pad``: context on each
    side; ``multiple``: the model's ``size_multiple`` (tile, pad and the image are rounded up
    to it, see :class:`RestoreGeometry`); ``batch_size``: model rows per call.
    """
    h, w, c = x.shape
    g = restore_geometry(h, w, tile, pad, multiple)
    p, (wh, ww) = g.pad, g.window
    # every window, the shifted last ones included, lies inside the padded image
    xp = np.pad(x, ((p, p + g.H - h), (p, p + g.W - w), (0, 0)), mode="reflect")
    boxes = [(rows, cols) for rows in _cuts(g.H, g.th) for cols in _cuts(g.W, g.tw)]
    per_window = c if channels == 1 else 1  # gray model, colour image: channels become batch rows
    step = max(1, batch_size // per_window)
    s = scale
    out = np.empty((s * g.H, s * g.W, c), np.float32)
    for i in range(0, len(boxes), step):
        chunk = boxes[i : i + step]
        batch = np.stack([xp[wy : wy + wh, wx : wx + ww].transpose(2, 0, 1)
                          for (_, _, wy), (_, _, wx) in chunk])  # [k, c, wh, ww]
        if per_window > 1:
            batch = batch.reshape(len(chunk) * c, 1, wh, ww)
        res = run(np.ascontiguousarray(batch))
        res = res.reshape(len(chunk), c, s * wh, s * ww)
        for ((a, b, wy), (l, r, wx)), o in zip(chunk, res):
            oy, ox = a - wy + p, l - wx + p  # the own region's offset inside the window
            out[s * a : s * b, s * l : s * r] = o[:, s * oy : s * (oy + b - a), s * ox : s * (ox + r - l)].transpose(1, 2, 0)
    return out[: s * h, : s * w]


def resize_plane(plane: np.ndarray, scale: int) -> np.ndarray:
    """One channel (alpha) resized ``scale`` times with Pillow's bicubic filter, same dtype."""
    if scale == 1:
        return plane
    from PIL import Image

    im = Image.fromarray(plane.astype(np.float32))  # F resizes at any depth without rounding to 8 bits
    big = np.asarray(im.resize((im.width * scale, im.height * scale), Image.Resampling.BICUBIC))
    if plane.dtype == np.float32:
        return np.clip(big, 0.0, 1.0).astype(np.float32)
    return np.clip(np.rint(big), 0, np.iinfo(plane.dtype).max).astype(plane.dtype)
