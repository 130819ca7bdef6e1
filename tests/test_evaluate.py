"""Evaluation: judge determinism, Frechet distance, class entropy, and the evaluate command."""

from __future__ import annotations

import numpy as np
import pytest

from gankit.data import Dataset
from gankit.plugins import load_dataset
from gankit.evaluate.metrics import class_entropy, frechet_distance, psnr
from tests.conftest import assert_one_line_error


def test_frechet_distance_identical_and_shifted():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    b = rng.standard_normal((500, 16))
    same_dist = frechet_distance(a, b)
    shifted = frechet_distance(a, b + 1.0)
    assert shifted > same_dist + 10  # a mean shift of 1 in 16 dims adds about 16
    assert frechet_distance(a, b * 3) > same_dist + 10  # wider spread


def test_class_entropy():
    assert class_entropy(np.arange(1000) % 10, 10) == pytest.approx(1.0)
    assert class_entropy(np.zeros(1000, int), 10) == pytest.approx(0.0)
    half = class_entropy(np.arange(1000) % 5, 10)
    assert 0.6 < half < 0.75  # log 5 / log 10


def test_psnr():
    a = np.zeros((4, 4))
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0)


def _small(ds: Dataset, n: int) -> Dataset:
    idx = np.concatenate([np.flatnonzero(ds.y_train == c)[: n // 10] for c in range(10)])
    return Dataset("mnist-small", ds.x_train[idx], ds.y_train[idx], ds.x_test[:200], ds.y_test[:200], ds.class_names)


def test_judge_is_deterministic():
    from gankit.evaluate.judge import train_judge

    small = _small(load_dataset("mnist5k"), 300)
    a, b = train_judge(small), train_judge(small)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy()), ka


def test_judge_is_cached_and_accurate():
    from gankit.evaluate import reference

    ds = load_dataset("mnist5k")
    ref = reference(ds)
    assert ref.judge.path.is_file()
    assert ref.test_accuracy > 0.95  # a judge that cannot read digits would make every number meaningless
    from gankit.evaluate.judge import load_judge

    assert load_judge(ds).sha256 == ref.judge.sha256  # second load: same file, same hash


def test_real_test_digits_score_like_real_data():
    """Feeding the test split itself through evaluate_generator: accuracy = judge's, FD ~ 0."""
    from gankit.data import to_float
    from gankit.evaluate import evaluate_generator

    ds = load_dataset("mnist5k")

    def sample(z, labels):
        idx = np.concatenate([np.flatnonzero(ds.y_test == c) for c in range(10)])
        by_class = {c: list(idx[ds.y_test[idx] == c]) for c in range(10)}
        return to_float(ds.x_test[[by_class[int(lab)].pop() for lab in labels]])

    rec = evaluate_generator(sample, ds, latent_dim=4, conditional=True, samples=1000)
    assert rec["conditional_accuracy"] == pytest.approx(rec["judge_test_accuracy"], abs=1e-6)
    assert rec["fd"] < 1e-3 and rec["class_entropy"] > 0.99


def test_evaluate_run_and_model(tiny_runs, cli):
    import json

    r = cli("evaluate", tiny_runs["cgan"]["onnx"], "--json", "--samples", "200")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    for key in ("conditional_accuracy", "judge_test_accuracy", "fd", "fd_floor", "fd_ratio", "class_entropy",
                "samples", "split", "judge_sha256", "seed"):
        assert key in rec
    assert rec["samples"] == 200 and rec["split"] == "test"
    r2 = cli("evaluate", tiny_runs["gan"]["run"], "--samples", "200")
    assert r2.code == 0 and "class entropy" in r2.out
    assert_one_line_error(cli("evaluate", tiny_runs["gan"]["run"], "--samples", "0"), 2)


@pytest.mark.parametrize("plugin", ["cgan", "inpaint"])
def test_evaluating_a_run_and_its_exported_file_agree(tiny_runs, plugin):
    """The same weights through PyTorch (run directory) and onnxruntime (exported file), same
    seed and samples: the same metrics up to the exporter's 1e-4 parity."""
    from gankit.evaluate import evaluate_target

    n = 64 if plugin == "inpaint" else 200  # inpaint's classical baselines (scikit-image) run per image, twice
    run = evaluate_target(tiny_runs[plugin]["run"], samples=n, seed=3)
    onnx = evaluate_target(tiny_runs[plugin]["onnx"], samples=n, seed=3)
    assert run["source"]["run"] and onnx["source"]["model"]
    if plugin == "inpaint":
        assert run["samples"] == onnx["samples"] == n  # --samples: n test images spread over the split
        for kind in ("rect", "strokes"):
            a, b = run["results"][kind]["model"], onnx["results"][kind]["model"]
            assert a["hole_psnr_db"] == pytest.approx(b["hole_psnr_db"], abs=0.01) and a["ssim"] == pytest.approx(b["ssim"], abs=1e-3)
    else:
        assert run["conditional_accuracy"] == pytest.approx(onnx["conditional_accuracy"], abs=1 / 200)
        assert run["class_entropy"] == pytest.approx(onnx["class_entropy"], abs=0.01)
        assert run["fd"] == pytest.approx(onnx["fd"], rel=1e-3)


def test_a_limited_inpainting_evaluation_spreads_over_the_test_split():
    """mnist5k's test split is sorted by class: --samples 64 must not judge zeros only."""
    from gankit.data import held_out
    from gankit.plugins import load_dataset

    ds = load_dataset("mnist5k")
    picked = held_out(np.arange(len(ds.x_test)), 64)
    assert len(picked) == 64 and picked[0] == 0 and picked[-1] == len(ds.x_test) - 1
    assert set(ds.y_test[picked].tolist()) == set(range(10))
    assert held_out(ds.x_test, None) is ds.x_test and held_out(ds.x_test, 5000) is ds.x_test


def test_a_limited_restoration_evaluation_spreads_over_the_test_split(cli, tmp_path):
    """--samples reaches restore models too, and picks patches of both held-out photos (the
    split runs astronaut then coffee, so the first 7 would all be astronaut's)."""
    import json

    from gankit.data import held_out, to_float
    from gankit.evaluate.restoration import eval_set
    from gankit.plugins import load_dataset
    from tests.restore_models import make_resize_restorer

    ds = load_dataset("photos")
    clean, lq = eval_set(ds, "sr2", limit=7)
    np.testing.assert_array_equal(clean, to_float(held_out(ds.x_test, 7)))
    assert lq.shape == (7, 3, 32, 32)
    assert not np.array_equal(clean[-1], to_float(ds.x_test[6]))
    path = make_resize_restorer(tmp_path / "up2.onnx", c=3, scale=2, height=64, width=64)
    r = cli("evaluate", path, "--data", "photos", "--samples", "7", "--json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["samples"] == 7 and rec["degradation"] == "sr2"
    # nearest-neighbour enlargement scores below both classical enlargements on the same 7 patches
    assert rec["results"]["model"]["psnr_db"] < min(rec["results"][k]["psnr_db"] for k in ("bicubic", "lanczos"))


def test_evaluate_uses_the_image_size_the_model_was_trained_at(cli, tmp_path, monkeypatch):
    """A photos model trained with --image-size 32 is judged on 32-pixel patches, from its run
    directory and from its exported file alike (the file records its height, not the option)."""
    import json

    monkeypatch.chdir(tmp_path)
    r = cli("train", "--plugin", "restore", "--data", "photos", "--image-size", "32", "--steps", "1",
            "--batch-size", "2", "--no-evaluate", "--out", "runs/r32",
            "--set", "features=8", "--set", "blocks=1", "--set", "disc_width=8")
    assert r.code == 0, r.err
    for target in ("runs/r32", "exported/r32.onnx"):
        r = cli("evaluate", target, "--samples", "6", "--json")
        assert r.code == 0, r.err
        rec = json.loads(r.out)
        assert (rec["samples"], rec["image_shape"]) == (6, [3, 32, 32]), target
    # a partial look leaves the run's curve and perception-distortion plot to the whole set
    assert not (tmp_path / "runs" / "r32" / "perception_distortion.png").exists()
    assert "gankit evaluate" not in (tmp_path / "runs" / "r32" / "metrics.jsonl").read_text()


def test_report_shows_no_fd_ratio_when_the_floor_is_zero():
    """A folder whose train and test images are copies has a floor of ~0: its FD/floor of 1e9x
    is no measurement, and the report says why instead of printing it."""
    from rich.console import Console

    from gankit.evaluate import format_report

    rec = {"dataset": "folder:x", "split": "test", "samples": 4, "seed": 0, "class_entropy": 1.0, "fd": 3.2,
           "judge_sha256": "0" * 64}
    console = Console(width=200, record=True)
    console.print(format_report({**rec, "fd_floor": 3e-9, "fd_ratio": 1.07e9}))
    console.print(format_report({**rec, "fd_floor": 1.6, "fd_ratio": 2.0}))
    text = console.export_text()
    assert "1070000000" not in text and "floor ~0" in text and "2.00x" in text


def test_the_record_carries_no_fd_ratio_when_the_splits_are_copies(tmp_path):
    """The null reaches every reader of the record: JSON, metrics.jsonl and the quality plot,
    which draws the other metrics and leaves the ratio's panel out."""
    import json

    from gankit.data import to_float
    from gankit.evaluate import evaluate_generator
    from gankit.train.plots import plot_quality
    from gankit.train.run import RunDir

    ds = load_dataset("mnist5k")
    x, y = ds.x_train[:300], ds.y_train[:300]
    copies = Dataset("copies", x, y, x.copy(), y.copy(), ds.class_names)

    def sample(z, labels):
        return to_float(x[np.arange(len(z)) % len(x)])

    rec = evaluate_generator(sample, copies, latent_dim=4, conditional=False, samples=300)
    assert rec["fd_floor"] < 1e-6 and rec["fd_ratio"] is None
    assert json.loads(json.dumps(rec))["fd_ratio"] is None

    from PIL import Image

    def panels(records):  # each panel is 3.6 inches at 100 dpi
        run = RunDir(tmp_path / f"r{len(list(tmp_path.iterdir()))}")
        run.create({})
        for step, ev in enumerate(records, 1):
            run.append_metrics({"step": step, "eval": ev})
        with Image.open(plot_quality(run)) as im:
            return round(im.width / 360)

    assert panels([rec, rec]) == 1  # class entropy only: a ratio that is null everywhere gets no panel
    assert panels([{**rec, "fd_ratio": 2.0}, rec]) == 2  # a gap where it is null, not an error
