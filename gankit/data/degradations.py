"""Image degradations: what the ``restore`` family learns to undo, and what its evaluation set is made of.

They live in the core (not in the plugin) because two callers must use the very same code: the
``restore`` plugin makes its training pairs with them, and :mod:`gankit.evaluate` builds the fixed,
held-out evaluation set with them. numpy, Pillow and OpenCV only: no torch, so evaluation and
any app can degrade images exactly as training did.

Every function works on batches of float arrays ``[N, C, H, W]`` in [-1, 1] (the trainer's
range) and returns the same layout; randomness comes only from the ``numpy.random.Generator``
it is given, so a batch degraded twice with generators in the same state is identical
(training draws from the trainer's seeded stream, evaluation from a fixed seed).

The named degradations (:data:`NAMES`, :func:`degrade`) end by clipping to the valid range and
rounding to 8 bits: the images the runtime restores come from 8-bit files, and training on
unquantised inputs would teach a model a cleanliness it never sees.

- ``sr2`` / ``sr4``: downscale by 2 / 4 with Pillow's antialiased BICUBIC on float ("F") images.
  Pillow widens the bicubic kernel by the scale factor when it shrinks (so frequencies above the
  new Nyquist limit are filtered out, not aliased) and it is the kernel SR benchmarks use
  (MATLAB ``imresize``-like, as BasicSR's test sets are made). OpenCV's ``INTER_AREA`` would also
  antialias (a box average), but its box filter leaves more aliasing and is not what published
  x2/x4 numbers were measured with. Float mode keeps the 8-bit rounding to one place, the end.
- ``noise``: additive Gaussian noise, sigma 25 (in /255 units), per pixel and channel.
- ``blur``: Gaussian blur with a fixed, known kernel (sigma :data:`BLUR_SIGMA`), reflect borders:
  the classical baselines (Wiener, Richardson-Lucy) are given the same kernel.
- ``jpeg``: Pillow JPEG at quality 20 (4:2:0 chroma for colour, Pillow's default).
- ``real``: a second-order chain after Real-ESRGAN (Wang et al. 2021): twice [blur (Gaussian or
  motion), random resize, Gaussian or Poisson noise, JPEG], then the final resize to 1/2 and a
  last JPEG in random order. Ranges are narrower than Real-ESRGAN's (whose 0.15x resizes would
  leave nothing of a 64x64 patch).
"""

from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np

#: the named degradations, and the scale (output side / input side) a restorer of each needs
SCALES: dict[str, int] = {"sr2": 2, "sr4": 4, "noise": 1, "blur": 1, "jpeg": 1, "real": 2}
NAMES = tuple(SCALES)
NOISE_SIGMA = 25.0  # in /255 units
JPEG_QUALITY = 20
BLUR_SIGMA = 1.6  # pixels


# -- conversions ---------------------------------------------------------------------------
def to01(batch: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1], float32."""
    return (np.asarray(batch, np.float32) + 1.0) * 0.5


def from01(batch: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1], float32."""
    return np.asarray(batch, np.float32) * 2.0 - 1.0


def quantize(batch: np.ndarray) -> np.ndarray:
    """Clip to [-1, 1] and round to the 256 levels of an 8-bit file."""
    return from01(np.round(np.clip(to01(batch), 0.0, 1.0) * 255.0) / 255.0)


