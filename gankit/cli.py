"""The ``gankit`` command line (typer + rich).

Every command imports torch (or onnxruntime) inside its body, so ``gankit --help`` and
``gankit plugins`` start instantly. Errors the user can fix print one line on stderr and
exit with code 2; internal failures we can describe exit with 1; tracebacks only with
``GANKIT_DEBUG=1``.

Over 400 lines on purpose: every command's options and help text live here, so ``--help``
reads as one document; the bodies delegate to the modules that do the work.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from gankit import __version__
from gankit.cli_latent import BACKEND_HELP
from gankit.cli_restore import load_for_images
from gankit.devices import check_device
from gankit.errors import INTERRUPTED, GankitError, UsageError
from gankit.extras import as_missing_extra, require_train
from gankit.fileio import atomic_write_text

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
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", help="Model family to train (see `gankit plugins`)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Config file: TOML (KEY = VALUE lines) or a run's config.json; options and --set override it."),
    data: Optional[str] = typer.Option(None, "--data", help="mnist5k, photos or folder:PATH (default: the family's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the family's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0); same seed, same weights (on CPU)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default auto)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<plugin>-NNN)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Checkpoint every N steps (default: at sample intervals)."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", help="Sample grid (+ evaluation) every N steps."),
    keep: Optional[int] = typer.Option(None, "--keep", help="Checkpoints to keep (default 3)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Image side for folder:/photos data."),
    loss: Optional[str] = typer.Option(None, "--loss", help="Adversarial loss: bce, minimax, hinge, lsgan, wgan-gp (or a plugin's)."),
    spectral_norm: Optional[bool] = typer.Option(None, "--spectral-norm/--no-spectral-norm", help="Spectral normalisation on every D layer."),
    ema: Optional[float] = typer.Option(None, "--ema", help="EMA decay of the generator weights (0 = off); the EMA generator is sampled and exported."),
    diffaug: Optional[str] = typer.Option(None, "--diffaug", help="Differentiable augmentation for D: color,translation,cutout (comma-separated), all, or none."),
    r1: Optional[float] = typer.Option(None, "--r1", help="R1 penalty weight gamma on real images (0 = off)."),
    mode_seeking: Optional[float] = typer.Option(None, "--mode-seeking", help="Mode-seeking (MSGAN) weight against intra-class collapse (0 = off; generators with z)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate of both G and D."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest usable checkpoint."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a changed config."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Judge metrics at sample intervals and at the end."),
    export: bool = typer.Option(True, "--export/--no-export", help="Export the generator to exported/<run>.onnx at the end."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing exported/<run>.onnx (e.g. after --resume)."),
    set_: list[str] = typer.Option([], "--set", help="Set any config key, e.g. --set steps=300 --set lr_decay=[150,300] (repeatable; see --list-keys)."),
    list_keys: bool = typer.Option(False, "--list-keys", help="List the family's config keys (type, default, range) and exit."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Data-parallel ranks on this machine (like torchrun --standalone --nproc-per-node N); --batch-size stays the global batch. See docs/distributed.md."),
) -> None:
    """Train a model family; writes a run directory, evaluates, then exports it to ONNX."""
    require_train("train")
    from gankit.train.config import parse_sets

    if list_keys:
        _list_keys(plugin)
        return
    _positive("--nproc", nproc)
    from gankit.train.config import check_resume_options

    check_resume_options(resume, force, out)  # once here, not once per rank
    if nproc is not None and nproc > 1:
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise UsageError("--nproc inside torchrun: torchrun already starts the ranks; drop --nproc")
        from gankit.train.config import read_config_file
        from gankit.train.distributed import launch, strip_nproc

        # the device the ranks will train on, however it was given (--set and --config count as
        # the option does): it decides how many slots the launcher counts (cores or GPUs)
        file_device = read_config_file(config).get("device") if config is not None else None
        rc = launch(nproc, strip_nproc(_ARGV), device or parse_sets(set_).get("device") or file_device)
        if rc:
            raise SystemExit(rc)  # the ranks (or the launcher) already printed the one line
        return
    from gankit.pipeline import train

    overrides = parse_sets(set_)
    for key, value in (("spectral_norm", spectral_norm), ("ema", ema), ("diffaug", diffaug), ("r1", r1),
                       ("mode_seeking", mode_seeking)):
        if value is not None:
            if key in overrides and overrides[key] != value:
                raise UsageError(f"{key} given twice with different values: --set {key}={overrides[key]!r} and its option ({value!r})")
            overrides[key] = value
    train(
        plugin=plugin, data=data, steps=steps, batch_size=batch_size, seed=seed, device=device, out=out,
        save_every=save_every, sample_every=sample_every, keep=keep, image_size=image_size, loss=loss, lr=lr,
        resume=resume, force=force, evaluate=evaluate, export=export, overwrite=overwrite, overrides=overrides,
        config_file=config,
    )


def _list_keys(plugin: Optional[str]) -> None:
    if plugin is None:
        raise UsageError("--list-keys needs --plugin NAME")
    from rich.table import Table

    from gankit.plugins import get_family
    from gankit.train.config import describe_keys

    table = Table(title=f"config keys of {plugin} (gankit train --set KEY=VALUE, or KEY = VALUE in a --config TOML file)")
    for col in ("key", "type", "default", "range", "help"):
        table.add_column(col, overflow="fold")
    for row in describe_keys(get_family(plugin)):
        table.add_row(row["key"], row["type"], json.dumps(row["default"]), row["range"], row["help"])
    con = _console()
    if not con.is_terminal:
        con.width = 160
    con.print(table)


# --------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    targets: list[Path] = typer.Argument(..., help="A run directory written by `gankit train` (with --triton: exported .onnx files)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .onnx (default: exported/<run>.onnx)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    triton: Optional[Path] = typer.Option(None, "--triton", help="Instead: write a Triton model repository here from .onnx files."),
    triton_max_batch: Optional[int] = typer.Option(None, "--triton-max-batch", help="max_batch_size of the Triton configs [default: 32]."),
    triton_kind: Optional[str] = typer.Option(None, "--triton-kind", help="Triton instance kind: gpu or cpu (for servers without a GPU) [default: gpu]."),
    int8: bool = typer.Option(False, "--int8", help="Write an int8 file instead (calibrated on the run's training data; default exported/<run>-int8.onnx), for --backend openvino on CPUs."),
) -> None:
    """Export a run's generator to a self-describing ONNX file, checked for parity (or a Triton repository)."""
    if triton is not None:
        from gankit.serve.triton import write_repository

        if out is not None:
            raise UsageError("--out does not apply with --triton (models go to REPO/NAME/1/model.onnx)")
        if int8:
            raise UsageError("--int8 does not apply with --triton (export the int8 file first, then give it to --triton)")
        for d in write_repository(triton, targets, max_batch=32 if triton_max_batch is None else triton_max_batch,
                                  kind=triton_kind or "gpu", overwrite=overwrite):
            _console().print(f"wrote [bold]{d}[/bold]")
        return
    for name, value in (("--triton-max-batch", triton_max_batch), ("--triton-kind", triton_kind)):
        if value is not None:
            raise UsageError(f"{name} applies to --triton REPO (it was given without it)")
    require_train("export")
    if len(targets) != 1:
        raise UsageError("export takes one run directory (several .onnx files only with --triton REPO)")
    run_dir = targets[0]
    from gankit.export import export_run

    path = export_run(run_dir, out, overwrite=overwrite, int8=int8)
    _console().print(f"exported [bold]{path}[/bold]")
    if int8:
        from gankit.runtime.engines import read_onnx_metadata

        score = read_onnx_metadata(path).get("gankit.int8_psnr_db")
        _console().print(f"int8: {score} dB PSNR against the fp32 file on held-out inputs; judge it with "
                         f"`gankit evaluate {path}`, run it with `--backend openvino`")


