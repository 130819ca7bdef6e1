"""Restoration evaluation: the model next to classical methods on the same degraded images.

The held-out set is the dataset's test split (``photos``: patches of ``astronaut`` and
``coffee``, never trained on; ``mnist5k``: the 1,000 test digits) degraded once by
:func:`gankit.data.degradations.degrade` with a fixed seed: the very code that makes the
training pairs. Every method's output is rounded to 8 bits (what a saved PNG holds) and scored
as BasicSR scores restorers: PSNR and SSIM (Gaussian 11x11 window, sigma 1.5) on the luma (Y of
ITU-R BT.601, the ``rgb2ycbcr`` of MATLAB/BasicSR) for colour images, with ``scale`` pixels cut
from every border, averaged per image.

Classical baselines, per degradation: bicubic and Lanczos enlargement (``sr2``, ``sr4``,
``real``); OpenCV's non-local means, scikit-image's wavelet (BayesShrink) and TV (Chambolle)
denoisers given the true sigma, and BM3D when the ``bm3d`` package is installed (on
:data:`BM3D_IMAGES` images spread over the set only: it takes seconds per image; the model is
scored on the same subset beside it) for ``noise``; Richardson-Lucy and Wiener deconvolution
with the known kernel for ``blur``; and the degraded input itself for every scale-1
degradation (``jpeg``'s baseline).
Tunable baselines are run over a small parameter grid and the best is reported (:data:`GRIDS`).

Realism, with nothing downloaded:

- ``judge_fd`` (digits): the Frechet distance between the judge's features
  (:mod:`gankit.evaluate.judge`) of the restored and of the clean test images.
- ``patch_fd`` (every dataset): the Frechet distance between distributions of *local image
  statistics* of 8x8 patches of the restored and of the clean images: log-energy of the
  gradient and of the Laplacian at three scales (1, 1/2, 1/4), local contrast and mean, each
  standardised by the clean patches' spread. It sees what PSNR-oriented models are blamed for
  (too little high-frequency energy: blur) and what noise adds (too much), and nothing else:
  it knows no shapes, so a texture of the right energy in the wrong place scores well. Use it
  to compare methods on the same images (which is sharper, which is noisier), not as an
  absolute quality number; docs/restore.md has the details.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gankit.data import Dataset, held_out, spread_indices, to_float
from gankit.data import degradations as dg
from gankit.evaluate.metrics import frechet_distance

RestoreFn = Callable[[np.ndarray], np.ndarray]  # low-quality [-1,1] NCHW -> restored [-1,1] NCHW
BM3D_IMAGES = 12
EVAL_SEED = 0


# -- the held-out set -------------------------------------------------------------------------
_SETS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def eval_set(dataset: Dataset, degradation: str, *, seed: int = EVAL_SEED, limit: int | None = None):
    """(clean, degraded) float32 [-1, 1] NCHW arrays of the test split, or of ``limit`` images
    spread evenly over it (:func:`gankit.data.held_out`); cached per process."""
    key = (id(dataset), dataset.name, degradation, seed, limit)
    if key not in _SETS:
        clean = to_float(held_out(dataset.x_test, limit))
        _SETS[key] = (clean, dg.degrade(degradation, clean, np.random.default_rng(seed)))
    return _SETS[key]


# -- scores ----------------------------------------------------------------------------------------
def to_8bit01(batch: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1] rounded to 8-bit levels (what a PNG of the result holds)."""
    return np.round(np.clip(dg.to01(batch), 0, 1) * 255.0) / 255.0


