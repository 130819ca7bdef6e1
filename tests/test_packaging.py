"""The distribution: ``pip install gankit`` is the torch-free runtime, ``gankit[train]`` the rest.

The main test builds the wheel, installs it without the extra into a fresh virtual environment
(no system site-packages, so nothing of this environment leaks in; pip fetches the base
dependencies like a user's pip would) and runs the CLI and the Python runtime there on files
the suite exported. The others check, without a second environment, that every command that
needs the extra says so in one line when a module of it is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from gankit.extras import TRAIN_MODULES
from gankit.plugins import CORE_PLUGIN
from tests.conftest import assert_one_line_error, run_subprocess

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRA_MESSAGE = "needs the training extra: pip install 'gankit[train]'"


def _base_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]


def test_base_dependencies_leave_training_to_the_extra():
    base = {r.name.lower() for r in _base_requirements()}
    train = {Requirement(r).name.lower() for r in PYPROJECT["project"]["optional-dependencies"]["train"]}
    assert {"torch", "onnxscript", "safetensors", "scipy", "scikit-image", "mlxtend",
            "opencv-python-headless", "matplotlib"} <= train
    assert not base & train
    assert {"numpy", "pillow", "typer", "rich", "pluggy", "fastapi", "uvicorn", "prometheus-client",
            "python-multipart", "onnx", "openvino"} <= base
    for plugin in ("gan", "cgan", "inpaint"):  # the built-in plugins train, so they pull the extra
        deps = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]["dependencies"]
        assert "gankit[train]" in deps


def test_openvino_is_a_default_where_it_publishes_wheels():
    """Issue 28: the fast CPU path for batches comes with `pip install gankit` (no extra)."""
    (ov,) = [r for r in _base_requirements() if r.name == "openvino"]
    wheels = {("linux", "x86_64"), ("linux", "aarch64"), ("win32", "AMD64"), ("darwin", "arm64")}
    for platform, machine in itertools.product(["linux", "win32", "darwin", "freebsd"],
                                               ["x86_64", "AMD64", "aarch64", "arm64", "ARM64"]):
        env = {"sys_platform": platform, "platform_machine": machine}
        assert ov.marker.evaluate(env) == ((platform, machine) in wheels), env


def test_exactly_one_onnxruntime_on_every_platform():
    runtimes = {r.name: r.marker for r in _base_requirements() if r.name.startswith("onnxruntime")}
    assert set(runtimes) == {"onnxruntime", "onnxruntime-gpu"}
    for platform, machine in itertools.product(["linux", "win32", "darwin", "freebsd"],
                                               ["x86_64", "AMD64", "aarch64", "arm64", "ARM64"]):
        env = {"sys_platform": platform, "platform_machine": machine}
        chosen = [name for name, marker in runtimes.items() if marker is None or marker.evaluate(env)]
        gpu = (platform, machine) in {("linux", "x86_64"), ("win32", "AMD64")}  # where onnxruntime-gpu has wheels
        assert chosen == (["onnxruntime-gpu"] if gpu else ["onnxruntime"]), env


@pytest.mark.parametrize("args", [
    ["train", "--plugin", "cgan", "--steps", "1"],
    ["export", "runs/none"],
    ["evaluate", "model.onnx"],
    ["bench", "--batch", "1"],
])
def test_training_commands_without_the_extra_say_so_in_one_line(cli, monkeypatch, args):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails like an uninstalled one
    r = cli(*args)
    assert_one_line_error(r, 2)
    assert r.err.strip() == f"error: gankit {args[0]} {EXTRA_MESSAGE}"
    assert not Path("runs").exists() and not Path("exported").exists()


def test_a_plugin_command_that_imports_torch_without_it_gets_the_same_line(tmp_path):
    """A command the core did not guard (a plugin's) still ends in the one line, not a traceback."""
    site = tmp_path / "site"
    (site / "gankit_torchy").mkdir(parents=True)
    (site / "gankit_torchy" / "__init__.py").write_text(textwrap.dedent("""\
        from gankit import hookimpl

        @hookimpl
        def register_commands(app):
            @app.command("torchy")
            def torchy():
                import torch  # noqa: F401
        """))
    dist = site / "gankit_torchy-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gankit-torchy\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[gankit]\ntorchy = gankit_torchy\n")
    boot = "import sys; sys.modules['torch'] = None; from gankit.cli import main; sys.exit(main())"
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    r = run_subprocess([sys.executable, "-c", boot, "torchy"], env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: gankit torchy {EXTRA_MESSAGE}"


# --------------------------------------------------------------------------- the wheel, installed bare
@pytest.fixture(scope="module")
def bare_env(tmp_path_factory):
    """A fresh venv holding the gankit wheel and its base dependencies only."""
    root = tmp_path_factory.mktemp("bare")
    src = root / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "runs", "exported", "benchmarks", "tests", "plugins",
                                                            "build", "*.egg-info", "__pycache__", ".venv"))
    wheels = root / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = wheels.glob("gankit-*.whl")
    # the venv's own pip (`pip --python` would run this environment's pip, which sees this
    # environment's gankit and reports it "already installed"); no PYTHONPATH, so the venv
    # holds and runs the wheel's gankit, not this checkout's
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(root / "env")], check=True, timeout=300, env=env)
    python = root / "env" / "bin" / "python"
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", str(wheel)], capture_output=True, text=True,
                       timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr  # every base requirement (onnxruntime by marker) is satisfied
    work = root / "work"
    work.mkdir()
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    return python, work, env


