"""The models ``gankit bench`` times: an installed family's generator (trained weights from the
newest run under ``runs/`` when there is one, else a fresh init), folded as the exporter
sees it and exported to ONNX, plus its example inputs and FLOP count."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class BenchModel:
    name: str
    family: Any
    config: dict[str, Any]
    module: Any  # BatchNorm-folded fp32 generator in eval mode (what the exporter sees)
    onnx_path: Path
    weights: str
    dataset: Any = None
    int8_paths: dict[bool, Path] = field(default_factory=dict)  # quantised files, by conv_transpose
    flops: dict[int, float] = field(default_factory=dict)


def _newest_run(plugin: str, runs_dir: Path = Path("runs")) -> Path | None:
    from gankit.train import checkpoint as ckpt
    from gankit.train.run import RunDir

    found = []
    for d in runs_dir.glob("*"):
        try:
            cfg = RunDir(d).read_config()
        except Exception:
            continue
        if cfg.get("plugin") == plugin and ckpt.latest(d / "checkpoints") is not None:
            found.append((d.stat().st_mtime, d))
    return max(found)[1] if found else None


def prepare_model(spec: str, workdir: Path, fresh: bool = False) -> BenchModel:
    """``spec``: an installed family name (newest trained run under runs/, else a fresh init)
    or a run directory."""
    from gankit.export import export_generator, prepare_for_export
    from gankit.plugins import get_family, load_dataset, load_dataset_like
    from gankit.train.run import load_run_generator

    path = Path(spec)
    if path.is_dir():
        family, config, G, step = load_run_generator(path)
        # a run dir is named after its run, so two runs of one family can share a table
        weights, name = f"trained: {path} step {step}", f"{family.name}@{path.name}"
    else:
        family = get_family(spec)
        run = None if fresh else _newest_run(spec)
        if run is not None:
            family, config, G, step = load_run_generator(run)
            weights = f"trained: {run} step {step}"
        else:
            import torch

            from gankit.train.config import build_config

            data = family.defaults.get("data", "mnist5k")
            config = build_config(family, load_dataset(data), data=data, seed=0, device="cpu", overrides={})
            torch.manual_seed(0)
            G = family.build_generator(config)
            weights = "fresh init (no trained run found under runs/)"
        name = spec
    # inference only: no parameter needs a gradient. torch's FLOP counter hooks every module
    # input that requires grad, and fails on a parameter passed straight into a submodule
    # (stylegan's learned constant) under no_grad
    module = prepare_for_export(family.export_module(G, config)).eval().requires_grad_(False)
    onnx_path = workdir / f"{name}.onnx"
    export_generator(family, config, G, onnx_path)
    dataset = (load_dataset_like(config["data"], int(config["height"]), int(config["width"]), config.get("image_size"))
               if config.get("data") else None)
    return BenchModel(name, family, config, module, onnx_path, weights, dataset)


# A restore file takes any size; the bench times it on windows of the runtime's default tile
# side (what `gankit restore` runs on a large image), not on the small training patch, whose
# per-call overhead would hide the work per pixel that the roof measures.
RESTORE_BENCH_SIDE = 256
# ... and at most four such windows per call: the runtime's own batch (a 512x512 photo at x2 is
# four 256x256 tiles in one call). Larger batches add nothing a user's restore would run, and
# at 64 windows one eager PyTorch call takes most of a minute on 2 cores.
RESTORE_BENCH_MAX_BATCH = 4


def bench_batches(model: BenchModel, batches: list[int]) -> list[int]:
    """The batch sizes to time ``model`` at: ``batches``, capped for restore (see above)."""
    if model.family.task == "restore":
        return sorted({min(b, RESTORE_BENCH_MAX_BATCH) for b in batches})
    return list(batches)


def example_inputs(model: BenchModel, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    config = model.config
    if model.family.task == "restore":
        s = int(config.get("scale", 1))
        config = {**config, "height": RESTORE_BENCH_SIDE * s, "width": RESTORE_BENCH_SIDE * s}
    return {k: v.numpy() for k, v in model.family.export_inputs(config, batch, seed=seed).items()}


def count_flops(model: BenchModel, batch: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if batch not in model.flops:
        inputs = {k: torch.from_numpy(v) for k, v in example_inputs(model, batch).items()}
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.module(**inputs)
        model.flops[batch] = float(counter.get_total_flops())
    return model.flops[batch]
