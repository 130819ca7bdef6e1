"""Training-step time of one family under several config variants, measured in one process.

    python benchmarks/train_step_time.py restore --variant "" --variant "channels_last=true" \\
        --variant "channels_last=true precision=bf16" [--data photos] [--steps 20] [--warmup 5]

Each variant is a space-separated list of ``--set`` values on top of the family's defaults
for the data (``""`` = the defaults). One trainer per variant is built, warmed up, then the
variants take turns step by step, so a drift in the machine's speed touches all of them alike.
Prints the median and mean step time of each and its speed against the first variant. Only the
step is timed: no evaluation, sampling or checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plugin")
    ap.add_argument("--variant", action="append", default=None, help="space-separated KEY=VALUE (repeatable)")
    ap.add_argument("--data", default=None, help="dataset (default: the family's)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    from gankit.bench.training import _gankit_stepper
    from gankit.devices import resolve_precision
    from gankit.plugins import get_family, load_dataset
    from gankit.sysinfo import cpu_model
    from gankit.train.config import build_config, parse_sets

    variants = args.variant or [""]
    family = get_family(args.plugin)
    data = args.data or family.defaults.get("data", "mnist5k")
    dataset = load_dataset(data)
    steppers, times = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            config = build_config(family, dataset, data=data, seed=0, device="cpu", overrides=parse_sets(v.split()))
            steppers[v] = _gankit_stepper(family, dataset, config, Path(tmp) / str(i))
            times[v] = []
            print(f"variant {v or '(defaults)'!r}: precision {config['precision']} -> "
                  f"{resolve_precision(config['precision'], 'cpu')}, channels_last {config['channels_last']}")
        for _ in range(args.warmup):
            for step in steppers.values():
                step()
        for _ in range(args.steps):
            for v, step in steppers.items():
                t = time.perf_counter()
                step()
                times[v].append(time.perf_counter() - t)
    print(f"{args.plugin} on {data}, {cpu_model()}, {args.steps} timed steps per variant after {args.warmup}")
    first = statistics.median(times[variants[0]])
    for v in variants:
        med = statistics.median(times[v])
        print(f"  {v or '(defaults)':<40} median {1000 * med:7.1f} ms  mean {1000 * statistics.mean(times[v]):7.1f} ms"
              f"  {first / med:5.2f}x")


if __name__ == "__main__":
    main()
