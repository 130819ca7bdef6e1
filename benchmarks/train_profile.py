"""Where a training step's milliseconds go: gankit's trainer and the plain PyTorch loop of
``gankit bench --train`` on the same recipe, profiled with torch.profiler.

    python benchmarks/train_profile.py [--plugin cgan] [--steps 10] [--threads 2]

Prints, per loop, the wall time of a step, the self CPU time of its operators grouped by kind
(convolution forward/backward, matrix products, BatchNorm, optimiser, element-wise, ...) and
what is left for Python and the dispatcher (wall minus the operators' self time). Both loops
are profiled after the same warm-up, one after the other, in one process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

KINDS = [  # (kind, substrings of aten op names), first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "_convolution", "conv_transpose", "conv2d", "convolution")),
    ("matrix products", ("addmm", "mm", "bmm", "linear", "matmul")),
    ("BatchNorm", ("batch_norm",)),
    ("optimiser (Adam, foreach)", ("_foreach", "_fused_adam", "adam")),
    ("losses", ("binary_cross_entropy", "cross_entropy", "nll_loss", "log_softmax", "softplus")),
    ("copies and layout", ("copy_", "contiguous", "clone", "to_", "_to_copy", "cat", "stack", "empty", "zeros", "ones", "fill_")),
    ("random numbers", ("normal_", "randn", "randint", "random_", "randperm", "uniform_")),
]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "element-wise and other"


def profile_loop(name: str, step, steps: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - t0) / steps * 1e3
    by_kind: dict[str, float] = {}
    by_op: dict[str, float] = {}
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        ms = ev.self_cpu_time_total / 1e3 / steps
        by_kind[kind_of(ev.key)] = by_kind.get(kind_of(ev.key), 0.0) + ms
        by_op[ev.key] = ms
    del torch
    return {"name": name, "wall_ms": wall, "ops_ms": sum(by_kind.values()), "by_kind": by_kind, "by_op": by_op}


def unprofiled(loops: dict, steps: int) -> dict[str, float]:
    """Median ms per step of each loop without the profiler, the loops interleaved step by step
    (the profiler's bookkeeping inflates wall time; interleaving spreads the VM's drift)."""
    import statistics

    times: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(steps):
        for name, fn in loops.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin", default="cgan")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=15, help="operators listed per loop")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for gankit's loop only")
    args = ap.parse_args()

    import torch

    from gankit.bench.training import SAME_RECIPE, _gankit_stepper, plain_stepper
    from gankit.plugins import get_family, load_dataset
    from gankit.train.config import build_config, parse_sets

    if args.threads:
        torch.set_num_threads(args.threads)
    family = get_family(args.plugin)
    data = family.defaults.get("data", "mnist5k")
    dataset = load_dataset(data)
    base = build_config(family, dataset, data=data, seed=0, device="cpu", overrides=SAME_RECIPE)
    mine = build_config(family, dataset, data=data, seed=0, device="cpu", overrides={**SAME_RECIPE, **parse_sets(args.set)})
    with tempfile.TemporaryDirectory() as tmp:
        loops = {"gankit": _gankit_stepper(family, dataset, mine, Path(tmp) / "g"), "plain": plain_stepper(family, dataset, base)}
        for fn in loops.values():
            for _ in range(args.warmup):
                fn()
        rows = [profile_loop(name, fn, args.steps) for name, fn in loops.items()]
        walls = unprofiled(loops, 2 * args.steps)
    kinds = sorted({k for r in rows for k in r["by_kind"]}, key=lambda k: -rows[0]["by_kind"].get(k, 0))
    print(f"{args.plugin}, batch {base['batch_size']}, {torch.get_num_threads()} threads, {args.steps} steps each "
          f"(ms per step; operators' self time on the calling thread)")
    print(f"| | {' | '.join(r['name'] for r in rows)} |")
    print("|---|" + "---:|" * len(rows))
    for k in kinds:
        print(f"| {k} | " + " | ".join(f"{r['by_kind'].get(k, 0.0):.1f}" for r in rows) + " |")
    print("| all operators | " + " | ".join(f"{r['ops_ms']:.1f}" for r in rows) + " |")
    print("| wall, profiled | " + " | ".join(f"{r['wall_ms']:.1f}" for r in rows) + " |")
    print("| wall, unprofiled (median, interleaved) | " + " | ".join(f"{walls[r['name']]:.1f}" for r in rows) + " |")
    for r in rows:
        top = sorted(r["by_op"].items(), key=lambda kv: -kv[1])[:args.top]
        print(f"\n{r['name']}: the {args.top} costliest operators (ms per step)")
        for op, ms in top:
            print(f"  {ms:6.2f}  {op}  [{kind_of(op)}]")


if __name__ == "__main__":
    main()
