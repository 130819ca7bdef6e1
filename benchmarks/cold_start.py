"""Cold start of the torch-free runtime: interpreter + ``import gankit.runtime`` + load + first batch.

Usage: python benchmarks/cold_start.py MODEL.onnx [--repeats 5] [--batch 16]

Each repeat is a fresh Python process (that is what a user or a server start pays). Prints
the median of the in-process phases and of the whole process wall time, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import time, json, sys
t0 = time.perf_counter()
import gankit.runtime as gr
t1 = time.perf_counter()
m = gr.load(sys.argv[1])
t2 = time.perf_counter()
if m.task == "generate":
    m.generate(int(sys.argv[2]), seed=0)
else:
    import numpy as np
    img = np.zeros((m.height, m.width, m.channels), np.uint8); mask = np.zeros((m.height, m.width), bool); mask[:4, :4] = True
    for _ in range(int(sys.argv[2])): m.inpaint(img, mask)
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1-t0)*1e3, "load_ms": (t2-t1)*1e3, "first_batch_ms": (t3-t2)*1e3,
                  "in_process_ms": (t3-t0)*1e3, "torch_imported": "torch" in sys.modules}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.batch)], capture_output=True, text=True, check=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec["process_ms"] = (time.perf_counter() - t0) * 1e3
        rows.append(rec)
    summary = {k: round(statistics.median(r[k] for r in rows), 1) for k in ("import_ms", "load_ms", "first_batch_ms", "in_process_ms", "process_ms")}
    summary["torch_imported"] = any(r["torch_imported"] for r in rows)
    summary.update(model=args.model, batch=args.batch, repeats=args.repeats)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
