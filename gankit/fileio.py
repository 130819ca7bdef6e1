"""Atomic file writes: a reader (or a kill mid-write) never sees half a file, and a file that
fails to be written leaves the old one in place.

Everything goes to a temporary name in the target's own folder (same file system, so the
final :func:`os.replace` is atomic), then is renamed over the target. numpy-free and
torch-free: usable from every layer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception it is
    renamed to ``path``, otherwise removed. ``suffix`` keeps writers that infer the format
    from the name (matplotlib's ``savefig``) working. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, default: Any = str) -> Path:
    """``obj`` as JSON plus a final newline."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")
