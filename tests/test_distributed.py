"""Data-parallel training on CPU (gloo, world size 2): exactness, kill -9 and resume, torchrun.

What "exact" means here: a step on 2 ranks computes each half of the global batch on its own
rank and averages the two gradients; BatchNorm normalises each half with its own statistics.
So the reference is not a plain single process on the whole batch (different arithmetic:
one mean over B images vs the mean of two means over B/2; BatchNorm statistics of B vs B/2
images) but one process that computes the same two halves one after the other, adds their
gradients and divides by 2 (``World(virtual=2)``). The two must agree bit for bit, parameters
and buffers (BatchNorm running statistics, the EMA generator) included.

Every subprocess runs in its own session with a timeout and is killed (whole group) if a
test fails; ports come from the kernel (torchrun --standalone, gankit's launcher: port 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed")

from tests import distributed_cases as cases  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # a loaded 2-core machine: generous, and only a bound against a hang


def _env() -> dict:
    # each rank single-threaded: two ranks on two cores; PYTHONPATH inherited (this checkout's code)
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GANKIT_DIST_TIMEOUT": "120"}


class Procs:
    """Subprocesses started in their own session, killed as a group at the end of a test."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def popen(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen([str(a) for a in args], env=_env(), start_new_session=True, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        self.started.append(p)
        return p

    def run(self, args, timeout: int = TIMEOUT) -> tuple[int, str, str]:
        p = self.popen(args)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def cleanup(self) -> None:
        for p in self.started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.cleanup()


def _gankit(*args) -> list:
    return [sys.executable, "-m", "gankit", *args]


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _differences(a: dict, b: dict) -> list[str]:
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:5]
    return [k for k in a if not torch.equal(a[k], b[k])]


# --------------------------------------------------------------------------- exactness
@pytest.fixture(scope="module")
def two_rank_weights(tmp_path_factory):
    """Every case of tests/distributed_cases.py trained on 2 gloo ranks under torchrun (one launch)."""
    out = tmp_path_factory.mktemp("ddp-cases")
    ps = Procs()
    try:
        code, _, err = ps.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               ROOT / "tests" / "distributed_cases.py", out])
    finally:
        ps.cleanup()
    assert code == 0, err[-3000:]
    return out


@pytest.mark.parametrize("index", range(len(cases.CASES)), ids=[f"{p}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
                                                               for p, o in cases.CASES])
def test_two_ranks_equal_one_process_accumulating_both_halves(two_rank_weights, index, tmp_path):
    from gankit.train.distributed import World

    plugin, over = cases.CASES[index]
    if not cases.available(plugin):
        pytest.skip(f"family {plugin} is not installed")
    import torch

    got = _tensors(two_rank_weights / f"{index}.safetensors")
    # the ranks ran with one thread each (the env above); a reduction split over two threads adds
    # in another order, so the in-process reference must use one thread too to compare bitwise
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = cases.build(plugin, over, World(virtual=2), tmp_path)
        cases.train(reference)
    finally:
        torch.set_num_threads(threads)
    assert not _differences(cases.state(reference), got), f"{plugin} {over}: 2 ranks differ from the reference"
    # and the comparison has teeth: a plain single process on the whole batch is different arithmetic
    plain = cases.build(plugin, over, World(), tmp_path / "plain")
    cases.train(plain)
    assert _differences(cases.state(plain), got)


def test_uneven_global_batch_is_refused():
    from gankit.errors import UsageError
    from gankit.train.distributed import World

    assert World(rank=1, size=2).slices(8) == [(4, 8)]
    assert World(virtual=2).slices(8) == [(0, 4), (4, 8)]
    with pytest.raises(UsageError, match="does not split evenly over 2 ranks"):
        World(rank=0, size=2).slices(7)


def test_strip_nproc():
    from gankit.train.distributed import strip_nproc

    assert strip_nproc(["train", "--nproc", "2", "--steps", "3", "--nproc=4"]) == ["train", "--steps", "3"]


