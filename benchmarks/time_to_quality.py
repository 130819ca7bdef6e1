"""Time to quality: minutes of training until generated digits are classified as the
requested class as often as real test digits are (the cgan issue's accuracy target),
gankit's trainer (default recipe) against a plain PyTorch loop of the same architecture.

Usage: python benchmarks/time_to_quality.py [--max-steps N] [--eval-every N] [--json OUT.json]
(also part of ``gankit bench --time-to-quality``). Training time only; evaluations excluded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gankit.bench.training import time_to_quality
from gankit.fileio import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    recs = time_to_quality(max_steps=a.max_steps, eval_every=a.eval_every)
    text = json.dumps(recs, indent=1)
    if a.json:
        atomic_write_text(a.json, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
