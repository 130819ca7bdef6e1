"""Data-parallel training on CPU (gloo, world sizes 2 and 3): exactness, failures, kill -9 and resume, torchrun.

What "exact" means here: a step on 2 ranks computes each half of the global batch on its own
rank and averages the two gradients; BatchNorm normalises each half with its own statistics.
So the reference is not a plain single process on the whole batch (different arithmetic:
one mean over B images vs the mean of two means over B/2; BatchNorm statistics of B vs B/2
images) but one process that computes the same two halves one after the other, adds their
gradients and divides by 2 (``World(virtual=2)``). The two must agree bit for bit, parameters
and buffers (BatchNorm running statistics, the EMA generator) included; and likewise 3 ranks
against ``World(virtual=3)`` (where an all-reduce would add in its own order, and averaging
constant buffers would change them).

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
def _train_cases(out, ranks: int):
    """Run tests/distributed_cases.py on ``ranks`` gloo ranks under torchrun (one launch) into ``out``."""
    ps = Procs()
    try:
        code, _, err = ps.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                               str(ranks), ROOT / "tests" / "distributed_cases.py", out])
    finally:
        ps.cleanup()
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def two_rank_weights(tmp_path_factory):
    """Every case of tests/distributed_cases.py trained on 2 gloo ranks."""
    return _train_cases(tmp_path_factory.mktemp("ddp-cases"), 2)


@pytest.fixture(scope="module")
def three_rank_weights(tmp_path_factory):
    """tests/distributed_cases.py's CASES_3 trained on 3 gloo ranks."""
    return _train_cases(tmp_path_factory.mktemp("ddp-cases-3"), 3)


def _reference(plugin, over, slices, tmp_path, batch):
    from gankit.train.distributed import World

    # the ranks ran with one thread each (the env above); a reduction split over two threads adds
    # in another order, so the in-process reference must use one thread too to compare bitwise
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = cases.build(plugin, over, World(virtual=slices), tmp_path, batch)
        cases.train(reference)
    finally:
        torch.set_num_threads(threads)
    return reference


