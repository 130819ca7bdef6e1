"""The plugin conformance kit: does a family keep the contract the core relies on?

:func:`check_family` takes a :class:`~gankit.family.ModelFamily` and walks it through the
whole flow on tiny synthetic data, exactly as ``gankit train`` / ``export`` / ``generate``
would: build G and D, feed them, train two steps with the real trainer, save a checkpoint,
export to ONNX (parity and metadata checked by the real exporter) and run the file through
:mod:`gankit.runtime`. The first broken promise raises :class:`ConformanceError` naming the
stage, so a plugin author sees *what* to fix::

    from gankit.testing import check_family
    from gankit_mygan import MyFamily

    def test_conformance(tmp_path):
        check_family(MyFamily(name="mygan"), workdir=tmp_path)

With pytest, the ``gankit_check`` fixture (registered through the ``pytest11`` entry point
when gankit is installed) does the same with a temporary directory::

    def test_conformance(gankit_check):
        gankit_check("mygan")          # by registered name, through the plugin manager

The built-in plugins are tested with this kit on every CI run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["ConformanceError", "ConformanceReport", "check_family", "synthetic_dataset"]


class ConformanceError(AssertionError):
    """A family broke the contract; the message starts with ``[stage]`` and says what it got.

    ``stage`` and ``got`` are also attributes, for tests that check them.
    """

    def __init__(self, message: str, stage: str = "", got: Any = None):
        super().__init__(message)
        self.stage, self.got = stage, got


@dataclass
class ConformanceReport:
    """What :func:`check_family` verified, stage by stage."""

    family: str
    shape: tuple[int, int, int]
    passed: list[str] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    onnx_path: str = ""

    def __str__(self) -> str:
        return f"{self.family} {self.shape}: " + ", ".join(self.passed)


_UNSERIALISABLE = object()


def synthetic_dataset(shape: Sequence[int] = (1, 28, 28), *, num_classes: int = 3, n_train: int = 16,
                      n_test: int = 8, seed: int = 0):
    """Random uint8 images with labels: enough to exercise every code path in seconds."""
    from gankit.data import Dataset

    rng = np.random.default_rng(seed)
    c, h, w = (int(s) for s in shape)
    return Dataset(
        name="synthetic",
        x_train=rng.integers(0, 256, (n_train, c, h, w), dtype=np.uint8),
        y_train=(np.arange(n_train) % num_classes).astype(np.int64),
        x_test=rng.integers(0, 256, (n_test, c, h, w), dtype=np.uint8),
        y_test=(np.arange(n_test) % num_classes).astype(np.int64),
        class_names=[f"class{i}" for i in range(num_classes)],
    )


def _fail(stage: str, message: str, got: Any = None) -> ConformanceError:
    return ConformanceError(f"[{stage}] {message}", stage, got)


def _call(stage: str, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, any exception turned into a ConformanceError for ``stage``."""
    try:
        return fn(*args, **kwargs)
    except ConformanceError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise _fail(stage, f"{what} raised {type(exc).__name__}: {msg}", type(exc).__name__) from None


