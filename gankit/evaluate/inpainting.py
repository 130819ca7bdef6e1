"""Inpainting evaluation: the model next to classical baselines on the same images and masks.

Masks are fixed and seeded, two kinds: ``rect`` (one square hole of 10/28 of the side, 10x10
on digits) and ``strokes`` (four brush strokes of 3/28 of the side). For every method
(the model, ``skimage.restoration.inpaint_biharmonic``, OpenCV's Telea, and mean fill)
it reports hole PSNR and hole L1 (over missing pixels only, in [0, 1] units), SSIM over
the whole image, and milliseconds per image. It also checks that the model leaves known
pixels unchanged.

Realism of the holes, with nothing downloaded (``hole_patch_fd``, lower = more real): the
Frechet distance between the local statistics (:func:`gankit.evaluate.restoration.patch_features`:
gradient and Laplacian energy at three scales, contrast, mean) of the 8x8 tiles that are at
least half hole in the filled images and of the *same tiles* of the real images. PSNR rewards
the conditional mean, a smooth fill; this sees what that smoothness costs (too little
high-frequency energy in the hole, an edge at its border). Like every patch-statistics
measure it knows no shapes: compare methods on the same images and masks with it, do not read
it as an absolute quality.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from gankit.data import Dataset, held_out, to_float
from gankit.evaluate.metrics import psnr
from gankit.images import signed_to_uint8

InpaintFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (images [-1,1] NCHW, masks N1HW) -> NCHW


def eval_masks(kind: str, n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    from gankit.data import masks

    if kind == "rect":
        return masks.fixed_rectangle(n, h, w, side=max(1, round(10 * min(h, w) / 28)), seed=seed)
    if kind == "strokes":
        t = max(1, round(3 * min(h, w) / 28))
        return masks.strokes(n, h, w, seed=seed + 1, count=(4, 4), thickness=(t, t), vertices=(4, 6))
    raise ValueError(kind)


def _scores(restored01: np.ndarray, target01: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    m = np.broadcast_to(mask, target01.shape).astype(bool)
    err = restored01[m] - target01[m]
    hole_psnr = psnr(restored01[m], target01[m], data_range=1.0)
    ssims = []
    for r, t in zip(restored01, target01):
        ch = r.shape[0]
        win = min(7, r.shape[1] - (1 - r.shape[1] % 2), r.shape[2] - (1 - r.shape[2] % 2))
        ssims.append(structural_similarity(t.transpose(1, 2, 0), r.transpose(1, 2, 0), data_range=1.0,
                                           channel_axis=2 if ch > 1 else None, win_size=win) if ch > 1 else
                     structural_similarity(t[0], r[0], data_range=1.0, win_size=win))
    return {"hole_psnr_db": round(hole_psnr, 3), "hole_l1": round(float(np.mean(np.abs(err))) if err.size else 0.0, 5),
            "ssim": round(float(np.mean(ssims)), 4)}


def _biharmonic(img01: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    out = np.empty_like(img01)
    for i, (im, m) in enumerate(zip(img01, mask)):
        hwc = im.transpose(1, 2, 0)
        res = inpaint_biharmonic(hwc, m[0].astype(bool), channel_axis=-1)
        out[i] = np.clip(res, 0, 1).transpose(2, 0, 1)
    return out


def _telea(img01: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import cv2

    out = np.empty_like(img01)
    for i, (im, m) in enumerate(zip(img01, mask)):
        # OpenCV's inpaint misbehaves on float images: feed it uint8 and scale back
        u8 = signed_to_uint8(im.transpose(1, 2, 0) * 2 - 1)
        res = cv2.inpaint(u8 if u8.shape[2] == 3 else u8[..., 0], m[0].astype(np.uint8), 3, cv2.INPAINT_TELEA)
        res = res.reshape(u8.shape).astype(np.float32) / 255.0
        out[i] = res.transpose(2, 0, 1)
    return out


def _mean_fill(img01: np.ndarray, mask: np.ndarray) -> np.ndarray:
    known = 1 - mask
    mean = (img01 * known).sum(axis=(2, 3), keepdims=True) / np.maximum(known.sum(axis=(2, 3), keepdims=True), 1)
    return img01 * known + mean * mask


class _HoleRealism:
    """The clean images' tile statistics for one mask kind, to score fills against (see the module doc)."""

    PATCH = 8

    def __init__(self, clean01: np.ndarray, mask: np.ndarray):
        from gankit.evaluate.restoration import PatchReference

        p = self.PATCH
        n, _, h, w = mask.shape
        # whole tiles only: patch_features' gradient cells must be the very tiles the cover counts
        self.h, self.w = h // p * p, w // p * p
        cover = mask[:, 0, : self.h, : self.w].reshape(n, self.h // p, p, self.w // p, p).mean(axis=(2, 4))
        self.tiles = cover.reshape(-1) >= 0.5  # the order of patch_features' rows: image, then row-major tiles
        self.ok = self.h > 0 and self.w > 0 and int(self.tiles.sum()) >= 20  # fewer: no covariance to speak of
        if self.ok:
            self.ref = PatchReference(self._features(clean01))

    def _features(self, images01: np.ndarray) -> np.ndarray:
        from gankit.evaluate.restoration import patch_features

        return patch_features(np.ascontiguousarray(images01[:, :, : self.h, : self.w]), self.PATCH)[self.tiles]

    def score(self, filled01: np.ndarray) -> float | None:
        return self.ref.distance(self._features(filled01)) if self.ok else None


def _with_realism(scores: dict[str, Any], realism: _HoleRealism, filled01: np.ndarray) -> dict[str, Any]:
    fd = realism.score(filled01)
    return {**scores, "hole_patch_fd": fd} if fd is not None else scores


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "biharmonic": _biharmonic,
    "telea": _telea,
    "mean fill": _mean_fill,
}

