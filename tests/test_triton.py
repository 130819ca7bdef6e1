"""`gankit export --triton`: every written config.pbtxt parses with Triton's own ModelConfig schema."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_subprocess
from tests.restore_models import make_resize_restorer
from tests.serve_models import make_generator, make_inpainter


def parse_config(path: Path):
    """Strict parse: an unknown field or a wrongly typed value raises."""
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="pip install 'tritonclient[grpc]'")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), mc.ModelConfig()), mc


def test_triton_repository_matches_the_models(cli, tmp_path):
    import onnx

    cg = make_generator(tmp_path / "cgan-001.onnx", latent=16, classes=10, c=1, h=28, w=28)
    ug = make_generator(tmp_path / "gan_rgb.onnx", latent=4, classes=0, c=3, h=8, w=6)
    inp = make_inpainter(tmp_path / "inpaint-001.onnx", c=1, h=28, w=28)
    res = make_resize_restorer(tmp_path / "restore-001.onnx", c=3, scale=2)
    repo = tmp_path / "repo"
    r = cli("export", "--triton", repo, cg, ug, inp, res, "--triton-max-batch", "64")
    assert r.code == 0, r.err
    assert sorted(p.name for p in repo.iterdir()) == ["cgan-001", "gan_rgb", "inpaint-001", "restore-001"]
    configs = {}
    for d in repo.iterdir():
        cfg, mc = parse_config(d / "config.pbtxt")
        configs[d.name] = cfg
        assert cfg.name == d.name
        assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
        assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
        model = d / "1" / "model.onnx"
        assert model.read_bytes() == (tmp_path / f"{d.name}.onnx").read_bytes()
        graph = onnx.load(str(model)).graph  # names match the graph, so Triton can bind them
        assert [i.name for i in cfg.input] == [i.name for i in graph.input]
        assert [o.name for o in cfg.output] == [o.name for o in graph.output]
        assert "KIND_CPU" in (d / "config.pbtxt").read_text()  # the fallback is written down where it is needed
    c = configs["cgan-001"]
    z, label = c.input
    assert (z.data_type, list(z.dims)) == (mc.TYPE_FP32, [16])
    assert (label.data_type, list(label.dims), label.HasField("reshape"), list(label.reshape.shape)) == (mc.TYPE_INT64, [1], True, [])
    assert list(c.output[0].dims) == [1, 28, 28] and c.output[0].name == "image"
    assert list(configs["gan_rgb"].output[0].dims) == [3, 8, 6] and len(configs["gan_rgb"].input) == 1
    image, mask = configs["inpaint-001"].input
    assert list(image.dims) == [1, 28, 28] and list(mask.dims) == [1, 28, 28]
    assert configs["inpaint-001"].output[0].name == "restored"
    (image,), (restored,) = configs["restore-001"].input, configs["restore-001"].output
    assert (image.name, list(image.dims), restored.name, list(restored.dims)) == ("image", [3, -1, -1], "restored", [3, -1, -1])


def test_triton_cpu_kind_and_dynamic_sizes(cli, tmp_path):
    from gankit.serve.triton import model_config
    import onnx

    inp = make_resize_restorer(tmp_path / "m.onnx", c=3, scale=4, height=16, width=16)
    model = onnx.load(str(inp))
    meta = {p.key: p.value for p in model.metadata_props}
    text = model_config("m", model, meta, max_batch=8, kind="KIND_CPU", delay_us=100)
    path = tmp_path / "config.pbtxt"
    path.write_text(text)
    cfg, mc = parse_config(path)
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert list(cfg.input[0].dims) == [3, -1, -1]  # a restore model takes any size: -1
    assert list(cfg.output[0].dims) == [3, -1, -1]

    repo = tmp_path / "repo"
    assert cli("export", "--triton", repo, inp, "--triton-kind", "cpu").code == 0
    cfg, mc = parse_config(repo / "m" / "config.pbtxt")
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]


def test_triton_bad_input_is_one_line_and_writes_nothing(cli, tmp_path):
    good = make_generator(tmp_path / "good.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("nope")
    repo = tmp_path / "repo"
    for args, needle in (([good, junk], "not a loadable onnx"), ([good, tmp_path / "missing.onnx"], "not found"),
                         ([good, "--triton-kind", "tpu"], "gpu or cpu"), ([good, "--triton-max-batch", "0"], "positive"),
                         ([good, "--out", tmp_path / "x.onnx"], "--out")):
        r = cli("export", "--triton", repo, *args)
        assert_one_line_error(r)
        assert needle in r.err.lower() or needle in r.err, r.err
        assert not repo.exists()  # checked before anything was written
    assert cli("export", "--triton", repo, good).code == 0
    before = (repo / "good" / "config.pbtxt").read_text()
    r = cli("export", "--triton", repo, good, "--triton-max-batch", "4")
    assert_one_line_error(r)
    assert "already exists" in r.err and (repo / "good" / "config.pbtxt").read_text() == before
    assert cli("export", "--triton", repo, good, "--triton-max-batch", "4", "--overwrite").code == 0
    assert parse_config(repo / "good" / "config.pbtxt")[0].max_batch_size == 4
    assert [p.name for p in repo.iterdir()] == ["good"]  # no temporary directories left behind
    r = cli("export", good, junk)  # plain export still takes one run directory
    assert_one_line_error(r)


def test_triton_export_does_not_import_torch(tmp_path):
    good = make_generator(tmp_path / "good.onnx")
    code = ("import sys; from gankit.cli import main; rc = main(['export', '--triton', sys.argv[1], sys.argv[2]]); "
            "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'")
    r = run_subprocess([sys.executable, "-c", code, str(tmp_path / "repo"), str(good)])
    assert r.returncode == 0, r.stderr
