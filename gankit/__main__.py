"""``python -m gankit``: the CLI (what ``torchrun -m gankit train ...`` runs in every rank)."""

import sys

from gankit.cli import main

if __name__ == "__main__":
    sys.exit(main())
