"""Pictures: reading images of any mode, sample grids, before/after strips, PNG writing.

numpy + Pillow (no torch), and OpenCV, where installed, for the one thing Pillow cannot do:
colour at 16 bits per channel. This is the one place that decodes user images: the CLI,
:mod:`gankit.runtime` and the ``folder:`` datasets all read through :func:`open_image` and
:func:`pil_to_array`, so a 16-bit or float file means the same thing everywhere. It imports
nothing from gankit but :mod:`gankit.errors`, so both the runtime and the data layer may use it.

Pixel values keep their file's depth and are scaled by the mode's documented range, never
clipped: 8-bit modes give uint8 (0..255), 16-bit modes (``I;16*``, and ``I`` within 0..65535)
give uint16 (0..65535), ``F`` gives float32 in [0, 1]. Values outside a mode's range are refused
with :class:`ImageError` instead of being clipped.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from gankit.errors import UsageError, first_line
from gankit.fileio import atomic_path, atomic_write_bytes


class ImageError(UsageError):
    """An image file or picture that cannot be read as gankit pixels (one line; exit code 2)."""


#: Modes whose pixels are 16-bit unsigned integers (Pillow's names for the byte orders).
MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")
#: Modes read as one channel at more than 8 bits: scaled by their range, not by Pillow's 8-bit convert.
MODES_WIDE = (*MODES_16BIT, "I", "F")


#: ``info`` key :func:`open_image` sets on an image stored at more than 8 bits per channel that
#: Pillow decodes at 8 (any mode but the one-channel wide ones).
WIDE_COLOUR = "gankit.16bit_colour"


def wide_layout(im) -> dict:
    """How a colour file with 16 bits per channel is stored, from its header: ``gray`` (16-bit
    gray+alpha, which Pillow opens as 8-bit RGBA and OpenCV as BGRA), ``maxval`` (a PPM's
    largest value: 1023 for 10 bits, which OpenCV returns unscaled) and Pillow's 8-bit ``mode``
    (CMYK, which OpenCV does not read at 16 bits)."""
    gray, maxval = False, 65535
    for tile in getattr(im, "tile", None) or ():
        codec, args = tile[0], tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and raw.startswith("LA;16"):
            gray = True
        if codec == "ppm" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int):
            maxval = args[1]
    return {"gray": gray, "maxval": maxval, "mode": im.mode}


#: Pillow's 8-bit modes of the 16-bit colour layouts OpenCV reads at 16 bits (not CMYK, RGBa).
WIDE_MODES_READ = ("RGB", "RGBA", "LA")


def wide_colour_refusal(path, layout: dict) -> str | None:
    """Why a 16-bit colour file (its :func:`wide_layout`) cannot be read at 16 bits here, or None."""
    if cv2_or_none() is None:
        return wide_colour_error(path)
    if layout["mode"] not in WIDE_MODES_READ:
        return (f"{path} is {layout['mode']} with 16 bits per channel, which gankit cannot read at that depth; "
                "convert it to 16-bit RGB first")
    return None


def colour_bits(im) -> int:
    """16 for an image stored with 16 bits per channel that Pillow, having no such multi-channel
    modes, decodes at 8 (48/64-bit PNG, 16-bit gray+alpha PNG, 16-bit PPM, 16-bit RGB, RGBa,
    CMYK or planar TIFF); else 8. One-channel 16-bit and float images keep their depth and are 8
    here. Read from the file's layout, so call it on an opened image before ``load()``."""
    if im.mode in MODES_WIDE:
        return 8
    for tile in getattr(im, "tile", None) or ():
        codec, args = tile[0], tile[3]
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:  # RGB;16B, LA;16B, RGBa;16L, CMYK;16L ...
            return 16
        if codec == "ppm" and isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return 16  # a PNM maxval above 255
    bits = getattr(im, "tag_v2", {}).get(258)  # TIFF BitsPerSample (planar files name no ;16 raw mode)
    if isinstance(bits, (tuple, list)) and bits and max(bits) > 8 or isinstance(bits, int) and bits > 8:
        return 16
    return 8


def wide_colour_error(path) -> str:
    """Why a colour file with 16 bits per channel cannot be read at its depth here."""
    return (f"{path} has 16 bits per channel in colour, which gankit reads with OpenCV, and OpenCV is not installed "
            "(pip install opencv-python-headless, or convert the image to 8 bits)")


