"""``gankit train`` as a function: config, run directory, trainer, plots, evaluation, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from gankit.devices import check_device
from gankit.errors import GankitError, UsageError
from gankit.train.run import VOLATILE_KEYS, RunDir, config_hash, default_run_dir

EXPORT_DIR = Path("exported")


class TrainingInterrupted(GankitError):
    """Ctrl-C during training: a checkpoint was saved; exit code 130 like any interrupted command."""

    exit_code = 130


# config keys the core derives from the family and the data; a family default or a --set
# override with one of these names would silently change the data shape, so both are refused
RESERVED_KEYS = ("plugin", "task", "condition", "seed", "device", "channels", "height", "width", "num_classes",
                 "class_names")


def build_config(family, dataset, *, data: str, seed: int, device: str, overrides: dict[str, Any]) -> dict[str, Any]:
    c, h, w = dataset.shape
    per_data = dict(getattr(family, "data_defaults", {}).get(data, {}))
    clash = sorted(k for k in {**family.defaults, **per_data} if k in RESERVED_KEYS)
    if clash:
        raise GankitError(f"family {family.name!r} uses reserved config key(s) {', '.join(clash)} in its defaults "
                          "(the core sets them from the data); rename them, e.g. ngf/features")
    clash = sorted(k for k, v in overrides.items() if k in RESERVED_KEYS and v is not None)
    if clash:
        raise UsageError(f"config key(s) {', '.join(clash)} come from the data and options, not --set "
                         "(use --image-size, --seed, --device, --data)")
    config: dict[str, Any] = {**family.defaults, **per_data}
    config.update(
        plugin=family.name, task=family.task, condition=family.condition, data=data, seed=seed, device=device,
        channels=c, height=h, width=w, num_classes=dataset.num_classes if family.condition == "label" else 0,
        class_names=dataset.class_names if family.condition == "label" else [],
    )
    for k, v in overrides.items():
        if v is not None:
            config[k] = v
    config.update(family.prepare_data(dataset, config))
    config.setdefault("sample_every", max(1, int(config["steps"]) // 5))
    if config.get("save_every") is None:
        config["save_every"] = config["sample_every"]
    if h != w:
        raise UsageError(f"only square images are supported, dataset {data} has {h}x{w}")
    return config


def sampler_for(family, dataset, config):
    """A function G -> uint8 grid image for the run's ``samples/step-N.png``."""
    import torch

    from gankit.images import grid, nchw_to_hwc_uint8

    g = torch.Generator().manual_seed(1234)
    if family.task == "inpaint":
        from gankit.data.masks import mixed_masks

        n = 8
        x = torch.from_numpy(dataset.x_test[np.linspace(0, len(dataset.x_test) - 1, n).astype(int)]).float() / 127.5 - 1
        m = torch.from_numpy(mixed_masks(n, x.shape[2], x.shape[3], seed=1234))

        def sample(G):
            G.eval()
            dev = next(G.parameters()).device
            with torch.no_grad():
                out = G(image=(x * (1 - m)).to(dev), mask=m.to(dev)).cpu()
            rows = torch.cat([x * (1 - m) + m * 0.0, out, x])
            return grid(nchw_to_hwc_uint8(rows.numpy()), nrow=n)

        return sample
    if family.condition == "label":
        k = config["num_classes"]
        per = 10
        z = torch.randn(k * per, int(config["latent_dim"]), generator=g)
        y = torch.arange(k).repeat_interleave(per)
    else:
        z = torch.randn(64, int(config["latent_dim"]), generator=g)
        y = None
        per = 8

    def sample(G):
        G.eval()
        dev = next(G.parameters()).device
        with torch.no_grad():
            kw = {"z": z.to(dev)}
            if y is not None:
                kw["label"] = y.to(dev)
            out = G(**kw).cpu().numpy()
        return grid(nchw_to_hwc_uint8(out), nrow=per)

    return sample


