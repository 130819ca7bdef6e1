"""Fixed costs that every training, export and test pays, before and after stop 40's changes
(numbers: benchmarks/RESULTS.md, "Fixed costs").

Usage: python benchmarks/overheads.py [--repeats 5]

- export: ``gankit.export.export_run`` of a 2-step cgan run, in one process, with
  onnxscript's torchlib op list read afresh for every export (what torch.onnx.export does by
  itself) and read once per process (``gankit.export._torchlib_table_once``). The first export of
  a process pays torch.onnx's imports either way and is not counted.
- checkpoint: writing one checkpoint of a gan run (G, D, EMA G, both Adam states: 37 MB)
  with the tensors serialised twice (checksum pass, then the file) and once (stop 40).
- plotting: a fresh interpreter importing matplotlib.pyplot against matplotlib.figure (the
  switch to Figure objects was made for pyplot's global state; this shows it saved no time).

Medians in seconds, each pair measured alternately in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_pair(a, b, repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def export_costs(work: Path, repeats: int) -> dict:
    import gankit.export as ge
    from gankit.pipeline import train

    os.chdir(work)
    train(plugin="cgan", steps=2, batch_size=4, out="runs/c", evaluate=False, export=False, quiet=True)
    ge.export_run("runs/c", work / "warm.onnx")  # torch.onnx's imports: paid once either way
    kept = ge._torchlib_table_once
    modules = []
    for name in ("torch_2_11", "torch_2_9", "torch_2_5"):
        try:
            modules.append(__import__(f"onnxscript._framework_apis.{name}", fromlist=["get_torchlib_ops"]))
        except ImportError:
            pass

    def fresh():
        saved = [m.get_torchlib_ops for m in modules]
        ge._torchlib_table_once = lambda: None
        for m in modules:
            m.get_torchlib_ops = getattr(m.get_torchlib_ops, "__wrapped__", m.get_torchlib_ops)
        try:
            ge.export_run("runs/c", work / "fresh.onnx", overwrite=True)
        finally:
            ge._torchlib_table_once = kept
            for m, fn in zip(modules, saved):
                m.get_torchlib_ops = fn

    def once():
        ge.export_run("runs/c", work / "once.onnx", overwrite=True)

    a, b = _median_pair(fresh, once, repeats)
    same = (work / "fresh.onnx").read_bytes() == (work / "once.onnx").read_bytes()
    return {"export_table_each_time_s": round(a, 3), "export_table_once_s": round(b, 3), "same_bytes": same}


def checkpoint_costs(work: Path, repeats: int) -> dict:
    from safetensors.torch import save as to_bytes

    from gankit.fileio import atomic_write_bytes
    from gankit.pipeline import train
    from gankit.train import checkpoint as ckpt

    os.chdir(work)
    train(plugin="gan", steps=1, batch_size=4, out="runs/g", evaluate=False, export=False, quiet=True)
    loaded = ckpt.latest(Path("runs/g/checkpoints"))
    tensors, meta = loaded.tensors, dict(loaded._raw_meta)
    meta.pop(ckpt.CHECKSUM_KEY, None)

    def twice():  # stop 39: serialise for the checksum, then again for the file
        m = dict(meta)
        m[ckpt.CHECKSUM_KEY] = json.dumps(ckpt._digest(m, to_bytes(tensors, metadata=m)))
        atomic_write_bytes(work / "twice.safetensors", to_bytes(tensors, metadata=m), fsync=True)

    class _Plain:  # checkpoint.save takes modules and optimisers; the loaded tensors stand in
        def __init__(self, state):
            self._state = state

        def state_dict(self):
            return self._state

    def once():
        ckpt.save(work / "once.safetensors", modules={"all": _Plain(tensors)}, optimizers={}, rng={},
                  meta={k: json.loads(v) for k, v in meta.items() if not k.startswith(("opt_", "rng/", "gankit."))})

    a, b = _median_pair(twice, once, repeats)
    size = (work / "once.safetensors").stat().st_size
    return {"checkpoint_mb": round(size / 1e6, 1), "checkpoint_serialised_twice_s": round(a, 3),
            "checkpoint_serialised_once_s": round(b, 3)}


def plotting_costs(repeats: int) -> dict:
    def child(stmt):
        return lambda: subprocess.run([sys.executable, "-c", stmt], check=True)

    a, b = _median_pair(child("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot"),
                        child("import matplotlib.figure"), repeats)
    base = statistics.median(_time(child("pass")) for _ in range(repeats))
    return {"import_pyplot_s": round(a - base, 3), "import_figure_s": round(b - base, 3)}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cwd = os.getcwd()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name in ("export", "checkpoint"):
                (Path(tmp) / name).mkdir()
            out.update(export_costs(Path(tmp) / "export", args.repeats))
            out.update(checkpoint_costs(Path(tmp) / "checkpoint", args.repeats))
        finally:
            os.chdir(cwd)
    out.update(plotting_costs(args.repeats))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
