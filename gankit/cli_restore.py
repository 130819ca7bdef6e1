"""``gankit restore``: repair (or upscale) images with an exported restore model (no torch).

One image (``--image IN --out OUT``) or every image of a folder (``--input-dir --output-dir``).
Every output path is checked before the model is loaded or any image decoded: an existing
file is never replaced without ``--overwrite``, and never when it is one of the inputs. Kept
out of cli.py so that module stays small; :func:`add_commands` attaches it to the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gankit.errors import UsageError

# what a folder run picks up: the formats gankit's reader (Pillow) decodes losslessly or commonly
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm", ".pbm")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _folder_jobs(input_dir: Path, output_dir: Path, overwrite: bool) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs for every image in ``input_dir`` (not recursive, hidden files
    skipped), and whether any input has more than 8 bits per channel; refuses outputs that
    exist (without --overwrite), collide or are inputs, and inputs whose header does not read."""
    from gankit.fileio import check_output, same_file

    if not input_dir.is_dir():
        raise UsageError(f"--input-dir {input_dir} is not a directory")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output-dir {output_dir} is not a directory")
    inputs = sorted(p for p in input_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not inputs:
        raise UsageError(f"no images in {input_dir} (looked for {', '.join(IMAGE_SUFFIXES)})")
    jobs, seen = [], {}
    for src in inputs:
        dst = output_dir / f"{src.stem}.png"
        if dst.name in seen:
            raise UsageError(f"{seen[dst.name].name} and {src.name} would both be written to {dst}; rename one")
        seen[dst.name] = src
        if any(same_file(dst, p) for p in inputs):
            raise UsageError(f"{dst} is one of the input images; choose another --output-dir")
        check_output(dst, overwrite=overwrite, suffix=".png")
        jobs.append((src, dst))
    # every file opens as an image before anything is written (headers only, each read once)
    deep = [_check_header(src) for src in inputs]
    return jobs, any(deep)


def _check_header(path: Path) -> bool:
    """One line naming an input that is not an image gankit can read (from its header, without
    decoding it): not an image, too large, or 16-bit colour where OpenCV, which reads it, is
    missing (see :func:`gankit.images.read_image`). Returns True for a readable image with more
    than 8 bits per channel (16-bit gray or colour, or float)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from gankit.errors import first_line
    from gankit.images import MODES_WIDE, ImageError, wide_layout, colour_bits, wide_colour_refusal

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # as open_image: an error
            with Image.open(path) as im:
                wide, deep = colour_bits(im) == 16 and wide_layout(im), im.mode in MODES_WIDE
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"{path} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels; nothing was "
                         "written)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"cannot read image {path}: {first_line(exc, with_type=False)} (nothing was written; move it "
                         "out of the folder or fix it)") from None
    refusal = wide and wide_colour_refusal(path, wide)
    if refusal:
        raise ImageError(refusal + " (nothing was written)")
    return deep or bool(wide)


def _deep(path: Path) -> bool:
    """True for an image with more than 8 bits per channel (16-bit gray or colour, or float),
    from its header; False for one that does not read, which the restore itself refuses in one line."""
    try:
        return _check_header(path)
    except UsageError:
        return False


def wide_input_options(backend: str, images, deep: Optional[bool] = None) -> dict:
    """``precision="f32"`` when OpenVINO would run (``auto`` or ``openvino``) and one of
    ``images`` has more than 8 bits per channel: bf16 keeps 8 significant bits, so a 16-bit or
    float image would come back with 8 (one such image in a folder runs the whole folder in
    fp32: one model, one load). ``deep``: already known from the headers (a folder's check)."""
    if backend not in ("auto", "openvino"):
        return {}
    if deep if deep is not None else any(_deep(p) for p in images):
        from gankit.runtime.engines import resolve_backend

        if resolve_backend(backend) == "openvino":
            return {"precision": "f32"}
    return {}


def load_for_images(model: Path, backend: str, images, task: str, deep: Optional[bool] = None):
    """The ``task`` model for these images, with a one-line note when ``auto`` left OpenVINO
    for onnxruntime (after the task check, so a wrong model is one line of error, not two)."""
    from gankit import runtime

    m = runtime.load(model, backend=backend, **wide_input_options(backend, images, deep))
    if m.task != task:
        def a(word: str) -> str:
            return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"

        raise UsageError(f"{model} is {a(m.task)} model; gankit {task} needs {a(task)} model")
    if m.fallback_reason:
        _console(stderr=True).print(f"note: running on onnxruntime, slower here: {m.fallback_reason}",
                                    markup=False, soft_wrap=True)
    return m


def side_by_side(before, after, pad: int = 4):
    """[input upscaled by nearest neighbour | restored], uint8 RGB: pixels the model invented
    are easy to tell from the source's."""
    import numpy as np

    from gankit.images import to_uint8

    def rgb(a):
        a = to_uint8(a)
        return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]

    after = rgb(after)
    h, w = after.shape[:2]
    big = rgb(before).repeat(h // before.shape[0], axis=0).repeat(w // before.shape[1], axis=1)
    out = np.full((h, 2 * w + pad, 3), 255, np.uint8)
    out[:, :w], out[:, w + pad :] = big, after
    return out


def _restore_file(model, src: Path, dst: Path, tile: Optional[int], tile_pad: Optional[int],
                  compare: Optional[Path] = None) -> tuple[int, int]:
    """Restore one file into a lossless PNG; returns the output (width, height)."""
    import numpy as np

    from gankit.images import save_png, to_uint16, with_alpha
    from gankit.runtime.io import read_image

    img, alpha = read_image(src)  # uint8, uint16 (16-bit files) or float32 in [0, 1] (float files)
    restored = model.restore(img, tile=tile, tile_pad=tile_pad)  # same dtype: 16-bit stays 16-bit
    if restored.dtype == np.float32:  # PNG has no float pixels: 16 bits keep float files' precision
        restored = to_uint16(restored)
    if alpha is not None:  # resized like the image; 8-bit alpha makes the PNG 8-bit, 16-bit keeps 16
        from gankit.runtime.tiles import resize_plane

        restored = with_alpha(restored, resize_plane(alpha, model.scale))
    save_png(restored, dst)
    if compare is not None:
        save_png(side_by_side(img, restored[..., : img.shape[2]]), compare)
    return restored.shape[1], restored.shape[0]


def restore_cmd(
    model: Path = typer.Argument(..., help="An exported gankit restore .onnx file."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image to restore (PNG/JPEG/TIFF...; gray, RGB, alpha, palette, 16-bit gray or colour, float)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Restored PNG (default: restored.png)."),
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", help="Instead of --image: restore every image in this folder."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="With --input-dir: where the restored PNGs go (same names, .png)."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Tile side in input pixels (default 256; 0 = whole image in one run)."),
    tile_pad: Optional[int] = typer.Option(None, "--tile-pad", help="Context pixels around each tile (default 16); raise it if seams show."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="With --image: also write a side-by-side picture here (the input upscaled by nearest neighbour, then the result)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    backend: str = typer.Option("auto", "--backend", help="Runtime backend: auto (OpenVINO on CPUs where installed, bf16 where the CPU has it; onnxruntime on GPUs), onnxruntime (fp32) or openvino."),
) -> None:
    """Restore images (super-resolution, denoising, deblurring, JPEG repair) of any size with an exported model.

    Large images run in tiles with context padding, so they fit in memory and meet without seams.
    Outputs are lossless PNG; 16-bit (gray, or colour where OpenCV is installed) and float inputs come back
    as 16-bit, alpha passes through.
    """
    from gankit.fileio import check_output, refuse_inputs_as_outputs

    for name, value, low in (("--tile", tile, 0), ("--tile-pad", tile_pad, 0)):
        if value is not None and value < low:
            raise UsageError(f"{name} must be a non-negative integer, got {value}")
    if (image is None) == (input_dir is None):
        raise UsageError("give either --image FILE or --input-dir DIR (with --output-dir)")
    if input_dir is not None:
        if output_dir is None:
            raise UsageError("--input-dir needs --output-dir (where the restored PNGs go)")
        if out is not None or compare is not None:
            raise UsageError("--out and --compare apply to --image; with --input-dir outputs go to --output-dir")
        jobs, deep = _folder_jobs(input_dir, output_dir, overwrite)
    else:
        if output_dir is not None:
            raise UsageError("--output-dir applies to --input-dir; with --image use --out")
        if image.is_dir():
            raise UsageError(f"--image {image} is a folder; use --input-dir {image} --output-dir DIR for a folder")
        if not image.is_file():
            raise UsageError(f"image not found: {image}")
        out = out or Path("restored.png")
        check_output(out, overwrite=overwrite, suffix=".png")
        if compare is not None:
            check_output(compare, overwrite=overwrite, suffix=".png")
        refuse_inputs_as_outputs({"--out": out, "--compare": compare}, {"the input image": image, "the model": model})
        jobs, deep = [(image, out)], None
    m = load_for_images(model, backend, [src for src, _ in jobs], "restore", deep)
    if image is not None:
        w, h = _restore_file(m, image, out, tile, tile_pad, compare)
        _console().print(f"wrote [bold]{out}[/bold] ({w}x{h}, x{m.scale})" + (f" and {compare}" if compare else ""))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    output_dir.mkdir(parents=True, exist_ok=True)
    err = _console(stderr=True)
    # no bar when stderr is a log or a pipe: a transient bar there leaves only a blank line
    with Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("", total=len(jobs))
        for done, (src, dst) in enumerate(jobs):
            progress.update(task, description=src.name)
            try:
                _restore_file(m, src, dst, tile, tile_pad)
            except UsageError as exc:  # a file whose header read but whose pixels do not
                written = f"{done} of {len(jobs)} written to {output_dir} before it" if done else "nothing was written"
                raise UsageError(f"{exc} ({written})") from None
            progress.advance(task)
    _console().print(f"wrote {len(jobs)} restored image{'s' if len(jobs) != 1 else ''} (x{m.scale}) to [bold]{output_dir}[/bold]")


def add_commands(app: typer.Typer) -> None:
    app.command("restore")(restore_cmd)
