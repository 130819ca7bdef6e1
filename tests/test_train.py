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


def test_training_is_deterministic_and_resume_is_exact(tmp_path):
    from gankit.train.api import train

    common = dict(plugin="cgan", batch_size=8, evaluate=False, export=False, quiet=True, overrides={"sample_every": 3})
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
    from gankit.train.api import train

    summary = train(plugin=plugin, steps=2, batch_size=8, out=tmp_path / plugin, export=False, quiet=True,
                    overrides={"sample_every": 1, "eval_samples": 200})
    recs = [json.loads(line) for line in (tmp_path / plugin / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if "eval" in r]
    assert len(evals) == 2  # at step 1 (sample interval) and at the end
    key = "conditional_accuracy" if plugin == "cgan" else "hole_psnr_db"
    assert key in summary["eval"]
    assert (tmp_path / plugin / "quality.png").is_file()