def _ids(case_list):
    return [f"{p}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for p, o in case_list]


@pytest.mark.parametrize("index", range(len(cases.CASES)), ids=_ids(cases.CASES))
def test_two_ranks_equal_one_process_accumulating_both_halves(two_rank_weights, index, tmp_path):
    from gankit.train.distributed import World

    plugin, over = cases.CASES[index]
    if not cases.available(plugin):
        pytest.skip(f"family {plugin} is not installed")
    got = _tensors(two_rank_weights / f"{index}.safetensors")
    reference = _reference(plugin, over, 2, tmp_path, cases.BATCH)
    assert not _differences(cases.state(reference), got), f"{plugin} {over}: 2 ranks differ from the reference"
    # and the comparison has teeth: a plain single process on the whole batch is different arithmetic
    plain = cases.build(plugin, over, World(), tmp_path / "plain")
    cases.train(plain)
    assert _differences(cases.state(plain), got)


@pytest.mark.parametrize("index", range(len(cases.CASES_3)), ids=_ids(cases.CASES_3))
def test_three_ranks_equal_one_process_accumulating_three_slices(three_rank_weights, index, tmp_path):
    """Gradients summed in rank order (not by an all-reduce's own order) and constant buffers left
    alone: 3 ranks are bit for bit the in-process reference too."""
    from gankit.train.distributed import World

    plugin, over = cases.CASES_3[index]
    if not cases.available(plugin):
        pytest.skip(f"family {plugin} is not installed")
    got = _tensors(three_rank_weights / f"{index}.safetensors")
    reference = _reference(plugin, over, 3, tmp_path, cases.BATCH_3)
    assert not _differences(cases.state(reference), got), f"{plugin} {over}: 3 ranks differ from the reference"
    # constant buffers (StyleGAN's noise_const, layer_index) are still exactly what a new model has
    fresh = cases.state(cases.build(plugin, over, World(), tmp_path / "fresh", cases.BATCH_3))
    constant = [k for k in fresh if "noise_const" in k or "layer_index" in k]
    assert (plugin != "stylegan") == (not constant)
    assert all(torch.equal(got[k], fresh[k]) for k in constant)


def test_buffers_are_averaged_only_where_the_slices_differ():
    from gankit.train.distributed import World

    own = [torch.zeros(3), torch.zeros(2)]
    a = 0.1 + torch.arange(3.0) / 7
    # slice values: the first tensor is equal on all 3 slices except its last element
    copies = [[a.clone(), torch.tensor([1.0, 2.0])], [a.clone(), torch.tensor([4.0, 2.0])],
              [torch.cat([a[:2], torch.tensor([9.0])]), torch.tensor([7.0, 2.0])]]
    World(virtual=3).average_buffers_(own, copies)
    assert torch.equal(own[0][:2], a[:2])  # kept as they are, not ((a + a) + a) / 3
    assert own[0][2] == ((a[2] + a[2]) + 9.0) / 3
    assert torch.equal(own[1], torch.tensor([4.0, 2.0]))
    # and the point of it: averaging equal values is not exact in floating point
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(((x + x) + x) / 3, x)


def test_a_constant_buffer_stays_bit_identical_over_three_slices(tmp_path):
    """StyleGAN's noise_const is a buffer no step changes: three slices (ranks) leave it bit-identical."""
    from gankit.train.distributed import World

    if not cases.available("stylegan"):
        pytest.skip("stylegan is not installed")
    t = cases.build("stylegan", {}, World(virtual=3), tmp_path / "a", 6)
    fresh = cases.state(cases.build("stylegan", {}, World(), tmp_path / "b", 6))
    cases.train(t, 1)
    got = cases.state(t)
    constant = [k for k in got if "noise_const" in k]
    assert constant and all(torch.equal(got[k], fresh[k]) for k in constant)
    assert not torch.equal(got["G/w_avg"], fresh["G/w_avg"])  # a buffer the step does change: averaged


# --------------------------------------------------------------------------- StyleGAN's draws
def _as_ranks(size: int, batch: int, fn, seed: int = 0):
    """What ``fn(lo, hi)`` returns on each of ``size`` ranks (torch's generator seeded alike on
    every rank, the rows of the global batch set as the trainer sets them), concatenated."""
    from gankit.train.distributed import batch_rows

    out = []
    per = batch // size
    for r in range(size):
        torch.manual_seed(seed)
        if size == 1:
            out.append(fn(0, batch))
        else:
            with batch_rows(batch, r * per, per):
                out.append(fn(r * per, (r + 1) * per))
    return torch.cat(out)


class _FirstInput(torch.nn.Module):
    def forward(self, x, *rest, **kw):
        return x


@pytest.mark.parametrize("size", [1, 2, 3])
def test_stylegan_draws_do_not_depend_on_the_world_size(size):
    """Style mixing's z2 and crossover and the injected noise: the rows the ranks get, put
    together, are the single-process draws (they were drawn at the slice's size before)."""
    pytest.importorskip("gankit_stylegan")
    from gankit_stylegan.networks import Generator, SynthesisLayer

    batch = 6
    G = Generator({"latent_dim": 8, "w_dim": 8, "height": 28, "width": 28, "channels": 1, "g_channels": 8,
                   "g_min_channels": 4, "style_mixing": 0.5}).train()
    G.mapping = _FirstInput()  # w = z: the styles show z, z2 and the crossover exactly
    z = torch.randn(batch, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one = _as_ranks(1, batch, lambda lo, hi: G.styles(z[lo:hi]))
        got = _as_ranks(size, batch, lambda lo, hi: G.styles(z[lo:hi]))
    assert torch.equal(got, one)
    assert not torch.equal(one, z.unsqueeze(1).expand_as(one))  # some rows mixed: the test has teeth

    layer = SynthesisLayer(4, 4, 8, (5, 5), up=False, noise_seed=0).train()
    layer.conv = _FirstInput()  # the output is then lrelu(noise + 0): the noise itself
    layer.noise_strength.data.fill_(1.0)
    x, w = torch.zeros(batch, 4, 5, 5), torch.zeros(batch, 8)
    with torch.no_grad():
        one = _as_ranks(1, batch, lambda lo, hi: layer(x[lo:hi], w[lo:hi]))
        got = _as_ranks(size, batch, lambda lo, hi: layer(x[lo:hi], w[lo:hi]))
    assert torch.equal(got, one)


@pytest.mark.parametrize("batch", [2, 6, 8, 12])
def test_path_length_rows_are_the_same_half_batch_for_every_world_size(batch):
    pytest.importorskip("gankit_stylegan")
    from gankit_stylegan.regularizers import path_length_rows

    from gankit.train.distributed import batch_rows, draw_rows

    values = torch.rand(batch, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    m1, lo1, hi1, scale1 = path_length_rows(None, batch)
    assert (lo1, hi1, scale1) == (0, m1, 1) and m1 == max(1, batch // 2)
    for size in (s for s in (2, 3) if batch % s == 0):
        per = batch // size
        parts = [path_length_rows((batch, r * per), per) for r in range(size)]
        assert [p[0] for p in parts] == [m1] * size
        assert [i for _, lo, hi, _ in parts for i in range(lo, hi)] == list(range(m1))  # the same rows, split
        # the slices' scaled means, averaged as the gradients are, are the mean over those rows
        mean = sum(s * values[lo:hi].mean() for _, lo, hi, s in parts if hi > lo) / size
        assert torch.isclose(mean, values[:m1].mean())
        # and each slice's noise y is its rows of the draw for the whole half batch
        ys = []
        for _, lo, hi, _ in parts:
            g = torch.Generator().manual_seed(3)
            with batch_rows(m1, lo, hi - lo):
                ys.append(draw_rows(hi - lo, lambda k, g=g: torch.randn(k, 4, generator=g)))
        assert torch.equal(torch.cat(ys), torch.randn(m1, 4, generator=torch.Generator().manual_seed(3)))


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


def test_the_launcher_counts_slots_for_the_device_however_it_was_given(cli, tmp_path, monkeypatch):
    """--set device=cpu and a config file's device reach the launcher as --device does: on a
    GPU machine it would otherwise count GPUs and give each CPU rank one thread."""
    from gankit.train import distributed

    seen = []
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv, device=None: seen.append((nproc, device)) or 0)
    toml = tmp_path / "c.toml"
    toml.write_text('plugin = "cgan"\ndevice = "cpu"\n')
    for args in (["--device", "cpu"], ["--set", "device=cpu"], ["--config", str(toml)], []):
        r = cli("train", "--plugin", "cgan", "--nproc", "2", *args)
        assert r.code == 0, r.err
    assert seen == [(2, "cpu"), (2, "cpu"), (2, "cpu"), (2, None)]


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
    steps = 20  # killed at step 10 or just after: half the run is still to do after the resume
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


def test_sync_batchnorm_on_nccl_only():
    from gankit.train.distributed import World, sync_batchnorm, sync_batchnorm_wanted

    assert sync_batchnorm_wanted("nccl", True)
    assert not sync_batchnorm_wanted("nccl", False)  # nothing to convert
    assert not sync_batchnorm_wanted("gloo", True)  # CPU: each rank's own statistics
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert sync_batchnorm(World(), net) is net and isinstance(net[1], torch.nn.BatchNorm2d)


# --------------------------------------------------------------------------- failures
class _DictStore:
    """The four TCPStore calls report_failure and the watchdog use, in a dict."""

    def __init__(self):
        self.data: dict = {}

    def add(self, key, n):
        self.data[key] = self.data.get(key, 0) + n
        return self.data[key]

    def set(self, key, value):
        self.data[key] = value.encode()

    def check(self, keys):
        return all(k in self.data for k in keys)

    def get(self, key):
        return self.data[key]


def test_the_first_failing_rank_prints_the_one_line_and_names_itself(capsys, monkeypatch):
    from gankit.errors import UsageError
    from gankit.train.distributed import EveryRankError, World, report_failure

    monkeypatch.delenv("GANKIT_DEBUG", raising=False)
    store = _DictStore()
    r0, r1 = World(rank=0, size=2, store=store), World(rank=1, size=2, store=store)
    with pytest.raises(SystemExit) as first:
        report_failure(r1, OSError("disk full"))
    with pytest.raises(SystemExit) as second:  # rank 0 fails too, later: it says nothing
        report_failure(r0, RuntimeError("lost it"))
    assert (first.value.code, second.value.code) == (1, 1)
    assert capsys.readouterr().err.splitlines() == [
        "error: rank 1: internal failure (OSError: disk full); rerun with GANKIT_DEBUG=1 for details"]
    assert r0.failed_elsewhere() == (1, 1) and r1.failed_elsewhere() is None  # what rank 0's watchdog sees
    # the same failure on every rank (bad input, divergence) names no rank; its exit code is kept
    for exc, code in ((UsageError("bad --out"), 2), (EveryRankError("training diverged at step 3"), 1)):
        with pytest.raises(SystemExit) as e:
            report_failure(World(rank=1, size=2, store=_DictStore()), exc)
        assert e.value.code == code
        assert capsys.readouterr().err == f"error: {exc}\n"
    report_failure(World(), OSError("one process"))  # one process: the CLI reports it as always
    assert capsys.readouterr().err == ""


def test_a_collective_that_fails_is_one_line_naming_the_rank(monkeypatch):
    from gankit.train.distributed import LostContact, World

    monkeypatch.delenv("GANKIT_LAUNCHER", raising=False)

    def broken():
        raise RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:4242\nmore detail")

    with pytest.raises(LostContact, match=r"^lost contact with another rank \(RuntimeError: \[pair.cc:553\] "
                                          r"Connection closed by peer \[127.0.0.1\]:4242\); the job is stopped$"):
        World(rank=1, size=2)._call(broken)
    # another rank already reported why: this one stops without a word
    store = _DictStore()
    store.set(World()._key("failed"), "0 1")
    with pytest.raises(SystemExit):
        World(rank=1, size=2, store=store)._call(broken)


def test_a_rank_killed_on_this_machine_is_named_by_the_rank_that_notices(capsys, monkeypatch):
    """Under torchrun (no --nproc launcher to name it) the survivor's one line names the dead rank."""
    from gankit.train.distributed import LostContact, World, report_failure

    monkeypatch.delenv("GANKIT_LAUNCHER", raising=False)
    monkeypatch.delenv("GANKIT_DEBUG", raising=False)
    store = _DictStore()
    World(rank=0, size=2, store=store).register_pid()  # alive: this test's process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    store.set(World()._key("pid/1"), f"{socket.gethostname()} {dead.pid}")
    survivor = World(rank=0, size=2, store=store)
    assert survivor.dead_peers() == [(1, dead.pid)]

    def broken():
        raise RuntimeError("Connection closed by peer")

    with pytest.raises(LostContact) as lost:
        survivor._call(broken)
    with pytest.raises(SystemExit):
        report_failure(survivor, lost.value)
    assert capsys.readouterr().err == (f"error: rank 1 (pid {dead.pid}) died; rank 0 lost contact with it "
                                       "(RuntimeError: Connection closed by peer); the job is stopped. "
                                       "Resume with the same command and --resume\n")


INJECT = ROOT / "tests" / "dist_inject"


def _inject_env(spec: str) -> dict:
    # tests/dist_inject/sitecustomize.py changes the rank named in GANKIT_TEST_INJECT
    path = os.pathsep.join([str(INJECT), os.environ.get("PYTHONPATH", "")])
    return {**_env(), "PYTHONPATH": path, "GANKIT_TEST_INJECT": spec, "GANKIT_DIST_TIMEOUT": "600"}


@pytest.mark.parametrize("spec", ["save:0", "step:1"])
def test_a_failing_rank_stops_the_job_with_one_line_naming_it(procs, tmp_path, spec):
    """Under plain torchrun, a rank that raises outside the collectives (rank 0's checkpoint
    write, rank 1 mid-run): the job stops long before the collective timeout (600 s here; a
    hang fails the test by its own timeout), with exactly one error line, naming the rank.
    (The --nproc launcher's side of a reported failure: test_a_diverged_run_prints_one_line.)"""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "gankit",
           "train", *COMMON, "--steps", "3", "--out", tmp_path / "r"]
    p = subprocess.Popen([str(a) for a in cmd], env=_inject_env(spec), start_new_session=True, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.started.append(p)
    _, err = p.communicate(timeout=240)
    rank = spec.split(":")[1]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert p.returncode != 0
    assert len(errors) == 1 and errors[0].startswith(f"error: rank {rank}: ") and "injected" in errors[0], err[-3000:]


def test_a_failed_rank_that_stays_alive_does_not_hang_the_others(procs):
    """The watchdog: rank 1 reports a failure but keeps its connections open (a collective would
    not notice), rank 0 waits in a barrier; rank 0 stops on the report, torchrun ends the job."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           ROOT / "tests" / "distributed_cases.py", "--fail-and-hold"]
    p = subprocess.Popen([str(a) for a in cmd], env={**_env(), "GANKIT_DIST_TIMEOUT": "600"}, start_new_session=True,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.started.append(p)
    _, err = p.communicate(timeout=240)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert p.returncode != 0
    assert errors == [("error: rank 1: internal failure (RuntimeError: injected failure, rank still alive); "
                       "rerun with GANKIT_DEBUG=1 for details")], err[-3000:]


def test_a_diverged_run_prints_one_line(procs, tmp_path):
    """Every rank diverges at the same step: one line for the job, not one per rank."""
    cmd = _gankit("train", *COMMON, "--steps", "3", "--out", tmp_path / "r", "--nproc", "2")
    p = subprocess.Popen([str(a) for a in cmd], env=_inject_env("nan:all"), start_new_session=True, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.started.append(p)
    _, err = p.communicate(timeout=240)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert p.returncode == 1
    assert len(errors) == 1 and errors[0].startswith("error: training diverged at step 1"), err[-3000:]


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
