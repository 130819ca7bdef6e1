"""Checkpoints: one safetensors file per saved step, written atomically.

A checkpoint holds every tensor needed to continue a run exactly: generator (``G/``),
discriminator (``D/``), EMA generator (``G_ema/``), both optimisers (``opt_g/``, ``opt_d/``)
and the RNG states (``rng/``). Non-tensor state (step, config hash, optimiser
hyper-parameters, numpy and python RNG states) lives in the file's string metadata as JSON.
Nothing is ever unpickled, so a checkpoint cannot carry code.

Files are written under a temporary name and renamed, so the newest ``step-*.safetensors``
is always complete; only the last ``keep`` are kept. Each file carries the SHA-256 of its
metadata and tensor bytes in its header (``gankit.sha256``) and is verified on every load: a file whose
bytes were damaged after it was written (a bad disk, a partial copy, an edit) is named and
never used. Files written before the checksum existed load without one.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from gankit.errors import UsageError, first_line
from gankit.fileio import atomic_path

PATTERN = re.compile(r"^step-(\d+)\.safetensors$")
CHECKSUM_KEY = "gankit.sha256"


class DamagedCheckpoint(UsageError):
    """A checkpoint file that cannot be used: unreadable, not gankit's, or failing its checksum."""


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
    from safetensors.torch import save as to_bytes

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
    # the checksum covers the metadata (step, RNG and optimiser state) and the tensor bytes. The
    # tensors are serialised once: adding the checksum to the header does not move the data
    # section (its offsets are relative to its own start), so the new header is put in front of
    # the same bytes rather than serialising every tensor a second time (a 37 MB gan checkpoint:
    # 0.154 s instead of 0.21 s, benchmarks/overheads.py)
    blob = to_bytes(tensors, metadata=str_meta)
    n = int.from_bytes(blob[:8], "little")
    str_meta[CHECKSUM_KEY] = json.dumps(_digest(str_meta, blob))
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"] = str_meta
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # safetensors pads its header so the data stays 8-byte aligned
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        fh.write(len(head).to_bytes(8, "little") + head)
        fh.write(memoryview(blob)[8 + n :])
    return Path(path)


class Checkpoint:
    """A loaded checkpoint: ``tensors`` by full key and decoded ``meta``."""

    def __init__(self, path: Path, tensors: dict, meta: dict[str, str]):
        self.path = Path(path)
        self.tensors = tensors
        self._raw_meta = meta
        self.meta = {k: json.loads(v) for k, v in meta.items() if not k.startswith(("opt_", "rng/", "gankit."))}

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


def _digest(meta: dict[str, str], blob: bytes) -> str:
    """SHA-256 of a checkpoint's metadata (its checksum entry aside) and its data section."""
    n = int.from_bytes(blob[:8], "little")
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    h.update(memoryview(blob)[8 + n :])
    return h.hexdigest()


def load(path: Path) -> Checkpoint:
    """Read and verify a checkpoint (safetensors only: no pickle, no code)."""
    from safetensors.torch import load as from_bytes

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        blob = path.read_bytes()
        n = int.from_bytes(blob[:8], "little")
        if len(blob) < 8 or n > len(blob) - 8:
            raise ValueError("not a safetensors file")
        meta = json.loads(blob[8 : 8 + n]).get("__metadata__") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise DamagedCheckpoint(f"unreadable checkpoint {path}: {first_line(exc, with_type=False)}") from None
    if "step" not in meta:
        raise DamagedCheckpoint(f"{path} is not a gankit checkpoint (no step in its metadata)")
    if CHECKSUM_KEY in meta:
        try:
            expected = json.loads(meta[CHECKSUM_KEY])
        except ValueError:
            expected = None
        if expected != _digest(meta, blob):
            raise DamagedCheckpoint(f"damaged checkpoint {path}: its contents do not match the checksum in its header")
    try:
        tensors = from_bytes(blob)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise DamagedCheckpoint(f"unreadable checkpoint {path}: {first_line(exc, with_type=False)}") from None
    return Checkpoint(path, tensors, meta)


def newest_usable(ckpt_dir: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint that loads and verifies, and why each newer one was passed over."""
    skipped: list[str] = []
    for _, p in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load(p), skipped
        except UsageError as exc:
            skipped.append(str(exc))
    return None, skipped


def latest(ckpt_dir: Path) -> Checkpoint | None:
    """The newest usable checkpoint in ``ckpt_dir`` (see :func:`newest_usable` for why others were skipped)."""
    return newest_usable(ckpt_dir)[0]


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    if keep <= 0:
        return
    for _, p in list_checkpoints(ckpt_dir)[:-keep]:
        p.unlink(missing_ok=True)
