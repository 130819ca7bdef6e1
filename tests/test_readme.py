"""The README stays true: its examples run, its commands parse, its numbers are measured, its links resolve."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.M | re.S)


def _block(tag: str) -> str:
    """The ``# embed: TAG`` example, from the README or the docs it links (the bare one lives with the file contract)."""
    for path in [README, *DOCS]:
        for code in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S):
            if code.startswith(f"# embed: {tag}"):
                return code
    raise AssertionError(f"neither README nor docs/ has a '# embed: {tag}' example")


@pytest.mark.parametrize("tag", ["runtime", "bare"])
def test_readme_embedding_examples(tiny_runs, tag):
    code = f"MODEL = {str(tiny_runs['cgan']['onnx'])!r}\n" + _block(tag)
    code += "\nimport sys\nassert 'torch' not in sys.modules\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(8, 28, 28, 1)" in r.stdout or "(8, 1, 28, 28)" in r.stdout


def test_readme_embeds_the_runtime_example():
    assert "# embed: runtime" in README.read_text(), "the README's embedding example is gone"


def test_readme_quickstart_matches_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    # one install line, the CPU torch pinned on it, is the quickstart's first command and CI's install
    install = re.search(r"^pip install torch==\S+ -e .*$", README.read_text(), flags=re.M).group(0).split("#")[0].strip()
    assert "[train" in install
    assert re.search(rf"^{re.escape(install)}$", ci, flags=re.M)
    assert re.search(r"^pytest -q$", ci, flags=re.M)


# -- (a) every `gankit ...` line of a shell block parses against the real command line --------------
def _shell_commands(path: Path) -> list[str]:
    found = []
    for lang, body in FENCE.findall(path.read_text()):
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        for line in body.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("gankit "):
                found.append(line)
    return found


def _parse(argv: list[str]):
    """Parse ``gankit ARGV`` exactly as the console script would, without running the command."""
    import typer.main

    from gankit.cli import _build_app

    command, name, parent = typer.main.get_command(_build_app()), "gankit", None
    while True:
        ctx = command.make_context(name, list(argv), parent=parent)
        if not hasattr(command, "resolve_command"):
            return command.name, ctx.params
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        name, command, argv = command.resolve_command(ctx, rest)
        parent = ctx


def _documented_commands() -> list[tuple[str, str]]:
    # docs/plugins.md shows the commands of its example plugin, which is not installed here
    # (tests/test_docs.py runs that walk-through as written instead)
    pages = [README, *(d for d in DOCS if d.name != "plugins.md")]
    return [(str(p.relative_to(ROOT)), line) for p in pages for line in _shell_commands(p)]


def test_the_readme_shows_gankit_commands():
    names = {_parse(shlex.split(line, comments=True)[1:])[0] for line in _shell_commands(README)}
    assert {"train", "generate", "evaluate", "serve", "new"} <= names, names


@pytest.mark.parametrize("where,line", _documented_commands())
def test_documented_gankit_commands_parse(where, line):
    argv = shlex.split(line, comments=True)[1:]
    assert "--help" not in argv
    try:
        _parse(argv)
    except Exception as exc:  # a usage error of typer's click: unknown command or option, bad value
        pytest.fail(f"{where}: `{line}` does not parse: {exc}")


def test_parse_catches_a_wrong_option():
    with pytest.raises(Exception, match="--bogus"):
        _parse(["generate", "model.onnx", "--bogus", "3"])
    with pytest.raises(Exception, match="nosuch"):
        _parse(["nosuch"])


# -- (b) every number the README states is one that benchmarks/RESULTS.md records ------------------
_NUM = r"[+-]?\d[\d,]*(?:\.\d+)?"
_UNIT = r"(?:images/s|GFLOP/s|GOP/s|req/s|ms|min|s|dB|GiB|MB|%)"
_NUMBER = re.compile(
    r"(?<![\w.])\d+ min \d+ s(?!\w)"  # durations: 1 min 29 s
    rf"|(?<![\w.]){_NUM}x(?!\w)"  # ratios: 1.97x
    rf"|(?<![\w.]){_NUM} ?{_UNIT}(?![\w/])"  # with a unit: 81 s, +3.7 dB, 286 ms
    r"|(?<![\w.])0\.\d+(?![\w.])"  # scores: 0.989
)


def _prose(text: str) -> str:
    """Markdown without its fenced code blocks (commands and code, not claims), whitespace collapsed."""
    return " ".join(FENCE.sub(" ", text).split())


def _numbers(text: str) -> list[str]:
    return [" ".join(m.split()) for m in _NUMBER.findall(_prose(text))]


def test_number_extraction():
    text = "FD 1.97x the floor, accuracy 0.989, 81 s, +3.7 dB, 1 min 29 s; 28x28 and 2.13.0 and 4 steps are not\n```\n9.99x\n```"
    assert _numbers(text) == ["1.97x", "0.989", "81 s", "+3.7 dB", "1 min 29 s"]


def test_every_number_in_the_readme_is_in_results():
    numbers = _numbers(README.read_text())
    assert len(numbers) >= 8, numbers  # the families' results are quoted
    results = _prose(RESULTS.read_text())
    missing = [n for n in numbers if n not in results]
    assert not missing, f"README numbers not recorded in benchmarks/RESULTS.md: {missing}"


# -- (c) every relative link resolves ---------------------------------------------------------------
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("doc", [README, RESULTS, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(doc):
    broken = []
    for target in _LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        if not (doc.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to missing files: {broken}"


def test_the_readme_links_the_docs():
    text = README.read_text()
    for doc in ["docs/cli.md", "docs/onnx-format.md", "docs/architecture.md", "docs/plugins.md", "benchmarks/RESULTS.md"]:
        assert f"]({doc})" in text, f"README does not link {doc}"


def test_the_readme_is_for_users():
    text = README.read_text()
    assert len(text.splitlines()) <= 220, "the README is a user's page; results go to benchmarks/RESULTS.md"
    assert not re.search(r"\bsessions?\b|\(issue\)|\bissues? \d", text, flags=re.I), "the README speaks of the work, not the tool"
