"""Exceptions with a message meant for the user.

The CLI turns :class:`UsageError` (bad input: exit code 2) and :class:`GankitError`
(an internal failure that we can describe: exit code 1) into one line on stderr,
never a traceback.
"""


import re
import threading

# Set by the CLI's SIGINT handler: a Ctrl-C that a library caught and turned into another
# exception (the ONNX exporter does) must still end the command as "interrupted", writing nothing.
INTERRUPTED = threading.Event()


class GankitError(Exception):
    """A failure gankit can explain in one line (exit code 1 in the CLI)."""

    exit_code = 1


class UsageError(GankitError, ValueError):
    """The user asked for something that cannot be done (exit code 2 in the CLI)."""

    exit_code = 2


_LOCATION = re.compile(r"Exception from \S+:\d+:?")


def first_line(exc: BaseException, *, with_type: bool = True, limit: int = 300) -> str:
    """An exception as one line for a user-facing message: its first non-blank line, led by
    the exception's type (``ValueError: bad``; just ``ValueError`` when it says nothing), cut
    at ``limit`` characters. Messages from onnx, torch or Pillow can run to pages, and the
    CLI's contract is one line on stderr."""
    # OpenVINO leads with lines that only name a source location ("Exception from
    # src/inference/src/cpp/core.cpp:117:"); the reason comes after them
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip() and not _LOCATION.fullmatch(ln.strip())), "")
    if with_type:
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return (line or type(exc).__name__)[:limit]