def luma(images01: np.ndarray) -> np.ndarray:
    """[N, C, H, W] in [0, 1] -> [N, H, W]: Y of BT.601 (as BasicSR's ``rgb2ycbcr(y_only=True)``), or the gray plane."""
    if images01.shape[1] == 1:
        return images01[:, 0].astype(np.float64)
    r, g, b = (images01[:, i].astype(np.float64) for i in range(3))
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr_ssim(restored01: np.ndarray, clean01: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR (dB) and SSIM on the luma, ``crop`` pixels cut from every border."""
    from skimage.metrics import structural_similarity

    a, b = luma(restored01), luma(clean01)
    if crop:
        a, b = a[:, crop:-crop, crop:-crop], b[:, crop:-crop, crop:-crop]
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
    ssim = np.array([structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False) for x, y in zip(a, b)])
    return psnr, ssim


def patch_features(images01: np.ndarray, patch: int = 8) -> np.ndarray:
    """Local statistics of every ``patch`` x ``patch`` tile of the luma: [tiles, 8] (see the module doc)."""
    import cv2

    y = luma(images01).astype(np.float32)
    n, h, w = y.shape
    th, tw = h // patch, w // patch
    feats = []
    for img in y:
        cols = []
        level = img
        for s in range(3):
            gx = cv2.Sobel(level, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(level, cv2.CV_32F, 0, 1, ksize=3)
            lap = cv2.Laplacian(level, cv2.CV_32F, ksize=1)
            size = (tw, th)  # each statistic averaged over the tile it falls in
            cols.append(np.log(cv2.resize(gx * gx + gy * gy, size, interpolation=cv2.INTER_AREA) + 1e-6))
            cols.append(np.log(cv2.resize(lap * lap, size, interpolation=cv2.INTER_AREA) + 1e-6))
            if s < 2:
                level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)
        crop = img[: th * patch, : tw * patch].reshape(th, patch, tw, patch)
        cols.append(crop.std(axis=(1, 3)))
        cols.append(crop.mean(axis=(1, 3)))
        feats.append(np.stack([c.reshape(-1) for c in cols], axis=1))
    return np.concatenate(feats).astype(np.float64)


class PatchReference:
    """Patch statistics of real images (rows of :func:`patch_features`, optionally a subset), to
    score other images' statistics against: Frechet distance after standardising every statistic
    by the real rows' spread (so no statistic dominates by its units)."""

    def __init__(self, feats: np.ndarray):
        self.mean, self.std = feats.mean(0), feats.std(0) + 1e-6
        self.ref = (feats - self.mean) / self.std

    def distance(self, feats: np.ndarray) -> float:
        return round(float(frechet_distance((feats - self.mean) / self.std, self.ref)), 4)


class _Realism:
    """Realism references for one dataset's clean test images (patch statistics; judge for digits)."""

    def __init__(self, dataset: Dataset, clean01: np.ndarray, judge: bool):
        self.patches = PatchReference(patch_features(clean01))
        self.judge = None
        if judge:
            from gankit.evaluate.judge import load_judge

            self.judge = load_judge(dataset)
            self.judge_ref, _ = self.judge.features_and_predictions(clean01 * 2 - 1)

    def scores(self, restored01: np.ndarray) -> dict[str, float]:
        out = {"patch_fd": self.patches.distance(patch_features(restored01))}
        if self.judge is not None:
            feats, _ = self.judge.features_and_predictions((restored01 * 2 - 1).astype(np.float32))
            out["judge_fd"] = round(frechet_distance(feats, self.judge_ref), 4)
        return out


# -- classical baselines -----------------------------------------------------------------------------
def _planes(batch01: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([np.stack([fn(p.astype(np.float64)) for p in img]) for img in batch01]).astype(np.float32)


def _nl_means(lq01: np.ndarray, h: float) -> np.ndarray:
    import cv2

    out = np.empty_like(lq01)
    for i, img in enumerate(lq01):
        u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        if u8.shape[0] == 3:
            res = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(u8.transpose(1, 2, 0)), None, h, h, 7, 21)
            out[i] = res.transpose(2, 0, 1) / 255.0
        else:
            out[i, 0] = cv2.fastNlMeansDenoising(u8[0], None, h, 7, 21) / 255.0
    return out


def _wavelet(lq01: np.ndarray, _: Any = None) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    sigma = dg.NOISE_SIGMA / 255.0
    return np.stack([denoise_wavelet(img.transpose(1, 2, 0), sigma=sigma, method="BayesShrink", mode="soft",
                                     channel_axis=-1, convert2ycbcr=img.shape[0] == 3, rescale_sigma=True)
                     .transpose(2, 0, 1) for img in lq01]).astype(np.float32)


def _tv(lq01: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(img.transpose(1, 2, 0), weight=weight, channel_axis=-1).transpose(2, 0, 1)
                     for img in lq01]).astype(np.float32)


