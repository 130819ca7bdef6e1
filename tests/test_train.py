"""Training: a few-step run writes weights, pictures and metrics; determinism; resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import assert_one_line_error


def test_few_step_gan_run(cli, tmp_path):
    out = tmp_path / "runs" / "x"
    r = cli("train", "--plugin", "gan", "--steps", "6", "--batch-size", "8", "--out", out, "--no-export", "--no-evaluate")
    assert r.code == 0, r.err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["plugin"] == "gan" and cfg["steps"] == 6 and cfg["seed"] == 0
    ckpts = sorted((out / "checkpoints").glob("step-*.safetensors"))
    assert ckpts and ckpts[-1].name == "step-0000006.safetensors"
    tensors = load_file(str(ckpts[-1]))
    assert any(k.startswith("G/") for k in tensors) and any(k.startswith("D/") for k in tensors)
    assert (out / "samples" / "step-6.png").is_file()
    assert (out / "losses.png").is_file()
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["step"] == 6 and "d_loss" in recs[-1]
    assert "gankit export" in r.out
    assert not (tmp_path / "exported").exists()


def _weights(run) -> dict:
    last = sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]
    return {k: v for k, v in load_file(str(last)).items() if k.startswith(("G/", "D/"))}


@pytest.mark.parametrize("flips", ["none", "dihedral"])
def test_training_is_deterministic_and_resume_is_exact(tmp_path, flips):
    from gankit.pipeline import train

    # the learning-rate decay (absolute steps) starts before the stop at step 3 and ends after it;
    # flips draw from their own (seed, step) stream, which a resume must reproduce too
    common = dict(plugin="cgan", batch_size=8, evaluate=False, export=False, quiet=True,
                  overrides={"sample_every": 3, "lr_decay": [2, 5], "flips": flips})
    train(out=tmp_path / "a", steps=6, **common)
    train(out=tmp_path / "b", steps=6, **common)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)

    train(out=tmp_path / "c", steps=3, **common)  # stop after 3 steps...
    train(out=tmp_path / "c", steps=6, resume=True, **common)  # ...and continue to 6
    wc = _weights(tmp_path / "c")
    assert all(np.array_equal(wa[k], wc[k]) for k in wa), "resumed run differs from an uninterrupted one"


def test_resume_with_changed_config_is_refused(cli, tmp_path):
    out = tmp_path / "r"
    assert cli("train", "--plugin", "gan", "--steps", "2", "--batch-size", "4", "--out", out, "--no-export",
               "--no-evaluate").code == 0
    r = cli("train", "--plugin", "gan", "--steps", "4", "--batch-size", "4", "--out", out, "--resume", "--no-export",
            "--no-evaluate", "--lr", "0.1")
    assert_one_line_error(r, 2)
    assert "lr_d" in r.err


@pytest.mark.parametrize("plugin", ["cgan", "inpaint"])
def test_evaluated_run_records_quality(tmp_path, plugin):
    from gankit.pipeline import train

    summary = train(plugin=plugin, steps=2, batch_size=8, out=tmp_path / plugin, export=False, quiet=True,
                    overrides={"sample_every": 1, "eval_samples": 200})
    recs = [json.loads(line) for line in (tmp_path / plugin / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if "eval" in r]
    assert len(evals) == 2  # at step 1 (sample interval) and at the end
    key = "conditional_accuracy" if plugin == "cgan" else "hole_psnr_rect_db"
    assert key in summary["eval"]
    assert (tmp_path / plugin / "quality.png").is_file()


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "gankit.cli", "train", "--plugin", "gan", "--steps", "100000", "--batch-size", "4",
            "--out", str(out), "--no-export", "--no-evaluate", "--sample-every", "100000",
            "--set", "lr_decay=[0,100000]"]  # the default schedule would end early and warn
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait for real progress (first log line), not for a duration
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in err
    ckpts = sorted((out / "checkpoints").glob("step-*.safetensors"))
    assert ckpts, "no checkpoint written on Ctrl-C"
    step = int(ckpts[-1].stem.split("-")[1])
    assert step >= 25
    done = subprocess.run(args[:7] + [str(step + 2)] + args[8:] + ["--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "checkpoints" / f"step-{step + 2:07d}.safetensors").is_file()


def test_non_finite_loss_rolls_back_and_halves_the_learning_rate(tmp_path, monkeypatch):
    import math

    from gankit.pipeline import train
    from gankit.train.trainer import Trainer

    real_step = Trainer.train_step
    poisoned = {"done": False}

    def flaky(self):
        out = real_step(self)
        if self.step == 5 and not poisoned["done"]:
            poisoned["done"] = True
            for p in self.G.parameters():  # really break the weights, as a diverging run would
                p.data.fill_(math.nan)
            out["g_loss"] = math.nan
        return out

    monkeypatch.setattr(Trainer, "train_step", flaky)
    train(plugin="gan", steps=8, batch_size=4, lr=2e-4, out=tmp_path / "r", evaluate=False, export=False, quiet=True,
          overrides={"sample_every": 4})
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in recs if r.get("event") == "non-finite loss"]
    assert len(events) == 1 and events[0]["rolled_back_to"] == 4
    assert events[0]["lr_g"] == pytest.approx(1e-4)
    final = load_file(str(tmp_path / "r" / "checkpoints" / "step-0000008.safetensors"))
    assert all(np.isfinite(v).all() for k, v in final.items() if k.startswith("G/"))


def test_repeated_non_finite_loss_stops_with_one_line(cli, tmp_path, monkeypatch):
    import math

    from gankit.train.trainer import Trainer

    real_step = Trainer.train_step

    def nan_from_step_3(self):  # steps 1-2 are fine and checkpointed; every later one fails
        out = real_step(self)
        if self.step >= 3:
            out["d_loss"] = math.nan
        return out

    monkeypatch.setattr(Trainer, "train_step", nan_from_step_3)
    r = cli("train", "--plugin", "gan", "--steps", "8", "--batch-size", "4", "--sample-every", "2", "--out",
            tmp_path / "r", "--no-export", "--no-evaluate", "--set", "lr_decay=null")  # no schedule warning
    # the limit it is named after: MAX_ROLLBACKS roll-backs happen (each warned about and halving
    # the rates again), then it stops with one error line and no traceback
    lines = r.err.strip().splitlines()
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert [ln.split(";")[0] for ln in lines[:-1]] == ["warning: non-finite loss at step 3"] * Trainer.MAX_ROLLBACKS
    assert lines[-1].startswith("error: training diverged") and f"{Trainer.MAX_ROLLBACKS} roll-backs did not help" in lines[-1]
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    rolled = [e for e in recs if e.get("event") == "non-finite loss" and "rolled_back_to" in e]
    assert len(rolled) == Trainer.MAX_ROLLBACKS == 3
    assert [e["lr_g"] / rolled[0]["lr_g"] for e in rolled] == pytest.approx([1, 0.5, 0.25])


def test_each_roll_back_halves_the_learning_rate_again(tmp_path, monkeypatch):
    import math

    from gankit.pipeline import train
    from gankit.train.trainer import Trainer

    real_step = Trainer.train_step
    remaining = {"n": 2}

    def twice_nan(self):
        out = real_step(self)
        if self.step == 5 and remaining["n"]:
            remaining["n"] -= 1
            out["g_loss"] = math.nan
        return out

    monkeypatch.setattr(Trainer, "train_step", twice_nan)
    train(plugin="gan", steps=7, batch_size=4, lr=2e-4, out=tmp_path / "r", evaluate=False, export=False, quiet=True,
          overrides={"sample_every": 4})
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in recs if r.get("event") == "non-finite loss"]
    assert [e["lr_g"] for e in events] == pytest.approx([1e-4, 5e-5])


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_discriminator_extra_convolutions_deepen_it_at_the_last_resolution(extra):
    """d_extra_convs adds 3x3 stride-1 convolutions after the last downsampling, doubling the
    channels each time; D still gives one logit per image and passes gradients to its input.
    """
    import torch
    from torch import nn

    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config

    fam, ds = get_family("gan"), load_dataset("mnist5k")
    cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu", overrides={"d_extra_convs": extra})
    D = fam.build_discriminator(cfg)
    convs = [m for m in D.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 + extra
    assert [c.kernel_size for c in convs[2:]] == [(3, 3)] * extra and all(c.stride == (1, 1) for c in convs[2:])
    assert convs[-1].out_channels == int(cfg["ndf"]) * 2 * 2**extra
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    out = D(x, torch.tensor([0, 3, 7, 9]))  # the default gan's D projects its clusters
    assert out.shape == (4,)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("plugin,hidden", [("gan", 0), ("gan", 64), ("cgan", 0), ("cgan", 64)])
def test_discriminator_hidden_layer_feeds_logit_projection_and_class_head(plugin, hidden):
    """d_hidden puts one fully-connected LeakyReLU layer between D's features and its outputs:
    the logit, the label projection and the class head all read the hidden units; 0 keeps the
    linear head. D still gives one logit per image and passes gradients to its input."""
    import torch

    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config

    fam, ds = get_family(plugin), load_dataset("mnist5k")
    cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu", overrides={"d_hidden": hidden})
    D = fam.build_discriminator(cfg)
    width = hidden or D.fc.in_features
    assert (D.head is not None) == bool(hidden)
    if hidden:
        assert D.head[0].out_features == hidden and D.fc.in_features == hidden
    if plugin == "cgan":
        assert D.embed.embedding_dim == width and D.classifier.in_features == width
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    label = torch.tensor([0, 3, 7, 9])
    out = D(x, label)  # a class (cgan) or a cluster (gan)
    assert out.shape == (4,)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("key,bad", [("d_hidden", -1), ("d_hidden", "wide"), ("d_hidden", 2.5), ("d_extra_convs", -2)])
def test_bad_discriminator_layer_counts_are_refused_in_one_line(cli, tmp_path, key, bad):
    r = cli("train", "--plugin", "gan", "--steps", "1", "--batch-size", "4", "--out", tmp_path / "r", "--no-export",
            "--no-evaluate", "--set", f"{key}={bad}")
    assert_one_line_error(r, 2)
    assert f"--set {key}: input should be" in r.err and repr(bad) in r.err
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


@pytest.mark.parametrize("precision,dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_precision_sets_the_arithmetic_of_the_training_step(tmp_path, precision, dtype):
    import torch

    from gankit.bench.training import _gankit_stepper
    from gankit.plugins import get_family, load_dataset
    from gankit.train.config import build_config

    family, dataset = get_family("cgan"), load_dataset("mnist5k")
    config = build_config(family, dataset, data="mnist5k", seed=0, device="cpu",
                          overrides={"precision": precision, "batch_size": 8})
    step = _gankit_stepper(family, dataset, config, tmp_path)
    trainer = step.trainer
    seen = []
    trainer.G.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    losses = step()
    assert seen and {str(d).removeprefix("torch.") for d in seen} == {dtype}
    assert all(np.isfinite(v) for v in losses.values())
    # the weights and the optimiser state stay fp32 either way (autocast casts per op)
    assert {p.dtype for p in trainer.G.parameters()} == {torch.float32}


@pytest.mark.parametrize("has_bf16,dtype", [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_is_bf16_only_on_a_cpu_with_bf16_arithmetic(cli, tmp_path, monkeypatch, has_bf16, dtype):
    import json

    from gankit import sysinfo
    from gankit.train import trainer as trainer_module

    monkeypatch.setattr(sysinfo, "cpu_has_bf16", lambda: has_bf16)  # so both branches run on any CPU
    seen = []
    original = trainer_module.Trainer._train_step

    def spy(self):
        hook = self.G.register_forward_hook(lambda m, i, out: seen.append(str(out.dtype).removeprefix("torch.")))
        try:
            return original(self)
        finally:
            hook.remove()

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", spy)
    out = tmp_path / "r"
    r = cli("train", "--plugin", "cgan", "--steps", "2", "--batch-size", "8", "--out", out, "--no-export",
            "--no-evaluate", "--set", "precision=auto")
    assert r.code == 0, r.err
    assert set(seen) == {dtype}
    assert (", bf16 autocast ->" in " ".join(r.out.split())) == has_bf16  # the header says what auto became
    # the run keeps "auto" (a resume on this machine settles it the same way)
    assert json.loads((out / "config.json").read_text())["precision"] == "auto"


def test_resuming_where_auto_means_another_precision_needs_force(cli, tmp_path, monkeypatch):
    from gankit import sysinfo
    from gankit.train import checkpoint as ckpt

    out = tmp_path / "r"
    common = ("--plugin", "inpaint", "--batch-size", "8", "--out", out, "--no-export", "--no-evaluate")
    monkeypatch.setattr(sysinfo, "cpu_has_bf16", lambda: True)
    assert cli("train", *common, "--steps", "2").code == 0  # inpaint on digits defaults to auto: bf16 here
    newest, _ = ckpt.newest_usable(out / "checkpoints")
    assert newest.meta["precision"] == "bf16"  # what ran, while config.json keeps "auto"
    monkeypatch.setattr(sysinfo, "cpu_has_bf16", lambda: False)  # the same run on a CPU without bf16
    r = cli("train", *common, "--steps", "3", "--resume")
    assert_one_line_error(r)
    assert "trained in bf16" in r.err and "fp32 here" in r.err and "--force" in r.err
    r = cli("train", *common, "--steps", "3", "--resume", "--force")
    assert r.code == 0, r.err


def test_a_run_older_than_a_key_resumes_with_what_it_did_then(cli, tmp_path, monkeypatch):
    """An inpaint run from before precision and channels_last were in its config: it trained in fp32
    and NCHW, and resumes so without --force, although today's digit default is auto and NHWC."""
    import json

    from gankit import sysinfo
    from gankit.train import trainer as trainer_module

    monkeypatch.setattr(sysinfo, "cpu_has_bf16", lambda: True)
    out = tmp_path / "r"
    common = ("--plugin", "inpaint", "--batch-size", "8", "--out", out, "--no-export", "--no-evaluate")
    assert cli("train", *common, "--steps", "2", "--set", "precision=fp32", "--set", "channels_last=false").code == 0
    config = json.loads((out / "config.json").read_text())
    del config["precision"], config["channels_last"]
    (out / "config.json").write_text(json.dumps(config))
    seen = []
    original = trainer_module.Trainer._train_step
    monkeypatch.setattr(trainer_module.Trainer, "_train_step",
                        lambda self: seen.append((self.precision, self.channels_last)) or original(self))
    r = cli("train", *common, "--steps", "3", "--resume")
    assert r.code == 0, r.err
    assert seen == [("fp32", False)]


