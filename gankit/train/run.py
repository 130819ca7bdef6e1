"""The run directory: everything one training run leaves behind.

::

    runs/NAME/
      config.json        everything needed to rebuild the models and resume
      checkpoints/       step-NNNNNNN.safetensors (weights, optimisers, RNG), last K kept
      samples/           step-N.png sample grids
      metrics.jsonl      one JSON record per log/eval interval
      losses.png         D/G loss curves (written at the end)
      quality.png        judge metrics over steps (when evaluated)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gankit.errors import UsageError, first_line

# Keys that may differ between a run and its resume without changing the result.
VOLATILE_KEYS = {"config_hash", "steps", "device", "save_every", "sample_every", "keep"}


def config_hash(config: dict[str, Any]) -> str:
    stable = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def read_config(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise UsageError(f"run directory not found: {self.path}")
        if not self.config_path.is_file():
            raise UsageError(f"{self.path} is not a gankit run (no config.json)")
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"unreadable {self.config_path}: {exc}") from None

    def create(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.samples.mkdir(exist_ok=True)
        write_json(self.config_path, config)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: skip it
        return out

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past ``after_step`` (used on resume so curves are not doubled)."""
        recs = [r for r in self.read_metrics() if int(r.get("step", 0)) <= after_step]
        tmp = self.metrics_path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
        os.replace(tmp, self.metrics_path)


def default_run_dir(plugin: str, root: str = "runs") -> Path:
    """``runs/<plugin>-001``, the first number not yet taken: a new run never overwrites an old one."""
    base = Path(root)
    for i in range(1, 10000):
        p = base / f"{plugin}-{i:03d}"
        if not p.exists():
            return p
    raise UsageError(f"too many runs in {base}; pass --out")


def load_run_generator(run_dir: str | os.PathLike, family=None):
    """(family, config, generator in eval mode, step) from a run directory's newest checkpoint.

    ``family`` defaults to the installed family named in the run's config.
    """
    from gankit.plugins import get_family
    from gankit.train import checkpoint as ckpt

    run = RunDir(run_dir)
    config = run.read_config()
    if family is None:
        family = get_family(config.get("plugin", "?"))
    latest = ckpt.latest(run.checkpoints)
    if latest is None:
        raise UsageError(f"{run.path} has no readable checkpoint")
    G = family.build_generator(config)
    state = latest.module_state("G_ema") if latest.has("G_ema") else latest.module_state("G")
    try:
        G.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"checkpoint {latest.path} does not fit the {family.name} generator: {first_line(exc, with_type=False)}") from None
    return family, config, G.eval(), latest.step
