"""The ``gankit`` command line (typer + rich).

Every command imports torch (or onnxruntime) inside its body, so ``gankit --help`` and
``gankit plugins`` start instantly. Errors the user can fix print one line on stderr and
exit with code 2; internal failures we can describe exit with 1; tracebacks only with
``GANKIT_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from gankit import __version__
from gankit.errors import GankitError, UsageError

app = typer.Typer(
    name="gankit",
    help="Train GANs in PyTorch, export them to ONNX, run them anywhere.\n\n"
    "Start with: gankit train --plugin cgan",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gankit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Train GANs in PyTorch, export them to ONNX, run them anywhere."""


# --------------------------------------------------------------------------- plugins
@app.command("plugins")
def plugins_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed plugins: name, version, families, losses, datasets, regularisers, status and load error."""
    from gankit.plugins import get_manager

    mgr = get_manager()
    mgr.collect_all()  # every register_* hook, so the records are complete
    records = [r.as_dict() for r in mgr.records.values()]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    from rich.table import Table

    table = Table(title="gankit plugins")
    for col in ("name", "version", "families", "losses", "datasets", "regularizers", "status"):
        table.add_column(col, overflow="fold")
    for r in records:
        style = {"loaded": "green", "error": "red", "disabled": "yellow"}.get(r["status"], "")
        table.add_row(r["name"], r["version"], ", ".join(r["families"]), ", ".join(r["losses"]),
                      ", ".join(r["datasets"]), ", ".join(r["regularizers"]), f"[{style}]{r['status']}[/{style}]")
    con = _console()
    if not con.is_terminal:
        con.width = 160  # piped or logged: do not squeeze the table into 80 columns
    con.print(table)
    # errors in full below the table, one line each: a folded table cell cuts them mid-word
    for r in records:
        if r["error"]:
            con.print(f"{r['name']}: {r['status']}: {r['error']}", soft_wrap=True, markup=False)


# --------------------------------------------------------------------------- plugin new
plugin_app = typer.Typer(help="Write your own plugin: `gankit plugin new NAME`.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")


@plugin_app.command("new")
def plugin_new_cmd(
    name: str = typer.Argument(..., help="Family name (lowercase, e.g. mygan); the package is gankit-NAME."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create gankit-NAME/."),
) -> None:
    """Create an installable plugin package: pyproject with the entry point, a family, a conformance test."""
    from gankit.scaffold import new_plugin

    path = new_plugin(name, directory)
    con = _console()
    con.print(f"created [bold]{path}[/bold]")
    con.print("next:")
    con.print(f"  pip install -e {path}")
    con.print(f"  pytest -q {path}")
    con.print(f"  gankit train --plugin {name}")


# --------------------------------------------------------------------------- train
def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")


@app.command("train")
def train_cmd(
    plugin: str = typer.Option(..., "--plugin", "-p", help="Model family to train (see `gankit plugins`)."),
    data: Optional[str] = typer.Option(None, "--data", help="mnist5k, photos or folder:PATH (default: the family's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the family's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same weights (on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<plugin>-NNN)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Checkpoint every N steps (default: at sample intervals)."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Sample grid (+ evaluation) every N steps."),
    keep: int = typer.Option(3, "--keep", help="Checkpoints to keep."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image side for folder:/photos data."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Adversarial loss: bce, minimax, hinge, lsgan, wgan-gp (or a plugin's)."),
    spectral_norm: Optional[bool] = typer.Option(None, "--spectral-norm/--no-spectral-norm", help="Spectral normalisation on every D layer."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay of the generator weights (0 = off); the EMA generator is sampled and exported."),
    diffaug: Optional[str] = typer.Option(None, "--diffaug", help="Differentiable augmentation for D: color,translation,cutout (comma-separated), all, or none."),
    r1: Optional[float] = typer.Option(None, "--r1", help="R1 penalty weight gamma on real images (0 = off)."),
    mode_seeking: Optional[float] = typer.Option(None, "--mode-seeking", help="Mode-seeking (MSGAN) weight against intra-class collapse (0 = off; generators with z)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of both G and D."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a changed config."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Judge metrics at sample intervals and at the end."),
    export: bool = typer.Option(True, "--export/--no-export", help="Export the generator to exported/<run>.onnx at the end."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key of the family or trainer: --set ngf=64 (repeatable; keys in docs/plugins.md)."),
) -> None:
    """Train a model family; writes a run directory, then exports it to ONNX."""
    from gankit.train.api import train

    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--save-every", save_every),
                        ("--sample-every", sample_every), ("--keep", keep), ("--image-size", image_size)):
        _positive(name, value)
    if ema is not None and not 0.0 <= ema < 1.0:
        raise UsageError(f"--ema must be in [0, 1), got {ema}")
    if r1 is not None and r1 < 0:
        raise UsageError(f"--r1 must be >= 0, got {r1}")
    if mode_seeking is not None and mode_seeking < 0:
        raise UsageError(f"--mode-seeking must be >= 0, got {mode_seeking}")
    if diffaug is not None:
        from gankit.train.augment import parse_policy

        parse_policy(diffaug)
    overrides = {}
    for item in set_:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    for key, value in (("spectral_norm", spectral_norm), ("ema", ema), ("diffaug", diffaug), ("r1", r1),
                       ("mode_seeking", mode_seeking)):
        if value is not None:
            overrides[key] = value
    train(
        plugin=plugin, data=data, steps=steps, batch_size=batch_size, seed=seed, device=device, out=out,
        save_every=save_every, sample_every=sample_every, keep=keep, image_size=image_size, loss=loss, lr=lr,
        resume=resume, force=force, evaluate=evaluate, export=export, overrides=overrides,
    )


# --------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `gankit train`."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .onnx (default: exported/<run>.onnx)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Export a run's generator to a self-describing ONNX file, checked for parity."""
    from gankit.export import export_run

    path = export_run(run_dir, out, overwrite=overwrite)
    _console().print(f"exported [bold]{path}[/bold]")


