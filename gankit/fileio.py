"""Writing files safely: refuse bad output paths before work starts, write atomically.

Every file gankit produces is written to ``.NAME.tmp-PID`` beside its target and renamed
over it, so a reader (or a later command) never sees half a file, and a process killed
mid-write leaves only a temporary that the next ``gankit train`` removes
(:func:`gankit.train.run.remove_stale_temporaries`). Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

from gankit.errors import UsageError


def check_output(path: str | os.PathLike, *, overwrite: bool, suffix: str | None = None,
                 hint: str = "pass --overwrite to replace it") -> Path:
    """Refuse to clobber an existing file or to write where we cannot, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"output {path} is a directory")
    if path.exists() and not overwrite:
        raise UsageError(f"output {path} already exists ({hint})")
    if suffix and path.suffix.lower() != suffix:
        raise UsageError(f"output {path} should end in {suffix}")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {parent}")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise UsageError(f"cannot replace {path}")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (spelling, ``..`` and symlinks aside), existing or not."""
    return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def temporary_for(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary and a rename; the temporary never survives an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