# --------------------------------------------------------------------------- through the CLI
COMMON = ["--plugin", "cgan", "--batch-size", "8", "--no-evaluate", "--no-export", "--set", "sample_every=0"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def test_kill_one_rank_then_resume_is_bit_identical_to_an_uninterrupted_run(procs, tmp_path):
    steps = 40
    args = [*COMMON, "--steps", str(steps), "--save-every", "5", "--nproc", "2"]
    code, _, err = procs.run(_gankit("train", *args, "--out", tmp_path / "whole"))
    assert code == 0, err[-2000:]

    run = tmp_path / "cut"
    p = procs.popen(_gankit("train", *args, "--out", run))
    deadline = time.monotonic() + TIMEOUT
    while not (run / "checkpoints" / "step-0000010.safetensors").exists():
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint at step 10"
        time.sleep(0.05)
    victim = next(c for c in _children(p.pid) if _rank_of(c) == 1)
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 128 + signal.SIGKILL, err[-2000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: rank 1 (pid {victim}) was killed by SIGKILL"), err
    assert not (run / "checkpoints" / f"step-{steps:07d}.safetensors").exists()  # it really stopped early

    code, _, err = procs.run(_gankit("train", *args, "--out", run, "--resume"))
    assert code == 0, err[-2000:]
    final = f"checkpoints/step-{steps:07d}.safetensors"
    assert not _differences(_tensors(tmp_path / "whole" / final), _tensors(run / final))


def test_torchrun_smoke_through_the_cli(procs, tmp_path):
    code, out, err = procs.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                "-m", "gankit", "train", "--plugin", "cgan", "--batch-size", "8", "--steps", "3",
                                "--no-evaluate", "--out", tmp_path / "r"], )
    assert code == 0, err[-3000:]
    import json

    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["batch_size"] == 8
    # rank 0 alone writes: one loss record per logged step, one final checkpoint, one export
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "d_loss" in r] == [3]
    lines = out.splitlines()
    assert sum(ln.startswith("exported ") for ln in lines) == 1 and sum(ln.startswith("training cgan") for ln in lines) == 1
    import gankit.runtime as rt

    model = rt.load(tmp_path / "exported" / "r.onnx")
    assert model.generate(n=2, seed=0).shape[0] == 2
    # later commands take the run like any other: its config.json feeds a one-process run whose
    # config hash (world_size and steps are volatile) is the same
    code, _, err = procs.run(_gankit("train", "--config", tmp_path / "r" / "config.json", "--steps", "1", "--no-evaluate",
                                     "--no-export", "--out", tmp_path / "again"))
    assert code == 0, err[-2000:]
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["world_size"] == 1 and again["config_hash"] == cfg["config_hash"]


def test_bad_input_with_two_ranks_is_one_line_and_exit_2(procs, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("mine")
    nproc = len(os.sched_getaffinity(0)) + 1  # more ranks than cores: a warning
    code, _, err = procs.run(_gankit("train", *COMMON, "--steps", "2", "--nproc", nproc, "--out", tmp_path / "busy"))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already exists and is not empty" in errors[0], err  # rank 0's, once
    assert (tmp_path / "busy" / "file.txt").read_text() == "mine"
    assert f"warning: --nproc {nproc} is more than the {nproc - 1} CPU core(s) here" in err


def test_mixed_devices_are_refused():
    from gankit.errors import UsageError
    from gankit.train.distributed import refuse_mixed_devices

    refuse_mixed_devices(["cpu", "cpu"])
    with pytest.raises(UsageError, match=r"mixed devices across ranks \(rank 0: cuda, rank 1: cpu\)"):
        refuse_mixed_devices(["cuda", "cpu"])


def test_ctrl_c_stops_every_rank_after_the_same_step_with_one_line(procs, tmp_path):
    run = tmp_path / "r"
    p = procs.popen(_gankit("train", *COMMON, "--steps", "100000", "--save-every", "5", "--nproc", "2", "--out", run))
    deadline = time.monotonic() + TIMEOUT
    while not (run / "checkpoints" / "step-0000005.safetensors").exists():
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no checkpoint at step 5"
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every process of the group
    _, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 130
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--nproc 2" in lines[0], err
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    from gankit.train import checkpoint as ckpt

    assert ckpt.load(run / "checkpoints" / f"step-{step:07d}.safetensors").step == step  # saved, whole