_BASELINE_CACHE: dict[tuple, dict[str, Any]] = {}


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def evaluate_inpainting(model_fn: InpaintFn, dataset: Dataset, *, seed: int = 0, baselines: bool = True,
                        limit: int | None = None) -> dict[str, Any]:
    """Hole PSNR / L1 and SSIM for the model and the baselines, per mask kind; ``limit``
    images spread evenly over the test split (all of them when None or larger)."""
    x = held_out(dataset.x_test, limit)
    img = to_float(x)  # [-1, 1]
    img01 = (img + 1) / 2
    n, c, h, w = img.shape
    rec: dict[str, Any] = {"kind": "inpaint", "dataset": dataset.name, "split": "test", "samples": int(n), "seed": seed,
                           "masks": {}, "results": {}}
    for kind in ("rect", "strokes"):
        mask = eval_masks(kind, n, h, w, seed=seed)
        rec["masks"][kind] = {"missing_fraction": round(float(mask.mean()), 4)}
        out, secs = _timed(model_fn, img * (1 - mask), mask)
        out01 = np.clip((out + 1) / 2, 0, 1)
        known_change = float(np.max(np.abs(out01 - img01) * (1 - mask))) if n else 0.0
        realism = _HoleRealism(img01, mask)
        rec["masks"][kind]["realism_tiles"] = int(realism.tiles.sum()) if realism.ok else 0
        res = {"model": {**_with_realism(_scores(out01, img01, mask), realism, out01),
                         "ms_per_image": round(1000 * secs / n, 3), "known_max_abs_change": round(known_change, 6)}}
        if baselines:
            key = (id(dataset), dataset.name, x.shape, kind, seed)
            if key not in _BASELINE_CACHE:
                _BASELINE_CACHE[key] = {}
                for name, fn in BASELINES.items():
                    b, bsecs = _timed(fn, img01 * (1 - mask), mask)
                    _BASELINE_CACHE[key][name] = {**_with_realism(_scores(b, img01, mask), realism, b),
                                                  "ms_per_image": round(1000 * bsecs / n, 3)}
            res.update(_BASELINE_CACHE[key])
        rec["results"][kind] = res
    for kind in ("rect", "strokes"):
        r = rec["results"][kind]
        if "biharmonic" in r:
            r["model"]["gain_vs_biharmonic_db"] = round(r["model"]["hole_psnr_db"] - r["biharmonic"]["hole_psnr_db"], 3)
    rec["hole_psnr_rect_db"] = rec["results"]["rect"]["model"]["hole_psnr_db"]  # the headline: rectangles
    return rec


def torch_inpaint_fn(G, batch: int = 500) -> InpaintFn:
    import torch

    def run(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        G.eval()
        dev = next(G.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                outs.append(G(image=torch.from_numpy(np.ascontiguousarray(images[i : i + batch], np.float32)).to(dev),
                              mask=torch.from_numpy(np.ascontiguousarray(masks[i : i + batch], np.float32)).to(dev)).cpu().numpy())
        return np.concatenate(outs)

    return run


def training_evaluator(dataset: Dataset, config: dict[str, Any]):
    limit = config.get("eval_samples")  # default: the whole test split

    def run(G, step: int) -> dict[str, Any]:
        rec = evaluate_inpainting(torch_inpaint_fn(G), dataset, seed=0, limit=int(limit) if limit else None)
        rec["step"] = step
        return rec

    return run


def format_table(rec: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"inpainting on {rec['dataset']} {rec['split']} split ({rec['samples']} images, seed {rec['seed']})")
    realism = any("hole_patch_fd" in r for res in rec["results"].values() for r in res.values())
    cols = ("masks", "method", "hole PSNR dB", "hole L1", "SSIM") + (("hole patch-stat FD (lower: more real)",) if realism else ())
    for col in cols + ("ms/image",):
        t.add_column(col, justify="right" if col not in ("masks", "method") else "left")
    for kind, res in rec["results"].items():
        frac = rec["masks"][kind]["missing_fraction"]
        for i, (name, r) in enumerate(res.items()):
            fd = (f"{r['hole_patch_fd']:.3f}" if "hole_patch_fd" in r else "",) if realism else ()
            t.add_row(f"{kind} ({frac:.0%} missing)" if i == 0 else "", name, f"{r['hole_psnr_db']:.2f}",
                      f"{r['hole_l1']:.4f}", f"{r['ssim']:.4f}", *fd, f"{r['ms_per_image']:.3f}")
    m = [rec["results"][k]["model"]["known_max_abs_change"] for k in rec["results"]]
    t.caption = f"known pixels: max abs change {max(m):.2g} (in [0, 1] units)"
    return t
