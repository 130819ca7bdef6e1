"""Truncation trade-off of an exported stylegan file: FD / floor and coverage at several psi.

    python benchmarks/stylegan_truncation.py exported/stylegan-001.onnx [--psi 0.5,0.7,0.85,1.0] [--samples 1000]

Uses the same judge and samples (seed 0) as `gankit evaluate`, with the file's truncation input.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--psi", default="0.5,0.7,0.85,1.0")
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args()

    from gankit import runtime
    from gankit.data import load_dataset
    from gankit.evaluate import evaluate_generator
    from gankit.runtime.latent import run_latent

    model = runtime.load(args.model, providers=["CPUExecutionProvider"])
    dataset = load_dataset(model.metadata["gankit.data"])
    rows = []
    for psi in (float(x) for x in args.psi.split(",")):
        rec = evaluate_generator(lambda z, labels: run_latent(model, z, labels, truncation=psi), dataset,
                                 latent_dim=model.latent_dim, conditional=model.num_classes > 0, samples=args.samples)
        rows.append({"psi": psi, "fd_ratio": rec["fd_ratio"], "fd": rec["fd"], "coverage": rec["coverage"],
                     "diversity": rec.get("diversity")})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