def cv2_or_none():
    """OpenCV, or None where it is not installed (the base install has Pillow only)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def read_wide_colour(path: str | os.PathLike, layout: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """uint16 ``[H, W, 3]`` RGB (``[H, W, 1]`` for gray+alpha) and uint16 alpha or None, from a
    file with 16 bits per channel in colour, which Pillow would decode at 8 (it has no such
    modes). OpenCV decodes it (PNG, TIFF, PPM), from bytes so that any path name works; a PPM
    of fewer bits (maxval 1023, 4095) is scaled to 0..65535 as Pillow scales a 16-bit PGM.
    Without OpenCV, or for a layout it cannot read (CMYK), it is refused in one line rather
    than read at 8 bits. ``layout``: :func:`wide_layout` of the file (from :func:`open_image`)."""
    layout = layout or {"gray": False, "maxval": 65535, "mode": "RGB"}
    refusal = wide_colour_refusal(path, layout)
    if refusal:
        raise ImageError(refusal)
    cv2 = cv2_or_none()
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its decoders log to stderr
    try:
        a = cv2.imdecode(np.fromfile(os.fspath(path), np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {first_line(exc, with_type=False)}") from None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if a is None or a.dtype != np.uint16 or a.ndim != 3 or a.shape[2] not in (3, 4):
        got = "nothing" if a is None else f"{a.dtype} {'x'.join(map(str, a.shape))}"
        raise ImageError(f"cannot read image {path} at 16 bits per channel: OpenCV decoded {got} (convert it to a "
                         "16-bit RGB or RGBA PNG)")
    if 255 < layout["maxval"] < 65535:
        a = np.rint(a.astype(np.float64) * (65535 / layout["maxval"])).clip(0, 65535).astype(np.uint16)
    rgb = np.ascontiguousarray(a[..., 2::-1])  # OpenCV is BGR(A)
    if layout["gray"]:  # gray+alpha arrives with gray copied into B, G and R
        rgb = np.ascontiguousarray(rgb[..., :1])
    return rgb, (np.ascontiguousarray(a[..., 3]) if a.shape[2] == 4 else None)


def open_image(path: str | os.PathLike):
    """A fully decoded PIL image, or :class:`ImageError` naming the file (missing, corrupt, too large).

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is enforced as an error,
    not a warning. The file is closed before returning.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise ImageError(f"{p} is a folder, not an image")
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                wide = colour_bits(im) == 16 and wide_layout(im)  # from the header, before decoding only
                im.load()
                out = im.copy()
                if wide:
                    out.info[WIDE_COLOUR] = wide
                return out
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"{p} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageError(f"cannot read image {p}: {first_line(exc, with_type=False)}") from None


