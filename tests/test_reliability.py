"""Reliability and security: kill -9 + resume, safe loading, the bad-input table, properties."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gankit import runtime
from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]


def test_kill_9_three_times_then_resume_is_bit_identical(tmp_path):
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.kill_and_resume(tmp_path, kills=3, steps=40, seed=1)  # kills land at steps 3-9
    assert report["identical"], report
    assert sum(report["killed"]) >= 2, report  # the runs really were killed mid-way


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))


def test_malicious_pickle_checkpoint_is_refused_without_running(tmp_path, cli):
    from gankit.errors import UsageError
    from gankit.train import checkpoint as ckpt

    run = tmp_path / "run"
    assert cli("train", "--plugin", "gan", "--steps", "2", "--batch-size", "4", "--out", run, "--no-export",
               "--no-evaluate").code == 0
    evil = run / "checkpoints" / "step-0000099.safetensors"
    evil.write_bytes(pickle.dumps({"G/x": _Evil()}))
    with pytest.raises(UsageError, match="unreadable checkpoint"):
        ckpt.load(evil)
    assert ckpt.latest(run / "checkpoints").step == 2  # skipped, the good one is used
    assert cli("export", run, "--out", tmp_path / "m.onnx").code == 0
    assert not (tmp_path / "PWNED").exists()


def test_loading_runs_checkpoints_judge_and_models_never_unpickles(tiny_runs, monkeypatch, tmp_path):
    """Every path that reads a file back (resume's checkpoint, export, evaluate with the judge
    cache, the runtime) runs with pickle and unsafe torch.load made to fail: a loader that
    unpickles anything fails this test, whatever its source text looks like."""
    import torch

    from gankit.evaluate import evaluate_target
    from gankit.export import export_run
    from gankit.train import checkpoint as ckpt

    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled a file")

    real_torch_load = torch.load

    def weights_only_load(*args, **kwargs):
        if kwargs.get("weights_only") is not True:
            refuse()
        return real_torch_load(*args, **kwargs)

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", weights_only_load)
    run = tiny_runs["cgan"]["run"]
    latest = ckpt.latest(run / "checkpoints")
    assert latest is not None and latest.has("G")
    ckpt.load(latest.path)
    out = export_run(run, tmp_path / "again.onnx")
    rec = evaluate_target(run, samples=64)
    assert 0 <= rec["conditional_accuracy"] <= 1
    assert runtime.load(out).generate(2, labels=[1, 2], seed=0).shape == (2, 28, 28, 1)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    from gankit.runtime.io import read_image

    with pytest.raises(runtime.RuntimeInputError, match="too large"):
        read_image(tmp_path / "big.png")


# -- the bad-input table ------------------------------------------------------------------
@pytest.fixture
def sandbox(tiny_runs, tmp_path):
    """A directory with files that no bad command may touch."""
    d = tmp_path / "sb"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(d / "img.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(d / "mask.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(d / "mask_small.png")
    (d / "existing.png").write_bytes((d / "img.png").read_bytes())
    (d / "existing.onnx").write_bytes(b"keep")
    (d / "junk.onnx").write_bytes(b"\x08\x07 not a model")
    real = Path(tiny_runs["cgan"]["onnx"]).read_bytes()
    (d / "truncated.onnx").write_bytes(real[: len(real) // 2])
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (d / "truncated.png").write_bytes((d / "img.png").read_bytes()[:60])
    (d / "notarun").mkdir()
    (d / "empty_folder").mkdir()
    nonempty = d / "nonempty_run"
    nonempty.mkdir()
    (nonempty / "notes.txt").write_text("mine")
    from onnx import TensorProto, helper, save

    g = helper.make_graph([helper.make_node("Relu", ["z"], ["image"])], "g",
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    save(m, str(d / "plain.onnx"))
    return d


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


G, C, I = "{gan}", "{cgan}", "{inpaint}"
CLI_CASES = [
    ("unknown plugin", ["train", "--plugin", "nope"]),
    ("unknown dataset", ["train", "--plugin", "gan", "--data", "imagenet"]),
    ("zero steps", ["train", "--plugin", "gan", "--steps", "0"]),
    ("negative steps", ["train", "--plugin", "gan", "--steps", "-3"]),
    ("non-integer steps", ["train", "--plugin", "gan", "--steps", "ten"]),
    ("zero batch", ["train", "--plugin", "gan", "--batch-size", "0"]),
    ("batch of one", ["train", "--plugin", "gan", "--batch-size", "1", "--steps", "1", "--no-export"]),
    ("zero image size", ["train", "--plugin", "gan", "--image-size", "0"]),
    ("zero keep", ["train", "--plugin", "gan", "--keep", "0"]),
    ("missing folder", ["train", "--plugin", "gan", "--data", "folder:{sb}/missing"]),
    ("empty folder", ["train", "--plugin", "gan", "--data", "folder:{sb}/empty_folder"]),
    ("unknown loss", ["train", "--plugin", "gan", "--loss", "wasserstein-ish"]),
    ("unknown device", ["train", "--plugin", "gan", "--device", "tpu"]),
    ("malformed --set", ["train", "--plugin", "gan", "--set", "width"]),
    ("existing run dir", ["train", "--plugin", "gan", "--out", "{sb}/nonempty_run", "--steps", "1"]),
    ("resume a non-run", ["train", "--plugin", "gan", "--out", "{sb}/notarun", "--resume"]),
    ("export missing run", ["export", "{sb}/missing_run"]),
    ("export non-run dir", ["export", "{sb}/notarun"]),
    ("export onto existing file", ["export", G + "run", "--out", "{sb}/existing.onnx"]),
    ("export wrong suffix", ["export", G + "run", "--out", "{sb}/model.txt"]),
    ("generate missing model", ["generate", "{sb}/missing.onnx", "--out", "{sb}/g.png"]),
    ("generate junk model", ["generate", "{sb}/junk.onnx", "--out", "{sb}/g.png"]),
    ("generate truncated model", ["generate", "{sb}/truncated.onnx", "--out", "{sb}/g.png"]),
    ("generate non-gankit onnx", ["generate", "{sb}/plain.onnx", "--out", "{sb}/g.png"]),
    ("label out of range", ["generate", C + "onnx", "--label", "10", "--out", "{sb}/g.png"]),
    ("negative label", ["generate", C + "onnx", "--label", "-1", "--out", "{sb}/g.png"]),
    ("zero n", ["generate", C + "onnx", "--n", "0", "--out", "{sb}/g.png"]),
    ("generate onto existing file", ["generate", C + "onnx", "--out", "{sb}/existing.png"]),
    ("unwritable output path", ["generate", C + "onnx", "--out", "{sb}/existing.png/sub/g.png"]),
    ("label for unconditional", ["generate", G + "onnx", "--label", "1", "--out", "{sb}/g.png"]),
    ("generate with an inpainting model", ["generate", I + "onnx", "--out", "{sb}/g.png"]),
    ("inpaint size mismatch", ["inpaint", I + "onnx", "--image", "{sb}/img.png", "--mask", "{sb}/mask_small.png", "--out", "{sb}/o.png"]),
    ("inpaint missing mask", ["inpaint", I + "onnx", "--image", "{sb}/img.png", "--mask", "{sb}/nomask.png", "--out", "{sb}/o.png"]),
    ("inpaint corrupt image", ["inpaint", I + "onnx", "--image", "{sb}/corrupt.png", "--mask", "{sb}/mask.png", "--out", "{sb}/o.png"]),
    ("inpaint truncated image", ["inpaint", I + "onnx", "--image", "{sb}/truncated.png", "--mask", "{sb}/mask.png", "--out", "{sb}/o.png"]),
    ("inpaint with a generator", ["inpaint", C + "onnx", "--image", "{sb}/img.png", "--mask", "{sb}/mask.png", "--out", "{sb}/o.png"]),
    ("inpaint onto existing file", ["inpaint", I + "onnx", "--image", "{sb}/img.png", "--mask", "{sb}/mask.png", "--out", "{sb}/existing.png"]),
    ("evaluate missing target", ["evaluate", "{sb}/missing"]),
    ("evaluate zero samples", ["evaluate", C + "onnx", "--samples", "0"]),
    ("evaluate junk model", ["evaluate", "{sb}/junk.onnx"]),
]


@pytest.mark.parametrize("name,args", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_table_cli(cli, sandbox, tiny_runs, name, args):
    subst = {"{sb}": str(sandbox)}
    for fam in ("gan", "cgan", "inpaint"):
        subst["{" + fam + "}run"] = str(tiny_runs[fam]["run"])
        subst["{" + fam + "}onnx"] = str(tiny_runs[fam]["onnx"])
    resolved = []
    for a in args:
        for k, v in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            a = a.replace(k, v)
        resolved.append(a)
    before = _snapshot(sandbox)
    models_before = {f: hashlib.sha256(Path(tiny_runs[f]["onnx"]).read_bytes()).hexdigest() for f in tiny_runs}
    assert_one_line_error(cli(*resolved), 2)
    assert _snapshot(sandbox) == before, f"{name}: a file in the sandbox was created or modified"
    assert {f: hashlib.sha256(Path(tiny_runs[f]["onnx"]).read_bytes()).hexdigest() for f in tiny_runs} == models_before


RUNTIME_CASES = [
    ("load missing", lambda m, sb: runtime.load(sb / "missing.onnx"), runtime.ModelFormatError),
    ("load junk", lambda m, sb: runtime.load(sb / "junk.onnx"), runtime.ModelFormatError),
    ("load truncated", lambda m, sb: runtime.load(sb / "truncated.onnx"), runtime.ModelFormatError),
    ("load non-gankit", lambda m, sb: runtime.load(sb / "plain.onnx"), runtime.ModelFormatError),
    ("zero threads", lambda m, sb: runtime.load(m["cgan"], threads=0), runtime.RuntimeInputError),
    ("unknown backend", lambda m, sb: runtime.load(m["cgan"], backend="nope"), runtime.RuntimeInputError),
    ("label too big", lambda m, sb: runtime.load(m["cgan"]).generate(2, labels=99), runtime.RuntimeInputError),
    ("wrong label count", lambda m, sb: runtime.load(m["cgan"]).generate(3, labels=[1, 2]), runtime.RuntimeInputError),
    ("fractional label", lambda m, sb: runtime.load(m["cgan"]).generate(1, labels=[1.5]), runtime.RuntimeInputError),
    ("negative n", lambda m, sb: runtime.load(m["cgan"]).generate(-2), runtime.RuntimeInputError),
    ("wrong z shape", lambda m, sb: runtime.load(m["cgan"]).run_raw(np.zeros((2, 3), np.float32), None), runtime.RuntimeInputError),
    ("float image outside [0, 1]", lambda m, sb: runtime.load(m["inpaint"]).inpaint(np.full((8, 8), 2.0, np.float32), np.zeros((8, 8), bool)), runtime.RuntimeInputError),
    ("mask size mismatch", lambda m, sb: runtime.load(m["inpaint"]).inpaint(np.zeros((8, 8), np.uint8), np.zeros((9, 8), bool)), runtime.RuntimeInputError),
    ("3-d mask", lambda m, sb: runtime.load(m["inpaint"]).inpaint(np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), bool)), runtime.RuntimeInputError),
    ("two-channel image", lambda m, sb: runtime.load(m["inpaint"]).inpaint(np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8), bool)), runtime.RuntimeInputError),
]


@pytest.mark.parametrize("name,call,exc", RUNTIME_CASES, ids=[c[0] for c in RUNTIME_CASES])
def test_bad_input_table_runtime(sandbox, tiny_runs, name, call, exc):
    models = {f: tiny_runs[f]["onnx"] for f in tiny_runs}
    with pytest.raises(exc) as info:
        call(models, sandbox)
    assert "\n" not in str(info.value)


# -- properties of the runtime's input handling -------------------------------------------
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 70), w=st.integers(1, 70), channels=st.sampled_from([1, 3, 4]), seed=st.integers(0, 10**6),
       density=st.floats(0.0, 1.0))
def test_inpaint_any_image_keeps_known_pixels(tiny_runs, h, w, channels, seed, density):
    model = _model(tiny_runs["inpaint"]["onnx"])
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    mask = rng.uniform(size=(h, w)) < density
    given = img if channels != 1 else img[..., 0]  # gray as [H, W]: it comes back as [H, W]
    out = model.inpaint(given, mask)
    assert out.shape == given.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], given[~mask])
    if channels == 4:
        assert np.array_equal(out[..., 3], img[..., 3])


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.one_of(st.integers(-5, 15), st.floats(-3, 12), st.just(float("nan")), st.just(float("inf")), st.text(max_size=2)),
                       min_size=1, max_size=6))
def test_generate_labels_either_work_or_raise_typed(tiny_runs, labels):
    model = _model(tiny_runs["cgan"]["onnx"])
    try:
        out = model.generate(len(labels), labels=labels, seed=0)
    except runtime.RuntimeInputError:
        return
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - the failure we look for
        raise AssertionError(f"untyped error for labels {labels!r}: {exc!r}")
    assert out.shape == (len(labels), 28, 28, 1)


_MODELS: dict = {}


def _model(path):
    if path not in _MODELS:
        _MODELS[path] = runtime.load(path)
    return _MODELS[path]
