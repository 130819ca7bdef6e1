"""``python -m gankit`` and the ``gankit`` command: the CLI (what ``torchrun -m gankit train ...``
runs in every rank)."""

import os
import sys


def run() -> int:
    """The console script. A Ctrl-C while the CLI's own libraries (typer, rich) are still being
    imported, the first ~0.2 s, used to end in Python's KeyboardInterrupt traceback: the CLI's
    interrupt handling starts only in :func:`gankit.cli.main`. Here it is one line and 130 too."""
    try:
        from gankit.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.stderr.flush()
        os._exit(130)  # not a normal exit: a half-imported module's teardown could be interrupted again
    return main()


if __name__ == "__main__":
    sys.exit(run())
