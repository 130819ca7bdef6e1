"""What the load-time contract check costs: ``gankit.runtime.load`` (session + metadata/graph
checks + one batch-1 probe run) and the probe run alone, medians over repeated loads.

    python benchmarks/probe_cost.py exported/cgan.onnx exported/gan.onnx exported/inpaint.onnx

The probe's cost depends on the architecture, not the training, so files from a few-step run
(the test suite's ``tiny_runs``) measure the same as fully trained ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gankit.runtime as gr
from gankit.runtime.contract import probe_feed


def measure(path: str, repeats: int) -> dict:
    loads, probes, runs = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = gr.load(path, providers=["CPUExecutionProvider"])
        loads.append((time.perf_counter() - t0) * 1e3)
        probes.append(m.probe_ms)
        feed = probe_feed(m.info)
        t0 = time.perf_counter()
        m.engine.run(feed)  # the same batch-1 run on a warm session, for comparison
        runs.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median
    return {"model": path, "load_ms": round(med(loads), 2), "probe_ms": round(med(probes), 2), "probe_max_ms": round(max(probes), 2),
            "warm_batch1_ms": round(med(runs), 2), "probe_share_of_load": round(med(probes) / med(loads), 3),
            "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    for path in args.models:
        print(json.dumps(measure(path, args.repeats)))


if __name__ == "__main__":
    main()
