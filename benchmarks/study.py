"""Losses and stabilisers, measured: train cgan and gan with each loss and each stabiliser on
the same step budget and seed, and record the judge metrics over steps.

Usage: python benchmarks/study.py [--families cgan,gan] [--steps 400] [--seed 0]
                                  [--out benchmarks/study] [--only 'VARIANT;...'] [--skip 'VARIANT;...']

Writes OUT/results.json (every evaluation of every run, wall time, warnings), OUT/table.md
(final metrics, best FD ratio first) and OUT/study.png (FD ratio and accuracy/class entropy over
steps). Finished variants are skipped on a rerun, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from gankit.fileio import atomic_write_text

# Every variant starts from BASE on top of the family's defaults: the plain DCGAN recipe
# (BCE, EMA, no augmentation, no mode seeking), so a change of the shipped defaults does not
# silently change what "baseline" means.
BASE: dict = {"diffaug": "none", "mode_seeking": 0.0, "ac_weight": 0.0, "d_extra_convs": 0, "d_hidden": 0,
              "lr_decay": None, "clusters": 0}

# name -> overrides on top of BASE
VARIANTS: dict[str, dict] = {
    "baseline (bce, ema)": {},
    "loss minimax": {"loss": "minimax"},
    "loss hinge": {"loss": "hinge"},
    "loss lsgan": {"loss": "lsgan"},
    "loss wgan-gp": {"loss": "wgan-gp"},
    "+spectral-norm": {"spectral_norm": True},
    "no ema": {"ema": 0.0},
    "+diffaug translation,cutout": {"diffaug": "translation,cutout"},
    "+r1 1": {"r1": 1.0},
    "+mode-seeking 0.01": {"mode_seeking": 0.01},
    "+mode-seeking 0.1": {"mode_seeking": 0.1},
    # combinations of the single changes that helped
    "+diffaug +spectral-norm": {"diffaug": "translation,cutout", "spectral_norm": True},
    "+diffaug +r1 1": {"diffaug": "translation,cutout", "r1": 1.0},
    "+diffaug +mode-seeking 0.01": {"diffaug": "translation,cutout", "mode_seeking": 0.01},
}


def run_variant(family: str, name: str, overrides: dict, steps: int, seed: int, workdir: Path) -> dict:
    from gankit import plugins
    from gankit.pipeline import train

    plugins.reset()
    out = workdir / f"{family}-{_slug(name)}"
    if out.exists():
        shutil.rmtree(out)
    over = {**BASE, **overrides}
    loss = over.pop("loss", None)
    t0 = time.perf_counter()
    summary = train(plugin=family, steps=steps, seed=seed, out=out, loss=loss, export=False, evaluate=True, quiet=True,
                    sample_every=max(1, steps // 5), overrides=over)
    seconds = time.perf_counter() - t0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [{"step": m["step"], **{k: m["eval"].get(k) for k in ("fd_ratio", "class_entropy", "conditional_accuracy",
                                                                   "diversity")}}
             for m in metrics if "eval" in m]
    warnings = [m["kind"] for m in metrics if m.get("event") == "warning"]
    diverged = any(m.get("event") == "non-finite loss" for m in metrics)
    return {"family": family, "variant": name, "overrides": overrides, "steps": steps, "seed": seed,
            "seconds": round(seconds, 1), "train_seconds": summary["seconds"], "evals": evals,
            "final": evals[-1] if evals else {}, "warnings": warnings, "rolled_back": diverged}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def write_table(results: list[dict], path: Path) -> None:
    lines = ["| family | variant | FD / floor | cond. accuracy | class entropy | diversity | train s | warnings |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in sorted(results, key=lambda r: (r["family"], r["final"].get("fd_ratio") or 1e9)):
        f = r["final"]
        acc = f"{f['conditional_accuracy']:.3f}" if f.get("conditional_accuracy") is not None else "-"
        lines.append(f"| {r['family']} | {r['variant']} | {f['fd_ratio'] if f.get('fd_ratio') is not None else float('nan'):.1f}x | {acc} | "
                     f"{f.get('class_entropy', f.get('coverage', float('nan'))):.3f} | {f.get('diversity', float('nan')):.2f} | "
                     f"{r['train_seconds']:.0f} | {', '.join(sorted(set(r['warnings']))) or '-'} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted({r["family"] for r in results})
    fig, axes = plt.subplots(2, len(fams), figsize=(6.5 * len(fams), 7), dpi=100, squeeze=False)
    for j, fam in enumerate(fams):
        for r in (r for r in results if r["family"] == fam):
            steps = [e["step"] for e in r["evals"]]
            axes[0][j].plot(steps, [e["fd_ratio"] for e in r["evals"]], marker="o", ms=3, label=r["variant"])
            key = "conditional_accuracy" if fam == "cgan" else "class_entropy"
            axes[1][j].plot(steps, [e.get(key, e.get("coverage")) for e in r["evals"]], marker="o", ms=3, label=r["variant"])
        axes[0][j].set_yscale("log")
        axes[0][j].set_title(f"{fam}: FD / real-vs-real floor (lower is better)")
        axes[1][j].set_title(f"{fam}: {'conditional accuracy' if fam == 'cgan' else 'class entropy'}")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
            ax.set_xlabel("step")
        axes[0][j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="cgan,gan")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/study"))
    p.add_argument("--only", default="", help="variant names separated by ';' (default: all)")
    p.add_argument("--skip", default="", help="variant names separated by ';' to leave out")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["family"], r["variant"], r["steps"], r["seed"]) for r in results}
    only = [v.strip() for v in a.only.split(";") if v.strip()]
    skip = {v.strip() for v in a.skip.split(";") if v.strip()}
    workdir = a.out / "runs"
    for fam in a.families.split(","):
        for name, over in VARIANTS.items():
            if (only and name not in only) or name in skip or (fam, name, a.steps, a.seed) in done:
                continue
            print(f"[study] {fam} / {name} ...", file=sys.stderr, flush=True)
            rec = run_variant(fam, name, over, a.steps, a.seed, workdir)
            results.append(rec)
            atomic_write_text(results_path, json.dumps(results, indent=1))
            f = rec["final"]
            print(f"[study]   FD {f.get('fd_ratio')}x acc {f.get('conditional_accuracy')} entropy {f.get('class_entropy')} "
                  f"div {f.get('diversity')} in {rec['train_seconds']}s warnings {rec['warnings']}", file=sys.stderr, flush=True)
    write_table(results, a.out / "table.md")
    write_chart(results, a.out / "study.png")
    print((a.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
