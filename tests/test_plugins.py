"""Plugin discovery, isolation, hook registration and the env controls."""

from __future__ import annotations

import json

import pytest

from gankit import hookimpl, plugins
from gankit.errors import UsageError
from gankit.family import ModelFamily
from tests.conftest import GANKIT, run_subprocess


def test_builtin_families_are_found_through_entry_points():
    mgr = plugins.get_manager()
    assert {"gan", "cgan", "inpaint"} <= set(mgr.families)
    for name in ("gan", "cgan", "inpaint"):
        rec = mgr.records[name]
        assert rec.status == "loaded", rec
        assert rec.families == [name]
        assert rec.module == f"gankit_{name}"
    assert {"mnist5k", "photos", "folder"} <= set(mgr.datasets)


def test_plugins_json_lists_everything(cli):
    r = cli("plugins", "--json")
    assert r.code == 0, r.err
    rows = {row["name"]: row for row in json.loads(r.out)}
    for name in ("gan", "cgan", "inpaint"):
        assert rows[name]["status"] == "loaded"
        assert rows[name]["families"] == [name]
        assert rows[name]["version"]


class _Throwaway:
    """A plugin object registered under a throwaway name."""

    def __init__(self, family_name: str):
        self.family_name = family_name

    @hookimpl
    def register_families(self, register):
        register(ModelFamily(name=self.family_name, description="test family"))


def test_register_and_unregister_a_plugin():
    mgr = plugins.get_manager()
    try:
        mgr.register(_Throwaway("throwaway-family"), name="throwaway")
        assert mgr.families["throwaway-family"][1] == "throwaway"
        assert mgr.records["throwaway"].families == ["throwaway-family"]
    finally:
        mgr.unregister("throwaway")
    assert "throwaway-family" not in mgr.families


def test_duplicate_family_names_name_both_plugins():
    mgr = plugins.get_manager()
    try:
        mgr.register(_Throwaway("gan"), name="impostor")
        fams = mgr.families
        assert fams["gan"][1] == "gan"  # the first registration wins
        rec = mgr.records["impostor"]
        assert rec.status == "error"
        assert "'gan'" in rec.error and "'impostor'" in rec.error
    finally:
        mgr.unregister("impostor")


def test_invalid_registration_is_recorded_not_fatal():
    class Bad:
        @hookimpl
        def register_families(self, register):
            register("not a family")

    mgr = plugins.get_manager()
    try:
        mgr.register(Bad(), name="bad")
        assert "gan" in mgr.families
        assert mgr.records["bad"].status == "error"
        assert "ModelFamily" in mgr.records["bad"].error
    finally:
        mgr.unregister("bad")


def test_unknown_family_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown plugin"):
        plugins.get_family("no-such-family")


@pytest.fixture
def broken_plugin_path(tmp_path):
    """A fake installed distribution whose ``gankit`` entry point raises on import."""
    site = tmp_path / "site"
    pkg = site / "gankit_broken"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    dist = site / "gankit_broken-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gankit-broken\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[gankit]\nbroken = gankit_broken\n")
    return site


def test_broken_plugin_does_not_break_listing(broken_plugin_path):
    env = {"PYTHONPATH": str(broken_plugin_path)}
    r = run_subprocess(GANKIT + ["plugins", "--json"], env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["broken"]["status"] == "error"
    assert "broken on purpose" in rows["broken"]["error"]
    assert rows["gan"]["status"] == "loaded"


def test_env_controls(broken_plugin_path):
    env = {"PYTHONPATH": str(broken_plugin_path), "GANKIT_DISABLE_PLUGINS": "broken"}
    rows = {row["name"]: row for row in json.loads(run_subprocess(GANKIT + ["plugins", "--json"], env=env).stdout)}
    assert rows["broken"]["status"] == "disabled"

    env = {"PYTHONPATH": str(broken_plugin_path), "GANKIT_LOAD_PLUGINS": "gan"}
    rows = {row["name"]: row for row in json.loads(run_subprocess(GANKIT + ["plugins", "--json"], env=env).stdout)}
    assert rows["gan"]["status"] == "loaded"
    assert rows["cgan"]["status"] == "disabled" and rows["broken"]["status"] == "disabled"

    # DISABLE wins over LOAD
    env = {"GANKIT_LOAD_PLUGINS": "gan,cgan", "GANKIT_DISABLE_PLUGINS": "cgan"}
    rows = {row["name"]: row for row in json.loads(run_subprocess(GANKIT + ["plugins", "--json"], env=env).stdout)}
    assert rows["gan"]["status"] == "loaded" and rows["cgan"]["status"] == "disabled"

    r = run_subprocess(GANKIT + ["plugins", "--json"], env={"PYTHONPATH": str(broken_plugin_path), "GANKIT_STRICT_PLUGINS": "1"})
    assert r.returncode == 1
    assert "broken on purpose" in r.stderr and "Traceback" not in r.stderr


def test_disabled_family_gives_a_clear_error(cli, monkeypatch):
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "cgan")
    plugins.reset()
    r = cli("train", "--plugin", "cgan", "--steps", "1")
    assert r.code == 2
    assert "disabled" in r.err


def test_register_commands_adds_a_working_command_and_a_failing_hook_stays_with_its_plugin(cli):
    import typer

    from gankit.cli import app

    class Commands:
        @hookimpl
        def register_commands(self, app):
            @app.command("hello-from-plugin")
            def hello(name: str = typer.Option("world", "--name")) -> None:
                typer.echo(f"hello {name}")

    class BrokenCommands:
        @hookimpl
        def register_commands(self, app):
            raise RuntimeError("commands broken on purpose")

    mgr = plugins.get_manager()
    before = list(app.registered_commands)
    try:
        mgr.register(Commands(), name="commands")
        mgr.register(BrokenCommands(), name="broken-commands")
        r = cli("hello-from-plugin", "--name", "gankit")
        assert r.code == 0 and r.out.strip() == "hello gankit", r.err
        assert mgr.records["broken-commands"].status == "error"
        assert "commands broken on purpose" in mgr.records["broken-commands"].error
        assert mgr.records["commands"].status == "loaded"
        assert cli("plugins").code == 0  # everything else keeps working
    finally:
        app.registered_commands[:] = before
        mgr.unregister("commands")
        mgr.unregister("broken-commands")


def test_a_dataset_name_clash_names_both_plugins_and_the_first_keeps_it():
    from gankit.data import Dataset, DatasetSpec

    def fake(**_):
        raise AssertionError("the impostor's loader must never run")

    class Clash:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetSpec("mnist5k", fake, "an impostor"))

    mgr = plugins.get_manager()
    try:
        mgr.register(Clash(), name="dataset-impostor")
        specs = mgr.datasets
        assert specs["mnist5k"][1] == "core"
        rec = mgr.records["dataset-impostor"]
        assert rec.status == "error" and "'mnist5k'" in rec.error and "'core'" in rec.error and "'dataset-impostor'" in rec.error
        assert isinstance(plugins.load_dataset("mnist5k"), Dataset)
    finally:
        mgr.unregister("dataset-impostor")
