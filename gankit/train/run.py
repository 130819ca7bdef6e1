"""The run directory: everything one training run leaves behind.

::

    runs/NAME/
      config.json        everything needed to rebuild the models and resume
      checkpoints/       step-NNNNNNN.safetensors (weights, optimisers, RNG), last K kept
      samples/           step-N.png sample grids
      metrics.jsonl      one JSON record per log/eval interval
      losses.png         D/G loss curves (written at the end)
      quality.png        judge metrics over steps (when evaluated)
      .lock              held by the `gankit train` that owns the run (pid and host inside)

Ownership: ``gankit train`` holds an exclusive ``flock`` on ``.lock`` for as long as it runs.
The kernel drops the lock when the process dies, however it dies (kill -9 included), so a
stale lock needs no clean-up and a live one is never stolen; the pid and host written inside
are only there to name the holder in the refusal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from gankit.errors import UsageError, first_line
from gankit.fileio import atomic_write_json, atomic_write_text

# Keys that may differ between a run and its resume without changing the result.
VOLATILE_KEYS = {"config_hash", "world_size", "steps", "device", "save_every", "sample_every", "keep"}


def config_hash(config: dict[str, Any]) -> str:
    stable = {k: v for k, v in config.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


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

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def is_empty(self) -> bool:
        """No run here yet: missing, or holding nothing but a lock file."""
        return not self.path.exists() or all(p.name == ".lock" for p in self.path.iterdir())

    def lock(self) -> "RunLock":
        """Take the run's lock or raise a UsageError naming the process that holds it."""
        return RunLock(self.lock_path)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.NAME.tmp-PID`` files left by a killed writer (call while holding the lock)."""
        return remove_stale_temporaries(self.path) + remove_stale_temporaries(self.checkpoints)

    def read_config(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise UsageError(f"run directory not found: {self.path}")
        if not self.config_path.is_file():
            raise UsageError(f"{self.path} is not a gankit run (no config.json)")
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"unreadable {self.config_path}: {exc}") from None

    def create(self, config: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        self.samples.mkdir(exist_ok=True)
        write_json(self.config_path, dict(config))

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
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in recs))


class RunLock:
    """An exclusive, process-lifetime lock on a run directory (see the module docstring)."""

    def __init__(self, path: Path):
        import fcntl

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UsageError(f"{self.path.parent} is in use by gankit train ({holder}); "
                                 "wait for it to finish or choose another --out") from None
            # the file we locked must still be the one at the path (a releasing owner may unlink it)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover - ten lost races in a row
            raise UsageError(f"could not lock {self.path}")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd = fd

    def release(self) -> None:
        """Remove the lock file, then drop the flock: a refused or finished command leaves the
        directory as it found it. A process that opened the old file meanwhile notices that it
        is no longer at the path (the inode check above) and locks a fresh one."""
        if self.fd is not None:
            try:
                if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                    self.path.unlink()
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMP_PATTERN = re.compile(r"^\..+\.tmp-(\d+)(\.\w+)?$")  # gankit.fileio.atomic_path's names


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.tmp-PID`` files in ``directory`` whose writer (PID) is no longer running.

    Every atomic write in gankit goes through such a temporary; a SIGKILL between its creation
    and its rename leaves it behind. It is never the only copy of anything, so removing it loses
    nothing. A temporary whose pid is alive (another command writing right now) is left alone.
    """
    d = Path(directory)
    removed = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = TEMP_PATTERN.match(p.name)
        if m and p.is_file() and not (int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1)))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


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
    latest, skipped = ckpt.newest_usable(run.checkpoints)
    if latest is None:
        why = "; ".join(skipped) if skipped else "no checkpoint was saved"
        raise UsageError(f"{run.path} has no usable checkpoint: {why}")
    for reason in skipped:  # an older step is used: say so, once per damaged file
        print(f"warning: {reason}; using the older step {latest.step}", file=sys.stderr)
    G = family.build_generator(config)
    state = latest.module_state("G_ema") if latest.has("G_ema") else latest.module_state("G")
    try:
        G.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"checkpoint {latest.path} does not fit the {family.name} generator: {first_line(exc, with_type=False)}") from None
    return family, config, G.eval(), latest.step
