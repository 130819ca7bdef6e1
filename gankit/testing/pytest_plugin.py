"""pytest plugin (entry point ``pytest11``): the ``gankit_check`` fixture for plugin authors.

Importing this module costs nothing (torch is imported only when the fixture runs).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def gankit_check(tmp_path):
    """``gankit_check(family_or_name, **options)`` runs :func:`gankit.testing.check_family`
    in a fresh temporary directory and returns its report."""
    from gankit.testing import check_family

    counter = iter(range(1_000_000))

    def run(family, **options):
        return check_family(family, workdir=tmp_path / f"check-{next(counter)}", **options)

    return run
