"""Shared fixtures: isolated working directory and cache, in-process CLI runner, tiny runs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gankit import plugins


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One judge cache for the whole session (the judge is trained once, deterministically)."""
    cache = os.environ.get("GANKIT_TEST_CACHE") or str(tmp_path_factory.mktemp("gankit-cache"))
    os.environ["GANKIT_CACHE"] = cache
    yield cache


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test runs in its own empty directory with a fresh plugin manager."""
    monkeypatch.chdir(tmp_path)
    for var in ("GANKIT_LOAD_PLUGINS", "GANKIT_DISABLE_PLUGINS", "GANKIT_STRICT_PLUGINS", "GANKIT_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield
    plugins.reset()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run ``gankit ARGS`` in-process; returns exit code, stdout and stderr."""
    from gankit.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(args: list[str], env: dict | None = None, cwd: str | Path | None = None, timeout: int = 600):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


GANKIT = [sys.executable, "-m", "gankit.cli"]


def assert_one_line_error(result, code: int = 2) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = [ln for ln in result.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err and "Traceback" not in result.out


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """One few-step run and its export per built-in family, shared by the export/runtime tests."""
    from gankit.pipeline import train

    root = tmp_path_factory.mktemp("tiny-runs")
    cwd = os.getcwd()
    os.chdir(root)
    out = {}
    try:
        for plugin in ("gan", "cgan", "inpaint"):
            plugins.reset()
            summary = train(plugin=plugin, steps=3, batch_size=8, out=Path("runs") / plugin, evaluate=False,
                            export=True, quiet=True, overrides={"sample_every": 3})
            out[plugin] = {"run": root / summary["run"], "onnx": root / summary["exported"]}
    finally:
        os.chdir(cwd)
        plugins.reset()
    return out
