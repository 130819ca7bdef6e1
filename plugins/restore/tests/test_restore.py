"""The restore family: dynamic-size export, a tiny CLI training run, the baselines and the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = {"features": 8, "blocks": 1, "disc_width": 8}


def _family_config(degradation: str, shape=(3, 16, 16), **over):
    from gankit.plugins import get_family
    from gankit.testing import synthetic_dataset
    from gankit.train.config import build_config

    family = get_family("restore")
    config = build_config(family, synthetic_dataset(shape), data="synthetic", seed=0, device="cpu",
                          overrides={**TINY, "degradation": degradation, **over})
    return family, config


@pytest.mark.parametrize("degradation,sizes", [("sr2", ((12, 12), (20, 16))), ("noise", ((12, 12), (20, 16))),
                                               ("sr4", ((7, 7), (9, 5)))])
def test_dynamic_size_export_matches_pytorch(tmp_path, degradation, sizes):
    import onnx
    import onnxruntime as ort
    import torch

    from gankit.export import export_generator

    family, config = _family_config(degradation)
    torch.manual_seed(0)
    G = family.build_generator(config).eval()
    torch.nn.init.normal_(G.tail.weight, std=0.05)  # a non-trivial residual (it starts at zero)
    path = export_generator(family, config, G, tmp_path / "r.onnx")
    model = onnx.load(str(path))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert dims(model.graph.output[0]) == ["batch", 3, "out_height", "out_width"]
    ops = {n.op_type for n in model.graph.node}
    assert "Shape" not in ops and "Reshape" not in ops  # nothing computed from the input's size
    if config["scale"] > 1:
        assert "DepthToSpace" in ops and "Resize" not in ops  # OpenCV's classic importer refuses cubic Resize
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    s = config["scale"]
    for h, w in sizes:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w)) * 2 - 1
        with torch.no_grad():
            ref = G(image=x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == (2, 3, h * s, w * s)
        assert np.abs(got - ref).max() <= 1e-4


def test_export_metadata(tmp_path):
    import onnx

    from gankit.export import export_generator

    family, config = _family_config("sr4")
    path = export_generator(family, config, family.build_generator(config), tmp_path / "r.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert {k: meta[k] for k in ("gankit.task", "gankit.scale", "gankit.degradation", "gankit.size_multiple",
                                 "gankit.latent_dim", "gankit.num_classes", "gankit.channels", "gankit.height",
                                 "gankit.width", "gankit.inputs", "gankit.output", "gankit.format")} == {
        "gankit.task": "restore", "gankit.scale": "4", "gankit.degradation": "sr4", "gankit.size_multiple": "1",
        "gankit.latent_dim": "0", "gankit.num_classes": "0", "gankit.channels": "3", "gankit.height": "16",
        "gankit.width": "16", "gankit.inputs": "image", "gankit.output": "restored", "gankit.format": "1"}


def test_untrained_generator_is_the_bicubic_enlargement():
    import torch
    import torch.nn.functional as F

    family, config = _family_config("sr2")
    G = family.build_generator(config).eval()
    x = torch.rand(1, 3, 8, 8) * 1.6 - 0.8
    with torch.no_grad():
        ref = F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False).clamp(-1, 1)
        assert (G(image=x) - ref).abs().max() < 1e-6  # PyTorch's bicubic, as a fixed convolution


def _gankit(*args, cwd):
    env = {**os.environ, "GANKIT_CACHE": str(Path(cwd) / "cache")}
    return subprocess.run([sys.executable, "-m", "gankit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_tiny_cli_training_exports_a_file_that_runs(tmp_path):
    import onnx
    import onnxruntime as ort

    r = _gankit("train", "--plugin", "restore", "--data", "mnist5k", "--steps", "3", "--batch-size", "4",
                "--out", "runs/tiny", "--no-evaluate", *[f"--set={k}={v}" for k, v in TINY.items()], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = tmp_path / "exported" / "tiny.onnx"
    assert path.is_file()
    assert (tmp_path / "runs" / "tiny" / "samples" / "step-3.png").is_file()  # before / after / original rows
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert (meta["gankit.task"], meta["gankit.scale"], meta["gankit.degradation"]) == ("restore", "2", "sr2")
    assert (meta["gankit.height"], meta["gankit.width"], meta["gankit.channels"]) == ("28", "28", "1")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 14, 14)).astype(np.float32)  # the runtime's probe
    assert sess.run(None, {"image": x})[0].shape == (1, 1, 28, 28)
    y = sess.run(None, {"image": np.zeros((3, 1, 33, 10), np.float32)})[0]
    assert y.shape == (3, 1, 66, 20) and np.abs(y).max() <= 1.0
    config = json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())
    assert config["task"] == "restore" and config["scale"] == 2


def test_missing_vgg_file_is_a_one_line_usage_error(tmp_path):
    r = _gankit("train", "--plugin", "restore", "--data", "mnist5k", "--steps", "1", "--out", "runs/v",
                "--set", "vgg_weights=/nonexistent/vgg19.pth", cwd=tmp_path)
    assert r.returncode == 2
    assert "VGG weights file not found: /nonexistent/vgg19.pth" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "runs" / "v").exists()


def test_psnr_model_never_touches_the_discriminator(tmp_path):
    import torch

    from gankit.testing import synthetic_dataset
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer
    from gankit.plugins import get_family

    family = get_family("restore")
    ds = synthetic_dataset((1, 16, 16))
    config = build_config(family, ds, data="synthetic", seed=0, device="cpu",
                          overrides={**TINY, "gan_weight": 0.0, "steps": 2, "batch_size": 4, "sample_every": 0})
    run = RunDir(tmp_path / "run")
    run.create(config)
    trainer = Trainer(family, ds, config, run)
    d_before = [p.detach().clone() for p in trainer.D.parameters()]
    g_before = [p.detach().clone() for p in trainer.G.parameters()]
    result = trainer.fit()
    assert result.step == 2 and set(result.last) == {"g_loss", "l1"}
    assert all(torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters()))
    # the GAN model's D does learn
    config = config.replace(gan_weight=0.01)
    trainer = Trainer(family, ds, config, RunDir(tmp_path / "run2"))
    RunDir(tmp_path / "run2").create(config)
    trainer.fit()
    assert not all(torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))


# -- evaluation ----------------------------------------------------------------------------------
def test_psnr_on_a_known_pair():
    from gankit.evaluate.restoration import luma, psnr_ssim

    clean = np.full((2, 1, 20, 20), 0.5)
    off = clean + 0.1  # MSE 0.01 -> 20 dB exactly
    p, s = psnr_ssim(off, clean, crop=0)
    assert np.allclose(p, 20.0) and np.all(s < 1)
    # colour: every channel off by d moves the BT.601 luma by d * 219/255
    c3 = np.full((1, 3, 20, 20), 0.5)
    p3, _ = psnr_ssim(c3 + 0.1, c3, crop=0)
    assert np.allclose(p3, -20 * np.log10(0.1 * 219 / 255))
    assert np.allclose(luma(np.ones((1, 3, 2, 2))), 235 / 255) and np.allclose(luma(np.zeros((1, 3, 2, 2))), 16 / 255)
    # errors only within the cropped border do not count
    edge = clean.copy()
    edge[:, :, :2] += 0.3
    assert np.isinf(psnr_ssim(edge, clean, crop=0)[0]).sum() == 0
    assert np.all(psnr_ssim(edge, clean, crop=2)[0] >= 119)


@pytest.mark.parametrize("degradation", ["sr2", "sr4", "noise", "blur", "jpeg", "real"])
def test_baselines_run_and_classical_methods_help(degradation):
    from gankit.data import degradations as dg
    from gankit.evaluate.restoration import baselines_for, eval_set, psnr_ssim, to_8bit01
    from gankit.plugins import load_dataset

    ds = load_dataset("photos")
    clean, lq = eval_set(ds, degradation, limit=6)
    s = dg.SCALES[degradation]
    clean01, lq01 = to_8bit01(clean), dg.to01(lq)
    methods = baselines_for(degradation, s)
    scores = {}
    for name, (fn, grid) in methods.items():
        out = fn(lq01, grid[len(grid) // 2])
        assert out.shape == clean.shape and np.isfinite(out).all()
        scores[name] = float(psnr_ssim(to_8bit01(dg.from01(out)), clean01, s)[0].mean())
    if degradation in ("noise", "blur"):  # each classical restorer beats doing nothing
        assert all(v > scores["degraded input"] + 0.5 for k, v in scores.items() if k != "degraded input"), scores
    if s > 1:
        assert set(scores) == {"bicubic", "lanczos"}


def test_bm3d_when_installed():
    pytest.importorskip("bm3d")
    from gankit.data import degradations as dg
    from gankit.evaluate.restoration import _bm3d, psnr_ssim, to_8bit01
    from gankit.testing import synthetic_dataset

    clean = np.clip(dg.blur(synthetic_dataset((1, 32, 32), n_test=2).x_test / 127.5 - 1, dg.gaussian_kernel(2.0)), -1, 1)
    lq = dg.degrade("noise", clean, np.random.default_rng(0))
    out = _bm3d(dg.to01(lq))
    c01 = to_8bit01(clean)
    assert psnr_ssim(to_8bit01(dg.from01(out)), c01, 0)[0].mean() > psnr_ssim(to_8bit01(lq), c01, 0)[0].mean() + 3


def test_evaluation_record_patch_fd_and_plot(tmp_path):
    from gankit.data import degradations as dg
    from gankit.evaluate.restoration import evaluate_restoration, plot_perception_distortion
    from gankit.plugins import load_dataset

    ds = load_dataset("photos")
    rec = evaluate_restoration(lambda lq: dg.upscale(lq, 2, "bicubic"), ds, degradation="sr2", limit=10)
    r = rec["results"]
    # the "model" here is bicubic itself: same scores as the bicubic baseline (Pillow on both sides)
    assert r["model"]["psnr_db"] == pytest.approx(r["bicubic"]["psnr_db"], abs=1e-6)
    assert rec["best_baseline"] == max(("bicubic", "lanczos"), key=lambda k: r[k]["psnr_db"])
    # realism: enlarging blurs, so both enlargements are further from the clean patch statistics than
    # the clean images themselves (0), and noise pushes the other way (too much high-frequency energy)
    clean_rec = evaluate_restoration(lambda lq: eval_set_clean(ds), ds, degradation="sr2", limit=10, baselines=False)
    assert clean_rec["results"]["model"]["patch_fd"] < 1e-6 < r["bicubic"]["patch_fd"]
    png = plot_perception_distortion({"bicubic-as-model": rec}, tmp_path / "pd.png")
    assert Path(png).stat().st_size > 1000


def eval_set_clean(ds):
    from gankit.evaluate.restoration import eval_set

    return eval_set(ds, "sr2", limit=10)[0]


def test_seeded_and_resumes_exactly(tmp_path):
    """Degradations draw from the trainer's checkpointed stream: 4 steps = 2 steps + resume + 2 steps."""
    import torch

    from gankit.plugins import get_family
    from gankit.testing import synthetic_dataset
    from gankit.train import checkpoint as ckpt
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    family = get_family("restore")
    ds = synthetic_dataset((1, 16, 16), n_train=16)

    def trainer(name, steps):
        config = build_config(family, ds, data="synthetic", seed=3, device="cpu",
                              overrides={**TINY, "degradation": "real", "steps": steps, "batch_size": 4,
                                         "sample_every": 0, "save_every": 2})
        run = RunDir(tmp_path / name)
        run.create(config)
        return Trainer(family, ds, config, run), run

    straight, _ = trainer("a", 4)
    straight.fit()
    first, run = trainer("b", 2)
    first.fit()
    resumed, _ = trainer("b", 4)
    resumed.restore(ckpt.latest(run.checkpoints))
    resumed.fit()
    for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)
