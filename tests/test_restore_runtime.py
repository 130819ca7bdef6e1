"""The restore task in the torch-free runtime (issue 24): the file contract, ``GankitModel.restore``
in tiles with context padding, channel handling, depths and alpha, and typed refusals.

The models are hand-made (tests/restore_models.py): an identity x1, nearest/bilinear x2 and a
random stack of 3x3 convolutions x2, exported with dynamic H and W like the restore family's.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from gankit import runtime
from gankit.errors import GankitError
from tests.conftest import run_subprocess
from tests.restore_models import (make_resize_restorer, make_torch_restorer, restore_meta, torch_run, write_meta)
from tests.serve_models import make_generator, make_inpainter

TYPED = (runtime.RuntimeInputError, runtime.ModelFormatError)
LAYERS = 4  # the conv test model's 3x3 convolutions: its receptive field reaches 4 input pixels per side


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, TYPED) and isinstance(exc, GankitError) and exc.exit_code == 2, repr(exc)
    assert "\n" not in str(exc) and str(exc).strip(), repr(exc)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("restore-models")
    out = {}
    for name, kind, kw in (("id", "identity", {}), ("near", "nearest", {}), ("bil", "bilinear", {}),
                           ("conv", "conv", {"layers": LAYERS}), ("conv_gray", "conv", {"c": 1, "layers": LAYERS}),
                           ("near4_gray", "nearest", {"c": 1, "scale": 4})):
        out[name] = make_torch_restorer(d / f"{name}.onnx", kind, **kw)
    return out


@pytest.fixture(scope="module")
def models(files):
    return {k: runtime.load(p) for k, (p, _) in files.items()}


def _rgb(h, w, c=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random((h, w, c)).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=dtype)


# == the file contract ==========================================================================
def test_restore_files_load_with_their_scale_and_degradation(models):
    m = models["near"]
    assert (m.task, m.scale, m.degradation, m.size_multiple, m.channels) == ("restore", 2, "sr2", 1, 3)
    assert (m.height, m.width) == (32, 32)  # the trained output patch; the probe fed 16x16
    assert "x2 sr2" in repr(m)
    assert models["id"].scale == 1 and models["near4_gray"].scale == 4


@pytest.mark.parametrize("changes, match", [
    ({"gankit.scale": None}, "lacks gankit.scale"),
    ({"gankit.scale": "0"}, "between 1 and 8"),
    ({"gankit.scale": "16"}, "between 1 and 8"),
    ({"gankit.scale": "two"}, "not an integer"),
    ({"gankit.scale": "3"}, "not a multiple of gankit.scale 3"),  # 32 / 3
    ({"gankit.scale": "4"}, "gives [1, 3, 16, 16] images but the metadata says [1, 3, 32, 32]"),  # an x2 graph
    ({"gankit.size_multiple": "0"}, "between 1 and 256"),
    ({"gankit.size_multiple": "5"}, "not a multiple of gankit.size_multiple 5"),
    ({"gankit.degradation": "x" * 65}, "at most 64 characters"),
    ({"gankit.degradation": "sr2\x00evil"}, "printable"),
    ({"gankit.channels": "1"}, "shape"),  # a 3-channel graph under 1-channel metadata
])
def test_bad_restore_metadata_is_refused_at_load(files, tmp_path, changes, match):
    src, _ = files["near"]
    meta = {k: v for k, v in restore_meta(c=3, scale=2).items()}
    for k, v in changes.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    dst = tmp_path / "bad.onnx"
    dst.write_bytes(src.read_bytes())
    write_meta(dst, meta)
    with pytest.raises(runtime.ModelFormatError) as err:
        runtime.load(dst)
    _one_line(err.value)
    assert match in str(err.value), str(err.value)


def test_degradation_text_is_collapsed_to_one_line(files, tmp_path):
    dst = tmp_path / "m.onnx"
    dst.write_bytes(files["near"][0].read_bytes())
    write_meta(dst, restore_meta(degradation="  blur\n then  noise "))
    assert runtime.load(dst).degradation == "blur then noise"


def test_a_restore_graph_with_fixed_height_is_refused(tmp_path):
    import torch

    net = torch.nn.Upsample(scale_factor=2, mode="nearest")
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"], output_names=["restored"],
                      opset_version=18, dynamo=False, dynamic_axes={"image": {0: "batch"}, "restored": {0: "batch"}})
    write_meta(path, restore_meta())
    with pytest.raises(runtime.ModelFormatError, match="fixed height 16; a restore model's H and W must be dynamic"):
        runtime.load(path)


def test_a_graph_that_runs_only_at_its_traced_size_is_refused(tmp_path):
    """Declared dynamic, but a Reshape to the traced size (computed from the pixels, so no shape
    inference sees it): only the second probe size finds it."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(32.0, np.float32), "side"),
             numpy_helper.from_array(np.array([-1, 3], np.int64), "head"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [helper.make_node("Resize", ["image", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("ReduceMax", ["image"], ["mx"], keepdims=0),
             helper.make_node("Mul", ["mx", "zero"], ["m0"]), helper.make_node("Add", ["m0", "side"], ["sf"]),
             helper.make_node("Cast", ["sf"], ["si"], to=TensorProto.INT64),
             helper.make_node("Unsqueeze", ["si", "axis0"], ["s1"]),
             helper.make_node("Concat", ["head", "s1", "s1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["up", "shape"], ["restored"])]
    graph = helper.make_graph(nodes, "baked", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
                              [helper.make_tensor_value_info("restored", TensorProto.FLOAT, ["b", 3, "oh", "ow"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "baked.onnx"
    onnx.save(model, str(path))
    write_meta(path, restore_meta())
    with pytest.raises(runtime.ModelFormatError) as err:
        runtime.load(path)
    _one_line(err.value)
    assert "must run at any input size, but a probe run at input size 17x18 failed" in str(err.value), str(err.value)


def test_restore_keys_on_older_tasks_are_ignored_and_old_files_load(tmp_path):
    gen = make_generator(tmp_path / "g.onnx", latent=4, classes=0, c=1, h=8, w=8)
    inp = make_inpainter(tmp_path / "i.onnx", c=1, h=8, w=8)
    for path in (gen, inp):
        model = onnx.load(str(path))
        model.metadata_props.add(key="gankit.scale", value="nonsense")  # means nothing outside restore
        onnx.save(model, str(path))
        m = runtime.load(path)
        assert m.scale == 1 and m.degradation == "" and m.metadata["gankit.scale"] == "nonsense"
    assert runtime.load(gen).generate(2, seed=0).shape == (2, 8, 8, 1)


# == tiles =======================================================================================
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiles_reassemble_an_identity_model_exactly(models, dtype):
    x = _rgb(97, 61, dtype=dtype)
    # integers come back bit for bit; floats through the [-1, 1] codec within rounding, and
    # every tiling gives exactly the whole-image run's floats
    want = x if dtype != np.float32 else models["id"].restore(x, tile=0, tile_pad=0)
    assert np.abs(want.astype(np.float64) - x).max() <= 1e-7
    for tile in (0, 1, 7, 16, 32, 60, 61, 96, 97, 256):
        for pad in (0, 3, 16):
            y = models["id"].restore(x, tile=tile, tile_pad=pad)
            assert y.dtype == x.dtype and y.shape == x.shape
            np.testing.assert_array_equal(y, want, err_msg=f"tile={tile} tile_pad={pad}")


def test_tiles_of_a_nearest_x2_model_equal_pixel_repetition(models):
    x = _rgb(53, 29)
    want = x.repeat(2, axis=0).repeat(2, axis=1)
    for tile in (5, 16, 28, 0):
        np.testing.assert_array_equal(models["near"].restore(x, tile=tile, tile_pad=2), want)


def test_conv_model_tiled_equals_whole_where_the_pad_covers_its_receptive_field(models, files):
    """Tiled and whole-image runs agree within 1e-5, and both equal the torch module run on the
    reflect-padded image; at tile borders the difference is no larger than inside the tiles."""
    x = _rgb(97, 61, dtype=np.float32)
    m, net = models["conv"], files["conv"][1]
    whole = m.restore(x, tile=0, tile_pad=LAYERS)
    padded = np.pad(x * 2 - 1, ((LAYERS, LAYERS), (LAYERS, LAYERS), (0, 0)), mode="reflect")
    ref = torch_run(net, padded.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    ref = np.clip((ref[2 * LAYERS : -2 * LAYERS, 2 * LAYERS : -2 * LAYERS] + 1) / 2, 0, 1)
    assert np.abs(whole - ref).max() <= 1e-5
    s = 2
    for tile in (8, 16, 33):
        border = np.zeros((s * 97, s * 61), bool)  # output pixels next to a tile edge (both sides)
        for k in range(tile, 97, tile):
            border[s * k - 1 : s * k + 1] = True
        for k in range(tile, 61, tile):
            border[:, s * k - 1 : s * k + 1] = True
        tiled = m.restore(x, tile=tile, tile_pad=LAYERS)
        diff = np.abs(tiled - whole).max(axis=2)
        assert diff.max() <= 1e-5, (tile, diff.max())
        assert diff[border].max() <= diff[~border].max() + 1e-6, (tile, diff[border].max(), diff[~border].max())
        # with too little context the seams are real: the check above can fail
        short = np.abs(m.restore(x, tile=tile, tile_pad=1) - whole).max(axis=2)
        assert short[border].max() > 1e-3


def test_batched_tile_runs_give_the_same_pixels(models):
    x = _rgb(70, 45, dtype=np.float32)
    one = models["conv"].restore(x, tile=16, batch_size=1)
    np.testing.assert_allclose(models["conv"].restore(x, tile=16, batch_size=7), one, atol=1e-6)


def test_size_multiple_is_padded_and_cropped(tmp_path):
    """A graph that only runs at multiples of 4 (average-pool / upsample residual) restores any size."""
    import torch
    import torch.nn.functional as F

    class NeedsFour(torch.nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2.0) + 0.0 * F.interpolate(F.avg_pool2d(x, 4), scale_factor=8.0)

    path = tmp_path / "m4.onnx"
    torch.onnx.export(NeedsFour(), (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"],
                      output_names=["restored"], opset_version=18, dynamo=False,
                      dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "restored": {0: "b", 2: "oh", 3: "ow"}})
    write_meta(path, restore_meta(size_multiple=4))
    m = runtime.load(path)
    assert m.size_multiple == 4
    x = _rgb(23, 13)
    for tile, pad in ((0, 0), (5, 1), (256, 16)):
        np.testing.assert_array_equal(m.restore(x, tile=tile, tile_pad=pad), x.repeat(2, 0).repeat(2, 1))
    with pytest.raises(runtime.RuntimeInputError, match="multiples of 4"):
        m.run_raw_restore(np.zeros((1, 3, 10, 12), np.float32))
    assert m.run_raw_restore(np.zeros((2, 3, 8, 12), np.float32)).shape == (2, 3, 16, 24)


def test_tiles_keep_the_block_grid_of_a_size_multiple_model(tmp_path):
    """A model that works on 2x2 blocks (average-pool 2, then upsample x4: x2 overall) is not
    shift-equivariant by one pixel; tiles at any tile / tile_pad / image size must still see
    the whole-image run's block grid and reassemble it exactly."""
    import torch
    import torch.nn.functional as F

    class Blocks(torch.nn.Module):
        def forward(self, x):
            return F.interpolate(F.avg_pool2d(x, 2), scale_factor=4.0)

    path = tmp_path / "blocks.onnx"
    torch.onnx.export(Blocks(), (torch.zeros(1, 3, 16, 16),), str(path), input_names=["image"],
                      output_names=["restored"], opset_version=18, dynamo=False,
                      dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "restored": {0: "b", 2: "oh", 3: "ow"}})
    write_meta(path, restore_meta(size_multiple=2))
    m = runtime.load(path)
    x = _rgb(37, 23, dtype=np.float32, seed=9)
    whole = m.restore(x, tile=0, tile_pad=0)
    blocks = x[:36, :22].reshape(18, 2, 11, 2, 3).mean(axis=(1, 3)).repeat(4, 0).repeat(4, 1)
    assert np.abs(whole[:72, :44] - blocks).max() <= 1e-6  # the block grid starts at the image's corner
    for tile, pad in ((5, 1), (7, 3), (16, 2), (8, 0)):
        tiled = m.restore(x, tile=tile, tile_pad=pad)
        assert tiled.shape == (74, 46, 3)
        assert np.abs(tiled - whole).max() <= 1e-6, (tile, pad, np.abs(tiled - whole).max())


# == channels, depth, alpha ======================================================================
def test_colour_through_a_gray_model_is_restored_channel_by_channel(models):
    x = _rgb(41, 30, dtype=np.float32, seed=3)
    m = models["conv_gray"]
    y = m.restore(x, tile=16)
    per_channel = np.concatenate([m.restore(x[..., k : k + 1], tile=16) for k in range(3)], axis=2)
    assert y.shape == (82, 60, 3)
    np.testing.assert_allclose(y, per_channel, atol=1e-6)
    big = models["near4_gray"].restore(_rgb(9, 7))  # x4, uint8 colour through gray
    np.testing.assert_array_equal(big, _rgb(9, 7).repeat(4, 0).repeat(4, 1))


def test_gray_through_a_colour_model(models):
    g = _rgb(33, 20, c=1, seed=5)
    np.testing.assert_array_equal(models["near"].restore(g), g.repeat(2, 0).repeat(2, 1))
    y = models["conv"].restore(g[..., 0])
    assert y.shape == (66, 40) and y.dtype == np.uint8  # [H, W] in, [sH, sW] out: the layout it came in
    assert models["conv"].restore(g).shape == (66, 40, 1)
    rgb = models["conv"].restore(np.repeat(g, 3, axis=2))
    np.testing.assert_array_equal(y, np.clip(np.rint(rgb.astype(np.float32).mean(axis=2)), 0, 255))


def test_alpha_passes_through_resized_with_the_image(models):
    rgba = _rgb(19, 26, c=4, seed=7)
    same = models["id"].restore(rgba)
    np.testing.assert_array_equal(same, rgba)  # x1: untouched
    up = models["near"].restore(rgba)
    assert up.shape == (38, 52, 4)
    np.testing.assert_array_equal(up[..., :3], rgba[..., :3].repeat(2, 0).repeat(2, 1))
    want = np.asarray(Image.fromarray(rgba[..., 3].astype(np.float32)).resize((52, 38), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(up[..., 3], np.clip(np.rint(want), 0, 255).astype(np.uint8))
    pil = models["near"].restore(Image.fromarray(rgba))  # PIL in, PIL out, alpha kept
    assert pil.mode == "RGBA" and pil.size == (52, 38)
    np.testing.assert_array_equal(np.asarray(pil), up)


def test_sixteen_bit_and_float_stay_at_their_depth(models):
    x16 = _rgb(15, 11, c=1, dtype=np.uint16)
    y16 = models["near"].restore(x16)
    assert y16.dtype == np.uint16
    np.testing.assert_array_equal(y16, x16.repeat(2, 0).repeat(2, 1))  # 16 bits survive the model's float range
    im = models["near"].restore(Image.fromarray(x16[..., 0]))
    assert im.mode.startswith("I;16") and im.size == (22, 30)
    np.testing.assert_array_equal(np.asarray(im), y16[..., 0])
    xf = _rgb(15, 11, dtype=np.float32)
    yf = models["near"].restore(xf)
    assert yf.dtype == np.float32 and np.abs(yf - xf.repeat(2, 0).repeat(2, 1)).max() < 1e-6
    assert isinstance(models["near"].restore(xf, as_pil=True), Image.Image)


# == refusals ====================================================================================
def test_misuse_gives_typed_one_line_errors(models, tmp_path):
    gen = runtime.load(make_generator(tmp_path / "g.onnx", latent=4, classes=0, c=1, h=8, w=8))
    inp = runtime.load(make_inpainter(tmp_path / "i.onnx"))
    m = models["near"]
    cases = [
        (lambda: gen.restore(_rgb(8, 8)), "this is a generator; use generate()"),
        (lambda: inp.restore(_rgb(8, 8)), "this is an inpainting model; use inpaint()"),
        (lambda: m.generate(2), "this is a restore model; use restore()"),
        (lambda: m.inpaint(_rgb(8, 8), np.zeros((8, 8), bool)), "use restore()"),
        (lambda: m.restore(_rgb(8, 8), tile=-1), "tile must be"),
        (lambda: m.restore(_rgb(8, 8), tile=2.5), "tile must be an integer"),
        (lambda: m.restore(_rgb(8, 8), tile_pad=-2), "tile_pad must be"),
        (lambda: m.restore(_rgb(8, 8), batch_size=0), "batch_size must be"),
        (lambda: m.restore(_rgb(8, 8), as_pil="yes"), "as_pil must be True or False"),
        (lambda: m.restore(np.zeros((8, 8, 2), np.uint8)), "image must be"),
        (lambda: m.restore(np.full((4, 4), np.nan, np.float32)), "NaN"),
        (lambda: m.restore(np.full((4, 4), 2.0)), "[0, 1]"),
        (lambda: m.restore("picture.png"), "image must be an array"),
        (lambda: m.restore(np.zeros((0, 5, 3), np.uint8)), "empty"),
        (lambda: m.restore(np.broadcast_to(np.uint8(0), (40000, 40000))), "exceeds the 2 GiB"),
        (lambda: models["conv_gray"].restore(np.broadcast_to(np.uint8(0), (11000, 11000)), tile=0, tile_pad=1024),
         "use a smaller tile"),
        (lambda: m.run_raw_restore(np.zeros((1, 1, 8, 8), np.float32)), "shape [N, 3, H, W]"),
        (lambda: m.run_raw_restore(np.full((1, 3, 8, 8), 3.0, np.float32)), "[-1, 1]"),
    ]
    for call, needle in cases:
        with pytest.raises(TYPED) as err:
            call()
        _one_line(err.value)
        assert needle in str(err.value), (needle, str(err.value))


# == property ====================================================================================
_IMAGES = hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32]),
                     st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])),
                     elements=None)


@settings(max_examples=int(os.environ.get("GANKIT_PROPERTY_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_property_restore_is_pixel_repetition_for_a_nearest_model(models, data):
    """Any image, any tiling: a nearest x2 (or x4 gray) model gives every pixel repeated, at the
    input's dtype and channel count; arguments that are wrong give typed one-line errors only."""
    name = data.draw(st.sampled_from(["near", "near4_gray", "id"]))
    m = models[name]
    x = data.draw(_IMAGES)
    if x.dtype == np.float32 and data.draw(st.booleans()):  # half the float cases made valid
        with np.errstate(invalid="ignore"):
            x = np.nan_to_num(np.abs(x) % 1.0).astype(np.float32)
    tile = data.draw(st.integers(0, 45) | st.integers(-3, 0) | st.none())
    pad = data.draw(st.integers(0, 9) | st.integers(-2, 0) | st.none())
    batch = data.draw(st.integers(1, 9) | st.just(0))
    try:
        y = m.restore(x, tile=tile, tile_pad=pad, batch_size=batch)
    except TYPED as exc:
        _one_line(exc)
        return
    s = m.scale
    assert y.dtype == x.dtype and y.shape == (s * x.shape[0], s * x.shape[1], x.shape[2])
    want = x[..., :3].repeat(s, 0).repeat(s, 1) if x.shape[2] == 4 else x.repeat(s, 0).repeat(s, 1)
    got = y[..., :3] if x.shape[2] == 4 else y
    if x.dtype == np.float32:
        assert np.abs(got - want).max() <= 1e-6
    else:
        np.testing.assert_array_equal(got, want)


# == torch-free ==================================================================================
def test_restore_runs_without_importing_torch(tmp_path):
    path = make_resize_restorer(tmp_path / "up.onnx")
    code = (
        "import sys, numpy as np, gankit.runtime as gr\n"
        f"m = gr.load({str(path)!r})\n"
        "y = m.restore(np.zeros((300, 270, 3), np.uint8), tile=64)\n"
        "assert y.shape == (600, 540, 3), y.shape\n"
        "assert 'torch' not in sys.modules\n"
    )
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr


def test_the_bare_onnxruntime_restore_example_runs(tmp_path):
    """docs/onnx-format.md's restore example, as written, on a restore file and a 13x9 picture."""
    from tests.test_readme import _block

    path = make_resize_restorer(tmp_path / "up.onnx", c=3, scale=2)
    Image.fromarray(_rgb(13, 9)).save(tmp_path / "low.png")
    code = f"MODEL = {str(path)!r}\nLOW = {str(tmp_path / 'low.png')!r}\n" + _block("bare-restore")
    code += "\nimport sys\nassert 'torch' not in sys.modules and 'gankit' not in sys.modules\n"
    r = run_subprocess([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2 (1, 3, 13, 9) (26, 18, 3)", r.stdout
