"""``gankit evaluate``: measured quality, recorded with what was measured.

For generators: the judge's conditional accuracy (next to its own accuracy on the real test
split), the normalised entropy of the predicted classes (``class_entropy``), and the Frechet distance in judge-feature space between generated
samples and the test split (next to the floor: the same distance between as many real
*train* images and the test split). For inpainting models: hole PSNR/L1 and SSIM next to
classical baselines (see :mod:`gankit.evaluate.inpainting`). For restoration models: PSNR/SSIM
and realism next to classical baselines (see :mod:`gankit.evaluate.restoration`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gankit.data import Dataset, to_float
from gankit.errors import UsageError

# a Frechet distance floor (train split against test split) that rounds to 0 at the record's
# 4 decimals means the two splits are copies of each other: the FD/floor ratio is then null,
# not a huge number, and the printed report and the JSON record agree on it
FLOOR_EPS = 5e-5

SampleFn = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]  # (z, labels) -> float [-1,1] NCHW


class _Reference:
    """Judge outputs on the real data, computed once per dataset."""

    def __init__(self, dataset: Dataset):
        from gankit.evaluate.judge import load_judge
        from gankit.evaluate.metrics import class_entropy

        self.dataset = dataset
        self.judge = load_judge(dataset)
        self.test_feats, test_pred = self.judge.features_and_predictions(to_float(dataset.x_test))
        self.test_accuracy = float((test_pred == dataset.y_test).mean())
        self.test_spread = _spread(self.test_feats, dataset.y_test, dataset.num_classes)
        self._floors: dict[int, float] = {}

        # the class frequencies of the real data: what a faithful generator's class entropy should match
        self.real_class_entropy = class_entropy(dataset.y_train, dataset.num_classes) if dataset.num_classes > 1 else 1.0

    def floor(self, n: int) -> float:
        """FD between ``n`` real train images (fixed subset) and the test split.

        ``n`` is at most the train split's size: callers compare it with the FD of exactly as
        many generated images (:func:`fd_sample_size`), since the FD estimate grows as the
        sample shrinks and unequal sizes would flatter whichever side had more.
        """
        from gankit.evaluate.metrics import frechet_distance

        if n > len(self.dataset.x_train):
            raise ValueError(f"floor of {n} images from a train split of {len(self.dataset.x_train)}")
        if n not in self._floors:
            rng = np.random.default_rng(0)
            idx = rng.choice(len(self.dataset.x_train), size=n, replace=False)
            f, _ = self.judge.features_and_predictions(to_float(self.dataset.x_train[idx]))
            self._floors[n] = frechet_distance(f, self.test_feats)
        return self._floors[n]


_REFS: dict[int, _Reference] = {}


def reference(dataset: Dataset) -> _Reference:
    key = id(dataset)
    if key not in _REFS:
        _REFS[key] = _Reference(dataset)
    return _REFS[key]


def evaluate_generator(sample: SampleFn, dataset: Dataset, *, latent_dim: int, conditional: bool,
                       samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Judge ``samples`` generated images against the dataset's test split."""
    from gankit.evaluate.metrics import class_entropy, frechet_distance

    t0 = time.perf_counter()
    ref = reference(dataset)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((samples, latent_dim)).astype(np.float32)
    k = dataset.num_classes
    labels = (np.arange(samples) % k).astype(np.int64) if conditional else None
    images = sample(z, labels)
    if not np.isfinite(images).all():
        raise UsageError("the generator produced non-finite values")
    feats, pred = ref.judge.features_and_predictions(images)
    # equal sample sizes on both sides of the ratio: a small train split caps both
    m = min(samples, len(dataset.x_train))
    fd = frechet_distance(feats[:m], ref.test_feats)
    floor = ref.floor(m)
    rec: dict[str, Any] = {
        "kind": "generate",
        "dataset": dataset.name,
        "split": "test",
        "samples": samples,
        "seed": seed,
        "judge_sha256": ref.judge.sha256,
        "judge_test_accuracy": round(ref.test_accuracy, 4),
        "class_entropy": round(class_entropy(pred, k), 4),
        "class_entropy_real": round(ref.real_class_entropy, 4),
        "fd_samples": m,
        "fd": round(fd, 4),
        "fd_floor": round(floor, 4),
        # train and test (near) copies of each other leave no scale to divide by: a ratio of
        # 1e9x would be no measurement, so JSON, metrics.jsonl and the plots carry null instead
        "fd_ratio": round(fd / floor, 3) if floor >= FLOOR_EPS else None,
    }
    # intra-class diversity: mean feature distance to the class centroid, generated / real
    # (grouped by the requested label, or by the judge's prediction for unconditional models)
    groups = labels if conditional else pred
    rec["diversity"] = round(_spread(feats, groups, k) / max(ref.test_spread, 1e-12), 3)
    if conditional:
        rec["conditional_accuracy"] = round(float((pred == labels).mean()), 4)
        rec["per_class_accuracy"] = [round(float((pred[labels == c] == c).mean()), 3) for c in range(k)]
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def _spread(feats: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Average over classes of the mean distance of a class's features to their centroid."""
    out = []
    for c in range(k):
        f = feats[groups == c]
        if len(f) >= 2:
            out.append(float(np.linalg.norm(f - f.mean(0), axis=1).mean()))
    return float(np.mean(out)) if out else 0.0


def torch_sample_fn(G, batch: int = 500) -> SampleFn:
    import torch

    def sample(z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        G.eval()
        dev = next(G.parameters()).device
        outs = []
        with torch.no_grad():
            for i in range(0, len(z), batch):
                kw = {"z": torch.from_numpy(z[i : i + batch]).to(dev)}
                if labels is not None:
                    kw["label"] = torch.from_numpy(labels[i : i + batch]).to(dev)
                outs.append(G(**kw).float().cpu().numpy())
        return np.concatenate(outs)

    return sample


def training_evaluator(family, dataset: Dataset, config: dict[str, Any], samples: int | None = None):
    """The callback the trainer runs at every sample interval (and at the end)."""
    if family.task == "inpaint":
        from gankit.evaluate.inpainting import training_evaluator as inpaint_eval

        return inpaint_eval(dataset, config)
    if family.task == "restore":
        from gankit.evaluate.restoration import training_evaluator as restore_eval

        return restore_eval(dataset, config)
    if dataset.num_classes < 2:
        return None  # a judge needs at least two classes
    n = int(samples or config.get("eval_samples") or 1000)

    def run(G, step: int) -> dict[str, Any]:
        rec = evaluate_generator(torch_sample_fn(G), dataset, latent_dim=int(config["latent_dim"]),
                                 conditional=family.condition == "label", samples=n, seed=0)
        rec["step"] = step
        return rec

    return run


def evaluate_target(target: Path, *, samples: int | None = None, seed: int = 0, data: str | None = None) -> dict[str, Any]:
    """Evaluate a run directory (its final EMA/generator weights) or an exported ``.onnx``.

    ``samples``: generated images to judge (default 1000); for inpainting and restoration, that
    many held-out images spread evenly over the test split (default: all of them; the built-in
    splits are sorted by class or by photo, so the first N would judge one class or one photo)."""
    gen_samples = 1000 if samples is None else samples
    from gankit.plugins import load_dataset_like

    target = Path(target)
    if not target.exists():
        raise UsageError(f"not found: {target}")
    if target.is_dir():
        from gankit.train.run import load_run_generator

        family, config, G, step = load_run_generator(target)
        dataset = load_dataset_like(data or config["data"], int(config["height"]), int(config["width"]),
                                    config.get("image_size"))
        source = {"run": str(target), "step": step}
        if family.task == "restore":
            return _evaluate_restore_run(target, family, config, G, step, dataset, seed, samples)
        if family.task == "inpaint":
            from gankit.evaluate.inpainting import evaluate_inpainting, torch_inpaint_fn

            rec = evaluate_inpainting(torch_inpaint_fn(G), dataset, seed=seed, limit=samples)
        else:
            rec = evaluate_generator(torch_sample_fn(G), dataset, latent_dim=int(config["latent_dim"]),
                                     conditional=family.condition == "label", samples=gen_samples, seed=seed)
    else:
        meta = _onnx_metadata(target)
        if meta.get("gankit.task") == "restore":
            return _evaluate_restore_file(target, meta, data, seed, samples)
        from gankit import runtime

        model = runtime.load(target)
        data_name = data or model.metadata.get("gankit.data")
        if not data_name:
            raise UsageError(f"{target} does not record its dataset; pass --data")
        dataset = load_dataset_like(data_name, model.height, model.width)
        if tuple(dataset.shape) != (model.channels, model.height, model.width):
            raise UsageError(f"dataset {data_name} has shape {dataset.shape}, the model {(model.channels, model.height, model.width)}")
        source = {"model": str(target), "providers": model.providers}
        if model.task == "inpaint":
            from gankit.evaluate.inpainting import evaluate_inpainting

            rec = evaluate_inpainting(model.run_raw_inpaint, dataset, seed=seed, limit=samples)
        else:
            def sample(z, labels):
                return model.run_raw(z, labels)

            rec = evaluate_generator(sample, dataset, latent_dim=model.latent_dim, conditional=model.num_classes > 0,
                                     samples=gen_samples, seed=seed)
    rec["source"] = source
    return rec


def _onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` ({} when it is not one: the runtime then says why)."""
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        return dict(ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                    .get_modelmeta().custom_metadata_map)
    except Exception:
        return {}


def _evaluate_restore_run(target: Path, family, config, G, step: int, dataset, seed: int,
                          samples: int | None) -> dict[str, Any]:
    """A restore run: the table's numbers appended to its metrics.jsonl, the perception-distortion plot beside them
    (on the whole held-out set only; with ``samples`` fewer, the record alone)."""
    from gankit.evaluate.restoration import evaluate_restoration, plot_perception_distortion, torch_restore_fn
    from gankit.train.run import RunDir

    rec = evaluate_restoration(torch_restore_fn(G), dataset, degradation=str(config["degradation"]), seed=seed,
                               limit=samples, slow_baselines=True)
    rec["source"] = {"run": str(target), "step": step}
    if samples is not None and samples < len(dataset.x_test):
        return rec  # a partial look: the run's curve and plot keep to the whole held-out set
    label = "GAN" if float(config.get("gan_weight", 0) or 0) > 0 else "PSNR-oriented"
    rec["plot"] = plot_perception_distortion({f"{target.name} ({label})": rec}, target / "perception_distortion.png")
    run = RunDir(target)
    run.append_metrics({"step": step, "eval": rec, "source": "gankit evaluate"})
    return rec


def _evaluate_restore_file(target: Path, meta: dict[str, str], data: str | None, seed: int,
                           samples: int | None) -> dict[str, Any]:
    from gankit.evaluate.restoration import evaluate_restoration, onnx_restore_fn
    from gankit.plugins import load_dataset, load_dataset_like

    data_name = data or meta.get("gankit.data")
    if not data_name:
        raise UsageError(f"{target} does not record its dataset; pass --data")
    degradation = meta.get("gankit.degradation", "")
    from gankit.data.degradations import NAMES

    if degradation not in NAMES:
        raise UsageError(f"{target} was trained for degradation {degradation!r}; gankit evaluate knows {', '.join(NAMES)}")
    want = (meta.get("gankit.channels"), meta.get("gankit.height"), meta.get("gankit.width"))
    try:
        side: tuple[int, int] | None = (int(want[1]), int(want[2]))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # no or unreadable size in the metadata: the check below says so
        side = None
    dataset = load_dataset_like(data_name, *side) if side else load_dataset(data_name)
    if tuple(str(s) for s in dataset.shape) != want:
        raise UsageError(f"dataset {data_name} has shape {dataset.shape}, the model ({', '.join(map(str, want))})")
    rec = evaluate_restoration(onnx_restore_fn(target), dataset, degradation=degradation, seed=seed, limit=samples,
                               slow_baselines=True)
    rec["source"] = {"model": str(target), "providers": ["CPUExecutionProvider"]}
    return rec


def format_report(rec: dict[str, Any]):
    """A rich table of an evaluation record."""
    from rich.table import Table

    if rec.get("kind") == "restore":
        from gankit.evaluate.restoration import format_table

        return format_table(rec)

    if rec.get("kind") == "inpaint":
        from gankit.evaluate.inpainting import format_table

        return format_table(rec)
    t = Table(title=f"evaluation on {rec['dataset']} {rec['split']} split ({rec['samples']} samples, seed {rec['seed']})")
    t.add_column("metric")
    t.add_column("model", justify="right")
    t.add_column("real data", justify="right")
    if "conditional_accuracy" in rec:
        t.add_row("conditional accuracy", f"{rec['conditional_accuracy']:.4f}", f"{rec['judge_test_accuracy']:.4f} (judge on test)")
    real = rec.get("class_entropy_real")
    t.add_row("class entropy (normalised)", f"{rec['class_entropy']:.4f}",
              f"{real:.4f} (real class frequencies)" if real is not None else "1.0000 (uniform classes)")
    n = rec.get("fd_samples", rec.get("samples"))
    t.add_row("Frechet distance (judge features)", f"{rec['fd']:.3f}", f"{rec['fd_floor']:.3f} ({n} train vs test)")
    # records written before the ratio became null still carry 1e9x: the floor decides
    if rec.get("fd_ratio") is not None and rec["fd_floor"] >= FLOOR_EPS:
        t.add_row("FD / floor", f"{rec['fd_ratio']:.2f}x", "1.00x")
    else:
        t.add_row("FD / floor", "n/a", "floor ~0: train and test images nearly identical")
    if "diversity" in rec:
        t.add_row("intra-class diversity", f"{rec['diversity']:.3f}", "1.000 (real test spread)")
    t.caption = f"judge {rec['judge_sha256'][:12]}"
    return t
