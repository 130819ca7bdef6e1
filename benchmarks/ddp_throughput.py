"""Training images/s of cgan on 1 process vs N data-parallel ranks (gloo on CPU), one run each, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/ddp_throughput.py --steps 40 --batch-size 64 --ranks 1,2 --repeat 2

Each measurement is a fresh ``gankit train --plugin cgan --no-evaluate --no-export`` (``--nproc N`` for
N > 1) with one thread per rank; images/s is what the command reports (rank 0's training loop,
global batch x steps / seconds, start-up excluded). Prints a markdown table for
benchmarks/RESULTS.md with the machine's CPU model.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile


def one(ranks: int, steps: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, "-m", "gankit", "train", "--plugin", "cgan", "--steps", str(steps), "--batch-size",
                str(batch), "--no-evaluate", "--no-export", "--set", "sample_every=0", "--out", f"{d}/run"]
        if ranks > 1:
            args += ["--nproc", str(ranks)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=d, timeout=1800)
        if r.returncode:
            raise SystemExit(r.stderr[-2000:])
        m = re.search(r"\(([\d.]+) images/s\)", r.stdout.replace("\n", " "))
        return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    ranks = [int(x) for x in a.ranks.split(",")]
    got: dict[int, list[float]] = {n: [] for n in ranks}
    for _ in range(a.repeat):
        for n in ranks:  # interleaved: a shared machine's load drifts over minutes
            got[n].append(one(n, a.steps, a.batch_size))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {len(os.sched_getaffinity(0))} cores; cgan, global batch {a.batch_size}, {a.steps} steps, "
          "OMP_NUM_THREADS=1 per rank\n")
    print("| ranks | images/s (each run) | median | vs 1 rank |")
    print("|---|---|---|---|")
    base = statistics.median(got[ranks[0]])
    for n in ranks:
        med = statistics.median(got[n])
        print(f"| {n} | {', '.join(f'{v:.0f}' for v in got[n])} | {med:.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
