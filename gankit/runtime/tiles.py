"""Running a fixed-size inpainting model on an image of any size.

The image is covered by model-sized tiles on a grid with half-tile stride (edges aligned
to the border); only tiles that contain missing pixels are run, in batches, and the
predictions for each missing pixel are averaged over the tiles that saw it. An image
smaller than the model is reflect-padded up to the model size first.

Pixels here are floats in the model's range [-1, 1], so images of any bit depth take the
same path; :meth:`gankit.runtime.GankitModel.inpaint` converts from and to the caller's dtype.
"""

from __future__ import annotations

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