def wide_to_array(im) -> np.ndarray:
    """``[H, W]`` pixels of a 16-bit, 32-bit integer or float image: uint16 or float32 in [0, 1].

    ``I;16*`` is 0..65535. ``I`` is Pillow's container for 16-bit PNGs (and what it saves
    as 16-bit PNG), so it is read as 0..65535 and refused outside that range. ``F`` is read
    as [0, 1] (scikit-image's convention for float images) and refused outside it, and when
    not finite: an image is never silently clipped.
    """
    a = np.asarray(im)
    if im.mode in MODES_16BIT:
        return a.astype(np.uint16)
    if im.mode == "I":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ImageError(f"32-bit integer image has values in [{lo}, {hi}]; integer images are read as "
                             "16-bit (0..65535): rescale it")
        return a.astype(np.uint16)
    if im.mode == "F":
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ImageError("float image contains NaN or infinite values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ImageError(f"float image has values in [{lo:g}, {hi:g}]; float images must lie in [0, 1]")
        return a
    raise ImageError(f"image mode {im.mode} is not a one-channel wide mode")


def pil_to_array(im) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels ``[H, W, 1|3]`` at the image's own depth, plus its alpha ``[H, W]`` (uint8) or None.

    Gray modes (``1``, ``L``, ``LA``, 16-bit, ``I``, ``F``) give one channel; every other mode
    three (RGB). Alpha comes from ``RGBA``, ``LA``, ``PA`` and palette images with transparency.
    """
    mode = im.mode
    try:
        if mode in MODES_WIDE:
            return wide_to_array(im)[..., None], None
        if mode in ("LA", "La"):
            la = np.asarray(im.convert("LA"))
            return np.ascontiguousarray(la[..., :1]), la[..., 1].copy()
        if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            return np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy()
        if mode in ("1", "L"):
            return np.asarray(im.convert("L"))[..., None], None
        return np.asarray(im.convert("RGB")), None
    except ImageError:
        raise
    except (ValueError, OSError, TypeError, AttributeError) as exc:  # a mode Pillow cannot convert
        raise ImageError(f"cannot convert a {mode} image: {first_line(exc, with_type=False)}") from None


def read_image(path: str | os.PathLike, *, keep_depth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pil_to_array` of the file at ``path``. With ``keep_depth`` (restoring pixels a
    user keeps) a colour image stored at 16 bits per channel is read at 16 by OpenCV
    (:func:`read_wide_colour`: uint16 pixels and alpha), or refused where OpenCV is missing,
    never read at Pillow's 8 bits. Without ``keep_depth`` it is Pillow's 8-bit reading."""
    im = open_image(path)  # decodes the whole file once with Pillow: a truncated file fails here
    wide = im.info.get(WIDE_COLOUR)
    if keep_depth and wide:
        return read_wide_colour(path, wide)
    return pil_to_array(im)


def with_alpha(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``[H, W, C + 1]`` pixels with ``alpha`` appended at the alpha's depth (uint8 alpha: 8-bit
    pixels, as Pillow's alpha modes are; uint16 alpha from a 16-bit file: 16-bit pixels), or the
    pixels as they are when there is no alpha."""
    if alpha is None:
        return pixels
    depth = to_uint16 if alpha.dtype == np.uint16 else to_uint8
    return np.concatenate([depth(pixels), alpha[..., None]], axis=2)


def mask_from_pil(im) -> np.ndarray:
    """bool ``[H, W]``: True where the mask image is bright (above half its range) = missing pixel.

    8-bit modes keep the long-standing rule ``luminance > 127``; 16-bit and float masks are
    compared with half of their own range instead of being clipped to 8 bits first.
    """
    if im.mode in MODES_WIDE:
        return to_unit(wide_to_array(im)) > 0.5
    return np.asarray(im.convert("L")) > 127


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """bool ``[H, W]`` from a mask file: white (above half range) = missing."""
    return mask_from_pil(open_image(path))


def to_unit(a: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] from uint8, uint16 or float [0, 1] pixels (the dtype says the range)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """uint8 pixels from uint8, uint16 or float [0, 1] pixels, rounded (65535 -> 255, 1.0 -> 255)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_uint16(a: np.ndarray) -> np.ndarray:
    """uint16 pixels from uint8 (x 257), uint16 or float [0, 1] pixels (rounded)."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    return np.clip(np.rint(a.astype(np.float32) * 65535.0), 0, 65535).astype(np.uint16)


def to_8bit_pil(im):
    """The image itself for 8-bit modes; an ``L`` image scaled from 16-bit / ``I`` / ``F`` ones.

    Pillow's own ``convert("L")`` clips those modes at 255 (a 16-bit PNG becomes black and
    white, a float image in [0, 1] black); this scales them by their range instead.
    """
    from PIL import Image

    if im.mode not in MODES_WIDE:
        return im
    return Image.fromarray(to_uint8(wide_to_array(im)))


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images ``[N, H, W, C]`` into one ``[H', W', C]`` image, ``nrow`` per row."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out


def to_pil(array: np.ndarray, scale: int = 1):
    """A PIL image of uint8 pixels ``[H, W(, C)]``; one-channel uint16 becomes a 16-bit (``I;16``) image."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype == np.uint16 and not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1)):
        a = to_uint8(a)  # Pillow has no multi-channel 16-bit mode: scale, never wrap around
    elif a.dtype != np.uint16:
        a = np.asarray(a, dtype=np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    im = Image.fromarray(a)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    return im


def save_png(array_or_image, path: str | os.PathLike, scale: int = 1) -> Path:
    """Write a PNG atomically (temporary name, then rename): a reader never sees half a file.

    uint16 pixels with more than one channel (16-bit colour, or gray with a 16-bit alpha, which
    becomes RGBA) are written at 16 bits by OpenCV where it is installed; Pillow, which writes
    everything else, has no such modes and would scale them to 8."""
    a = None if hasattr(array_or_image, "save") else np.asarray(array_or_image)
    cv2 = cv2_or_none() if a is not None and a.dtype == np.uint16 and a.ndim == 3 and a.shape[2] > 1 else None
    if cv2 is not None:
        if a.shape[2] == 2:
            a = a[..., [0, 0, 0, 1]]
        if scale > 1:
            a = a.repeat(scale, axis=0).repeat(scale, axis=1)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(a[..., [2, 1, 0, 3][: a.shape[2]]]))  # OpenCV is BGR(A)
        if not ok:
            raise ImageError(f"OpenCV could not encode a {a.shape} uint16 PNG for {path}")
        return atomic_write_bytes(path, buf.tobytes())
    im = array_or_image if a is None else to_pil(a, scale)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return Path(path)


def signed_to_uint8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] (the models' range) -> uint8 [0, 255] (rounded, clipped), same layout."""
    return np.clip(np.rint((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def nchw_to_hwc_uint8(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] ``[N, C, H, W]`` -> uint8 ``[N, H, W, C]``."""
    return signed_to_uint8(x).transpose(0, 2, 3, 1)


def before_after(image: np.ndarray, mask: np.ndarray, restored: np.ndarray, pad: int = 4) -> np.ndarray:
    """[input with holes shown in magenta | restored] side by side, uint8 RGB (any input depth)."""
    def rgb(a):
        a = to_uint8(a)
        return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]

    before = rgb(image).copy()
    before[mask] = (255, 0, 255)
    after = rgb(restored)
    h, w = mask.shape
    out = np.full((h, 2 * w + pad, 3), 255, np.uint8)
    out[:, :w], out[:, w + pad :] = before, after
    return out
