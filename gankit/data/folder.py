"""``folder:PATH``: the user's own images, one subfolder per class.

Every readable image (PNG, JPEG, BMP, GIF, TIFF, WebP) is read by :mod:`gankit.images` (16-bit,
``I`` and float images scaled to 8 bits by their range, never clipped; alpha composited on
white), converted to the requested mode
(``channels`` 1 = grayscale, 3 = RGB; by default RGB unless every image is grayscale) and
resized to ``size`` x ``size`` (default 64). Per class, the last 20% of files (sorted by
name, at least one when a class has two or more) form the test split. Unreadable files are
skipped and reported by name on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gankit.data import Dataset
from gankit.errors import UsageError
from gankit.images import ImageError, open_image, to_8bit_pil

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_folder(arg: str, size: int = 64, channels: int | None = None, **_: object) -> Dataset:
    from PIL import Image

    root = Path(arg).expanduser()
    if not root.is_dir():
        raise UsageError(f"dataset folder not found: {root}")
    if size <= 0:
        raise UsageError(f"image size must be positive, got {size}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    groups = [(d.name, sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)) for d in class_dirs]
    groups = [(n, fs) for n, fs in groups if fs]
    if not groups:  # a flat folder is one class
        flat = sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        groups = [(root.name, flat)] if flat else []
    if not groups:
        raise UsageError(f"no images found in {root} (expected class subfolders of .png/.jpg files)")

    images: list[tuple[Image.Image, int, bool]] = []
    bad: list[str] = []
    for label, (_, files) in enumerate(groups):
        readable = []
        for f in files:
            try:  # the decoder the CLI and runtime use; 16-bit and float images scaled to 8 bits, not clipped
                readable.append(to_8bit_pil(open_image(f)))
            except ImageError:
                bad.append(str(f.relative_to(root)))
        n_test = len(readable) // 5 if len(readable) >= 5 else (1 if len(readable) >= 2 else 0)
        images += [(im, label, i >= len(readable) - n_test) for i, im in enumerate(readable)]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        print(f"warning: skipped {len(bad)} unreadable image(s) in {root}: {shown}", file=sys.stderr)
    if not images:
        raise UsageError(f"no readable images in {root}")
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1") for im, _, _ in images) else 3  # 16-bit/I/F arrive as L
    if channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for im, _, _ in images:
        if im.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        a = np.asarray(im.convert(mode).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
        arrays.append(a.reshape(size, size, channels).transpose(2, 0, 1))
    x = np.stack(arrays)
    y = np.array([lbl for _, lbl, _ in images], dtype=np.int64)
    is_test = np.array([t for _, _, t in images])
    if not is_test.any():  # a single image per class: evaluate on train
        is_test = np.ones(len(x), dtype=bool)
    return Dataset(
        name=f"folder:{root}",
        x_train=x[~is_test] if (~is_test).any() else x,
        y_train=y[~is_test] if (~is_test).any() else y,
        x_test=x[is_test],
        y_test=y[is_test],
        class_names=[n for n, _ in groups],
        info={"source": str(root), "skipped": bad},
    )