def _run(bare_env, *args: str, timeout: int = 300):
    python, work, env = bare_env
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=work, env=env, timeout=timeout)


def test_the_bare_install_has_no_training_modules(bare_env):
    python = bare_env[0]
    r = _run(bare_env, python, "-c", "import gankit, gankit.extras as e, json; "
             "print(json.dumps([gankit.__file__, e.missing_train_modules()]))")
    assert r.returncode == 0, r.stderr
    where, missing = json.loads(r.stdout)
    assert Path(where).is_relative_to(python.parent.parent)  # the installed wheel, not the checkout
    assert missing == list(TRAIN_MODULES)  # torch first of all: not importable there
    r = _run(bare_env, python, "-c", "import torch")
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr


def test_the_bare_install_generates_and_inpaints_with_the_cli(bare_env, tiny_runs):
    python, work, _ = bare_env
    gankit = python.parent / "gankit"
    assert _run(bare_env, gankit, "--help").returncode == 0
    r = _run(bare_env, gankit, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    assert {row["name"]: row["status"] for row in json.loads(r.stdout)} == {CORE_PLUGIN: "loaded"}  # no plugin installed there

    for family, extra in (("gan", []), ("cgan", ["--label", "3"])):
        out = work / f"{family}.png"
        r = _run(bare_env, gankit, "generate", tiny_runs[family]["onnx"], "--n", "8", "--seed", "0", "--out", out, *extra)
        assert r.returncode == 0, r.stderr
        assert out.stat().st_size > 100
    # the second backend came with the base install (issue 28): the same grid through OpenVINO
    # in fp32 (bf16, the default on CPUs that have it, would differ in the last bits)
    code = textwrap.dedent(f"""\
        import numpy as np, sys
        import gankit.runtime as gr
        a = gr.load({str(tiny_runs["cgan"]["onnx"])!r}, backend="openvino", precision="f32").generate(8, labels=3, seed=0)
        b = gr.load({str(tiny_runs["cgan"]["onnx"])!r}).generate(8, labels=3, seed=0)
        assert "torch" not in sys.modules
        print(int(np.abs(a.astype(int) - b.astype(int)).max()))
        """)
    r = _run(bare_env, python, "-c", code)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) <= 1

    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(work / "in.png")
    mask = np.zeros((40, 36), np.uint8)
    mask[10:20, 8:30] = 255
    Image.fromarray(mask).save(work / "mask.png")
    r = _run(bare_env, gankit, "inpaint", tiny_runs["inpaint"]["onnx"], "--image", work / "in.png",
             "--mask", work / "mask.png", "--out", work / "restored.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(work / "restored.png").size == (36, 40)


def test_the_bare_install_runtime_gives_the_same_images(bare_env, tiny_runs):
    import gankit.runtime as gr

    python, work, _ = bare_env
    model = tiny_runs["cgan"]["onnx"]
    code = textwrap.dedent(f"""\
        import sys
        import numpy as np
        import gankit.runtime as gr

        m = gr.load({str(model)!r})
        np.save("cgan.npy", m.generate(10, labels=7, seed=3))
        assert "torch" not in sys.modules
        """)
    r = _run(bare_env, python, "-c", code)
    assert r.returncode == 0, r.stderr
    here = gr.load(model, providers=["CPUExecutionProvider"]).generate(10, labels=7, seed=3)
    there = np.load(work / "cgan.npy")
    assert there.shape == (10, 28, 28, 1) and there.dtype == np.uint8
    assert np.abs(there.astype(int) - here.astype(int)).max() <= 1  # the same file, the same noise: the same digits


def test_the_bare_install_refuses_training_in_one_line(bare_env):
    gankit = bare_env[0].parent / "gankit"
    for args in (["train", "--plugin", "cgan"], ["evaluate", "x.onnx"]):
        r = _run(bare_env, gankit, *args)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert r.stderr.strip() == f"error: gankit {args[0]} {EXTRA_MESSAGE}"
        assert "Traceback" not in r.stderr + r.stdout
