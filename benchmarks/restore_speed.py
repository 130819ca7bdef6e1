"""Speed and seams of a restore model through gankit.runtime on a 512x512 photo, tiled vs untiled,
with `gankit restore`'s default backend (auto: OpenVINO on a CPU where installed) and with
`--backend onnxruntime`, and OpenCV bicubic resizing as the floor.

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
PyTorch (fp32 eager and channels-last, bf16 channels-last where the CPU has bf16, inference
mode, the same threads): the whole photo in one call, and the same tiles through the same
tiling code, so "gankit restore vs PyTorch" compares like with like. The measurement itself is gankit.bench.restore_speed, which `gankit bench` also
runs for every restore model it times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def _stand_in(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.restore_models import make_torch_restorer

    path, _ = make_torch_restorer(folder / "restore-standin.onnx", "conv", c=3, scale=2, layers=14, conv_width=48,
                                  height=64, width=64, degradation="stand-in", plugin="benchmark")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--tile-pad", type=int, default=None)
    ap.add_argument("--run", type=Path, help="the run MODEL came from: time its generator in PyTorch too")
    args = ap.parse_args()
    if args.run and not args.model:  # the stand-in and the run's generator are different networks
        ap.error("--run needs MODEL, the file exported from that run")

    from gankit.bench.restore_speed import restore_throughput

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else _stand_in(Path(tmp))
        module = None
        if args.run:
            import torch

            from gankit.export import prepare_for_export
            from gankit.train.run import load_run_generator

            torch.set_num_threads(args.threads)
            family, config, G, _ = load_run_generator(args.run)
            module = prepare_for_export(family.export_module(G, config)).eval().requires_grad_(False)
        rec = restore_throughput(path, threads=args.threads, repeats=args.repeats, module=module, tile=args.tile,
                                 tile_pad=args.tile_pad)
        rec = {"model": str(path.name) if args.model else "stand-in: 14 conv3x3 x 48 ch + nearest x2 + residual",
               "load_avg": os.getloadavg()[0], **rec}
        print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
