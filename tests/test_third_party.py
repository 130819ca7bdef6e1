"""Third-party plugins, installed for real with pip into a throwaway virtual environment.

The venv sees the test environment's packages (``--system-site-packages``) and adds its
own, so installing plugins here never touches the environment the rest of the suite uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_subprocess


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "env")], check=True)
    python = root / "env" / "bin" / "python"

    def pip_install(*args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                            "--no-build-isolation", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def gankit(*args: str, env: dict | None = None, cwd: Path | None = None):
        return run_subprocess([str(python), "-m", "gankit.cli", *map(str, args)], env=env, cwd=cwd)

    return python, pip_install, gankit


def _rows(result) -> dict:
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_template_plugin_installs_passes_its_tests_trains_exports_generates(venv, tmp_path):
    python, pip_install, gankit = venv
    r = gankit("plugin", "new", "tinygan", "--dir", tmp_path / "src")
    assert r.returncode == 0, r.stderr
    pkg = tmp_path / "src" / "gankit-tinygan"
    assert (pkg / "pyproject.toml").is_file() and (pkg / "tests" / "test_conformance.py").is_file()

    pip_install("-e", str(pkg))
    rows = _rows(gankit("plugins", "--json"))
    assert rows["tinygan"]["status"] == "loaded" and rows["tinygan"]["families"] == ["tinygan"]

    # the package's own tests (the conformance kit) pass right after the install
    t = run_subprocess([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg)], cwd=pkg)
    assert t.returncode == 0, t.stdout[-3000:]
    assert "3 passed" in t.stdout

    # and the CLI trains, exports and generates with it like a built-in
    work = tmp_path / "work"
    work.mkdir()
    r = gankit("train", "--plugin", "tinygan", "--steps", "4", "--batch-size", "8", "--no-evaluate",
               "--set", "features=8", "--out", "runs/t", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "exported" / "t.onnx").is_file()
    r = gankit("generate", "exported/t.onnx", "--n", "8", "--seed", "1", "--out", "grid.png", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "grid.png").stat().st_size > 100

    # a second `plugin new` with the same name refuses and leaves the package alone
    before = (pkg / "gankit_tinygan" / "__init__.py").read_text()
    r = gankit("plugin", "new", "tinygan", "--dir", tmp_path / "src")
    assert r.returncode == 2 and "already" in r.stderr  # now also an installed family
    assert (pkg / "gankit_tinygan" / "__init__.py").read_text() == before


def _write_dist(root: Path, name: str, body: str) -> Path:
    pkg = root / f"gankit-{name}"
    (pkg / f"gankit_{name}").mkdir(parents=True)
    (pkg / f"gankit_{name}" / "__init__.py").write_text(textwrap.dedent(body))
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "gankit-{name}"
        version = "0.0.1"
        [project.entry-points.gankit]
        {name} = "gankit_{name}"
        [tool.setuptools.packages.find]
        include = ["gankit_{name}*"]
        """))
    return pkg


def test_installed_broken_plugins_are_isolated_and_controllable(venv, tmp_path):
    python, pip_install, gankit = venv
    pip_install(str(_write_dist(tmp_path, "broken", "raise RuntimeError('this plugin is broken on purpose')\n")))
    pip_install(str(_write_dist(tmp_path, "badfamily", """\
        from gankit import hookimpl

        @hookimpl
        def register_families(register):
            register({"name": "not-a-family"})
        """)))

    rows = _rows(gankit("plugins", "--json"))
    assert rows["broken"]["status"] == "error" and "broken on purpose" in rows["broken"]["error"]
    assert rows["badfamily"]["status"] == "error" and "ModelFamily" in rows["badfamily"]["error"]
    assert all(rows[n]["status"] == "loaded" for n in ("gan", "cgan", "inpaint"))
    table = gankit("plugins")
    assert table.returncode == 0 and "broken on purpose" in table.stdout

    # every other command keeps working
    r = gankit("train", "--plugin", "gan", "--steps", "2", "--batch-size", "8", "--no-evaluate", "--no-export",
               "--set", "ngf=8", "--set", "ndf=8", "--out", "runs/g", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # asking for the broken one says why, in one line
    r = gankit("train", "--plugin", "broken", "--steps", "1", cwd=tmp_path)
    assert r.returncode == 2 and "broken on purpose" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    # the env controls: DISABLE blocks, LOAD selects, DISABLE wins over LOAD, STRICT makes errors fatal
    rows = _rows(gankit("plugins", "--json", env={"GANKIT_DISABLE_PLUGINS": "broken,badfamily"}))
    assert rows["broken"]["status"] == rows["badfamily"]["status"] == "disabled"
    rows = _rows(gankit("plugins", "--json", env={"GANKIT_LOAD_PLUGINS": "gan"}))
    assert rows["gan"]["status"] == "loaded"
    assert {rows[n]["status"] for n in ("cgan", "inpaint", "broken", "badfamily")} == {"disabled"}
    rows = _rows(gankit("plugins", "--json", env={"GANKIT_LOAD_PLUGINS": "gan,broken", "GANKIT_DISABLE_PLUGINS": "broken"}))
    assert rows["broken"]["status"] == "disabled" and rows["gan"]["status"] == "loaded"
    r = gankit("plugins", env={"GANKIT_STRICT_PLUGINS": "1"})
    assert r.returncode == 1 and "broken on purpose" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = gankit("plugins", env={"GANKIT_STRICT_PLUGINS": "1", "GANKIT_DISABLE_PLUGINS": "broken,badfamily"})
    assert r.returncode == 0, r.stderr
