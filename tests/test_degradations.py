"""gankit.data.degradations does what each degradation claims (the restore family trains and is judged on them)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gankit.data import degradations as dg


def _smooth(n=4, c=3, size=64, seed=0):
    """Smooth random images in [-1, 1] (low-pass noise), the kind of content restoration sees."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    x = dg.blur(x, dg.gaussian_kernel(3.0))
    return np.clip(x / np.abs(x).max() * 0.8, -1, 1)


@pytest.mark.parametrize("name,scale", [("sr2", 2), ("sr4", 4), ("noise", 1), ("blur", 1), ("jpeg", 1), ("real", 2)])
@pytest.mark.parametrize("c", [1, 3])
def test_output_size_is_input_over_scale_and_8bit(name, scale, c):
    x = _smooth(c=c, size=28 if name != "real" else 32)
    lq = dg.degrade(name, x, np.random.default_rng(0))
    assert dg.SCALES[name] == scale
    assert lq.shape == (x.shape[0], c, x.shape[2] // scale, x.shape[3] // scale)
    assert lq.dtype == np.float32 and lq.min() >= -1 and lq.max() <= 1
    levels = dg.to01(lq) * 255
    assert np.abs(levels - np.round(levels)).max() < 1e-3  # rounded to 8-bit levels, like a file


@pytest.mark.parametrize("name", dg.NAMES)
def test_same_seed_same_output_other_seed_differs_where_random(name):
    x = _smooth(size=32)
    a = dg.degrade(name, x, np.random.default_rng(5))
    b = dg.degrade(name, x, np.random.default_rng(5))
    assert np.array_equal(a, b)
    c = dg.degrade(name, x, np.random.default_rng(6))
    assert np.array_equal(a, c) == (name not in ("noise", "real"))


def test_gaussian_noise_has_the_claimed_sigma():
    gray = np.zeros((8, 3, 64, 64), np.float32)  # mid-grey: no clipping at 0 or 255
    for sigma in (5.0, 15.0, 25.0):  # within 5 sigma of mid-grey: clipping never bites
        noisy = dg.degrade("noise", gray, np.random.default_rng(0)) if sigma == 25.0 else \
            dg.quantize(dg.gaussian_noise(gray, np.random.default_rng(0), sigma=sigma))
        measured = float(np.std(dg.to01(noisy) - 0.5) * 255)
        # 98,304 samples: the standard error of the std is ~0.25%; rounding adds 1/12 level^2
        assert measured == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.01)
    # gray noise: one plane for all channels
    g = dg.gaussian_noise(gray, np.random.default_rng(0), sigma=25, gray=True)
    assert np.array_equal(g[:, 0], g[:, 1]) and np.array_equal(g[:, 1], g[:, 2])


def test_poisson_noise_variance_is_intensity_over_peak():
    for level, peak in ((0.2, 100.0), (0.6, 1000.0)):
        x = np.full((4, 1, 128, 128), level * 2 - 1, np.float32)
        y = dg.to01(dg.poisson_noise(x, np.random.default_rng(1), peak=peak))
        assert float(y.mean()) == pytest.approx(level, abs=0.005)
        assert float(y.var()) == pytest.approx(level / peak, rel=0.03)


