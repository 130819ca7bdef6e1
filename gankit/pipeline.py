"""``gankit train`` as a function: the whole pipeline (config, run directory, trainer, plots,
evaluation, export). It sits above gankit.train, gankit.evaluate and gankit.export, which it calls
in that order; nothing below it imports it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import GankitError, UsageError
from gankit.train.run import RunDir, config_hash, default_run_dir

EXPORT_DIR = Path("exported")


class TrainingInterrupted(GankitError):
    """Ctrl-C during training: a checkpoint was saved; exit code 130 like any interrupted command."""

    exit_code = 130


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
    if family.task == "restore":
        return _restore_sampler(family, dataset, config)
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


def _restore_sampler(family, dataset, config):
    """Rows: the degraded input (pixels enlarged, nearest), the restored image, the original."""
    import torch

    from gankit.images import grid, nchw_to_hwc_uint8

    n = 8
    x = torch.from_numpy(dataset.x_test[np.linspace(0, len(dataset.x_test) - 1, n).astype(int)]).float() / 127.5 - 1
    lq = family.generator_inputs(x, torch.zeros(n, dtype=torch.long), config, torch.Generator().manual_seed(1234))["image"]
    before = torch.nn.functional.interpolate(lq, size=x.shape[2:], mode="nearest")

    def sample(G):
        G.eval()
        dev = next(G.parameters()).device
        with torch.no_grad():
            out = G(image=lq.to(dev)).cpu()
        return grid(nchw_to_hwc_uint8(torch.cat([before, out, x]).numpy()), nrow=n)

    return sample


def train(
    *, plugin: str | None = None, data: str | None = None, steps: int | None = None, batch_size: int | None = None,
    seed: int | None = None, device: str | None = None, out: Path | None = None, save_every: int | None = None,
    sample_every: int | None = None, keep: int | None = None, image_size: int | None = None, loss: str | None = None,
    lr: float | None = None, resume: bool = False, force: bool = False, evaluate: bool = True, export: bool = True,
    overwrite: bool = False, overrides: dict[str, Any] | None = None, config_file: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and export one run; every bad input is a UsageError before any work starts.

    ``overrides`` are ``--set`` values; the options are shorthands for the same config keys
    (an option and a ``--set`` of one key must agree); ``config_file`` is a TOML file or a run's
    ``config.json``, below both.
    """
    from rich.console import Console

    from gankit.train import checkpoint as ckpt
    from gankit.train.config import check_resume_options, merge_sources, read_config_file, refuse_user_nulls

    console = Console(stderr=False, highlight=False, quiet=quiet)
    file_dropped: list[str] = []
    file_values = read_config_file(config_file, file_dropped) if config_file is not None else {}
    file_plugin = file_values.pop("plugin", None)
    if plugin is None:
        if file_plugin is None:
            raise UsageError("--plugin is required (or a --config file that names one)")
        plugin = str(file_plugin)
    elif file_plugin is not None and file_plugin != plugin:
        raise UsageError(f"--plugin {plugin} disagrees with the config file's plugin {file_plugin!r}")
    options: dict[str, Any] = dict(data=data, steps=steps, batch_size=batch_size, seed=seed, device=device,
                                   save_every=save_every, sample_every=sample_every, keep=keep,
                                   image_size=image_size, loss=loss)
    if lr is not None:
        options.update(lr_g=lr, lr_d=lr)
    sets = dict(overrides or {})
    if "lr" in sets:
        raise UsageError("lr is not a config key; use --lr (both rates), or --set lr_g=... / lr_d=...")
    merged, sources = merge_sources(file_values, sets, options)

    from gankit.plugins import get_family
    from gankit.train import distributed

    family = get_family(plugin)
    check_resume_options(resume, force, out)
    refuse_user_nulls(family, merged, sources)  # before any data is loaded
    # torchrun / --nproc: RANK and WORLD_SIZE in the environment; rank 0 alone checks, locks and writes
    world = distributed.from_env(merged.get("device"))
    try:
        if not world.is_main:
            console.quiet = True
            return _train_worker(world, family, console, merged=merged, sources=sources, resume=resume,
                                 force=force, out=out)
        run = RunDir(out if out is not None else default_run_dir(plugin))
        with distributed.decide(world) as gate:
            if run.path.exists() and not run.path.is_dir():
                raise UsageError(f"--out {run.path} is a file, not a run directory; give a folder")
            export_path = EXPORT_DIR / f"{run.path.name}.onnx"
            if export:
                from gankit.fileio import check_output

                check_output(export_path, overwrite=overwrite, suffix=".onnx",
                             hint="pass --overwrite to replace it, --no-export, or another --out")
            if resume and not run.config_path.is_file():
                raise UsageError(f"nothing to resume: {run.path} is not a gankit run (no config.json)")
            created = not run.path.exists()
            lock = run.lock()  # first: a run in progress is named by its pid, whatever else is true
            if not resume and not run.is_empty():
                lock.release()
                raise UsageError(f"run directory {run.path} already exists and is not empty (use --resume, or another --out)")
            gate.value = str(run.path)
        try:
            return _train_locked(family, run, lock, console, merged=merged, sources=sources, resume=resume, force=force,
                                 evaluate=evaluate, export=export, export_path=export_path, overwrite=overwrite,
                                 created=created, ckpt=ckpt, world=world, file_dropped=file_dropped,
                                 config_file=config_file)
        finally:
            lock.release()
    except BaseException as exc:
        distributed.report_failure(world, exc)  # several ranks: one line for the job, the others stop
        raise
    finally:
        distributed.close(world)