def _check(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4:
        raise ValueError(f"degradations take a batch [N, C, H, W], got shape {list(batch.shape)}")
    return batch


def _per_channel(batch: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``fn`` (a 2-D float32 plane -> plane) to every image plane of ``batch``."""
    return np.stack([np.stack([fn(np.ascontiguousarray(plane)) for plane in img]) for img in batch]).astype(np.float32)


# -- resizing --------------------------------------------------------------------------------
def _pil_resize(plane: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    from PIL import Image

    filters = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
               "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
    # mode "F": 32-bit float planes, no rounding to 8 bits in between (size is (width, height))
    return np.asarray(Image.fromarray(plane, mode="F").resize(size, filters[method]), np.float32)


def downscale(batch: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Shrink H and W by the integer ``scale`` (antialiased Pillow resampling; H, W divisible by it)."""
    batch = _check(batch)
    n, c, h, w = batch.shape
    if scale == 1:
        return batch.copy()
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the scale {scale}")
    return _per_channel(batch, lambda p: _pil_resize(p, (w // scale, h // scale), method))


def upscale(batch: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """Enlarge H and W by ``scale`` (the classical super-resolution baselines: bicubic, lanczos)."""
    batch = _check(batch)
    if scale == 1:
        return batch.copy()
    h, w = batch.shape[2:]
    return _per_channel(batch, lambda p: _pil_resize(p, (w * scale, h * scale), method))


def resize(batch: np.ndarray, height: int, width: int, interpolation: str = "area") -> np.ndarray:
    """Resize to any size with OpenCV (``area``, ``bilinear`` or ``bicubic``), as Real-ESRGAN's chain does."""
    import cv2

    flags = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    batch = _check(batch)
    return _per_channel(batch, lambda p: cv2.resize(p, (int(width), int(height)), interpolation=flags[interpolation]))


# -- noise -------------------------------------------------------------------------------------
def gaussian_noise(batch: np.ndarray, rng: np.random.Generator, sigma: float = NOISE_SIGMA,
                   gray: bool = False) -> np.ndarray:
    """Add N(0, (sigma/255)^2) in [0, 1] units (i.e. ``2*sigma/255`` in [-1, 1] units); not clipped.

    ``gray``: one noise plane shared by all channels (Real-ESRGAN's "gray noise").
    """
    batch = _check(batch)
    n, c, h, w = batch.shape
    noise = rng.standard_normal((n, 1 if gray else c, h, w)).astype(np.float32) * np.float32(2.0 * sigma / 255.0)
    return batch + noise


def poisson_noise(batch: np.ndarray, rng: np.random.Generator, peak: float = 255.0, gray: bool = False) -> np.ndarray:
    """Shot noise: each pixel's [0, 1] intensity ``x`` becomes ``Poisson(x * peak) / peak``.

    ``peak`` is the photon count of a full-white pixel: the noise variance at intensity ``x`` is
    ``x / peak`` (in [0, 1] units). ``gray``: the noise of the channels' mean, shared by all.
    """
    batch = _check(batch)
    x = np.clip(to01(batch), 0.0, 1.0).astype(np.float64)
    if gray:
        mean = x.mean(axis=1, keepdims=True)
        noisy = x + (rng.poisson(mean * peak) / peak - mean)
    else:
        noisy = rng.poisson(x * peak) / peak
    return from01(noisy)


# -- blur ----------------------------------------------------------------------------------------
def gaussian_kernel(sigma: float, size: int | None = None) -> np.ndarray:
    """Normalised isotropic 2-D Gaussian kernel (``size`` odd; default covers +-3 sigma)."""
    import cv2

    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1
    k1 = cv2.getGaussianKernel(int(size), float(sigma), cv2.CV_64F)
    k = k1 @ k1.T
    return (k / k.sum()).astype(np.float32)


def motion_kernel(length: int, angle_deg: float, size: int | None = None) -> np.ndarray:
    """Normalised linear motion kernel: a line of ``length`` pixels at ``angle_deg`` (anti-aliased)."""
    import cv2

    size = int(size or (length if length % 2 else length + 1))
    # drawn 8x larger, then area-averaged down: a sub-pixel, anti-aliased line
    big = np.zeros((size * 8, size * 8), np.float32)
    cx = cy = size * 8 / 2.0 - 0.5  # the centre of the middle pixel in the 8x canvas
    dx = math.cos(math.radians(angle_deg)) * (length - 1) * 4.0
    dy = math.sin(math.radians(angle_deg)) * (length - 1) * 4.0
    shift = 4
    pt = lambda x, y: (int(round(x * (1 << shift))), int(round(y * (1 << shift))))  # noqa: E731
    cv2.line(big, pt(cx - dx, cy - dy), pt(cx + dx, cy + dy), 1.0, thickness=8, lineType=cv2.LINE_AA, shift=shift)
    k = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return (k / k.sum()).astype(np.float32)


def blur(batch: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every plane with ``kernel`` (OpenCV ``filter2D``, reflected borders)."""
    import cv2

    kernel = np.asarray(kernel, np.float32)
    # filter2D correlates; flipping makes it a true convolution (the same for symmetric kernels)
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    return _per_channel(_check(batch), lambda p: cv2.filter2D(p, -1, flipped, borderType=cv2.BORDER_REFLECT_101))


# -- JPEG ------------------------------------------------------------------------------------------
def jpeg_bytes(image01_hwc: np.ndarray, quality: int) -> bytes:
    """One image (``[H, W, C]`` in [0, 1], C = 1 or 3) as a Pillow JPEG file of ``quality``."""
    from PIL import Image

    u8 = np.round(np.clip(image01_hwc, 0.0, 1.0) * 255.0).astype(np.uint8)
    img = Image.fromarray(u8[..., 0], mode="L") if u8.shape[2] == 1 else Image.fromarray(u8, mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg(batch: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Compress and decompress every image with Pillow's JPEG at ``quality`` (1..95)."""
    from PIL import Image

    batch = _check(batch)
    out = np.empty_like(batch)
    for i, img in enumerate(to01(batch)):
        with Image.open(io.BytesIO(jpeg_bytes(img.transpose(1, 2, 0), quality))) as decoded:
            arr = np.asarray(decoded, np.float32) / 255.0
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return from01(out)


# -- Real-ESRGAN-style second-order chain ----------------------------------------------------------
def _random_kernel(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.7:
        return gaussian_kernel(float(rng.uniform(0.2, 2.0)), size=int(rng.choice([7, 9, 11])))
    return motion_kernel(int(rng.integers(3, 8)), float(rng.uniform(0, 180)))


def _one_stage(img: np.ndarray, rng: np.random.Generator, size_range: tuple[float, float], sigma_max: float,
               blur_p: float) -> np.ndarray:
    """One order of the chain on one image ``[1, C, H, W]``: blur, resize, noise, JPEG."""
    if rng.random() < blur_p:
        img = blur(img, _random_kernel(rng))
    h, w = img.shape[2:]
    f = float(rng.uniform(*size_range))
    img = resize(img, max(2, round(h * f)), max(2, round(w * f)), str(rng.choice(["area", "bilinear", "bicubic"])))
    gray = bool(rng.random() < 0.4)
    if rng.random() < 0.5:
        img = gaussian_noise(img, rng, sigma=float(rng.uniform(1.0, sigma_max)), gray=gray)
    else:
        img = poisson_noise(img, rng, peak=float(10 ** rng.uniform(1.7, 3.0)), gray=gray)
    return jpeg(np.clip(img, -1.0, 1.0), quality=int(rng.integers(30, 96)))


def real_chain(batch: np.ndarray, rng: np.random.Generator, scale: int = 2) -> np.ndarray:
    """The ``real`` degradation: two random orders of degradation, then the final resize to 1/``scale``."""
    batch = _check(batch)
    n, c, h, w = batch.shape
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the scale {scale}")
    out = []
    for i in range(n):
        img = batch[i : i + 1]
        img = _one_stage(img, rng, (0.5, 1.5), 30.0, 1.0)
        img = _one_stage(img, rng, (0.6, 1.2), 25.0, 0.8)
        quality = int(rng.integers(30, 96))
        final = str(rng.choice(["area", "bilinear", "bicubic"]))
        if rng.random() < 0.5:
            img = jpeg(resize(img, h // scale, w // scale, final), quality)
        else:
            img = resize(jpeg(img, quality), h // scale, w // scale, final)
        out.append(img)
    return np.concatenate(out)


# -- the named degradations --------------------------------------------------------------------------
def degrade(name: str, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The low-quality input for ``clean`` ([N, C, H, W] in [-1, 1]) under degradation ``name``.

    Returns float32 ``[N, C, H / s, W / s]`` in [-1, 1], rounded to 8-bit levels, where
    ``s = SCALES[name]``. Only ``noise`` and ``real`` draw from ``rng``.
    """
    clean = _check(clean)
    if name in ("sr2", "sr4"):
        lq = downscale(clean, SCALES[name])
    elif name == "noise":
        lq = gaussian_noise(clean, rng, NOISE_SIGMA)
    elif name == "blur":
        lq = blur(clean, gaussian_kernel(BLUR_SIGMA))
    elif name == "jpeg":
        lq = jpeg(clean, JPEG_QUALITY)
    elif name == "real":
        lq = real_chain(clean, rng, SCALES[name])
    else:
        raise ValueError(f"unknown degradation {name!r}; choose from {', '.join(NAMES)}")
    return quantize(lq)
