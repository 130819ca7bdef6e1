"""``gankit mix`` and ``gankit interpolate``: latent-space pictures from an exported file (no
torch); ``gankit project``: a picture's w, optimised in torch from a run directory.

Kept out of cli.py so that module stays small; :func:`add_commands` attaches them to the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gankit.errors import UsageError

# --backend of the commands that run a model (gankit restore defaults to auto, see cli_restore)
BACKEND_HELP = ("Runtime backend: onnxruntime (fp32), openvino (bf16 where the CPU has it) or auto (onnxruntime on a "
                "GPU, else OpenVINO where installed).")


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")


def _nonnegative_seed(seed: Optional[int]) -> None:
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")


def _check_output(path: Path, overwrite: bool, suffix: str) -> None:
    from gankit.fileio import check_output

    check_output(path, overwrite=overwrite, suffix=suffix)


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _load_generator(model: Path, backend: str):
    from gankit import runtime

    m = runtime.load(model, backend=backend)
    if m.task != "generate":
        raise UsageError(f"{model} is {'an' if m.task[0] in 'aeiou' else 'a'} {m.task} model; mix and interpolate need "
                         "a generate model")
    return m


def mix_cmd(
    model: Path = typer.Argument(..., help="An exported gankit .onnx file with style inputs (stylegan)."),
    rows: int = typer.Option(4, "--rows", help="Row sources: their coarse styles (pose, shape)."),
    cols: int = typer.Option(6, "--cols", help="Column sources: their fine styles (stroke, texture)."),
    crossover: Optional[int] = typer.Option(None, "--crossover", help="First layer styled by the column (default: the file's gankit.mix_crossover)."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="psi toward the average w (1 = none)."),
    label: Optional[int] = typer.Option(None, "--label", help="Class of every image (conditional models; default 0)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the sources (default: random)."),
    out: Path = typer.Option(Path("mix.png"), "--out", help="Output PNG."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    backend: str = typer.Option("onnxruntime", "--backend", help=BACKEND_HELP),
) -> None:
    """Style-mixing grid: each cell takes its coarse styles from its row and its fine styles from its column."""
    from gankit.images import save_png

    _positive("--rows", rows)
    _positive("--cols", cols)
    _nonnegative_seed(seed)
    _check_output(out, overwrite, ".png")
    m = _load_generator(model, backend)
    picture = m.mix(rows, cols, crossover=crossover, truncation=truncation, seed=seed, label=label)
    save_png(picture, out, scale=2 if m.height < 64 else 1)
    _console().print(f"wrote a {rows}x{cols} style-mixing grid to [bold]{out}[/bold]")


def interpolate_cmd(
    model: Path = typer.Argument(..., help="An exported gankit generate-model .onnx file (any family)."),
    frames: int = typer.Option(48, "--frames", help="Frames in the loop."),
    keys: int = typer.Option(4, "--keys", help="Random key points the walk passes through."),
    fps: float = typer.Option(12.0, "--fps", help="Frames per second of the GIF."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="psi toward the average w (stylegan files)."),
    label: Optional[int] = typer.Option(None, "--label", help="Class of every frame (conditional models; default 0)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the key points (default: random)."),
    out: Path = typer.Option(Path("walk.gif"), "--out", help="Output GIF."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    backend: str = typer.Option("onnxruntime", "--backend", help=BACKEND_HELP),
) -> None:
    """A smooth latent walk (spherical interpolation of z, fixed noise) as a looping GIF."""
    from gankit.runtime.latent import save_gif

    _positive("--frames", frames)
    if keys < 2:
        raise UsageError(f"--keys must be at least 2, got {keys}")
    from gankit.runtime.latent import MAX_FRAMES, MAX_GIF_FPS, MIN_GIF_FPS

    if not MIN_GIF_FPS <= fps <= MAX_GIF_FPS:
        raise UsageError(f"--fps must be from {MIN_GIF_FPS} to {MAX_GIF_FPS} (GIF frame delays), got {fps}")
    if frames > MAX_FRAMES:
        raise UsageError(f"--frames must be at most {MAX_FRAMES}, got {frames}")
    _nonnegative_seed(seed)
    _check_output(out, overwrite, ".gif")
    m = _load_generator(model, backend)
    video = m.interpolate(frames, keys=keys, seed=seed, label=label, truncation=truncation)
    save_gif(video, out, fps=fps, scale=2 if m.height < 64 else 1)
    _console().print(f"wrote {frames} frames to [bold]{out}[/bold]")


def project_cmd(
    run: Path = typer.Argument(..., help="A run directory of a family with a style space (stylegan)."),
    image: Path = typer.Option(..., "--image", help="The picture to reproduce (resized to the model's size)."),
    steps: int = typer.Option(300, "--steps", help="Optimisation steps."),
    wplus: bool = typer.Option(False, "--wplus", help="One w per layer (W+): closer, less typical."),
    variations: int = typer.Option(6, "--variations", help="Images generated from the result: its coarse styles, random fine ones."),
    seed: int = typer.Option(0, "--seed", help="Seed for the exploration noise and the variations."),
    out: Path = typer.Option(Path("projection.png"), "--out", help="Output PNG: target, projection, variations."),
    save_w: Optional[Path] = typer.Option(None, "--save-w", help="Also write the found styles [layers, w_dim] as .npy."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Find the w whose image reproduces a picture (optimised in torch from the run's weights), then generate from it."""
    import numpy as np

    from gankit.extras import require_train
    from gankit.images import grid, read_image, save_png, to_uint8
    from gankit.runtime.latent import to_uint8 as latent_uint8  # [-1, 1] NCHW -> uint8 NHWC

    require_train("project")
    if variations < 0:
        raise UsageError(f"--variations must be 0 or more, got {variations}")
    _nonnegative_seed(seed)
    _check_output(out, overwrite, ".png")
    if save_w is not None:
        _check_output(save_w, overwrite, ".npy")
    pixels, _alpha = read_image(image, keep_depth=False)  # before torch loads: a bad picture fails fast
    pixels = to_uint8(pixels)  # 16-bit and float pictures: scaled to 8 bits, never clipped
    from gankit.train.project import fit_image, project, variations as make_variations
    from gankit.train.run import load_run_generator

    family, config, G, step = load_run_generator(run)
    space = family.latent_space(G, config)
    if space is None:
        raise UsageError(f"{run} is a {family.name} run; project needs a family with a style space (e.g. stylegan)")
    target = fit_image(pixels, int(config["channels"]), int(config["height"]), int(config["width"]))
    result = project(space, target, steps=steps, wplus=wplus, seed=seed)
    import torch

    pictures = [target, result.image]
    if variations:
        pictures.append(make_variations(space, result.w, variations, seed=seed))
    tiles = latent_uint8(torch.cat(pictures).numpy())
    save_png(grid(tiles, nrow=len(tiles)), out, scale=2 if int(config["height"]) < 64 else 1)
    if save_w is not None:
        from gankit.fileio import atomic_path

        with atomic_path(save_w) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, result.w.numpy().astype(np.float32))
    _console().print(f"projected {image} onto {run} (step {step}) in {steps} steps: PSNR {result.psnr_db:.2f} dB "
                     f"(the average w: {result.start_psnr_db:.2f} dB); wrote [bold]{out}[/bold] (target, projection"
                     + (f", {variations} variations" if variations else "") + ")"
                     + (f" and [bold]{save_w}[/bold]" if save_w is not None else ""))


def add_commands(app: typer.Typer) -> None:
    app.command("mix")(mix_cmd)
    app.command("interpolate")(interpolate_cmd)
    app.command("project")(project_cmd)
