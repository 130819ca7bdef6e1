"""The denoiser against BM3D on the *whole* held-out set (``gankit evaluate`` runs BM3D on 12
images spread over the set only, since it takes seconds per image).

    python benchmarks/restore_bm3d.py exported/MODEL.onnx [--data photos] [--limit N]

Prints PSNR/SSIM (the evaluation's scoring: luma, 8-bit outputs) of the model and of BM3D (the
``bm3d`` package's ``bm3d_rgb`` for colour, ``bm3d`` for gray, given the true sigma) on the same
degraded images, and their per-image difference. Needs ``pip install bm3d`` and a model
exported with ``--set degradation=noise``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--data", default="photos")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    from gankit.data import degradations as dg
    from gankit.evaluate.restoration import _bm3d, bm3d_available, eval_set, onnx_restore_fn, psnr_ssim, to_8bit01
    from gankit.plugins import load_dataset
    from gankit.runtime.engines import read_onnx_metadata

    if not bm3d_available():
        raise SystemExit("error: the bm3d package is not installed (pip install bm3d)")
    trained_on = read_onnx_metadata(Path(args.model)).get("gankit.degradation")
    if trained_on != "noise":
        raise SystemExit(f"error: {args.model} was trained on {trained_on!r}, not 'noise'")

    ds = load_dataset(args.data)
    clean, lq = eval_set(ds, "noise", limit=args.limit)
    clean01 = to_8bit01(clean)
    rows = {}
    t0 = time.perf_counter()
    out = to_8bit01(onnx_restore_fn(args.model)(lq))
    rows["model"] = (out, time.perf_counter() - t0)
    t0 = time.perf_counter()
    b = to_8bit01(dg.from01(_bm3d(dg.to01(lq))))
    rows["BM3D (bm3d_rgb / bm3d, true sigma)"] = (b, time.perf_counter() - t0)
    n = len(clean)
    print(f"{args.data} test split, noise sigma {dg.NOISE_SIGMA:g}/255, {n} images, seed 0")
    scores = {}
    for name, (img, secs) in rows.items():
        p, s = psnr_ssim(img, clean01, 1)
        scores[name] = p
        print(f"{name:40s} PSNR {p.mean():6.2f} dB  SSIM {s.mean():.4f}  {1000 * secs / n:8.1f} ms/image")
    d = scores["model"] - scores["BM3D (bm3d_rgb / bm3d, true sigma)"]
    print(f"model - BM3D: {d.mean():+.2f} dB (model better on {int((d > 0).sum())} of {n} images)")


if __name__ == "__main__":
    main()
