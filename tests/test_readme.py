"""The README's embedding examples run as written against a freshly exported model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(tag: str) -> str:
    for code in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S):
        if code.startswith(f"# embed: {tag}"):
            return code
    raise AssertionError(f"README has no '# embed: {tag}' example")


@pytest.mark.parametrize("tag", ["runtime", "bare"])
def test_readme_embedding_examples(tiny_runs, tag):
    code = f"MODEL = {str(tiny_runs['cgan']['onnx'])!r}\n" + _block(tag)
    code += "\nimport sys\nassert 'torch' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(8, 28, 28, 1)" in r.stdout or "(8, 1, 28, 28)" in r.stdout


def test_readme_quickstart_matches_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    # one install line, the CPU torch pinned on it, is the quickstart's first command and CI's install
    install = re.search(r"^pip install torch==\S+ -e .*$", README.read_text(), flags=re.M).group(0).split("#")[0].strip()
    assert "[train" in install
    assert re.search(rf"^{re.escape(install)}$", ci, flags=re.M)
    assert re.search(r"^pytest -q$", ci, flags=re.M)