def check_family(family: Any, *, shape: Sequence[int] = (1, 28, 28), workdir: str | Path | None = None,
                 steps: int = 2, batch_size: int = 4, num_classes: int = 3,
                 overrides: dict[str, Any] | None = None) -> ConformanceReport:
    """Check ``family`` (a ModelFamily or a registered family name) end to end on ``shape``.

    Raises :class:`ConformanceError` at the first failed stage; returns a report otherwise.
    ``overrides`` adjusts the family's defaults (e.g. a smaller width) for speed.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="gankit-conformance-") as tmp:
            return check_family(family, shape=shape, workdir=tmp, steps=steps, batch_size=batch_size,
                                num_classes=num_classes, overrides=overrides)
    import torch

    from gankit.family import ModelFamily
    from gankit.plugins import _validate_family, get_family

    if isinstance(family, str):
        family = get_family(family)
    if not isinstance(family, ModelFamily):
        raise _fail("contract", f"expected a gankit.family.ModelFamily, got {type(family).__name__}")
    try:
        _validate_family(family)
    except Exception as exc:
        raise _fail("contract", str(exc)) from None
    if family.condition not in ("none", "label", "masked-image", "image"):
        raise _fail("contract", f"unknown condition {family.condition!r}")
    if (family.task == "inpaint") != (family.condition == "masked-image") or \
            (family.task == "restore") != (family.condition == "image"):
        raise _fail("contract", f"task {family.task!r} does not fit condition {family.condition!r} "
                                "(inpainting families condition on the masked image, restorers on the image, "
                                "generators on neither)")
    from gankit.train.regularizers import validate

    for reg in family.regularizers:
        _call("contract", "the family's regularizers", validate, reg)
    report = ConformanceReport(family.name, tuple(int(s) for s in shape))  # type: ignore[arg-type]
    report.passed.append("contract")
    workdir = Path(workdir)
    dataset = synthetic_dataset(shape, num_classes=num_classes, n_train=max(4 * batch_size, 8))

    # -- config ------------------------------------------------------------------------
    from gankit.train.config import build_config

    over = {"steps": steps, "batch_size": batch_size, "sample_every": steps, "save_every": steps, "keep": 2,
            **(overrides or {})}
    try:
        config = build_config(family, dataset, data="synthetic", seed=0, device="cpu", overrides=over)
    except Exception as exc:
        raise _fail("config", str(exc), type(exc).__name__) from None
    if family.task == "generate" and int(config.get("latent_dim", 0) or 0) <= 0:
        raise _fail("config", "a generate family needs a positive 'latent_dim' in its defaults", config.get("latent_dim"))
    import json

    for key, value in config.items():  # config.json must hold the config exactly, or resume and export differ
        try:
            back = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            back = _UNSERIALISABLE
        if back != value and not (isinstance(value, tuple) and back == list(value)):
            raise _fail("config", f"config key {key!r} = {value!r} ({type(value).__name__}) does not survive "
                                  "config.json; use numbers, strings, booleans, lists and dicts", type(value).__name__)
    from gankit.train.regularizers import active_regularizers
    from gankit.train.losses import get_loss

    loss = _call("config", "looking up the loss", get_loss, config.get("loss", "bce"))
    _call("config", "the run's regularizers", active_regularizers, family, loss, config)

    # -- build and forward ---------------------------------------------------------------
    c, h, w = report.shape
    torch.manual_seed(0)
    try:
        G = family.build_generator(config)
        D = family.build_discriminator(config)
    except Exception as exc:
        raise _fail("build", f"{type(exc).__name__}: {exc}") from None
    for role, mod in (("generator", G), ("discriminator", D)):
        if not isinstance(mod, torch.nn.Module):
            raise _fail("build", f"build_{role} returned {type(mod).__name__}, not a torch.nn.Module")
        if not any(p.requires_grad for p in mod.parameters()):
            raise _fail("build", f"the {role} has no trainable parameters")
    inputs = _call("inputs", "export_inputs(config, batch, seed)", family.export_inputs, config, batch_size, seed=0)
    declared = list(inputs)
    expected = {"inpaint": ["image", "mask"], "restore": ["image"]}.get(
        family.task, ["z", "label"] if family.condition == "label" else ["z"])
    if declared != expected:
        raise _fail("inputs", f"export_inputs gives {declared}, the runtime feeds {expected}", declared)
    train_inputs = _call("inputs", "generator_inputs(real, labels, config, rng)", family.generator_inputs,
                         torch.zeros(batch_size, c, h, w), torch.zeros(batch_size, dtype=torch.long), config,
                         torch.Generator().manual_seed(0))
    if set(train_inputs) != set(declared):
        raise _fail("inputs", f"generator_inputs gives {sorted(train_inputs)} but export_inputs {sorted(declared)}",
                    sorted(train_inputs))
    from gankit.train.contract import FamilyContractError, check_discriminator_output, check_generator_output

    G.eval(), D.eval()
    with torch.no_grad():
        fake = _call("generator", "the generator's forward pass", G, **inputs)
    try:
        check_generator_output(family, G, fake, (batch_size, c, h, w))
    except FamilyContractError as exc:
        raise _fail("generator", str(exc), exc.got) from None
    if not torch.isfinite(fake).all() or fake.abs().max() > 1.0 + 1e-5:
        got = f"values in [{float(fake.min()):.3g}, {float(fake.max()):.3g}]"
        raise _fail("generator", f"output must be finite and in [-1, 1] (end the generator with tanh); got {got}", got)
    labels = torch.arange(batch_size) % num_classes
    with torch.no_grad():
        logits = _call("discriminator", "the discriminator's forward pass", D,
                       *family.discriminator_inputs(fake, labels, inputs))
    try:
        check_discriminator_output(family, D, logits, batch_size)
    except FamilyContractError as exc:
        raise _fail("discriminator", str(exc), exc.got) from None
    if not torch.isfinite(logits).all():
        raise _fail("discriminator", "returned non-finite logits", logits.flatten()[:8].tolist())
    report.passed.append("forward")

    # -- two real training steps, with a checkpoint --------------------------------------
    from gankit.train import checkpoint as ckpt
    from gankit.train.run import RunDir, config_hash
    from gankit.train.trainer import Trainer

    run = RunDir(workdir / f"run-{family.name}")
    run.create({**config, "config_hash": config_hash(config)})
    trainer = _call("train", "setting up the trainer", Trainer, family, dataset, config, run)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    try:
        result = trainer.fit()
    except Exception as exc:
        raise _fail("train", f"{type(exc).__name__}: {' '.join(str(exc).split())}", type(exc).__name__) from None
    if result.step != steps:
        raise _fail("train", f"stopped at step {result.step} of {steps}", result.step)
    if not all(np.isfinite(v) for v in result.last.values()):
        raise _fail("train", f"non-finite losses {result.last}", result.last)
    if all(torch.equal(a, b) for a, b in zip(before, trainer.G.parameters())):
        raise _fail("train", "two training steps left the generator's weights unchanged")
    report.losses = {k: float(v) for k, v in result.last.items()}
    latest = ckpt.latest(run.checkpoints)
    if latest is None or latest.step != steps:
        raise _fail("checkpoint", "no readable checkpoint for the last step")
    report.passed.append("train")

    # -- export (parity + metadata) -------------------------------------------------------
    from gankit.train.run import load_run_generator

    try:
        _, config2, G2, step = load_run_generator(run.path, family)
    except Exception as exc:
        raise _fail("checkpoint", f"reloading the run failed: {type(exc).__name__}: {exc}") from None
    onnx_path = workdir / f"{family.name}.onnx"
    from gankit.export import export_generator

    try:
        export_generator(family, config2, G2, onnx_path, extra_metadata={"gankit.step": str(step)})
    except Exception as exc:  # ExportError, or the pre-export shape check
        raise _fail("export", str(exc), type(exc).__name__) from None
    report.onnx_path = str(onnx_path)
    report.passed.append("export")

    # -- runtime ---------------------------------------------------------------------------
    if family.task == "restore":
        _check_restore_file(family, config2, G2, onnx_path, report)
        report.passed.append("runtime")
        return report
    import gankit.runtime as rt

    try:
        model = rt.load(onnx_path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise _fail("metadata", f"gankit.runtime refused the exported file: {exc}") from None
    if (model.channels, model.height, model.width) != report.shape:
        raise _fail("metadata", f"file says {(model.channels, model.height, model.width)}, trained on {report.shape}")
    if family.task == "inpaint":
        rng = np.random.default_rng(0)
        img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 4 : h // 2, w // 4 : w // 2] = True
        given = img if c > 1 else img[..., 0]  # a grayscale model gets an [H, W] array, as users give one
        out = np.asarray(model.inpaint(given, mask))
        if out.shape != given.shape or out.dtype != np.uint8:
            raise _fail("runtime", f"inpaint returned {out.shape} {out.dtype} for a {given.shape} uint8 image")
        if np.abs(out[~mask].astype(int) - given[~mask].astype(int)).max() > 1:
            raise _fail("runtime", "inpainting changed known pixels (composite mask*generated + (1-mask)*input)")
    else:
        labels_arg = list(range(min(num_classes, 4))) if family.condition == "label" else None
        n = len(labels_arg) if labels_arg else 4
        out = np.asarray(model.generate(n, labels=labels_arg, seed=0))
        if out.shape[0] != n or out.dtype != np.uint8:
            raise _fail("runtime", f"generate returned {out.shape} {out.dtype}")
        again = np.asarray(model.generate(n, labels=labels_arg, seed=0))
        if not np.array_equal(out, again):
            raise _fail("runtime", "the same seed gave different images")
    # -- runtime parity: gankit.runtime's raw output equals the trained generator's ------------
    from gankit.export import TOLERANCE

    example = family.export_inputs(config2, 3, seed=7)
    with torch.no_grad():
        ref = G2(**example).float().numpy()
    try:
        if family.task == "inpaint":
            # run_raw_inpaint blanks the holes itself, as the training inputs are blanked
            got = model.run_raw_inpaint(example["image"].numpy(), example["mask"].numpy())
            with torch.no_grad():
                ref = G2(image=example["image"] * (1 - example["mask"]), mask=example["mask"]).float().numpy()
        else:
            lab = example["label"].numpy() if "label" in example else None
            got = model.run_raw(example["z"].numpy(), lab)
    except Exception as exc:
        raise _fail("runtime", f"running the file raised {type(exc).__name__}: {exc}", type(exc).__name__) from None
    got = np.asarray(got)
    if got.shape != ref.shape:
        raise _fail("runtime", f"gankit.runtime returned shape {list(got.shape)}, PyTorch {list(ref.shape)}", got.shape)
    diff = float(np.max(np.abs(got - ref)))
    report.parity_max_abs_diff = diff
    if not diff <= TOLERANCE:
        raise _fail("runtime", f"gankit.runtime differs from the PyTorch generator by {diff:.3g} (max abs) > "
                               f"{TOLERANCE:g}", diff)
    report.passed.append("runtime")
    return report


def _check_restore_file(family, config, G, onnx_path: Path, report: ConformanceReport) -> None:
    """A restore file: its metadata, and any-size inputs through onnxruntime and (once it knows
    the task) gankit.runtime, against the trained generator."""
    import onnx
    import onnxruntime as ort
    import torch

    from gankit.export import TOLERANCE

    c, h, w = report.shape
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    scale = int(meta.get("gankit.scale", "0") or 0)
    multiple = int(meta.get("gankit.size_multiple", "1") or 1)
    want = {"gankit.task": "restore", "gankit.channels": str(c), "gankit.height": str(h), "gankit.width": str(w)}
    bad = {k: meta.get(k) for k, v in want.items() if meta.get(k) != v}
    if bad or scale not in (1, 2, 4) or h % scale or multiple < 1 or not meta.get("gankit.degradation"):
        raise _fail("metadata", f"restore metadata wrong or missing: {bad or meta}", bad or meta)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if [i.name for i in sess.get_inputs()] != ["image"] or [o.name for o in sess.get_outputs()] != ["restored"]:
        raise _fail("runtime", "a restore file takes 'image' and returns 'restored'")
    worst = 0.0
    # the trained size and two others (one not square): H and W are dynamic in the file
    for hh, ww in ((h // scale, w // scale), (2 * multiple, 3 * multiple), (h // scale + multiple, w // scale + 2 * multiple)):
        x = torch.rand(2, c, hh, ww, generator=torch.Generator().manual_seed(hh * 1000 + ww)) * 2 - 1
        with torch.no_grad():
            ref = G(image=x).float().numpy()
        try:
            got = sess.run(None, {"image": x.numpy()})[0]
        except Exception as exc:
            raise _fail("runtime", f"the file refused a {hh}x{ww} input: {type(exc).__name__}: {exc}") from None
        if got.shape != (2, c, hh * scale, ww * scale):
            raise _fail("runtime", f"{hh}x{ww} in gave {list(got.shape)} out (scale {scale})", got.shape)
        worst = max(worst, float(np.max(np.abs(got - ref))))
    if not worst <= TOLERANCE:
        raise _fail("runtime", f"onnxruntime differs from the PyTorch generator by {worst:.3g} (max abs) > {TOLERANCE:g}", worst)
    report.parity_max_abs_diff = worst
    from gankit.runtime import contract

    if "restore" in getattr(contract, "TASKS", ()):  # the runtime side of the restore task is present
        import gankit.runtime as rt

        try:
            model = rt.load(onnx_path, providers=["CPUExecutionProvider"])
            img = np.random.default_rng(0).integers(0, 256, (h // scale + multiple, w // scale + multiple, c), dtype=np.uint8)
            out = np.asarray(model.restore(img if c > 1 else img[..., 0]))
        except Exception as exc:
            raise _fail("runtime", f"gankit.runtime could not restore with the file: {type(exc).__name__}: {exc}") from None
        size = (img.shape[0] * scale, img.shape[1] * scale)
        if out.shape[:2] != size or out.dtype != np.uint8:
            raise _fail("runtime", f"restore returned {out.shape} {out.dtype} for a {img.shape} uint8 image")