def train(
    *, plugin: str, data: str | None = None, steps: int | None = None, batch_size: int | None = None, seed: int = 0,
    device: str = "auto", out: Path | None = None, save_every: int | None = None, sample_every: int | None = None,
    keep: int = 3, image_size: int | None = None, loss: str | None = None, lr: float | None = None,
    resume: bool = False, force: bool = False, evaluate: bool = True, export: bool = True,
    overrides: dict[str, Any] | None = None, quiet: bool = False,
) -> dict[str, Any]:
    from rich.console import Console

    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.losses import get_loss

    console = Console(stderr=False, highlight=False, quiet=quiet)
    check_device(device)
    family = get_family(plugin)
    run = RunDir(out) if out is not None else None
    old_config = None
    if resume:
        if run is None:
            raise UsageError("--resume needs --out RUN_DIR")
        old_config = run.read_config()
        if old_config.get("plugin") != plugin:
            raise UsageError(f"{run.path} was trained with plugin {old_config.get('plugin')!r}, not {plugin!r}")
    elif run is not None and run.path.exists() and any(run.path.iterdir()):
        raise UsageError(f"run directory {run.path} already exists and is not empty (use --resume, or another --out)")
    if run is None:
        run = RunDir(default_run_dir(plugin))
    if loss is not None:
        get_loss(loss)

    data_name = data or (old_config or {}).get("data") or family.defaults.get("data", "mnist5k")
    data_opts = {}
    if image_size is not None:
        data_opts["size"] = image_size
    dataset = load_dataset(data_name, **data_opts)
    over = dict(overrides or {})
    over.update(steps=steps, batch_size=batch_size, save_every=save_every, sample_every=sample_every, keep=keep, loss=loss)
    if lr is not None:
        over.update(lr_g=lr, lr_d=lr)
    config = build_config(family, dataset, data=data_name, seed=seed, device=device, overrides=over)
    if resume and old_config is not None:
        for k in ("steps", "batch_size", "loss", "sample_every", "save_every"):
            if over.get(k) is None and k in old_config:
                config[k] = old_config[k]
        if config_hash(config) != config_hash(old_config) and not force:
            changed = sorted(k for k in set(config) | set(old_config)
                             if config.get(k) != old_config.get(k) and k not in VOLATILE_KEYS)
            raise UsageError(f"refusing to resume {run.path}: config changed ({', '.join(changed)}); pass --force to accept")
    export_path = EXPORT_DIR / f"{run.path.name}.onnx"
    if export and not resume and export_path.exists():
        raise UsageError(f"{export_path} already exists; pass --out with a new run name or --no-export")
    _check_batch(config)

    from gankit.train.trainer import Trainer

    evaluator = None
    if evaluate:
        from gankit.evaluate import training_evaluator

        evaluator = training_evaluator(family, dataset, config)
    trainer = Trainer(family, dataset, config, run, evaluator=evaluator, sampler=sampler_for(family, dataset, config))
    if resume:
        from gankit.train import checkpoint as ckpt

        latest = ckpt.latest(run.checkpoints)
        if latest is not None:
            trainer.restore(latest)
            run.truncate_metrics(latest.step)
            console.print(f"resuming {run.path} from step {latest.step}")
        config["config_hash"] = config_hash(config)
        run.create(config)
    else:
        run.create({**config, "config_hash": config_hash(config)})
    console.print(
        f"training [bold]{plugin}[/bold] on {data_name} ({len(dataset.x_train)} train images, {dataset.shape}) "
        f"for {config['steps']} steps, batch {config['batch_size']}, on {trainer.device} -> {run.path}"
    )
    if trainer.lr_decay and int(config["steps"]) > trainer.lr_decay[1]:
        end = trainer.lr_decay[1]  # absolute steps (exact resume), so a longer run does not stretch it
        print(f"warning: the learning rate reaches 0 at step {end} (lr_decay={list(trainer.lr_decay)}), so steps "
              f"{end + 1}-{config['steps']} change nothing; stretch it with --set lr_decay=[START,END]", file=sys.stderr)
    from gankit.train.trainer import Interrupted

    try:
        result = _fit_with_progress(trainer, console)
    except Interrupted as stop:
        raise TrainingInterrupted(
            f"interrupted at step {stop.step}; checkpoint saved to {stop.checkpoint}; "
            f"resume with: gankit train --plugin {plugin} --out {run.path} --resume"
        ) from None

    from gankit.train.plots import plot_losses, plot_quality

    plot_losses(run)
    plot_quality(run)
    summary: dict[str, Any] = {
        "run": str(run.path), "steps": result.step, "seconds": round(result.seconds, 1),
        "images_per_s": round(result.images_per_s, 1), "checkpoint": result.checkpoint,
    }
    console.print(f"trained {result.step} steps in {result.seconds:.1f}s ({result.images_per_s:.0f} images/s); "
                  f"checkpoint {result.checkpoint}")
    if result.final_eval:
        from gankit.evaluate import format_report

        summary["eval"] = result.final_eval
        console.print(format_report(result.final_eval))
    if export:
        from gankit.export import export_run

        path = export_run(run.path, export_path, overwrite=resume)
        summary["exported"] = str(path)
        console.print(f"exported [bold]{path}[/bold]")
        console.print("next:")
        if family.task == "inpaint":
            console.print(f"  gankit inpaint {path} --image IN.png --mask MASK.png --out restored.png --compare before_after.png")
        else:
            lab = " --label 7" if family.condition == "label" else ""
            console.print(f"  gankit generate {path} --n 64{lab} --out grid.png")
        console.print(f"  gankit evaluate {path}")
        console.print(f"  python -c \"import gankit.runtime as r; m = r.load('{path}'); print(m)\"")
    else:
        console.print(f"next: gankit export {run.path}")
    return summary


def _check_batch(config: dict[str, Any]) -> None:
    if int(config["batch_size"]) < 2:
        raise UsageError("--batch-size must be at least 2 (BatchNorm needs more than one image)")
    if int(config["steps"]) <= 0:
        raise UsageError("--steps must be positive")


def _fit_with_progress(trainer, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not console.is_terminal and not sys.stdout.isatty():
        # no live bar in logs/CI: print a line per sample interval instead
        every = max(1, int(trainer.config["steps"]) // 10)

        def report(step, total, losses):
            if step % every == 0 or step == total:
                console.print(f"step {step}/{total}  D {losses['d_loss']:.3f}  G {losses['g_loss']:.3f}")

        return trainer.fit(report)
    cols = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}")]
    import time

    with Progress(*cols, console=console, transient=False) as progress:
        task = progress.add_task("train", total=int(trainer.config["steps"]), completed=trainer.step, speed="", losses="")
        t0, s0 = time.perf_counter(), trainer.step

        def report(step, total, losses):
            if step % 5 and step != total:
                return
            rate = (step - s0) / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, completed=step, speed=f"{rate:.1f} it/s",
                            losses=f"D {losses['d_loss']:.3f} G {losses['g_loss']:.3f}")

        return trainer.fit(report)
