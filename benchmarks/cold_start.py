"""Cold start of the torch-free runtime: interpreter + ``import gankit.runtime`` + load + first batch.

Usage: python benchmarks/cold_start.py MODEL.onnx [--repeats 5] [--batch 16]

Each repeat is a fresh Python process (that is what a user or a server start pays). Prints
the median of the in-process phases and of the whole process wall time, in milliseconds.
(``gankit bench`` runs the same measurement: :func:`gankit.bench.cold.cold_start`.)
"""

from __future__ import annotations

import argparse
import json

from gankit.bench.cold import cold_start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    summary = cold_start(args.model, repeats=args.repeats, batch=args.batch)
    summary["model"] = args.model
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