@pytest.mark.parametrize("plugin,data,precision", [("restore", "photos", "auto"), ("restore", "mnist5k", "auto"),
                                                   ("inpaint", "mnist5k", "auto"), ("inpaint", "photos", "fp32"),
                                                   ("cgan", "mnist5k", "auto"), ("gan", "mnist5k", "fp32")])
def test_which_defaults_train_in_nhwc_and_auto_precision(plugin, data, precision):
    from gankit.plugins import get_family, load_dataset
    from gankit.train.config import build_config

    family = get_family(plugin)
    config = build_config(family, load_dataset(data), data=data, seed=0, device="cpu")
    assert config["precision"] == precision
    assert config["channels_last"] is True  # the dcgan families have trained NHWC for a while


def test_auto_precision_stays_fp32_on_cuda(monkeypatch):
    from gankit import sysinfo
    from gankit.devices import resolve_precision

    monkeypatch.setattr(sysinfo, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cuda") == "fp32"  # no bf16 measurement on a GPU yet
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("bf16", "cuda") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"


def test_switching_precision_on_resume_needs_force(cli, tmp_path):
    out = tmp_path / "r"
    common = ("--plugin", "cgan", "--batch-size", "8", "--out", out, "--no-export", "--no-evaluate")
    assert cli("train", *common, "--steps", "2", "--set", "precision=fp32").code == 0
    r = cli("train", *common, "--steps", "3", "--resume", "--set", "precision=bf16")
    assert_one_line_error(r)
    assert "precision" in r.err


def test_unknown_precision_is_refused_in_one_line(cli, tmp_path):
    r = cli("train", "--plugin", "cgan", "--steps", "2", "--set", "precision=fp16", "--out", tmp_path / "r",
            "--no-export", "--no-evaluate")
    assert_one_line_error(r)
    assert "precision" in r.err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flips, kinds", [("hflip", 2), ("dihedral", 8)])
def test_flips_give_each_image_one_of_its_dihedral_versions(flips, kinds):
    import types

    import torch

    from gankit.train.trainer import Trainer

    x = torch.randn(64, 3, 6, 6)
    versions = lambda im: [torch.rot90(im.flip(-1) if k % 2 else im, k // 2, dims=(-2, -1)) for k in range(kinds)]
    owner = types.SimpleNamespace(config={"seed": 0}, flips=kinds)
    seen = set()
    for step in range(3):
        y = Trainer._flip(owner, x, step)
        assert torch.equal(y, Trainer._flip(owner, x, step))  # a function of (seed, step): resumes repeat it
        for a, b in zip(x, y):
            match = [k for k, v in enumerate(versions(a)) if torch.equal(v, b)]
            assert match, "an image was changed into something that is not a flip or a turn of it"
            seen.add(match[0])
    assert seen == set(range(kinds))  # every version is drawn
    huge_seed = types.SimpleNamespace(config={"seed": 2**63 - 1}, flips=kinds)  # the largest seed the config allows
    assert Trainer._flip(huge_seed, x, 10**9).shape == x.shape
