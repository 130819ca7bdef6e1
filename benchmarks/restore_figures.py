"""Figures for the restore family from trained runs: a perception-distortion plot of several
models against the classical baselines, and a before/after strip on a held-out photograph.

    python benchmarks/restore_figures.py --runs runs/photos-sr2-psnr runs/photos-sr2-gan \\
        --pd benchmarks/figures/restore-pd-photos-sr2.png --strip benchmarks/figures/restore-before-after.png

The numbers plotted are each run's latest evaluation record in its metrics.jsonl (written by
training's final evaluation or by ``gankit evaluate RUN``); the runs must share degradation and
data. The strip restores a 128x128 crop of ``astronaut`` (held out of ``photos`` training):
degraded input (pixels enlarged), bicubic, then each run, then the original.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def latest_eval(run: Path) -> dict:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r["eval"] for r in recs if isinstance(r.get("eval"), dict) and r["eval"].get("kind") == "restore"]
    if not evals:
        raise SystemExit(f"{run}: no restore evaluation in metrics.jsonl")
    return evals[-1]


def label(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    return f"{run.name} ({'GAN' if float(config.get('gan_weight', 0)) > 0 else 'PSNR-oriented'})"


def strip(runs: list[Path], out: Path, crop=(180, 150, 128)) -> None:
    import torch
    from skimage import data as skdata

    from gankit.data import degradations as dg
    from gankit.images import grid, nchw_to_hwc_uint8, save_png
    from gankit.train.run import load_run_generator

    top, left, size = crop
    img = np.asarray(skdata.astronaut())[top : top + size, left : left + size].transpose(2, 0, 1)[None]
    clean = img.astype(np.float32) / 127.5 - 1
    rows, degradation = [], None
    for run in runs:
        family, config, G, _ = load_run_generator(run)
        if degradation is None:
            degradation = str(config["degradation"])
            lq = dg.degrade(degradation, clean, np.random.default_rng(0))
            s = dg.SCALES[degradation]
            rows.append(np.repeat(np.repeat(lq, s, axis=2), s, axis=3))  # the input, pixels enlarged
            if s > 1:
                rows.append(dg.upscale(lq, s, "bicubic"))
        with torch.no_grad():
            rows.append(G(image=torch.from_numpy(lq)).numpy())
    rows.append(clean)
    save_png(grid(nchw_to_hwc_uint8(np.clip(np.concatenate(rows), -1, 1)), nrow=len(rows), pad=4, pad_value=255), out,
             scale=2)
    print(f"wrote {out}: " + " | ".join(["input", *(["bicubic"] if dg.SCALES[degradation] > 1 else []),
                                          *[label(r) for r in runs], "original"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--pd", type=Path, help="perception-distortion PNG to write")
    ap.add_argument("--strip", type=Path, help="before/after PNG to write (photos runs)")
    args = ap.parse_args()
    from gankit.evaluate.restoration import plot_perception_distortion

    recs = {label(r): latest_eval(r) for r in args.runs}
    for name, rec in recs.items():
        m = rec["results"]["model"]
        print(f"{name}: PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.4f}, "
              + ", ".join(f"{k} {m[k]:.3f}" for k in ("judge_fd", "patch_fd") if k in m)
              + f"; best baseline {rec.get('best_baseline')} {rec['results'][rec['best_baseline']]['psnr_db']:.2f} dB")
    if args.pd:
        print("wrote", plot_perception_distortion(recs, args.pd))
    if args.strip:
        strip(args.runs, args.strip)


if __name__ == "__main__":
    main()
