"""Speed and seams of a restore model through gankit.runtime on a 512x512 photo, tiled vs untiled,
with OpenCV bicubic resizing as the floor.

Usage: python benchmarks/restore_speed.py [MODEL.onnx] [--run RUN_DIR] [--threads 2] [--repeats 5]
       [--tile 256] [--tile-pad 16]

Without MODEL a stand-in is exported to a temporary folder (needs torch): 14 random 3x3
convolutions of 48 channels at input resolution, then nearest x2 and a global residual; about
the compute of a restore generator of 6 residual blocks of 48 channels (2 convolutions each,
plus head and tail). Its receptive field (14 pixels) lies inside the default 16-pixel tile_pad,
so tiled and untiled outputs must agree to float rounding. With MODEL (the restore family's
export) the same measurements run on it.

The photo is scikit-image's ``astronaut`` (512x512 RGB, one of the images gankit never trains
on); a x2 model makes it 1024x1024. Reported: seconds per image (median of ``--repeats`` after
a warm-up), output megapixels per second, and for seams the largest |tiled - untiled| on the
rows/columns next to a tile border against the largest elsewhere (uint8 levels).

With ``--run RUN_DIR`` (the training run MODEL was exported from) the same generator also runs in
PyTorch (eager, inference mode, the same threads): the whole photo in one call, and the same
tiles through the same tiling code, so "gankit restore vs PyTorch" compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (session arenas, first-run allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stand_in(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.restore_models import make_torch_restorer

    path, _ = make_torch_restorer(folder / "restore-standin.onnx", "conv", c=3, scale=2, layers=14, conv_width=48,
                                  height=64, width=64, degradation="stand-in", plugin="benchmark")
    return path


def _torch_rows(run: Path, m, photo: np.ndarray, tile: int, pad: int, threads: int, repeats: int,
                out_px: int) -> dict:
    """The run's generator in PyTorch: whole photo, and the same tiles (gankit's tiling code)."""
    import torch

    from gankit.runtime.tiles import restore_any_size
    from gankit.train.run import load_run_generator

    torch.set_num_threads(threads)
    _, _, G, _ = load_run_generator(run)
    G = G.eval()

    def run_batch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return G(image=torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    hwc = photo.astype(np.float32) / 127.5 - 1  # the runtime's encoding: [-1, 1]
    hwc = hwc[:, :, None] if hwc.ndim == 2 else hwc
    whole = _median_seconds(lambda: run_batch(hwc.transpose(2, 0, 1)[None]), repeats)
    tiled = _median_seconds(lambda: restore_any_size(run_batch, hwc, channels=m.channels, scale=m.scale, tile=tile,
                                                     pad=pad, multiple=m.size_multiple), repeats)
    return {"torch_untiled_s": round(whole, 3), "torch_untiled_mp_per_s": round(out_px / whole / 1e6, 2),
            "torch_tiled_s": round(tiled, 3), "torch_tiled_mp_per_s": round(out_px / tiled / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--tile-pad", type=int, default=None)
    ap.add_argument("--run", type=Path, help="the run MODEL came from: time its generator in PyTorch too")
    args = ap.parse_args()

    import cv2
    from skimage import data

    import gankit.runtime as gr

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else _stand_in(Path(tmp))
        m = gr.load(path, threads=args.threads)
        photo = data.astronaut()  # 512x512 RGB uint8
        if m.channels == 1:
            photo = np.asarray(photo.mean(axis=2).round(), np.uint8)
        tile = gr.model.RESTORE_TILE if args.tile is None else args.tile
        pad = gr.model.RESTORE_TILE_PAD if args.tile_pad is None else args.tile_pad
        out_px = photo.shape[0] * photo.shape[1] * m.scale ** 2
        tiled_s = _median_seconds(lambda: m.restore(photo, tile=tile, tile_pad=pad), args.repeats)
        whole_s = _median_seconds(lambda: m.restore(photo, tile=0, tile_pad=pad), args.repeats)
        cv2.setNumThreads(args.threads)
        size = (photo.shape[1] * m.scale, photo.shape[0] * m.scale)
        bicubic_s = _median_seconds(lambda: cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC), max(args.repeats, 20))

        torch_rows = _torch_rows(args.run, m, photo, tile, pad, args.threads, args.repeats, out_px) if args.run else {}

        tiled = m.restore(photo, tile=tile, tile_pad=pad).astype(np.int16)
        whole = m.restore(photo, tile=0, tile_pad=pad).astype(np.int16)
        diff = np.abs(tiled - whole).max(axis=-1) if tiled.ndim == 3 else np.abs(tiled - whole)
        border = np.zeros(diff.shape, bool)
        s = m.scale
        for k in range(tile, photo.shape[0], tile):
            border[s * k - 1 : s * k + 1] = True
        for k in range(tile, photo.shape[1], tile):
            border[:, s * k - 1 : s * k + 1] = True
        print(json.dumps({
            "model": str(path.name) if args.model else "stand-in: 14 conv3x3 x 48 ch + nearest x2 + residual",
            "scale": m.scale, "input": list(photo.shape), "threads": args.threads, "tile": tile, "tile_pad": pad,
            "providers": m.providers, "load_avg": os.getloadavg()[0],
            "tiled_s": round(tiled_s, 3), "tiled_mp_per_s": round(out_px / tiled_s / 1e6, 2),
            "untiled_s": round(whole_s, 3), "untiled_mp_per_s": round(out_px / whole_s / 1e6, 2),
            "opencv_bicubic_s": round(bicubic_s, 5), "opencv_bicubic_mp_per_s": round(out_px / bicubic_s / 1e6, 1),
            "tiled_over_untiled": round(tiled_s / whole_s, 2),
            **torch_rows,
            **({"gankit_tiled_vs_torch_best": round(min(torch_rows["torch_untiled_s"], torch_rows["torch_tiled_s"]) / tiled_s, 2)}
               if torch_rows else {}),
            "seam_max_diff_at_borders": int(diff[border].max()) if border.any() else None,
            "seam_max_diff_inside": int(diff[~border].max()),
        }, indent=2))


if __name__ == "__main__":
    main()
