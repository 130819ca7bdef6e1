"""Photo-inpainting figure: the same held-out patches and holes filled by the classical methods
and by trained runs, side by side.

    python benchmarks/inpaint_figures.py --runs runs/photos-psnr runs/photos-gan \\
        --out benchmarks/figures/inpaint-photos-gan-vs-psnr.png

Columns: held-out 64x64 patches of ``astronaut`` and ``coffee`` (the test split of ``photos``).
Rows: the masked input (holes in white), scikit-image's biharmonic, OpenCV's Telea, each run
(its newest checkpoint, in PyTorch), the original. The masks are the evaluation's ``rect``
masks (seed 0), so the picture shows the very holes ``gankit evaluate`` scores. Each run's
latest hole PSNR and hole realism (patch-statistics FD) are printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PATCHES = (5, 17, 30, 44, 61, 75, 90, 104)  # spread over both photos' grids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--masks", default="rect", choices=("rect", "strokes"))
    args = ap.parse_args()

    import torch

    from gankit.data import to_float
    from gankit.evaluate.inpainting import BASELINES, eval_masks
    from gankit.images import grid, nchw_to_hwc_uint8, save_png
    from gankit.plugins import load_dataset
    from gankit.train.run import load_run_generator

    ds = load_dataset("photos")
    clean = to_float(ds.x_test)
    mask = eval_masks(args.masks, len(clean), clean.shape[2], clean.shape[3], seed=0)
    idx = [i for i in PATCHES if i < len(clean)]
    clean, mask = clean[idx], mask[idx]
    known = clean * (1 - mask)
    clean01 = (clean + 1) / 2
    rows = [np.where(mask > 0, 1.0, known)]
    labels = ["input (holes white)"]
    for name in ("biharmonic", "telea"):
        rows.append(BASELINES[name](clean01 * (1 - mask), mask) * 2 - 1)
        labels.append(name)
    for run in args.runs:
        _, config, G, step = load_run_generator(run)
        with torch.no_grad():
            rows.append(G(image=torch.from_numpy(known), mask=torch.from_numpy(mask)).numpy())
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
        ev = [r["eval"] for r in recs if isinstance(r.get("eval"), dict) and r["eval"].get("kind") == "inpaint"][-1]
        m = ev["results"][args.masks]["model"]
        gan = "GAN" if float(config.get("adv_weight", 0)) > 0 else "PSNR-only"
        labels.append(f"{run.name} ({gan}, adv_weight {config.get('adv_weight')}, step {step})")
        print(f"{run.name}: hole PSNR {m['hole_psnr_db']:.2f} dB, hole patch FD {m.get('hole_patch_fd')}")
    rows.append(clean)
    tiles = np.concatenate(rows)
    save_png(grid(nchw_to_hwc_uint8(np.clip(tiles, -1, 1)), nrow=len(idx), pad=2, pad_value=255), args.out, scale=2)
    print(f"wrote {args.out}; rows: " + " | ".join(labels + ["original"]))


if __name__ == "__main__":
    main()
