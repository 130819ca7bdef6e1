"""Inpainting: the composite keeps known pixels; the inpaint command and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error


def test_generator_keeps_known_pixels_exactly():
    import torch

    from gankit_inpaint.model import InpaintGenerator

    torch.manual_seed(0)
    G = InpaintGenerator(channels=3, width=8).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    m = (torch.rand(4, 1, 32, 32) > 0.7).float()
    with torch.no_grad():
        y = G(image=x * (1 - m), mask=m)
    known = (m == 0).expand_as(x)
    assert torch.equal(y[known], x[known])
    assert not torch.equal(y[~known], x[~known])


def _write(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_inpaint_cli(tiny_runs, cli, tmp_path):
    rng = np.random.default_rng(0)
    img = _write(tmp_path / "in.png", rng.integers(0, 255, (40, 36, 4), dtype=np.uint8))  # RGBA
    mask_arr = np.zeros((40, 36), np.uint8)
    mask_arr[5:15, 5:15] = 255
    mask = _write(tmp_path / "mask.png", mask_arr)
    out, cmp = tmp_path / "out.png", tmp_path / "cmp.png"
    r = cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", img, "--mask", mask, "--out", out, "--compare", cmp)
    assert r.code == 0, r.err
    res = np.asarray(Image.open(out))
    src = np.asarray(Image.open(img))
    assert res.shape == src.shape
    keep = mask_arr == 0
    assert np.array_equal(res[keep], src[keep])
    assert np.array_equal(res[..., 3], src[..., 3])  # alpha untouched
    assert Image.open(cmp).size == (36 * 2 + 4, 40)


def test_inpaint_keeps_sixteen_bit_colour_and_alpha(tiny_runs, cli, tmp_path):
    """A 64-bit RGBA PNG (read and written by OpenCV, which Pillow cannot) comes back at 16 bits:
    known pixels and the alpha bit for bit, the hole filled."""
    import cv2

    rgba = np.random.default_rng(1).integers(0, 65536, (40, 36, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), rgba[..., [2, 1, 0, 3]])
    mask_arr = np.zeros((40, 36), np.uint8)
    mask_arr[5:15, 5:15] = 255
    mask = _write(tmp_path / "mask.png", mask_arr)
    out = tmp_path / "out.png"
    r = cli("inpaint", tiny_runs["inpaint"]["onnx"], "--image", tmp_path / "in.png", "--mask", mask, "--out", out)
    assert r.code == 0, r.err
    res = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]]
    assert res.dtype == np.uint16 and res.shape == rgba.shape
    keep = mask_arr == 0
    np.testing.assert_array_equal(res[keep], rgba[keep])
    np.testing.assert_array_equal(res[..., 3], rgba[..., 3])
    assert not np.array_equal(res[~keep][..., :3], rgba[~keep][..., :3])


@pytest.mark.parametrize("case", ["size-mismatch", "missing-image", "corrupt-image", "truncated", "generator-model"])
def test_inpaint_cli_errors(tiny_runs, cli, tmp_path, case):
    rng = np.random.default_rng(0)
    img = _write(tmp_path / "in.png", rng.integers(0, 255, (30, 30), dtype=np.uint8))
    mask = _write(tmp_path / "mask.png", np.zeros((30, 30), np.uint8))
    model = tiny_runs["inpaint"]["onnx"]
    if case == "size-mismatch":
        mask = _write(tmp_path / "mask2.png", np.zeros((20, 30), np.uint8))
    elif case == "missing-image":
        img = tmp_path / "nope.png"
    elif case == "corrupt-image":
        img.write_bytes(b"garbage" * 10)
    elif case == "truncated":
        data = img.read_bytes()
        img.write_bytes(data[: len(data) // 2])
    elif case == "generator-model":
        model = tiny_runs["gan"]["onnx"]
    out = tmp_path / "out.png"
    assert_one_line_error(cli("inpaint", model, "--image", img, "--mask", mask, "--out", out), 2)
    assert not out.exists()


def test_inpaint_never_writes_over_its_own_inputs(tiny_runs, cli, tmp_path):
    """--overwrite replaces earlier results, never the image, mask or model the command reads."""
    rng = np.random.default_rng(0)
    img = _write(tmp_path / "in.png", rng.integers(0, 255, (30, 30), dtype=np.uint8))
    mask = _write(tmp_path / "mask.png", np.zeros((30, 30), np.uint8))
    before = {p: p.read_bytes() for p in (img, mask)}
    model = tiny_runs["inpaint"]["onnx"]
    for extra, needle in (
        (("--out", mask), "--out"), (("--out", img), "--out"),
        (("--out", tmp_path / "o.png", "--compare", img), "--compare"),
        (("--out", tmp_path / "o.png", "--compare", tmp_path / "o.png"), "name the same file"),
    ):
        r = cli("inpaint", model, "--image", img, "--mask", mask, *extra, "--overwrite")
        assert_one_line_error(r, 2)
        assert needle in r.err, r.err
    assert {p: p.read_bytes() for p in (img, mask)} == before and not (tmp_path / "o.png").exists()


def test_coarse_fill_keeps_known_pixels_and_fills_holes_from_their_surroundings():
    import torch

    from gankit_inpaint.model import fill_holes

    def push_pull_fill(image, mask):
        return fill_holes("biharmonic", image, mask)

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 28, 28, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 28, 28)
    mask[:, :, 8:18, 5:15] = 1
    out = push_pull_fill(image * (1 - mask), mask)
    assert torch.equal(out * (1 - mask), image * (1 - mask))  # known pixels exactly as given
    # a constant image with a hole comes back constant: the fill only interpolates what is around it
    flat = torch.full((1, 1, 28, 28), 0.3)
    assert torch.allclose(push_pull_fill(flat * (1 - mask[:1]), mask[:1]), flat, atol=1e-5)
    # a left-right ramp: the hole is filled between the values at its edges, not with the mean colour
    ramp = torch.linspace(-1, 1, 28).expand(1, 1, 28, 28).clone()
    filled = push_pull_fill(ramp * (1 - mask[:1]), mask[:1])
    inside = filled[0, 0, 8:18, 5:15]
    assert float(inside.min()) >= float(ramp[0, 0, 0, 4]) - 0.05 and float(inside.max()) <= float(ramp[0, 0, 0, 15]) + 0.05
    assert float((inside - ramp[0, 0, 8:18, 5:15]).abs().mean()) < 0.1


def test_biharmonic_fill_continues_gradients_where_a_harmonic_one_flattens():
    """A bowl (quadratic) image: a harmonic fill (Laplace's equation, solved here by Jacobi
    iterations as the reference) flattens the hole; the thin-plate fill follows the curvature
    of the surroundings."""
    import torch
    import torch.nn.functional as F

    from gankit_inpaint.model import fill_holes

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    bowl = (xx**2 + yy**2 - 1).expand(1, 1, 32, 32).clone()
    mask = torch.zeros(1, 1, 32, 32)
    mask[:, :, 10:22, 10:22] = 1
    harmonic = bowl * (1 - mask)
    for _ in range(2000):
        harmonic = mask * F.avg_pool2d(F.pad(harmonic, (1, 1, 1, 1), mode="replicate"), 3, 1) + (1 - mask) * bowl
    fills = {"harmonic": harmonic, "biharmonic": fill_holes("biharmonic", bowl * (1 - mask), mask)}
    err = {k: float(((v - bowl) * mask).abs().sum() / mask.sum()) for k, v in fills.items()}
    assert err["biharmonic"] < 0.5 * err["harmonic"], err


def test_data_defaults_apply_per_dataset_and_options_still_win():
    from types import SimpleNamespace

    from gankit.plugins import get_family
    from gankit.train.config import build_config

    family = get_family("inpaint")
    photos = SimpleNamespace(shape=(3, 64, 64), num_classes=0, class_names=[])
    digits = SimpleNamespace(shape=(1, 28, 28), num_classes=10, class_names=[str(i) for i in range(10)])
    kw = dict(seed=0, device="cpu")
    per_photos, default = family.data_defaults["photos"]["coarse_fill"], family.defaults["coarse_fill"]
    assert per_photos != default  # otherwise this test could not tell the two apart
    assert build_config(family, photos, data="photos", overrides={}, **kw)["coarse_fill"] == per_photos
    assert build_config(family, digits, data="mnist5k", overrides={}, **kw)["coarse_fill"] == default
    over = build_config(family, photos, data="photos", overrides={"coarse_fill": default, "steps": 7}, **kw)
    assert (over["coarse_fill"], over["steps"]) == (default, 7)


def test_hole_realism_ranks_fills_of_photo_holes():
    """The hole patch-statistics FD: 0 for the true pixels, and a smooth (mean) fill or a fill
    blurred into the hole scores worse than the true texture, on the held-out photos."""
    from scipy.ndimage import gaussian_filter

    from gankit.data import held_out, to_float
    from gankit.evaluate.inpainting import evaluate_inpainting
    from gankit.plugins import load_dataset

    ds = load_dataset("photos")
    clean = to_float(held_out(ds.x_test, 40))  # the images evaluate_inpainting(limit=40) judges
    blurred = np.stack([gaussian_filter(im, sigma=(0, 1.5, 1.5)) for im in clean])

    def fill_with(source):
        return lambda img, m: source[: len(img)] * m + img * (1 - m)

    exact = evaluate_inpainting(fill_with(clean), ds, limit=40, baselines=True)
    soft = evaluate_inpainting(fill_with(blurred), ds, limit=40, baselines=False)
    for kind in ("rect", "strokes"):
        assert exact["masks"][kind]["realism_tiles"] >= 20
        assert exact["results"][kind]["model"]["hole_patch_fd"] == 0.0
        assert soft["results"][kind]["model"]["hole_patch_fd"] > 0.5  # blur shows in the gradient energy
    assert exact["results"]["rect"]["mean fill"]["hole_patch_fd"] > 1.0  # a flat hole is not a photo


def test_hole_realism_looks_only_at_the_hole_tiles():
    """Changing pixels far from the holes leaves the distance at 0; changing them inside the holes
    moves it: the tiles scored are the hole's, in the order patch_features lists them."""
    from gankit.evaluate.inpainting import _HoleRealism

    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (16, 3, 64, 60)).astype(np.float32)  # 60: not a multiple of 8 on purpose
    mask = np.zeros((16, 1, 64, 60), np.float32)
    mask[:, :, 8:24, 16:32] = 1  # four whole tiles per image: rows 1-2, columns 2-3
    realism = _HoleRealism(clean, mask)
    assert realism.ok and int(realism.tiles.sum()) == 16 * 4
    far = clean.copy()
    far[:, :, 48:, 40:] = 0.5  # flat, far from every hole tile
    assert realism.score(far) == 0.0
    inside = clean.copy()
    inside[:, :, 8:24, 16:32] = 0.5  # the holes filled flat
    assert realism.score(inside) > 1.0
