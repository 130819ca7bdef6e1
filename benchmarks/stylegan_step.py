"""Seconds per training step of stylegan at its defaults, next to cgan's in the same process.

    OMP_NUM_THREADS=1 python benchmarks/stylegan_step.py [--steps 20] [--families stylegan,cgan]

Builds the real trainer on mnist5k (nothing is written but a temporary run directory), runs
3 warm-up steps, then times ``--steps`` steps per family. On a shared machine read the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--families", default="stylegan,cgan")
    args = p.parse_args()

    import torch

    from gankit.data import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir, config_hash
    from gankit.train.trainer import Trainer

    dataset = load_dataset("mnist5k")
    times = {}
    for name in args.families.split(","):
        family = get_family(name)
        cfg = build_config(family, dataset, data="mnist5k", seed=0, device="cpu", overrides={})
        with tempfile.TemporaryDirectory() as d:
            run = RunDir(f"{d}/run")
            run.create({**cfg, "config_hash": config_hash(cfg)})
            trainer = Trainer(family, dataset, cfg, run)
            for _ in range(3):
                trainer.train_step()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            times[name] = (time.perf_counter() - t0) / args.steps
        print(f"{name}: {times[name]:.3f} s/step (batch {cfg['batch_size']}, {torch.get_num_threads()} thread(s))",
              flush=True)
    if len(times) > 1:
        first, *rest = times
        for other in rest:
            print(f"{first} / {other}: {times[first] / times[other]:.2f}x per step")


if __name__ == "__main__":
    main()
