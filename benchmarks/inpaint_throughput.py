"""Batched throughput of an exported inpainting model through gankit.runtime (onnxruntime).

Usage: python benchmarks/inpaint_throughput.py MODEL.onnx [--batch 256] [--seconds 5]

Feeds batches of model-sized images with seeded masks through ``run_raw_inpaint`` (the
batched path the evaluation and tiling use) and reports images per second (median over
repeats after a warm-up), next to scikit-image's biharmonic inpainting on the same images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import gankit.runtime as gr
    from gankit.data.masks import mixed_masks
    from gankit.evaluate.inpainting import _biharmonic

    m = gr.load(args.model, threads=args.threads)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, m.channels, m.height, m.width)).astype(np.float32)
    masks = mixed_masks(args.batch, m.height, m.width, seed=0)
    m.run_raw_inpaint(x, masks)  # warm-up
    times = []
    t_end = time.perf_counter() + args.seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        m.run_raw_inpaint(x, masks)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n_bi = min(64, args.batch)
    t0 = time.perf_counter()
    _biharmonic((x[:n_bi] + 1) / 2 * (1 - masks[:n_bi]), masks[:n_bi])
    bi = (time.perf_counter() - t0) / n_bi
    print(json.dumps({"model": args.model, "shape": [m.channels, m.height, m.width], "batch": args.batch,
                      "providers": m.providers, "images_per_s": round(args.batch / med, 1),
                      "ms_per_image": round(1000 * med / args.batch, 4), "biharmonic_ms_per_image": round(1000 * bi, 3),
                      "repeats": len(times)}, indent=2))


if __name__ == "__main__":
    main()
