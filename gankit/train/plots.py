"""Loss and quality curves as PNG (matplotlib, headless)."""

from __future__ import annotations

from gankit.fileio import atomic_path
from gankit.train.run import RunDir


def save_figure(fig, path) -> str:
    """Write atomically (temporary name, then rename), like every other file of a run."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    return str(path)


def new_figure(**kwargs):
    """A matplotlib Figure drawn by the Agg canvas. Not pyplot: pyplot keeps global state (every
    figure stays alive until closed, a GUI backend may be picked), which a server or a
    long-running bench process does not want. (Not faster to import: ~0.9 s in a fresh process
    either way, benchmarks/overheads.py.)"""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def plot_losses(run: RunDir) -> str | None:
    recs = [r for r in run.read_metrics() if "g_loss" in r]  # supervised runs (adversarial weight 0) log no d_loss
    if not recs:
        return None
    fig = new_figure(figsize=(7, 3.5), dpi=100)
    ax = fig.subplots()
    steps = [r["step"] for r in recs]
    for key, label in (("d_loss", "discriminator"), ("g_adv", "generator (adversarial)"), ("l1", "generator L1")):
        if key in recs[0]:
            ax.plot(steps, [r[key] for r in recs], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"losses: {run.path.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, run.path / "losses.png")


def plot_quality(run: RunDir) -> str | None:
    recs = [r for r in run.read_metrics() if isinstance(r.get("eval"), dict)]
    if not recs:
        return None
    # runs recorded before the renames used "coverage" and "hole_psnr_db": still plotted
    for r in recs:
        ev = r["eval"]
        for old, new in (("coverage", "class_entropy"), ("hole_psnr_db", "hole_psnr_rect_db")):
            if old in ev and new not in ev:
                ev[new] = ev[old]
    # a null value (FD/floor on a folder whose splits are copies) is a gap in the curve; a metric
    # with no value at all gets no panel
    keys = [k for k in ("conditional_accuracy", "class_entropy", "fd_ratio", "hole_psnr_rect_db", "psnr_db")
            if k in recs[-1]["eval"] and any(r["eval"].get(k) is not None for r in recs)]
    if not keys:
        return None
    fig = new_figure(figsize=(3.6 * len(keys), 3.2), dpi=100)
    axes = fig.subplots(1, len(keys), squeeze=False)
    steps = [r["step"] for r in recs]
    for ax, key in zip(axes[0], keys):
        ax.plot(steps, [float("nan") if r["eval"].get(key) is None else r["eval"][key] for r in recs], marker="o")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ref = {"conditional_accuracy": recs[-1]["eval"].get("judge_test_accuracy"), "fd_ratio": 1.0}.get(key)
        if ref is not None:
            ax.axhline(ref, color="gray", ls="--", lw=1, label="real data")
            ax.legend()
    fig.suptitle(f"quality over training: {run.path.name}")
    fig.tight_layout()
    return save_figure(fig, run.path / "quality.png")
