"""Exporter and runtime: the ONNX file contract, parity failures, runtime errors."""

from __future__ import annotations

import importlib
import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gankit import runtime
from gankit.errors import GankitError
from tests.conftest import assert_one_line_error

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
FAMILIES = ("gan", "cgan", "inpaint")
CONTRACT_KEYS = ("gankit.format", "gankit.plugin", "gankit.task", "gankit.latent_dim", "gankit.num_classes",
                 "gankit.class_names", "gankit.channels", "gankit.height", "gankit.width", "gankit.value_range",
                 "gankit.version")


def bare_run(path, batch: int):
    """Run a gankit file with onnxruntime + numpy only, from its metadata alone."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    c, h, w = int(meta["gankit.channels"]), int(meta["gankit.height"]), int(meta["gankit.width"])
    rng = np.random.default_rng(0)
    if meta["gankit.task"] == "inpaint":
        image = rng.uniform(-1, 1, (batch, c, h, w)).astype(np.float32)
        mask = (rng.uniform(size=(batch, 1, h, w)) > 0.5).astype(np.float32)
        feeds = {"image": image, "mask": mask}
    else:
        feeds = {"z": rng.standard_normal((batch, int(meta["gankit.latent_dim"]))).astype(np.float32)}
        k = int(meta["gankit.num_classes"])
        if k:
            feeds["label"] = (np.arange(batch) % k).astype(np.int64)
    (out,) = sess.run(None, feeds)
    return meta, feeds, out, (c, h, w)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch", [1, 5])
def test_bare_onnxruntime_runs_from_metadata(tiny_runs, family, batch):
    meta, feeds, out, (c, h, w) = bare_run(tiny_runs[family]["onnx"], batch)
    assert out.shape == (batch, c, h, w) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    if family == "inpaint":
        known = feeds["mask"] == 0
        kept = np.broadcast_to(known, out.shape)
        assert np.max(np.abs(out[kept] - feeds["image"][kept])) < 2e-3  # [-1,1] units: < 1e-3 in [0,1]


@pytest.mark.parametrize("family", FAMILIES)
def test_file_contract(tiny_runs, family):
    model = onnx.load(str(tiny_runs[family]["onnx"]))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    meta = {p.key: p.value for p in model.metadata_props}
    for key in CONTRACT_KEYS:
        assert key in meta, key
    assert meta["gankit.format"] == "1" and meta["gankit.value_range"] == "-1,1"
    assert meta["gankit.plugin"] == family
    inputs = [i.name for i in model.graph.input]
    expected = {"gan": ["z"], "cgan": ["z", "label"], "inpaint": ["image", "mask"]}[family]
    assert inputs == expected
    assert [o.name for o in model.graph.output] == ["restored" if family == "inpaint" else "image"]
    for inp in model.graph.input:  # dynamic batch axis
        assert inp.type.tensor_type.shape.dim[0].dim_param
    if family == "cgan":
        assert json.loads(meta["gankit.class_names"]) == [str(i) for i in range(10)]
        assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_runtime_generate(tiny_runs):
    m = runtime.load(tiny_runs["cgan"]["onnx"])
    assert m.task == "generate" and m.num_classes == 10 and m.latent_dim > 0
    a = m.generate(7, labels=3, seed=1)
    b = m.generate(7, labels=3, seed=1, batch_size=2)  # split into batches: same result
    assert a.shape == (7, 28, 28, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, m.generate(7, labels=3, seed=2))
    pil = m.generate(2, labels="5", seed=0, as_pil=True)
    assert pil[0].size == (28, 28)
    assert m.providers == ["CPUExecutionProvider"]


def test_runtime_errors(tiny_runs, tmp_path):
    m = runtime.load(tiny_runs["cgan"]["onnx"])
    with pytest.raises(runtime.RuntimeInputError, match="out of range"):
        m.generate(2, labels=10)
    with pytest.raises(runtime.RuntimeInputError, match="out of range"):
        m.generate(2, labels=-1)
    with pytest.raises(runtime.RuntimeInputError, match="unknown class name"):
        m.generate(2, labels="cat")
    with pytest.raises(runtime.RuntimeInputError, match="positive"):
        m.generate(0)
    g = runtime.load(tiny_runs["gan"]["onnx"])
    with pytest.raises(runtime.RuntimeInputError, match="unconditional"):
        g.generate(2, labels=1)
    with pytest.raises(runtime.ModelFormatError, match="not found"):
        runtime.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(runtime.ModelFormatError, match="not a loadable ONNX"):
        runtime.load(junk)
    with pytest.raises(runtime.RuntimeInputError, match="backend"):
        runtime.load(tiny_runs["gan"]["onnx"], backend="tensorflow")


def _plain_onnx(path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["z"], ["image"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9  # what onnxruntime reads
    onnx.save(model, str(path))
    return path


def test_non_gankit_onnx_is_refused(tmp_path, cli):
    path = _plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(runtime.ModelFormatError, match="not a gankit model"):
        runtime.load(path)
    assert_one_line_error(cli("generate", path, "--out", tmp_path / "g.png"), 2)
    assert not (tmp_path / "g.png").exists()


def test_inpaint_runtime(tiny_runs):
    m = runtime.load(tiny_runs["inpaint"]["onnx"])
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)  # larger than the model, RGB into a gray model
    mask = np.zeros((50, 70), bool)
    mask[10:20, 30:45] = True
    out = m.inpaint(img, mask)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], img[~mask])
    small = m.inpaint(img[:10, :10, 0], mask[:10, :10] | True)
    assert small.shape == (10, 10)  # [H, W] in, [H, W] out
    assert m.inpaint(img[:10, :10, :1], mask[:10, :10]).shape == (10, 10, 1)
    with pytest.raises(runtime.RuntimeInputError, match="must match"):
        m.inpaint(img, mask[:40])
    with pytest.raises(runtime.RuntimeInputError, match="inpainting model"):
        m.generate(2)


def test_cli_generate_and_overwrite(tiny_runs, cli, tmp_path):
    out = tmp_path / "grid.png"
    r = cli("generate", tiny_runs["cgan"]["onnx"], "--n", "20", "--seed", "0", "--out", out)
    assert r.code == 0, r.err
    before = out.read_bytes()
    assert_one_line_error(cli("generate", tiny_runs["cgan"]["onnx"], "--out", out), 2)
    assert out.read_bytes() == before
    assert_one_line_error(cli("generate", tiny_runs["cgan"]["onnx"], "--label", "12", "--out", tmp_path / "x.png"), 2)
    assert cli("generate", tiny_runs["cgan"]["onnx"], "--label", "7", "--n", "4", "--out", tmp_path / "s.png").code == 0


def test_export_cli_refuses_to_overwrite(tiny_runs, cli, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep me")
    assert_one_line_error(cli("export", tiny_runs["gan"]["run"], "--out", target), 2)
    assert target.read_bytes() == b"keep me"
    r = cli("export", tiny_runs["gan"]["run"], "--out", target, "--overwrite")
    assert r.code == 0, r.err
    assert runtime.load(target).task == "generate"


# -- int8 files (issue 28) ----------------------------------------------------------------
@pytest.mark.parametrize("family", ["cgan", "inpaint"])
def test_int8_export_writes_a_quantised_file_that_runs_like_the_fp32_one(tiny_runs, cli, tmp_path, family):
    out = tmp_path / f"{family}-int8.onnx"
    r = cli("export", tiny_runs[family]["run"], "--int8", "--out", out)
    assert r.code == 0, r.err
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really quantised, not a copy
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["gankit.precision"] == "int8" and float(meta["gankit.int8_psnr_db"]) >= 20
    assert f"{meta['gankit.int8_psnr_db']} dB" in " ".join(r.out.split())
    assert meta["gankit.int8_weight_bits"] in ("7", "8")
    fp32 = runtime.load(tiny_runs[family]["onnx"])
    for backend in ("onnxruntime", "openvino") if HAS_OPENVINO else ("onnxruntime",):
        q = runtime.load(out, backend=backend)
        assert q.task == fp32.task and q.height == fp32.height
        if backend == "openvino":
            assert "f32" in q.providers[0]  # an int8 file keeps its float rest in fp32 (auto precision)
        if family == "cgan":
            a, b = q.generate(16, labels=3, seed=0), fp32.generate(16, labels=3, seed=0)
        else:
            img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
            mask = np.zeros((28, 28), bool)
            mask[8:20, 8:20] = True
            a, b = q.inpaint(img, mask), fp32.inpaint(img, mask)
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 8, (backend, diff.mean())  # close to the fp32 images, not equal to them


def test_int8_export_of_a_restore_run_keeps_any_size_inputs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("train", "--plugin", "restore", "--data", "mnist5k", "--steps", "2", "--batch-size", "4", "--out", "run",
            "--no-evaluate", "--no-export")
    assert r.code == 0, r.err
    r = cli("export", "run", "--int8")
    assert r.code == 0, r.err
    q = runtime.load(tmp_path / "exported" / "run-int8.onnx")
    img = np.random.default_rng(0).integers(0, 256, (23, 37), dtype=np.uint8)  # not the trained patch size
    out = q.restore(img)
    assert out.shape == (23 * q.scale, 37 * q.scale) and out.dtype == np.uint8  # [H, W] in, [sH, sW] out


def test_int8_export_that_strays_from_fp32_fails_and_writes_nothing(tiny_runs, cli, tmp_path, monkeypatch):
    import gankit.export

    monkeypatch.setattr(gankit.export, "INT8_MIN_PSNR_DB", float("inf"))  # no file reaches it, not even a copy
    out = tmp_path / "gan-int8.onnx"
    r = cli("export", tiny_runs["gan"]["run"], "--int8", "--out", out)
    assert_one_line_error(r, 1)  # an export that fails its check, not bad input
    assert "dB PSNR against the fp32 one" in r.err and not out.exists()
    assert_one_line_error(cli("export", "--triton", tmp_path / "repo", tiny_runs["gan"]["onnx"], "--int8"))


# -- parity failures ----------------------------------------------------------------------
def _gan_config():
    return {"latent_dim": 8, "channels": 1, "height": 8, "width": 8, "num_classes": 0, "data": "none"}


def test_parity_mismatch_is_caught(tmp_path):
    import torch

    from gankit.export import ExportError, check_parity, export_generator
    from gankit.family import ModelFamily

    class Tiny(torch.nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.fc = torch.nn.Linear(8, 64)
            self.scale = scale

        def forward(self, z):
            return torch.tanh(self.fc(z) * self.scale).view(-1, 1, 8, 8)

    fam = ModelFamily(name="tiny")
    cfg = _gan_config()
    torch.manual_seed(0)
    good = Tiny()
    path = export_generator(fam, cfg, good, tmp_path / "tiny.onnx")
    other = Tiny(scale=1.01)
    other.load_state_dict(good.state_dict())
    with pytest.raises(ExportError) as info:
        check_parity(fam, cfg, other, path.read_bytes())
    msg = str(info.value)
    assert "output 'image'" in msg and "differs" in msg and "\n" not in msg


def test_non_exportable_module_fails_with_one_line(tmp_path):
    import torch

    from gankit.export import ExportError, export_generator
    from gankit.family import ModelFamily

    class DataDependent(torch.nn.Module):
        def forward(self, z):
            out = torch.tanh(z[:, :1].repeat(1, 64)).view(-1, 1, 8, 8)
            return out.nonzero().float().sum() * 0 + out if float(z.sum()) > 0 else -out

    with pytest.raises(ExportError) as info:
        export_generator(ModelFamily(name="bad"), _gan_config(), DataDependent(), tmp_path / "bad.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.onnx").exists()
    assert isinstance(info.value, GankitError)


def test_spectral_norm_and_batchnorm_are_folded_away():
    import torch

    from gankit.export import prepare_for_export

    m = torch.nn.Sequential(
        torch.nn.utils.parametrizations.spectral_norm(torch.nn.Conv2d(2, 4, 3, padding=1)),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
    )
    m.train()
    for _ in range(3):
        m(torch.randn(4, 2, 5, 5))
    m.eval()
    x = torch.randn(3, 2, 5, 5)
    with torch.no_grad():
        ref = m(x)
        p = prepare_for_export(m)
        assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in p.modules())
        assert not torch.nn.utils.parametrize.is_parametrized(p[0])
        assert torch.allclose(p(x), ref, atol=1e-5)


def test_tiling_with_more_tiles_than_the_batch_runs_every_tile_in_batches():
    """A 28x28 model on a 70x70 image: 16 tiles with holes, run 3 at a time, give exactly the
    image one batch of all of them gives."""
    from gankit.runtime.tiles import inpaint_any_size

    class Fake:
        height = width = 28

        def __init__(self):
            self.batches: list[int] = []

        def run_raw_inpaint(self, imgs, msks):
            self.batches.append(len(imgs))
            # depends on the tile's content, so a tile run twice, skipped or misplaced shows
            return np.tanh(imgs * 0.5 + imgs.mean(axis=(1, 2, 3), keepdims=True)) * msks + imgs * (1 - msks)

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 70, 3), dtype=np.uint8)
    mask = rng.random((70, 70)) < 0.05
    small, big = Fake(), Fake()
    out_small = inpaint_any_size(small, image, mask, batch_size=3)
    out_big = inpaint_any_size(big, image, mask, batch_size=64)
    assert big.batches == [16] and sum(small.batches) == 16 and max(small.batches) == 3
    assert np.array_equal(out_small, out_big)
    assert np.array_equal(out_small[~mask], image[~mask]) and not np.array_equal(out_small[mask], image[mask])


def test_export_is_byte_for_byte_repeatable_with_the_torchlib_table_read_once(tiny_runs, tmp_path, monkeypatch):
    """The exporter reads onnxscript's torchlib table once per process (gankit.export's
    _torchlib_table_once): the list torch reads is built once over two exports, and an export with
    the table read afresh writes the same bytes as one from the kept table."""
    import gankit.export as ge

    lazy = pytest.importorskip("torch.onnx._internal._lazy_import")  # private: where torch reads it
    module = importlib.import_module(lazy.onnxscript_apis._name)
    original = getattr(module.get_torchlib_ops, "__wrapped__", module.get_torchlib_ops)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    run = tiny_runs["cgan"]["run"]
    with monkeypatch.context() as m:
        m.setattr(module, "get_torchlib_ops", counted)  # as if no export had run in this process
        ge.export_run(run, tmp_path / "kept.onnx")
        ge.export_run(run, tmp_path / "kept2.onnx")
        assert getattr(module.get_torchlib_ops, "_gankit_once", False) and len(calls) == 1
        m.setattr(ge, "_torchlib_table_once", lambda: None)
        m.setattr(module, "get_torchlib_ops", original)
        ge.export_run(run, tmp_path / "fresh.onnx")
    assert (tmp_path / "kept.onnx").read_bytes() == (tmp_path / "fresh.onnx").read_bytes()
