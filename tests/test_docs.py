"""The plugin guide documents every hook (with its real signature) and the family contract."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gankit import hookspecs
from gankit.family import ModelFamily

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"


def _documented_hooks() -> dict[str, list[str]]:
    """``### `name(arg, ...)` `` headings of the guide -> argument names."""
    found = {}
    for name, args in re.findall(r"^### `(\w+)\(([^)]*)\)`", GUIDE.read_text(), flags=re.M):
        found[name] = [a.strip() for a in args.split(",") if a.strip()]
    return found


def test_every_hook_has_a_docstring_and_a_section_with_its_signature():
    documented = _documented_hooks()
    for name in hookspecs._hook_names():
        spec = getattr(hookspecs, name)
        assert len((spec.__doc__ or "").strip()) > 40, f"hook {name} has no real docstring"
        assert name in documented, f"hook {name} is missing from docs/plugins.md"
        assert documented[name] == list(inspect.signature(spec).parameters), f"docs/plugins.md shows {name} with the wrong arguments"


def test_the_guide_documents_no_hook_that_does_not_exist():
    assert set(_documented_hooks()) <= set(hookspecs._hook_names())


def test_the_guide_covers_the_family_contract_and_is_linked_from_the_readme():
    text = GUIDE.read_text()
    public = [n for n, v in vars(ModelFamily).items() if not n.startswith("_") and callable(v)]
    for name in public + ["name", "task", "condition", "defaults", "GANKIT_LOAD_PLUGINS", "GANKIT_DISABLE_PLUGINS",
                          "GANKIT_STRICT_PLUGINS", "check_family", "gankit_check", "gankit plugin new"]:
        assert name in text, f"docs/plugins.md does not mention {name}"
    assert "docs/plugins.md" in (ROOT / "README.md").read_text()