# --------------------------------------------------------------------------- generate
@app.command("generate")
def generate_cmd(
    model: Path = typer.Argument(..., help="An exported gankit .onnx file."),
    n: int = typer.Option(64, "--n", help="How many images (a conditional model without --label: "
                                          "N // classes per class, at least one each)."),
    label: Optional[int] = typer.Option(None, "--label", help="Class to generate (conditional models)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the noise (default: random)."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="Output PNG grid."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    backend: str = typer.Option("onnxruntime", "--backend", help=BACKEND_HELP),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="psi toward the average w (files with a truncation input, e.g. stylegan; 1 = none)."),
) -> None:
    """Generate images with an exported model (torch-free runtime) and save a grid."""
    import numpy as np

    from gankit import runtime
    from gankit.fileio import refuse_inputs_as_outputs
    from gankit.images import grid, save_png

    _positive("--n", n)
    _check_output(out, overwrite, ".png")
    refuse_inputs_as_outputs({"--out": out}, {"the model": model})
    m = runtime.load(model, backend=backend)
    if m.task != "generate":
        raise UsageError(f"{model} is a{'n' if m.task[0] in 'aeiou' else ''} {m.task} model; use `gankit {m.task}`")
    scale = 2 if m.height < 64 else 1
    _check_grid_size(n, m.height, m.width, scale, classes=m.num_classes if label is None else 0)
    if m.num_classes and label is None:
        per = max(1, n // m.num_classes)
        labels = np.repeat(np.arange(m.num_classes), per)
        images = m.generate(len(labels), labels=labels, seed=seed, truncation=truncation)
        nrow = per
    else:
        images = m.generate(n, labels=label, seed=seed, truncation=truncation)
        nrow = None
    save_png(grid(images, nrow=nrow), out, scale=scale)
    _console().print(f"wrote {len(images)} images to [bold]{out}[/bold]")


from gankit.cli_latent import add_commands as _add_latent_commands  # noqa: E402 - gankit mix, gankit interpolate

_add_latent_commands(app)

from gankit.cli_restore import add_commands as _add_restore_commands  # noqa: E402 - gankit restore

_add_restore_commands(app)


# --------------------------------------------------------------------------- inpaint
@app.command("inpaint")
def inpaint_cmd(
    model: Path = typer.Argument(..., help="An exported gankit inpainting .onnx file."),
    image: Path = typer.Option(..., "--image", help="Image to restore (PNG/JPEG/TIFF; gray, RGB, alpha, palette, 16-bit gray or colour, float)."),
    mask: Path = typer.Option(..., "--mask", help="Mask image, same size: white (above mid-gray) = missing pixel."),
    out: Path = typer.Option(Path("restored.png"), "--out", help="Restored image."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Also write a before/after picture here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    backend: str = typer.Option("onnxruntime", "--backend", help=BACKEND_HELP),
) -> None:
    """Restore the masked part of an image with an exported inpainting model."""
    import numpy as np

    from gankit.fileio import refuse_inputs_as_outputs
    from gankit.images import before_after, save_png, to_uint16, with_alpha
    from gankit.runtime.io import read_image, read_mask

    _check_output(out, overwrite, ".png")
    if compare is not None:
        _check_output(compare, overwrite, ".png")
    refuse_inputs_as_outputs({"--out": out, "--compare": compare},
                             {"the input image": image, "the mask": mask, "the model": model})
    m = load_for_images(model, backend, [image], "inpaint")
    img, alpha = read_image(image)  # uint8, uint16 (16-bit files) or float32 in [0, 1] (float files)
    msk = read_mask(mask)
    restored = m.inpaint(img, msk)  # same dtype as img: a 16-bit file stays 16-bit
    if restored.dtype == np.float32:  # PNG has no float pixels: 16 bits keep float files' precision
        restored = to_uint16(restored)
    restored = with_alpha(restored, alpha)  # at the alpha's depth: 8-bit alpha makes the PNG 8-bit
    save_png(restored, out)
    if compare is not None:
        save_png(before_after(img, msk, restored[..., : img.shape[2]]), compare)
    _console().print(f"wrote [bold]{out}[/bold]" + (f" and {compare}" if compare else ""))


# --------------------------------------------------------------------------- serve
@app.command("serve")
def serve_cmd(
    models: list[Path] = typer.Argument(..., help="Exported gankit .onnx files; each is served under its file name."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 = any free one)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most images (or tiles) merged into one runtime call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Longest a request waits for others to batch with."),
    linger: str = typer.Option("adaptive", "--linger", help="adaptive: wait no longer than the model's last run took "
                               "(best under load); fixed: always wait --max-wait-ms for a full batch."),
    queue: int = typer.Option(256, "--queue", help="Requests per model accepted at once; more get 503 + Retry-After."),
) -> None:
    """Serve exported models over HTTP: a JSON/PNG API, a page at /, /metrics, /docs (torch-free)."""
    from gankit.serve.command import serve

    serve(models, host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, queue=queue, linger=linger)


# --------------------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_cmd(
    target: Path = typer.Argument(..., help="A run directory or an exported .onnx file."),
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON record."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Generated samples to judge [default: 1000] "
                                          "(inpainting, restoration: N test images spread over the split [default: all])."),
    seed: int = typer.Option(0, "--seed", help="Seed for noise and masks."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset to compare with (default: the model's)."),
) -> None:
    """Measure quality: judge accuracy, Frechet distance, class entropy; PSNR/SSIM for inpainting."""
    require_train("evaluate")
    from gankit.evaluate import evaluate_target, format_report

    _positive("--samples", samples)
    if seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
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
    budget: float = typer.Option(0.8, "--budget", help="Seconds of timed runs per row (after warm-up); below 0.5, a smoke run that times each way once."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Time every backend (PyTorch variants, onnxruntime fp32/int8, OpenVINO, CUDA) per model and batch."""
    require_train("bench")
    from gankit.plugins import get_manager

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--batch expects comma-separated integers, got {batch!r}") from None
    if not batches or min(batches) <= 0:
        raise UsageError("--batch sizes must be positive integers")
    _positive("--threads", threads)
    _positive("--quality-samples", quality_samples)
    check_device(device)
    if budget <= 0:
        raise UsageError("--budget must be positive")
    for path, suffix in ((json_out, ".json"), (md_out, ".md"), (png_out, ".png")):
        if path is not None:
            _check_output(path, overwrite, suffix)
    fams = get_manager().families
    names = [m.strip() for m in models.split(",") if m.strip()] if models else sorted(fams)
    for name in names:
        if name not in fams and not Path(name).is_dir():
            raise UsageError(f"unknown model {name!r}: not an installed family ({', '.join(sorted(fams))}) or a run directory")
    from gankit.bench.core import run_bench
    from gankit.bench.report import chart, markdown, write_json

    records = run_bench(names, batches, threads=threads, compile=compile_, check_quality=quality, train=train,
                        cold=cold, device=device, budget_s=budget, fresh=fresh, quality_samples=quality_samples,
                        time_to_quality=time_to_quality)
    table = markdown(records)
    if json_out:
        write_json(records, json_out)
    if md_out:
        atomic_write_text(md_out, table)
    if png_out:
        chart(records, png_out)
    typer.echo(table)


def _check_grid_size(n: int, height: int, width: int, scale: int, classes: int = 0) -> None:
    """Refuse a grid PNG that Pillow's decompression-bomb guard (which gankit's own image reader
    enforces) would refuse to open again; this also bounds the memory ``generate`` needs.
    ``classes``: one row per class (``n // classes`` images each), else a square-ish grid."""
    import math

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or 89_478_485

    def pixels(k: int) -> int:
        if classes:
            nrow, rows = max(1, k // classes), classes
        else:
            nrow = math.isqrt(k - 1) + 1
            rows = -(-k // nrow)
        return (rows * (height + 2) + 2) * (nrow * (width + 2) + 2) * scale * scale

    if pixels(n) > limit:
        lo, hi = 1, min(n, limit)  # the largest n whose grid fits (each image has a pixel at least)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if pixels(mid) <= limit else (lo, mid - 1)
        raise UsageError(f"--n {n} is too many for one grid picture: at most {lo} images of {height}x{width} fit "
                         f"in the {limit} pixels an image may have to be opened again")


def _check_output(path: Path, overwrite: bool, suffix: str | None = None) -> None:
    from gankit.fileio import check_output

    check_output(path, overwrite=overwrite, suffix=suffix)


# --------------------------------------------------------------------------- entry point
def _build_app() -> typer.Typer:
    """The root app plus any sub-commands plugins add through ``register_commands``."""
    from gankit.plugins import get_manager

    get_manager().register_commands(app)
    return app


_ARGV: list[str] = []  # the command line being run (``train --nproc`` hands it to each rank)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one-line errors, meaningful exit codes."""
    rc = _run(argv)
    if argv is None:
        # the console script (or ``python -m gankit``): the command's work is done and its files are
        # whole; a Ctrl-C while the interpreter shuts down (torch's exit handlers take a moment)
        # would otherwise kill the process by the signal, with no message, after a success
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if rc == 130 or INTERRUPTED.is_set():
            # the command has cleaned up and printed its one line; leave now with that code. A
            # Ctrl-C that landed in code compiled at run time (dataclasses' exec while torch
            # imports) can leave ``python -m gankit`` killing itself by SIGINT after a clean
            # return (exit status -2 instead of 130: seen on a slow CI machine, reproduced here)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a closed pipe must not turn into a traceback
                    pass
            os._exit(rc)
    return rc


def _run(argv: list[str] | None) -> int:
    try:  # typer >= 0.20 vendors its own click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer on top of click
        from click import exceptions as cx

    args = sys.argv[1:] if argv is None else argv
    _ARGV[:] = args
    _catch_interrupts()
    try:
        command = typer.main.get_command(_build_app())
        rc = command.main(args=args, prog_name="gankit", standalone_mode=False)
        rc = int(rc or 0) if isinstance(rc, int) else 0
        if rc == 130:  # typer turns KeyboardInterrupt into exit code 130 without a word
            print("error: interrupted", file=sys.stderr)
        return rc
    except typer.Exit as exc:
        if exc.exit_code == 130 or INTERRUPTED.is_set():  # typer turns KeyboardInterrupt into Exit(130)
            print("error: interrupted", file=sys.stderr)
            return 130
        return exc.exit_code
    except BaseException as exc:
        if not INTERRUPTED.is_set() and not isinstance(exc, (KeyboardInterrupt, typer.Abort)):
            return _report(exc, cx, args)
        if os.environ.get("GANKIT_DEBUG") and not isinstance(exc, KeyboardInterrupt):
            raise
        # however the interrupt surfaced (KeyboardInterrupt, click's Abort, a library's own error)
        msg = " ".join(str(exc).split()) if isinstance(exc, GankitError) else "interrupted"
        print(f"error: {msg}", file=sys.stderr)
        return 130


def _catch_interrupts() -> None:
    """Ctrl-C: remember it (see gankit.errors.INTERRUPTED), then interrupt as Python would."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    INTERRUPTED.clear()

    def on_sigint(signum, frame):
        INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def _report(exc: BaseException, cx, args: list[str]) -> int:
    """One line on stderr for an exception, and the exit code it means."""
    try:
        raise exc
    except cx.ClickException as exc:  # bad option, missing argument...
        print(f"error: {exc.format_message()}", file=sys.stderr)
        return 2
    except GankitError as exc:
        if os.environ.get("GANKIT_DEBUG"):
            raise
        msg = " ".join(str(exc).split())
        print(f"error: {msg}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # an internal failure: one line, details with GANKIT_DEBUG=1
        if os.environ.get("GANKIT_DEBUG"):
            raise
        # a [train] module imported by a command (e.g. a plugin's) that did not call require_train
        missing = as_missing_extra(exc, args)
        if missing is not None:
            print(f"error: {missing}", file=sys.stderr)
            return missing.exit_code
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: internal failure ({type(exc).__name__}: {msg}); rerun with GANKIT_DEBUG=1 for details", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