def _train_worker(world, family, console, *, merged, sources, resume, force, out) -> dict[str, Any]:
    """Ranks other than 0: follow rank 0's decisions, train their slices, write nothing."""
    from gankit.config import Config
    from gankit.plugins import load_training_data
    from gankit.train import checkpoint as ckpt
    from gankit.train import distributed
    from gankit.train.config import data_choice
    from gankit.train.trainer import Trainer

    # each follow() returns what rank 0 decided, or exits with rank 0's exit code (rank 0 prints why)
    run = RunDir(distributed.follow(world))
    values, latest_path, precision = distributed.follow(world)
    config = Config(values)
    data_name, size = data_choice(family, config)
    dataset = load_training_data(data_name, size)

    trainer = Trainer(family, dataset, config, run, world=world, precision=precision)
    if latest_path is not None:
        trainer.restore(ckpt.load(latest_path))  # every rank reads the checkpoint itself
    world.barrier()
    from gankit.train.interrupt import Interrupted

    try:
        result = trainer.fit(None)
    except Interrupted:
        raise SystemExit(130) from None  # rank 0 saved the checkpoint and prints how to resume
    return {"run": str(run.path), "steps": result.step, "rank": world.rank}


def _train_locked(family, run: RunDir, lock, console, *, merged, sources, resume, force, evaluate, export,
                  export_path, overwrite, created, ckpt, world=None, file_dropped=(), config_file=None) -> dict[str, Any]:
    from gankit.devices import resolve_precision
    from gankit.plugins import load_training_data
    from gankit.train.config import as_recorded, build_config, changed_keys, data_choice, obsolete_keys
    from gankit.train.run import remove_stale_temporaries

    from gankit.train import distributed

    world = world or distributed.SINGLE
    plugin = family.name
    run.remove_stale_temporaries()
    remove_stale_temporaries(EXPORT_DIR)
    old_config = latest = recorded = None
    # every failure below is rank 0's to report; the other ranks stop with its exit code
    with distributed.decide(world) as gate:
        try:
            if resume:
                # after taking the lock: another train may have been writing this run until a moment ago
                if run.is_empty() or not run.config_path.is_file():
                    raise UsageError(f"nothing to resume: {run.path} is not a gankit run (no config.json)")
                old_config = run.read_config()
                if old_config.get("plugin") != plugin:
                    raise UsageError(f"{run.path} was trained with plugin {old_config.get('plugin')!r}, not {plugin!r}")
                latest, skipped = ckpt.newest_usable(run.checkpoints)
                if latest is None:
                    why = "; ".join(skipped) if skipped else "no checkpoint was ever saved"
                    raise UsageError(f"nothing to resume in {run.path}: {why}; start a new run with another --out")
                for reason in skipped:
                    print(f"warning: {reason}; resuming from the older step {latest.step}", file=sys.stderr)
                # keys the run predates: what it did before they existed, not today's family default
                recorded = as_recorded(family, old_config)
                merged = {**recorded, **merged}
            data_name, size = data_choice(family, merged)
            dataset = load_training_data(data_name, size)
            if len(dataset.x_train) < 2:
                raise UsageError(f"{data_name} has {len(dataset.x_train)} training image(s); training needs at least 2")
            config = build_config(family, dataset, overrides=merged, sources=sources)
            retired = [(config_file, "training", sorted(k for k in file_dropped if k not in config))]  # not derived again
            if resume:
                retired.append((run.path, "resuming", obsolete_keys(old_config, config)))
            for where, doing, gone in retired:
                if gone:
                    print(f"warning: {where} records config key(s) this gankit no longer uses: {', '.join(gone)}; "
                          f"{doing} without them", file=sys.stderr)
            if resume:
                # precision is compared below by what it means on this machine ("auto" may be bf16 here
                # and fp32 there), once the trainer has settled it
                changed = [k for k in changed_keys(family, old_config, config) if k != "precision"]
                if changed and not force:
                    raise UsageError(f"refusing to resume {run.path}: config changed ({', '.join(changed)}); "
                                     "pass --force to accept")
            config = config.replace(config_hash=config_hash(config), world_size=world.size)
            trained_at = int((old_config or {}).get("world_size", 1) or 1)
            if resume and trained_at != world.size:
                print(f"warning: {run.path} was trained with {trained_at} rank(s), resumed with {world.size}: the "
                      f"result is not bit-identical to an uninterrupted {trained_at}-rank run", file=sys.stderr)

            from gankit.train.trainer import Trainer

            evaluator = None
            if evaluate:
                from gankit.evaluate import training_evaluator

                evaluator = training_evaluator(family, dataset, config)
            trainer = Trainer(family, dataset, config, run, evaluator=evaluator,
                              sampler=sampler_for(family, dataset, config), world=world)
            if latest is not None:
                before = latest.meta.get("precision") or resolve_precision(  # checkpoints older than the record
                    str(recorded["precision"]), trainer.device.type)
                if before != trainer.precision and not force:
                    raise UsageError(f"refusing to resume {run.path}: it trained in {before} and would go on in "
                                     f"{trainer.precision} here (precision={config['precision']}); pass --force to accept")
                trainer.restore(latest)
        except BaseException:
            if created:
                _remove_if_unused(run)
            raise
        gate.value = (config.to_dict(), str(latest.path) if latest is not None else None, trainer.precision)
    if latest is not None:
        run.truncate_metrics(latest.step)
        console.print(f"resuming {run.path} from step {latest.step}")
    run.create(config)
    world.barrier()  # the other ranks start training once rank 0's run directory is in place
    console.print(
        f"training [bold]{plugin}[/bold] on {config['data']} ({len(dataset.x_train)} train images, {dataset.shape}) "
        f"for {config['steps']} steps, batch {config['batch_size']}, on {trainer.device}"
        f"{', bf16 autocast' if trainer.precision == 'bf16' else ''} -> {run.path}"
    )
    if trainer.lr_decay and int(config["steps"]) > trainer.lr_decay[1]:
        end = trainer.lr_decay[1]  # absolute steps (exact resume), so a longer run does not stretch it
        print(f"warning: the learning rate reaches 0 at step {end} (lr_decay={list(trainer.lr_decay)}), so steps "
              f"{end + 1}-{config['steps']} change nothing; stretch it with --set lr_decay=[START,END]", file=sys.stderr)
    elif trainer.lr_decay and int(config["steps"]) < trainer.lr_decay[1]:
        steps, (start, end) = int(config["steps"]), trainer.lr_decay
        left = "never fall" if steps <= start else f"fall only to {100 * (end - steps) / (end - start):.0f}% of their value"
        print(f"warning: lr_decay={[start, end]} is in absolute steps and this run stops at step {steps}, so the "
              f"learning rates {left}; to decay over this run: --set lr_decay=[{steps // 2},{steps}]", file=sys.stderr)
    from gankit.train.trainer import Interrupted

    try:
        result = _fit_with_progress(trainer, console)
    except Interrupted as stop:
        raise TrainingInterrupted(
            f"interrupted at step {stop.step}; checkpoint saved to {stop.checkpoint}; "
            f"resume with: gankit train --plugin {plugin} --out {run.path} --resume"
            + (f" (with {world.size} ranks, e.g. --nproc {world.size}, for a bit-exact continuation)" if world.distributed else "")
        ) from None

    from gankit.train.plots import plot_losses, plot_quality

    plot_losses(run)
    plot_quality(run)
    summary: dict[str, Any] = {
        "run": str(run.path), "steps": result.step, "seconds": round(result.seconds, 1),
        "images_per_s": round(result.images_per_s, 1), "checkpoint": result.checkpoint,
        "precision": trainer.precision,  # what "auto" became on this machine
    }
    console.print(f"trained {result.step} steps in {result.seconds:.1f}s ({result.images_per_s:.0f} images/s); "
                  f"checkpoint {result.checkpoint}")
    if result.final_eval:
        from gankit.evaluate import format_report

        summary["eval"] = result.final_eval
        console.print(format_report(result.final_eval))
    if export:
        from gankit.export import export_run

        path = export_run(run.path, export_path, overwrite=overwrite)
        summary["exported"] = str(path)
        console.print(f"exported [bold]{path}[/bold]")
        console.print("next:")
        if family.task == "inpaint":
            console.print(f"  gankit inpaint {path} --image IN.png --mask MASK.png --out restored.png --compare before_after.png")
        elif family.task == "restore":
            console.print(f"  gankit restore {path} --image IN.png --out restored.png")
        else:
            lab = " --label 7" if family.condition == "label" else ""
            console.print(f"  gankit generate {path} --n 64{lab} --out grid.png")
        console.print(f"  gankit evaluate {path}")
        console.print(f"  gankit serve {path}    # HTTP API and a page at http://127.0.0.1:8000")
        console.print(f"  python -c \"import gankit.runtime as r; m = r.load('{path}'); print(m)\"")
    else:
        console.print(f"next: gankit export {run.path}")
    return summary


def _remove_if_unused(run: RunDir) -> None:
    """Undo the run directory a failed start created, so it does not block that --out later."""
    import shutil

    if run.path.is_dir() and not any(p.is_file() and p.name != ".lock" for p in run.path.rglob("*")):
        shutil.rmtree(run.path, ignore_errors=True)


def _d(losses) -> str:
    """D's loss for the progress line ("-" when training was supervised only)."""
    return f"{losses['d_loss']:.3f}" if "d_loss" in losses else "-"


def _fit_with_progress(trainer, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not console.is_terminal and not sys.stdout.isatty():
        # no live bar in logs/CI: print a line per sample interval instead
        every = max(1, int(trainer.config["steps"]) // 10)

        def report(step, total, losses):
            if step % every == 0 or step == total:
                console.print(f"step {step}/{total}  D {_d(losses)}  G {losses['g_loss']:.3f}")

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
                            losses=f"D {_d(losses)} G {losses['g_loss']:.3f}")

        return trainer.fit(report)
