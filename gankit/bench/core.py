"""The benchmark run behind ``gankit bench``: every model, backend and batch size in one
process (see :mod:`gankit.bench` for what it measures). The parts live beside it: models,
cpu and cuda backends, quantize, timing, machine, quality, report."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gankit.bench.cpu import Backend, cpu_backends
from gankit.bench.cuda import cuda_backends
from gankit.bench.machine import machine, measure_roofs
from gankit.bench.models import BenchModel, bench_batches, count_flops, example_inputs, prepare_model
from gankit.bench.quality import quality, quality_failing
from gankit.bench.timing import time_interleaved
from gankit.devices import resolve_device
from gankit.errors import first_line
from gankit.evaluate.metrics import psnr
from gankit.sysinfo import cpu_has_bf16

# a --budget below this is a smoke run (the tests'): each way timed once, rough roofs
SMOKE_BUDGET_S = 0.5


def run_bench(models: list[str], batches: list[int], *, threads: int | None = None, compile: bool = True,
              check_quality: bool = True, train: bool = True, cold: bool = True, device: str = "auto",
              budget_s: float = 0.8, fresh: bool = False, quality_samples: int = 512, time_to_quality: bool = False,
              log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Everything in one process; returns the list of records (see ``gankit bench --help``)."""
    import torch

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    asked_threads = threads  # cold start times what a user gets: the runtime's own default unless asked
    threads = threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    torch.set_num_threads(threads)
    use_cuda = resolve_device(device) == "cuda"
    if use_cuda:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN libraries from PyTorch's nvidia packages
            try:
                ort.preload_dlls()
            except Exception as exc:  # pragma: no cover - GPU machines only
                log(f"onnxruntime.preload_dlls: {first_line(exc, with_type=False, limit=160)}")
    records: list[dict[str, Any]] = []
    info = machine()
    info["threads"] = threads
    records.append({"kind": "machine", **info})
    log(f"machine: {info['cpu']} ({info['cores']} cores, {', '.join(info['isa'])}); measuring roofs ...")
    # a smoke run's roofs are rough (small matmuls, a few calls each): not numbers of record
    roofs = measure_roofs(threads) if budget_s >= SMOKE_BUDGET_S else measure_roofs(threads, n=256, budget_s=0.05)
    records.append({"kind": "roof", **{f"{k}_gflops": v for k, v in roofs.items()},
                    **({"smoke": True} if budget_s < SMOKE_BUDGET_S else {})})
    has_ov = info["openvino"] is not None
    tmp = tempfile.TemporaryDirectory(prefix="gankit-bench-")
    work = Path(tmp.name)
    benched: set[str] = set()  # families measured: restore gets a training row of its own
    try:
        for spec in models:
            t_model = time.perf_counter()
            model = prepare_model(spec, work, fresh=fresh)
            benched.add(model.family.name)
            log(f"{model.name}: {model.weights}")
            backends = cpu_backends(openvino_bf16=has_ov and cpu_has_bf16())
            if use_cuda:
                backends += cuda_backends()
            ref_quality: dict[str, float] | None = None
            live: dict[str, Backend] = {}
            for bname, factory in backends:
                if bname.startswith("openvino") and not has_ov:
                    records.append(_skipped(model, bname, "not installed (pip install 'gankit[openvino]')"))
                    continue
                if "torch.compile" in bname and not compile:
                    records.append(_skipped(model, bname, "skipped (--no-compile)"))
                    continue
                try:
                    live[bname] = factory(model, threads)
                except Exception as exc:
                    records.append(_skipped(model, bname, f"error: {first_line(exc, with_type=False, limit=160)}"))
                    log(f"  {bname}: {first_line(exc, with_type=False, limit=160)}")
            for b in bench_batches(model, batches):
                inputs = example_inputs(model, b, seed=7)
                runs: dict[str, Callable[[], Any]] = {}
                outs: dict[str, np.ndarray] = {}
                for bname, backend in live.items():
                    try:
                        run = backend.prepare(inputs)
                        outs[bname] = np.asarray(getattr(run, "fetch", run)(), dtype=np.float32)
                        runs[bname] = run
                    except Exception as exc:
                        records.append(_skipped(model, bname, f"error: {first_line(exc, with_type=False, limit=160)}", batch=b))
                        log(f"  {bname} batch {b}: {first_line(exc, with_type=False, limit=160)}")
                # a smoke run (the tests' --budget 0.02) times each way once: prepare() ran it already
                timed = time_interleaved(runs, budget_s=budget_s) if budget_s >= SMOKE_BUDGET_S else \
                    time_interleaved(runs, budget_s=budget_s, rounds=1, warmup=0, min_runs=1)
                ref = outs.get("pytorch eager fp32")
                flops = count_flops(model, b)
                for bname, (med, p90, n) in timed.items():
                    backend, out = live[bname], outs[bname]
                    gfs = flops / (med / 1e3) / 1e9
                    prec = backend.precision
                    roof = roofs.get(prec if prec in roofs else "fp32")
                    rec = {"kind": "inference", "model": model.name, "backend": bname, "batch": b,
                           "median_ms": round(med, 4), "p90_ms": round(p90, 4), "images_per_s": round(b / (med / 1e3), 1),
                           "gflops_per_s": round(gfs, 2),
                           "max_abs_diff_vs_fp32": None if ref is None else float(np.max(np.abs(out - ref))),
                           "psnr_vs_fp32_db": None if ref is None else round(min(psnr(out, ref, data_range=2.0), 999.0), 2),
                           "precision": prec, "file": backend.kind == "onnx", "device": backend.device,
                           "roof_share": round(gfs / roof, 4) if roof and backend.device == "cpu" else None,
                           "runs": n, "weights": model.weights, "status": "ok"}
                    records.append(rec)
                    log(f"  {bname:<42} batch {b:>3}: {med:8.3f} ms  {rec['images_per_s']:>9.0f} img/s  "
                        f"{gfs:6.1f} GFLOP/s  psnr {rec['psnr_vs_fp32_db']}")
            for bname, backend in live.items():
                if check_quality and model.dataset is not None and (backend.precision != "fp32" or bname == "pytorch eager fp32"):
                    try:
                        q = quality(model, backend, samples=quality_samples, batch=min(64, quality_samples))
                    except Exception as exc:
                        log(f"  quality through {bname}: {first_line(exc, with_type=False, limit=160)}")
                        continue
                    if bname == "pytorch eager fp32":
                        ref_quality = q
                    bad = quality_failing(ref_quality or {}, q)
                    for rec in records:
                        if rec.get("model") == model.name and rec.get("backend") == bname and rec["kind"] == "inference":
                            rec["quality"] = q
                            if bad:
                                rec["status"] = "failing: " + "; ".join(bad)
                    log(f"  quality through {bname}: {q}" + (f"  FAILING ({'; '.join(bad)})" if bad else ""))
            live.clear()
            # a failure here costs this record only, not the run's others (as for the backends)
            if model.family.task == "restore":
                from gankit.bench.restore_speed import restore_throughput

                try:
                    # a smoke run (the tests' short --budget) times each way once, cold
                    smoke = budget_s < SMOKE_BUDGET_S
                    records.append({"kind": "restore_throughput", "model": model.name,
                                    **restore_throughput(model.onnx_path, threads=threads, module=model.module,
                                                         repeats=1 if smoke else 3, warmup=not smoke)})
                except Exception as exc:
                    records.append({"kind": "restore_throughput", "model": model.name,
                                    "status": f"error: {first_line(exc, with_type=False, limit=160)}"})
                log(f"  restore throughput: {records[-1]}")
            if cold:  # every family's file: the 300 ms target is per file
                from gankit.bench.cold import cold_start

                try:
                    records.append({"kind": "cold_start", "model": model.name,
                                    **cold_start(model.onnx_path, repeats=3, batch=16, threads=asked_threads)})
                except Exception as exc:
                    records.append({"kind": "cold_start", "model": model.name,
                                    "status": f"error: {first_line(exc, with_type=False, limit=160)}"})
                log(f"  cold start: {records[-1]}")
            log(f"{model.name}: {time.perf_counter() - t_model:.0f} s")
        if train:
            from gankit.bench.training import TRAINING_FAMILIES, training_speed

            for plugin in TRAINING_FAMILIES:
                if plugin == "cgan" or plugin in benched:
                    records += training_speed(plugin, threads=threads, log=log)
        if time_to_quality:
            from gankit.bench.training import time_to_quality as ttq

            records += ttq(threads=threads, log=log)
    finally:
        tmp.cleanup()
    return records


def _skipped(model: BenchModel, backend: str, why: str, batch: int | None = None) -> dict[str, Any]:
    return {"kind": "inference", "model": model.name, "backend": backend, "batch": batch, "status": why}
