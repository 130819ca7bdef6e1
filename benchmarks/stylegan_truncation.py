"""Truncation trade-off of an exported stylegan file: FD / floor and class entropy at several psi.

    python benchmarks/stylegan_truncation.py exported/stylegan-001.onnx [--psi 0.5,0.7,0.85,1.0]
        [--samples 1000] [--png benchmarks/figures/stylegan-truncation.png]

Uses the same judge and samples (seed 0) as `gankit evaluate`, through the file's `truncation`
input (the runtime only: no torch), so psi = 1 reproduces `gankit evaluate` exactly.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--psi", default="0.5,0.7,0.85,1.0")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--png", help="write the trade-off plot here")
    args = p.parse_args()

    from gankit import runtime
    from gankit.plugins import load_dataset
    from gankit.evaluate import evaluate_generator
    from gankit.runtime.latent import run_latent

    model = runtime.load(args.model, providers=["CPUExecutionProvider"])
    dataset = load_dataset(model.metadata["gankit.data"])
    rows = []
    for psi in (float(x) for x in args.psi.split(",")):
        rec = evaluate_generator(lambda z, labels: run_latent(model, z, labels, truncation=psi), dataset,
                                 latent_dim=model.latent_dim, conditional=model.num_classes > 0, samples=args.samples)
        rows.append({"psi": psi, "fd_ratio": rec["fd_ratio"], "fd": rec["fd"], "class_entropy": rec["class_entropy"],
                     "diversity": rec.get("diversity"),
                     **({"conditional_accuracy": rec["conditional_accuracy"]} if "conditional_accuracy" in rec else {})})
        print(json.dumps(rows[-1]), flush=True)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
        ax.plot([r["class_entropy"] for r in rows], [r["fd_ratio"] for r in rows], "o-")
        for r in rows:
            ax.annotate(f"psi {r['psi']:g}", (r["class_entropy"], r["fd_ratio"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.set_xlabel("class entropy (1 = all ten digits equally often)")
        ax.set_ylabel("FD / floor (lower is better)")
        ax.set_title("truncation toward w_avg: fidelity vs variety", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
