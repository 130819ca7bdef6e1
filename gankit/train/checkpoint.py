"""Checkpoints: one safetensors file per saved step, written atomically.

A checkpoint holds every tensor needed to continue a run exactly: generator (``G/``),
discriminator (``D/``), EMA generator (``G_ema/``), both optimisers (``opt_g/``, ``opt_d/``)
and the RNG states (``rng/``). Non-tensor state (step, config hash, optimiser
hyper-parameters, numpy and python RNG states) lives in the file's string metadata as JSON.
Nothing is ever unpickled, so a checkpoint cannot carry code.

Files are written under a temporary name and renamed, so the newest ``step-*.safetensors``
is always complete; only the last ``keep`` are kept.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from gankit.errors import UsageError

PATTERN = re.compile(r"^step-(\d+)\.safetensors$")


def path_for(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step-{step:07d}.safetensors"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := PATTERN.match(p.name))]
    return sorted(found)


def _flatten_optimizer(prefix: str, state_dict: dict, tensors: dict, meta: dict) -> None:
    import torch

    plain: dict[str, Any] = {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, st in state_dict["state"].items():
        plain["state"][str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}/{pid}/{k}"] = v.detach().cpu().contiguous()
            else:
                plain["state"][str(pid)][k] = v
    meta[prefix] = json.dumps(plain)


def _unflatten_optimizer(prefix: str, tensors: dict, meta: dict) -> dict:
    plain = json.loads(meta[prefix])
    state: dict[int, dict[str, Any]] = {int(pid): dict(v) for pid, v in plain["state"].items()}
    for key, t in tensors.items():
        if key.startswith(prefix + "/"):
            _, pid, k = key.split("/", 2)
            state.setdefault(int(pid), {})[k] = t
    return {"param_groups": plain["param_groups"], "state": state}


def save(path: Path, *, modules: dict, optimizers: dict, rng: dict, meta: dict[str, Any]) -> Path:
    """Write a checkpoint atomically. ``modules``/``optimizers`` map prefixes to objects."""
    from safetensors.torch import save_file

    tensors: dict = {}
    str_meta: dict[str, str] = {k: json.dumps(v) for k, v in meta.items()}
    for prefix, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{prefix}/{k}"] = v.detach().cpu().contiguous()
    for prefix, opt in optimizers.items():
        _flatten_optimizer(prefix, opt.state_dict(), tensors, str_meta)
    for k, v in rng.items():
        if hasattr(v, "dtype"):
            tensors[f"rng/{k}"] = v.cpu().contiguous()
        else:
            str_meta[f"rng/{k}"] = json.dumps(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=str_meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class Checkpoint:
    """A loaded checkpoint: ``tensors`` by full key and decoded ``meta``."""

    def __init__(self, path: Path, tensors: dict, meta: dict[str, str]):
        self.path = Path(path)
        self.tensors = tensors
        self._raw_meta = meta
        self.meta = {k: json.loads(v) for k, v in meta.items() if not k.startswith(("opt_", "rng/"))}

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def module_state(self, prefix: str) -> dict:
        p = prefix + "/"
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix + "/") for k in self.tensors)

    def optimizer_state(self, prefix: str) -> dict:
        return _unflatten_optimizer(prefix, self.tensors, self._raw_meta)

    def rng(self, key: str):
        if f"rng/{key}" in self.tensors:
            return self.tensors[f"rng/{key}"]
        return json.loads(self._raw_meta[f"rng/{key}"])


def load(path: Path) -> Checkpoint:
    """Read a checkpoint (safetensors only: no pickle, no code)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise UsageError(f"unreadable checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if "step" not in meta:
        raise UsageError(f"{path} is not a gankit checkpoint (no step in its metadata)")
    return Checkpoint(path, tensors, meta)


def latest(ckpt_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint in ``ckpt_dir`` (skipping any unreadable one)."""
    for _, p in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load(p)
        except UsageError:
            continue
    return None


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    if keep <= 0:
        return
    for _, p in list_checkpoints(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)
