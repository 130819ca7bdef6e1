"""Third-party plugins, installed for real with pip into a throwaway virtual environment.

The venv sees the test environment's packages (its base interpreter's and, when the suite
runs in a virtual environment, that one's too) and adds its own, so installing plugins here
never touches the environment the rest of the suite uses.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_subprocess


def _site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running the suite: the base Python's, a
    virtual environment's own, the user site, in the order it searches them."""
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A throwaway environment on top of the one running the suite.

    ``--system-site-packages`` alone sees only the *base* interpreter's packages: run from a
    virtual environment (how most contributors install gankit), the new one would not see
    gankit, torch or setuptools. So a ``.pth`` file adds the running interpreter's own site
    folders (as site folders, so their editable-install hooks run too) after the new
    environment's, and plugins installed here still shadow nothing outside it."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "env")], check=True)
    python = root / "env" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in _site_dirs()]
    Path(purelib, "_gankit_test_parent_env.pth").write_text("\n".join(lines) + "\n")
    # plugins are built offline (--no-build-isolation) with this environment's setuptools, which
    # needs bdist_wheel: built into setuptools >= 70.1 (the test extra asks for it), or the wheel package
    probe = subprocess.run([str(python), "-c", "import setuptools.command.bdist_wheel"], capture_output=True)
    if probe.returncode != 0 and subprocess.run([str(python), "-c", "import wheel"], capture_output=True).returncode != 0:
        pytest.fail("building plugins offline needs setuptools >= 70.1 or wheel: pip install -e '.[test]'")

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

    # the env controls are tested in test_plugins.py; here only that they reach installed plugins
    r = gankit("plugins", env={"GANKIT_STRICT_PLUGINS": "1", "GANKIT_DISABLE_PLUGINS": "broken,badfamily"})
    assert r.returncode == 0, r.stderr
