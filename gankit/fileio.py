"""Writing files safely: refuse bad output paths before work starts, write atomically.

Every file gankit produces is written to a temporary ``.NAME.tmp-PID`` in the target's own
folder (same file system, so the final :func:`os.replace` is atomic) and renamed over the
target: a reader never sees half a file, a failed write leaves the old file in place, and a
process killed mid-write leaves only a temporary that the next ``gankit train`` or ``export``
removes (:func:`gankit.train.run.remove_stale_temporaries`). numpy-free and torch-free:
usable from every layer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

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
    return path


def cache_dir(kind: str) -> Path:
    """Where gankit keeps what it can compute again (``GANKIT_CACHE``, else ``~/.cache/gankit``),
    one folder per ``kind`` (the judge, gan's clusters)."""
    root = os.environ.get("GANKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gankit")
    return Path(root) / kind


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file, existing or not: the same path once symlinks, ``..`` and
    relative parts are resolved, or (both existing) the same inode, e.g. hard links."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def refuse_inputs_as_outputs(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Refuse, before any work, an output that names one of the command's inputs or another
    output (``{"--out": path, ...}``, ``{"the input image": path, ...}``; None entries skipped):
    ``--overwrite`` replaces earlier results, never the files a command reads."""
    named = [(k, v) for k, v in outputs.items() if v is not None]
    for i, (label, path) in enumerate(named):
        for what, source in inputs.items():
            if source is not None and same_file(path, source):
                raise UsageError(f"{label} {path} is {what}; write the result elsewhere")
        for other, second in named[:i]:
            if same_file(path, second):
                raise UsageError(f"{other} and {label} name the same file ({path}); give two different paths")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception it is
    renamed to ``path``, otherwise removed. ``suffix`` keeps writers that infer the format
    from the name (matplotlib's ``savefig``) working; ``fsync`` flushes the file to disk before
    the rename (checkpoints). Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, default: Any = str) -> Path:
    """``obj`` as JSON plus a final newline."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")