# --------------------------------------------------------------------------- generate
@app.command("generate")
def generate_cmd(
    model: Path = typer.Argument(..., help="An exported gankit .onnx file."),
    n: int = typer.Option(64, "--n", help="How many images."),
    label: Optional[int] = typer.Option(None, "--label", help="Class to generate (conditional models)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the noise (default: random)."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="Output PNG grid."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Runtime backend."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="psi toward the average w (files with a truncation input, e.g. stylegan; 1 = none)."),
) -> None:
    """Generate images with an exported model (torch-free runtime) and save a grid."""
    import numpy as np

    from gankit import runtime
    from gankit.images import grid, save_png

    _positive("--n", n)
    _check_output(out, overwrite, ".png")
    m = runtime.load(model, backend=backend)
    if m.task != "generate":
        raise UsageError(f"{model} is an {m.task} model; use `gankit {m.task}`")
    if m.num_classes and label is None:
        per = max(1, n // m.num_classes)
        labels = np.repeat(np.arange(m.num_classes), per)
        images = m.generate(len(labels), labels=labels, seed=seed, truncation=truncation)
        nrow = per
    else:
        images = m.generate(n, labels=None if label is None else np.full(n, label), seed=seed, truncation=truncation)
        nrow = None
    save_png(grid(images, nrow=nrow), out, scale=2 if images.shape[1] < 64 else 1)
    _console().print(f"wrote {len(images)} images to [bold]{out}[/bold]")


from gankit.cli_latent import add_commands as _add_latent_commands  # noqa: E402 - gankit mix, gankit interpolate

_add_latent_commands(app)


# --------------------------------------------------------------------------- inpaint
@app.command("inpaint")
def inpaint_cmd(
    model: Path = typer.Argument(..., help="An exported gankit inpainting .onnx file."),
    image: Path = typer.Option(..., "--image", help="Image to restore (PNG/JPEG; gray, RGB or RGBA)."),
    mask: Path = typer.Option(..., "--mask", help="Mask PNG, same size: white (nonzero) = missing pixel."),
    out: Path = typer.Option(Path("restored.png"), "--out", help="Restored image."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Also write a before/after picture here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Runtime backend."),
) -> None:
    """Restore the masked part of an image with an exported inpainting model."""
    from gankit import runtime
    from gankit.runtime.io import read_image, read_mask, before_after

    _check_output(out, overwrite, ".png")
    if compare is not None:
        _check_output(compare, overwrite, ".png")
    m = runtime.load(model, backend=backend)
    if m.task != "inpaint":
        raise UsageError(f"{model} is a {m.task} model, not an inpainting one")
    img, alpha = read_image(image)
    msk = read_mask(mask)
    restored = m.inpaint(img, msk)
    from gankit.images import save_png

    if alpha is not None:
        import numpy as np

        restored = np.concatenate([restored, alpha[..., None]], axis=2)
    save_png(restored, out)
    if compare is not None:
        save_png(before_after(img, msk, restored[..., : img.shape[2]]), compare)
    _console().print(f"wrote [bold]{out}[/bold]" + (f" and {compare}" if compare else ""))


# --------------------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_cmd(
    target: Path = typer.Argument(..., help="A run directory or an exported .onnx file."),
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON record."),
    samples: int = typer.Option(1000, "--samples", help="Generated samples to judge."),
    seed: int = typer.Option(0, "--seed", help="Seed for noise and masks."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset to compare with (default: the model's)."),
) -> None:
    """Measure quality: judge accuracy, Frechet distance, coverage; PSNR/SSIM for inpainting."""
    from gankit.evaluate import evaluate_target, format_report

    _positive("--samples", samples)
    result = evaluate_target(target, samples=samples, seed=seed, data=data)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _console().print(format_report(result))


# --------------------------------------------------------------------------- bench
@app.command("bench")
def bench_cmd(
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated families or run dirs (default: every installed family)."),
    batch: str = typer.Option("1,16,64", "--batch", help="Comma-separated batch sizes."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the records here (a JSON list)."),
    md_out: Optional[Path] = typer.Option(None, "--md", help="Write the markdown table here."),
    png_out: Optional[Path] = typer.Option(None, "--png", help="Write the chart here."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for every backend (default: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (cuda adds the GPU rows)."),
    compile_: bool = typer.Option(True, "--compile/--no-compile", help="Include torch.compile rows."),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="Judge metrics through reduced-precision backends."),
    quality_samples: int = typer.Option(512, "--quality-samples", help="Samples (or test images) per quality check."),
    train: bool = typer.Option(True, "--train/--no-train", help="Training speed: gankit vs a plain PyTorch loop."),
    time_to_quality: bool = typer.Option(False, "--time-to-quality", help="Also train cgan with gankit and with a plain loop until the judge's accuracy target (minutes)."),
    cold: bool = typer.Option(True, "--cold/--no-cold", help="Runtime cold start (fresh processes)."),
    fresh: bool = typer.Option(False, "--fresh", help="Fresh-init weights even when a trained run exists."),
    budget: float = typer.Option(0.8, "--budget", help="Seconds of timed runs per row (after warm-up)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Time every backend (PyTorch variants, onnxruntime fp32/int8, OpenVINO, CUDA) per model and batch."""
    from gankit.plugins import get_manager

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--batch expects comma-separated integers, got {batch!r}") from None
    if not batches or min(batches) <= 0:
        raise UsageError("--batch sizes must be positive integers")
    _positive("--threads", threads)
    _positive("--quality-samples", quality_samples)
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    if budget <= 0:
        raise UsageError("--budget must be positive")
    for path, suffix in ((json_out, ".json"), (md_out, ".md"), (png_out, ".png")):
        if path is not None:
            _check_output(path, overwrite, suffix)
    fams = get_manager().families
    names = [m.strip() for m in models.split(",") if m.strip()] if models else sorted(k for k, (f, _) in fams.items() if f.implemented)
    for name in names:
        if name not in fams and not Path(name).is_dir():
            raise UsageError(f"unknown model {name!r}: not an installed family ({', '.join(sorted(fams))}) or a run directory")
    from gankit.bench.core import chart, markdown, run_bench, write_json

    records = run_bench(names, batches, threads=threads, compile=compile_, check_quality=quality, train=train,
                        cold=cold, device=device, budget_s=budget, fresh=fresh, quality_samples=quality_samples,
                        time_to_quality=time_to_quality)
    table = markdown(records)
    if json_out:
        write_json(records, json_out)
    if md_out:
        md_out.write_text(table)
    if png_out:
        chart(records, png_out)
    typer.echo(table)


def _check_output(path: Path, overwrite: bool, suffix: str | None = None) -> None:
    """Refuse to clobber an existing file or write where we cannot, before any work is done."""
    if path.exists() and path.is_dir():
        raise UsageError(f"output {path} is a directory")
    if path.exists() and not overwrite:
        raise UsageError(f"output {path} already exists (pass --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write to {parent}")
    if suffix and path.suffix.lower() != suffix:
        raise UsageError(f"output {path} should end in {suffix}")


# --------------------------------------------------------------------------- entry point
def _build_app() -> typer.Typer:
    """The root app plus any sub-commands plugins add through ``register_commands``."""
    from gankit.plugins import get_manager

    get_manager().register_commands(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one-line errors, meaningful exit codes."""
    try:  # typer >= 0.20 vendors its own click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer on top of click
        from click import exceptions as cx

    args = sys.argv[1:] if argv is None else argv
    try:
        command = typer.main.get_command(_build_app())
        rc = command.main(args=args, prog_name="gankit", standalone_mode=False)
        return int(rc or 0) if isinstance(rc, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except cx.ClickException as exc:  # bad option, missing argument...
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return 2
    except GankitError as exc:
        if os.environ.get("GANKIT_DEBUG"):
            raise
        msg = " ".join(str(exc).split())
        print(f"error: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: one line, details with GANKIT_DEBUG=1
        if os.environ.get("GANKIT_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: internal failure ({type(exc).__name__}: {msg}); rerun with GANKIT_DEBUG=1 for details", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