def _bm3d(lq01: np.ndarray) -> np.ndarray:
    import bm3d

    sigma = dg.NOISE_SIGMA / 255.0
    out = []
    for img in lq01:
        if img.shape[0] == 3:
            out.append(np.asarray(bm3d.bm3d_rgb(img.transpose(1, 2, 0), sigma)).transpose(2, 0, 1))
        else:
            out.append(np.asarray(bm3d.bm3d(img[0], sigma))[None])
    return np.stack(out).astype(np.float32)


def _deconvolve(lq01: np.ndarray, fn) -> np.ndarray:
    """``fn(plane, psf)`` on every plane, reflect-padded by the kernel's size first: scikit-image's
    Richardson-Lucy pads with zeros and Wiener is circular, and on a 64x64 patch either border
    artefact alone cost them more than the deblurring gained."""
    psf = dg.gaussian_kernel(dg.BLUR_SIGMA).astype(np.float64)
    pad = psf.shape[0]
    return _planes(lq01, lambda p: fn(np.pad(p, pad, mode="reflect"), psf)[pad:-pad, pad:-pad])


def _richardson_lucy(lq01: np.ndarray, iterations: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    return _deconvolve(lq01, lambda p, psf: richardson_lucy(p, psf, num_iter=int(iterations), clip=True))


def _wiener(lq01: np.ndarray, balance: float) -> np.ndarray:
    from skimage.restoration import wiener

    return _deconvolve(lq01, lambda p, psf: wiener(p, psf, balance=balance, clip=True))


# Each tunable baseline is run at every value of its grid and the best PSNR is reported (with the
# value): tuned on the very images it is scored on, an upper bound that flatters the classics,
# so a model's gain over them is not an artefact of a badly chosen parameter.
GRIDS: dict[str, tuple[Callable, tuple]] = {
    "nl-means (OpenCV)": (_nl_means, tuple(f * dg.NOISE_SIGMA for f in (0.6, 0.8, 1.0, 1.2, 1.5))),  # h
    "wavelet (BayesShrink)": (_wavelet, (None,)),
    "TV (Chambolle)": (_tv, (0.02, 0.04, 0.06, 0.08, 0.1, 0.12)),  # weight
    "Richardson-Lucy": (_richardson_lucy, (10, 30, 100, 300)),  # iterations
    "Wiener": (_wiener, (1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03)),  # balance (noise-to-signal ratio)
}


def baselines_for(degradation: str, scale: int) -> dict[str, tuple[Callable, tuple]]:
    """Classical methods for ``degradation``: name -> (fn(low-quality [0, 1] NCHW, parameter) ->
    restored [0, 1] NCHW, ``scale`` x larger; the parameter grid searched)."""
    if scale > 1:
        return {"bicubic": (lambda x, _: dg.to01(dg.upscale(dg.from01(x), scale, "bicubic")), (None,)),
                "lanczos": (lambda x, _: dg.to01(dg.upscale(dg.from01(x), scale, "lanczos")), (None,))}
    out: dict[str, tuple[Callable, tuple]] = {"degraded input": (lambda x, _: x, (None,))}
    names = {"noise": ("nl-means (OpenCV)", "wavelet (BayesShrink)", "TV (Chambolle)"),
             "blur": ("Richardson-Lucy", "Wiener")}.get(degradation, ())
    out.update({k: GRIDS[k] for k in names})
    return out


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except Exception:
        return False
    return True


# -- the evaluation ----------------------------------------------------------------------------------
_BASELINE_CACHE: dict[tuple, dict[str, Any]] = {}
_REALISM: dict[tuple, _Realism] = {}


def _score(out01: np.ndarray, clean01: np.ndarray, crop: int, realism: _Realism | None) -> dict[str, Any]:
    p, s = psnr_ssim(out01, clean01, crop)
    rec = {"psnr_db": round(float(p.mean()), 3), "ssim": round(float(s.mean()), 4)}
    if realism is not None:
        rec.update(realism.scores(out01))
    return rec


def evaluate_restoration(model_fn: RestoreFn, dataset: Dataset, *, degradation: str, seed: int = EVAL_SEED,
                         limit: int | None = None, baselines: bool = True, realism: bool = True,
                         slow_baselines: bool = False) -> dict[str, Any]:
    """PSNR/SSIM (and realism) of the model and the classical baselines on the held-out set."""
    scale = dg.SCALES[degradation]
    clean, lq = eval_set(dataset, degradation, seed=seed, limit=limit)
    clean01, lq01 = to_8bit01(clean), dg.to01(lq)
    n = len(clean)
    judge = dataset.name == "mnist5k"  # the judge knows digits; on photos it would be a 13-way source classifier
    rkey = (id(dataset), dataset.name, n)
    if realism and rkey not in _REALISM:
        _REALISM[rkey] = _Realism(dataset, clean01, judge)
    real = _REALISM.get(rkey) if realism else None
    t0 = time.perf_counter()
    out = model_fn(lq)
    secs = time.perf_counter() - t0
    if out.shape != clean.shape:
        from gankit.errors import UsageError

        raise UsageError(f"the model returned {list(out.shape)} for inputs {list(lq.shape)}; expected {list(clean.shape)}")
    out01 = to_8bit01(out)
    rec: dict[str, Any] = {"kind": "restore", "dataset": dataset.name, "split": "test", "samples": int(n),
                           "image_shape": list(clean.shape[1:]), "seed": seed,
                           "degradation": degradation, "scale": scale, "crop_border": scale,
                           "metric": "Y channel (BT.601)" if clean.shape[1] == 3 else "gray", "results": {}}
    rec["results"]["model"] = {**_score(out01, clean01, scale, real), "ms_per_image": round(1000 * secs / n, 3)}
    if baselines:
        bkey = (id(dataset), dataset.name, degradation, seed, n, realism)
        if bkey not in _BASELINE_CACHE:
            _BASELINE_CACHE[bkey] = {}
            for name, (fn, grid) in baselines_for(degradation, scale).items():
                best = None
                for param in grid:
                    t0 = time.perf_counter()
                    b = to_8bit01(dg.from01(fn(lq01, param)))
                    bsecs = time.perf_counter() - t0
                    p = float(psnr_ssim(b, clean01, scale)[0].mean())
                    if best is None or p > best[0]:
                        best = (p, param, b, bsecs)
                _, param, b, bsecs = best
                label = name if param is None else f"{name} [{param:g}]"
                _BASELINE_CACHE[bkey][label] = {**_score(b, clean01, scale, real), "ms_per_image": round(1000 * bsecs / n, 3)}
        rec["results"].update(_BASELINE_CACHE[bkey])
        classical = [k for k in rec["results"] if k != "model" and k != "degraded input"] or ["degraded input"]
        best = max(classical, key=lambda k: rec["results"][k]["psnr_db"])
        rec["best_baseline"] = best
        rec["gain_vs_best_db"] = round(rec["results"]["model"]["psnr_db"] - rec["results"][best]["psnr_db"], 3)
    if slow_baselines and degradation == "noise" and bm3d_available():
        # spread, as the set itself is: photos' test patches run astronaut then coffee, so the
        # first 12 would all be astronaut's, where BM3D does best (benchmarks/RESULTS.md)
        k = min(BM3D_IMAGES, n)
        idx = spread_indices(n, k)
        t0 = time.perf_counter()
        b = _bm3d(lq01[idx])
        bsecs = time.perf_counter() - t0
        sub = {f"bm3d ({k} of {n} images)": {**_score(to_8bit01(dg.from01(b)), clean01[idx], scale, None),
                                             "ms_per_image": round(1000 * bsecs / k, 3)},
               f"model ({k} of {n} images)": _score(out01[idx], clean01[idx], scale, None)}
        rec["subset"] = sub
    rec["psnr_db"] = rec["results"]["model"]["psnr_db"]  # the headline (plotted over training)
    return rec


def torch_restore_fn(G, batch: int = 64) -> RestoreFn:
    import torch

    def run(images: np.ndarray) -> np.ndarray:
        G.eval()
        dev = next(G.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch], np.float32)).to(dev)
                outs.append(G(image=x).float().cpu().numpy())
        return np.concatenate(outs)

    return run


