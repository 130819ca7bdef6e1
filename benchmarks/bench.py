"""The full benchmark as plain Python (no CLI needed): same engine as ``gankit bench``.

Usage: python benchmarks/bench.py [--models cgan,gan,inpaint] [--batch 1,16,64] [--out benchmarks/latest]

Writes OUT.json (records), OUT.md (tables) and OUT.png (chart) and prints the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gankit.bench.core import chart, markdown, run_bench, write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cgan,gan,inpaint")
    ap.add_argument("--batch", default="1,16,64")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/latest"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args(argv)
    records = run_bench(a.models.split(","), [int(b) for b in a.batch.split(",")], compile=not a.no_compile,
                        device=a.device, fresh=a.fresh)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(records, a.out.with_suffix(".json"))
    a.out.with_suffix(".md").write_text(markdown(records))
    chart(records, a.out.with_suffix(".png"))
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