def test_jpeg_is_written_at_the_claimed_quality():
    img = dg.to01(_smooth(n=1, c=3, size=64))[0].transpose(1, 2, 0)
    data = dg.jpeg_bytes(img, dg.JPEG_QUALITY)
    with Image.open(io.BytesIO(data)) as im:
        q = im.quantization
    # the IJG quality scaling: q < 50 -> scale 5000/q percent of the standard luminance table (DC = 16)
    expected = (16 * (5000 // dg.JPEG_QUALITY) + 50) // 100
    assert q[0][0] == expected == 40
    recovered = 5000 / (q[0][0] * 100 / 16)  # invert the scaling: the quality the file was written at
    assert round(recovered) == dg.JPEG_QUALITY
    # and degrade("jpeg") is exactly that file decoded
    lq = dg.degrade("jpeg", dg.from01(img.transpose(2, 0, 1)[None]), np.random.default_rng(0))
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im, np.float32) / 255
    assert np.abs(dg.to01(lq)[0].transpose(1, 2, 0) - decoded).max() < 1e-6
    # lower quality, smaller file and larger error
    big = dg.jpeg_bytes(img, 90)
    assert len(data) < len(big)


def test_blur_reduces_white_noise_power_by_the_kernels_energy():
    # white noise through a filter k: output variance = input variance * sum(k^2) (Parseval)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 256, 256)).astype(np.float32) * 0.2
    for k in (dg.gaussian_kernel(dg.BLUR_SIGMA), dg.motion_kernel(7, 30.0)):
        y = dg.blur(x, k)
        assert float(y.var() / x.var()) == pytest.approx(float((k.astype(np.float64) ** 2).sum()), rel=0.05)
    # and high frequencies go: the top half of the spectrum loses what the kernel's response says
    y = dg.blur(x, dg.gaussian_kernel(dg.BLUR_SIGMA))
    f = np.fft.fftfreq(256)
    high = (np.abs(f)[:, None] > 0.25) | (np.abs(f)[None, :] > 0.25)
    px, py = np.abs(np.fft.fft2(x[:, 0])) ** 2, np.abs(np.fft.fft2(y[:, 0])) ** 2
    ratio = py[:, high].sum() / px[:, high].sum()
    assert ratio < 0.01  # a sigma-1.6 Gaussian passes exp(-(2 pi 1.6 f)^2) < 0.08 in power above f = 0.25


def test_motion_kernel_is_a_line_at_the_angle():
    k = dg.motion_kernel(9, 0.0)
    assert k.shape == (9, 9) and k.sum() == pytest.approx(1.0, abs=1e-5)
    assert k[4].sum() > 0.85  # horizontal: nearly all weight on the middle row
    k90 = dg.motion_kernel(9, 90.0)
    assert k90[:, 4].sum() > 0.85 and np.allclose(k, k[::-1, ::-1], atol=0.02)  # centred (cv2 ends lines a sub-pixel unevenly)


def test_downscale_antialiases():
    # a checkerboard at the Nyquist frequency: naive decimation keeps every other pixel (all black
    # or all white); an antialiased x2 shrink averages it to mid-grey
    yy, xx = np.mgrid[0:32, 0:32]
    board = np.where((yy + xx) % 2 == 0, 1.0, -1.0).astype(np.float32)[None, None]
    small = dg.downscale(board, 2)
    assert small.shape == (1, 1, 16, 16)
    assert np.abs(small[0, 0, 2:-2, 2:-2]).max() < 0.1
    # a constant stays constant, and a smooth ramp keeps its values at the pixel centres
    const = np.full((1, 3, 16, 16), 0.3, np.float32)
    assert np.abs(dg.downscale(const, 4) - 0.3).max() < 1e-5
    ramp = np.tile(np.linspace(-1, 1, 64, dtype=np.float32), (64, 1))[None, None]
    small = dg.downscale(ramp, 4)[0, 0]
    r = np.linspace(-1, 1, 64)
    expected = (r[np.arange(16) * 4 + 1] + r[np.arange(16) * 4 + 2]) / 2  # output pixel j is centred at input 4j + 1.5
    assert np.abs(small[8, 2:-2] - expected[2:-2]).max() < 1e-3


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="multiple of the scale"):
        dg.degrade("sr4", np.zeros((1, 1, 30, 30), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown degradation"):
        dg.degrade("sr3", np.zeros((1, 1, 32, 32), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        dg.degrade("sr2", np.zeros((32, 32), np.float32), np.random.default_rng(0))


def test_real_chain_varies_per_image_and_is_seeded():
    x = np.repeat(_smooth(n=1, size=32), 4, axis=0)  # four copies of one image
    lq = dg.degrade("real", x, np.random.default_rng(3))
    assert lq.shape == (4, 3, 16, 16)
    # each copy drew its own kernel, resize, noise and JPEG quality
    assert len({lq[i].tobytes() for i in range(4)}) == 4