def onnx_restore_fn(path: str | Path, batch: int = 64) -> RestoreFn:
    """Run a restore file with onnxruntime alone (its contract: ``image`` -> ``restored``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(images: np.ndarray) -> np.ndarray:
        return np.concatenate([sess.run(["restored"], {"image": np.ascontiguousarray(images[i : i + batch], np.float32)})[0]
                               for i in range(0, len(images), batch)])

    return run


def training_evaluator(dataset: Dataset, config: dict[str, Any]):
    limit = config.get("eval_samples")  # default: the whole test split
    degradation = str(config["degradation"])

    def run(G, step: int) -> dict[str, Any]:
        rec = evaluate_restoration(torch_restore_fn(G), dataset, degradation=degradation,
                                   limit=int(limit) if limit else None)
        rec["step"] = step
        return rec

    return run


# -- reporting ---------------------------------------------------------------------------------------
def _realism_key(rec: dict[str, Any]) -> str:
    return "judge_fd" if "judge_fd" in rec["results"]["model"] else "patch_fd"


def format_table(rec: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"restoration ({rec['degradation']}, x{rec['scale']}) on {rec['dataset']} {rec['split']} split "
                    f"({rec['samples']} images, seed {rec['seed']})")
    cols = ["method", "PSNR dB", "SSIM"]
    model = rec["results"]["model"]
    extra = [k for k in ("judge_fd", "patch_fd") if k in model]
    names = {"judge_fd": "judge FD (lower: more real)", "patch_fd": "patch-stat FD (lower: more real)"}
    for col in cols + [names[k] for k in extra] + ["ms/image"]:
        t.add_column(col, justify="left" if col == "method" else "right")
    rows = list(rec["results"].items()) + list(rec.get("subset", {}).items())
    for name, r in rows:
        t.add_row(name, f"{r['psnr_db']:.2f}", f"{r['ssim']:.4f}", *[f"{r[k]:.3f}" if k in r else "" for k in extra],
                  f"{r['ms_per_image']:.3f}" if "ms_per_image" in r else "")
    if "best_baseline" in rec:
        t.caption = (f"{rec['metric']}, {rec['crop_border']} px border cropped; model vs best classical "
                     f"({rec['best_baseline']}): {rec['gain_vs_best_db']:+.2f} dB")
    return t


def plot_perception_distortion(recs: dict[str, dict[str, Any]], out: str | Path, title: str = "") -> str:
    """PSNR (x) against realism (y, lower = more realistic) for the models in ``recs`` (label -> record)
    and the classical baselines of the first one: the perception-distortion plane (Blau & Michaeli 2018)."""
    from gankit.train.plots import new_figure, save_figure

    first = next(iter(recs.values()))
    key = _realism_key(first)
    fig = new_figure(figsize=(6, 4.2), dpi=110)
    ax = fig.subplots()
    for name, r in first["results"].items():
        if name != "model" and key in r:
            ax.scatter(r["psnr_db"], r[key], marker="s", color="gray")
            ax.annotate(name, (r["psnr_db"], r[key]), textcoords="offset points", xytext=(5, 3), fontsize=8, color="gray")
    for label, rec in recs.items():
        m = rec["results"]["model"]
        ax.scatter(m["psnr_db"], m[key], marker="o", s=50)
        ax.annotate(label, (m["psnr_db"], m[key]), textcoords="offset points", xytext=(5, 3), fontsize=9)
    ax.set_xlabel("PSNR dB (higher: less distortion)")
    ax.set_ylabel(("judge" if key == "judge_fd" else "patch-statistics") + " Frechet distance (lower: more realistic)")
    ax.set_title(title or f"perception-distortion: {first['degradation']} on {first['dataset']}")
    ax.grid(alpha=0.3)
    ax.margins(x=0.35, y=0.12)  # room for the labels
    fig.tight_layout()
    return save_figure(fig, Path(out))
