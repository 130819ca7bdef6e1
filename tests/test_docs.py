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


# -- the walk-through in docs/plugins.md runs exactly as written --------------------------------
WALKTHROUGH = "## Walk-through: a complete third-party plugin"


def _walkthrough_files() -> dict[str, str]:
    """The walk-through's fenced blocks, by the file each names in its first line (``# path``)."""
    text = GUIDE.read_text()
    start = text.index(WALKTHROUGH)
    end = text.find("\n## ", start + len(WALKTHROUGH))
    section = text[start:end if end > 0 else None]
    files: dict[str, str] = {}
    for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.M | re.S):
        first = body.splitlines()[0]
        if lang not in ("python", "toml") or not first.startswith("# "):
            continue
        path = first[2:].split(" (continued)")[0].strip()
        files[path] = files.get(path, "") + ("\n\n" if path in files else "") + body
    return files


def test_the_walkthrough_plugin_runs_as_written(tmp_path, cli, monkeypatch):
    import importlib
    import json
    import sys

    from gankit import plugins
    from gankit.cli import app
    from gankit.pipeline import train

    files = _walkthrough_files()
    assert {"pyproject.toml", "gankit_resgan/__init__.py", "gankit_resgan/model.py", "tests/test_resgan.py"} <= set(files)
    assert 'resgan = "gankit_resgan"' in files["pyproject.toml"]
    root = tmp_path / "gankit-resgan"
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    monkeypatch.syspath_prepend(str(root))
    for mod in [m for m in sys.modules if m.startswith("gankit_resgan")]:
        monkeypatch.delitem(sys.modules, mod)
    module = importlib.import_module("gankit_resgan")
    commands = list(app.registered_commands)
    mgr = plugins.get_manager()
    mgr.register(module, name="docs-walkthrough")  # a throwaway name, unregistered below
    try:
        rec = mgr.records["docs-walkthrough"]
        mgr.collect_all()
        assert rec.status == "loaded", rec.error
        assert (rec.families, rec.losses, rec.datasets, rec.regularizers) == (["resgan"], ["wgan-lp"], ["rings"], ["drift"])

        # the command
        r = cli("resgan-info")
        assert r.code == 0, r.err
        assert "blocks = 2" in r.out and "loss = wgan-lp" in r.out

        # the dataset, the loss's own penalty and the registered regulariser in a real run
        summary = train(plugin="resgan", data="rings", steps=2, batch_size=8, out=tmp_path / "runs" / "r",
                        evaluate=False, export=False, quiet=True)
        logged = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
        assert summary["steps"] == 2
        assert all(key in logged[-1] for key in ("lp", "drift", "d_loss")), logged[-1]
        cfg = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
        assert (cfg["loss"], cfg["features"], cfg["blocks"], cfg["height"]) == ("wgan-lp", 32, 2, 16)

        # the family's own check of a bad config key value: one line, no traceback
        r = cli("train", "--plugin", "resgan", "--data", "rings", "--steps", "1", "--set", "blocks=5", "--no-export",
                "--no-evaluate", "--out", tmp_path / "runs" / "bad")
        assert r.code == 2 and "divisible by 2**blocks" in r.err and len(r.err.strip().splitlines()) == 1

        # the walk-through's own test: the conformance kit
        spec = importlib.util.spec_from_file_location("walkthrough_test_resgan", root / "tests" / "test_resgan.py")
        test_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(test_module)
        (tmp_path / "kit").mkdir()
        test_module.test_resgan_conforms(tmp_path / "kit")
    finally:
        mgr.unregister("docs-walkthrough")
        app.registered_commands[:] = commands
    assert "resgan" not in mgr.families


# -- docs/cli.md documents every command and every option of the real command line ----------------
def _leaf_commands(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_the_cli_reference_covers_every_command_and_option():
    import typer.main

    from gankit.cli import _build_app

    text = (ROOT / "docs" / "cli.md").read_text()
    leaves = dict(_leaf_commands(typer.main.get_command(_build_app())))
    assert {"train", "export", "generate", "inpaint", "evaluate", "serve", "bench", "plugins", "plugin new"} <= set(leaves)
    for name, command in leaves.items():
        if not command.callback.__module__.startswith("gankit."):  # a plugin's own command (register_commands)
            continue
        assert f"`gankit {name}" in text, f"docs/cli.md has no section for gankit {name}"
        for param in command.params:
            flags = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
            if flags:
                assert any(f in text for f in flags), f"docs/cli.md does not document gankit {name} {flags[0]}"
