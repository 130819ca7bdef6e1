"""Data-parallel training on torch.distributed (gloo on CPU, NCCL on CUDA).

One process per rank; ``torchrun`` (or ``gankit train --nproc N``, see :func:`launch`) sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. ``--batch-size``
is the global batch: rank r trains on rows ``[r*B/N, (r+1)*B/N)`` of every batch.

Why gradients are averaged by hand after each backward, not by ``DistributedDataParallel``:

* D is frozen (``requires_grad_(False)``) for the generator step yet runs in it, which DDP's
  reducer only tolerates with ``find_unused_parameters`` (or by calling the unwrapped module);
* lazy R1 / gradient penalty change the autograd graph from step to step, which rules out
  ``static_graph`` (and ``benchmarks/ddp_create_graph_check.py`` shows ``static_graph=True``
  giving wrong gradients for an R1 step with ``create_graph``; plain DDP got them right);
* DDP's buffer broadcast rewrites BatchNorm statistics on every forward;
* exactness: the ranks' gradients summed in rank order, then divided by the number of
  slices, is the same arithmetic as a single process that accumulates the slices' gradients
  (:class:`World` with ``virtual`` slices): the test reference the weights are compared with.
  (StyleGAN2-ADA reaches the same conclusion and all-reduces by hand as well.)

So each module's gradients are summed over the ranks and divided by the number of slices right
after its phase's backward, once per phase, in one flattened buffer.

Exact for every world size: gradients of 2 ranks are summed by an all-reduce (a + b == b + a);
from 3 ranks on they are gathered and added in rank order, ((g0 + g1) + g2) ..., which is the
order a single process accumulating the slices adds them in (an all-reduce adds in an order of
its own, so N >= 3 would differ from the reference in the last bits).

Buffers: after every step each floating-point buffer is replaced, element by element, by the
mean over the ranks where the ranks hold different values (BatchNorm's running statistics,
StyleGAN's ``w_avg`` and ``pl_mean``, which each rank updates from its own slice) and left
alone where they agree (constant buffers such as ``noise_const``, spectral norm's vectors):
averaging equal values is not exact in floating point ((a + a + a) / 3 != a).

BatchNorm on CPU (gloo): each rank normalises with the statistics of its own slice (a global
batch of 64 on 2 ranks behaves like two batches of 32 for the batch statistics, and the running
statistics are the mean of the ranks' running statistics). On CUDA (NCCL) BatchNorm layers
become ``SyncBatchNorm`` (:func:`sync_batchnorm`): the batch statistics are those of the whole
global batch, as in one process (the EMA copy keeps plain BatchNorm); see docs/distributed.md.

Failures: a rank whose training raises writes ``failed`` to the rendezvous store before it
stops; the first to do so prints the one error line, and a watchdog thread on every rank polls
the store and ends its process within a fraction of a second when another rank has failed, so
no rank waits for the collective timeout (a rank killed outright is noticed by the collective
itself, or by the launcher / torchrun that started it).

Over 400 lines: process-group set-up, the launcher, rank slicing, gradient and buffer averaging,
failure reports and the cross-rank checks are one concern (keeping N ranks equal to one reference
and stopping them together).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gankit.errors import GankitError, UsageError

# exit code of a rank that lost its peers under `gankit train --nproc` (EX_TEMPFAIL)
LOST_CONTACT = 75
# seconds a collective waits for a missing rank before the job fails (eval on rank 0 included)
DEFAULT_TIMEOUT_S = 900


@dataclass
class World:
    """Who this process is among the ranks, and the collectives the trainer needs.

    ``size`` is the number of processes; ``slices`` the number of batch slices this process
    computes one after the other (1 in a real rank; ``virtual`` > 1 makes a single process
    accumulate that many slices: the exact reference a multi-rank run is compared with).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    virtual: int = 1
    # collectives even in a world of 1 (GANKIT_DIST_FORCE=1 under torchrun): measures their cost
    forced: bool = False
    # a client of the rendezvous store (failure reports, see report_failure); None in one process
    store: Any = field(default=None, repr=False, compare=False)
    _watchdog: Any = field(default=None, repr=False, compare=False)
    _watchdog_thread: Any = field(default=None, repr=False, compare=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1 or self.forced

    @property
    def total_slices(self) -> int:
        return self.size * self.virtual

    def slices(self, batch: int) -> list[tuple[int, int]]:
        """The [lo, hi) rows of a global batch this process computes."""
        n = self.total_slices
        if batch % n:
            raise UsageError(f"--batch-size {batch} does not split evenly over {n} ranks; use a multiple of {n}")
        per = batch // n
        first = self.rank * self.virtual
        return [((first + i) * per, (first + i + 1) * per) for i in range(self.virtual)]

    # -- collectives (no-ops in one process) ----------------------------------------------
    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except RuntimeError as exc:  # gloo/NCCL: a peer died or timed out
            from gankit.errors import first_line

            if os.environ.get("GANKIT_LAUNCHER") == "1" or self.failed_elsewhere() is not None:
                # the rank that failed printed the one line (or, under `gankit train --nproc`, the
                # launcher names the rank that died): stop without a word
                raise SystemExit(LOST_CONTACT) from None
            why = first_line(exc, limit=120)
            dead = self.dead_peers()
            if dead:  # killed outright on this machine: name it, as the --nproc launcher does
                gone = ", ".join(f"rank {r} (pid {pid})" for r, pid in dead)
                err = LostContact(f"{gone} died; rank {self.rank} lost contact with it ({why}); the job is stopped. "
                                  "Resume with the same command and --resume")
                err.names_rank = True
                raise err from None
            raise LostContact(f"lost contact with another rank ({why}); the job is stopped") from None

    def all_reduce_sum_(self, t) -> None:
        if self.distributed:
            import torch.distributed as dist

            self._call(dist.all_reduce, t, op=dist.ReduceOp.SUM)

    def average_gradients(self, module) -> None:
        """Sum each parameter's gradient over ranks and divide by the number of slices.

        Called once after a phase's backward. In one process with one slice this does nothing
        (seeded single-process results stay what they were).
        """

        if self.total_slices == 1 and not self.distributed:
            return
        tensors = [p.grad for p in module.parameters() if p.grad is not None]
        if not tensors:
            return
        flat = self._sum_over_ranks(_flatten(tensors))
        _unflatten(flat.div_(self.total_slices), tensors)

    def _sum_over_ranks(self, flat):
        """``flat`` summed over the ranks, added in rank order: ((r0 + r1) + r2) + ... .

        That is the order in which one process accumulating the slices adds them (autograd
        adds each slice's gradient to the sum so far), so N ranks match that reference bit for
        bit. Two ranks use an all-reduce (a + b == b + a whatever the order); from three on an
        all-reduce adds in an order of its own, so the ranks' tensors are gathered and added
        here (N times the traffic of an all-reduce: small for gankit's models).
        """
        if not self.distributed or self.size == 1:
            return flat
        if self.size == 2:
            self.all_reduce_sum_(flat)
            return flat
        return _ordered_sum(self.gather_tensor(flat))

    def gather_tensor(self, t) -> list:
        """Every rank's ``t`` (same shape everywhere), in rank order."""
        if not self.distributed:
            return [t]
        import torch
        import torch.distributed as dist

        parts = [torch.empty_like(t) for _ in range(self.size)]
        self._call(dist.all_gather, parts, t.contiguous())
        return parts

    def average_buffers_(self, tensors, copies: list | None = None) -> None:
        """Make floating-point buffers the same on every rank: where the slices disagree, their mean.

        ``tensors``: this process's buffers, overwritten. ``copies``: this process's values of
        them per slice it computed (the in-process reference); None when it computed one slice.
        Element by element: where every slice holds the same value it is kept as it is (a
        constant buffer, spectral norm's vectors: (a + a + a) / 3 is not always a), elsewhere
        (BatchNorm's running statistics, per-slice moving averages) the sum in slice order
        divided by the number of slices, exactly what the reference computes.
        """
        import torch

        if not tensors or (self.total_slices == 1 and not self.distributed):
            return
        local = [_flatten(c) for c in (copies if copies is not None else [tensors])]
        rows = [row for part in self.gather_tensor(torch.stack(local)) for row in part]
        stacked = torch.stack(rows)
        same = (stacked == stacked[0]).all(0)
        mean = _ordered_sum(rows).div_(len(rows))
        _unflatten(torch.where(same, stacked[0], mean), tensors)

    def average_floats(self, values: dict[str, float], local_slices: int = 1) -> dict[str, float]:
        """The mean over all slices of logged numbers (``values`` holds this process's sums)."""
        if self.total_slices == 1 and not self.distributed:
            return values
        import torch

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device())  # NCCL: on the GPU
        t = _ordered_sum(self.gather_tensor(t)) / self.total_slices  # the reference's order, any N
        return dict(zip(keys, t.cpu().tolist()))

    def check_consistent(self, modules: dict) -> None:
        """Raise unless every rank holds bit-identical parameters and buffers (before a checkpoint)."""
        if not self.distributed:
            return
        import torch
        import torch.distributed as dist

        h = hashlib.sha256()
        for name in sorted(modules):
            for k, v in modules[name].state_dict().items():
                h.update(f"{name}/{k}".encode())
                h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        mine = torch.tensor(list(h.digest()[:8]), dtype=torch.int64, device=self.device())
        all_ = [torch.zeros_like(mine) for _ in range(self.size)]
        self._call(dist.all_gather, all_, mine)
        bad = [r for r, t in enumerate(all_) if not torch.equal(t, all_[0])]
        if bad:  # every rank sees the same list: one line, from whichever rank reports first
            raise EveryRankError(f"the weights of rank(s) {', '.join(map(str, bad))} differ from rank 0's; "
                                 "refusing to write a checkpoint (report this as a bug)")

    def device(self):
        import torch
        import torch.distributed as dist

        if self.distributed and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            self._call(dist.barrier)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        self._call(dist.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list:
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.size
        self._call(dist.all_gather_object, out, obj)
        return out


    # -- failures (see report_failure) ---------------------------------------------------
    def _key(self, name: str) -> str:
        # a torchrun restart (--max-restarts) reuses the store: each attempt has its own keys
        return f"gankit/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{name}"

    def register_pid(self) -> None:
        """Say where this rank runs (host, pid), so a peer on the same machine can tell it died."""
        if self.store is not None:
            self.store.set(self._key(f"pid/{self.rank}"), f"{socket.gethostname()} {os.getpid()}")

    def dead_peers(self) -> list[tuple[int, int]]:
        """(rank, pid) of the other ranks on this machine whose process has ended."""
        if self.store is None or not os.path.isdir("/proc/self"):
            return []
        host, out = socket.gethostname(), []
        for r in range(self.size):
            key = self._key(f"pid/{r}")
            try:
                if r == self.rank or not self.store.check([key]):
                    continue
                where, pid = self.store.get(key).decode().split()
            except Exception:  # noqa: BLE001 - the store is gone: nothing to tell
                return out
            if where == host and _process_gone(int(pid)):
                out.append((r, int(pid)))
        return out

    def failed_elsewhere(self) -> tuple[int, int] | None:
        """(rank, exit code) of another rank that has reported a failure, else None."""
        return _failure(self.store, self._key("failed"), self.rank)


SINGLE = World()

# (total, first, count) of the slice of the global batch being computed (set by the trainer)
_ROWS: list = [None]


def set_batch_rows(rows: tuple[int, int, int] | None) -> None:
    """The trainer says which rows of the global batch the current slice is (None: all of it)."""
    _ROWS[0] = rows


@contextmanager
def batch_rows(total: int, first: int, count: int):
    """Within the block, a batch of ``count`` rows is rows ``first..first+count`` of ``total``."""
    old = _ROWS[0]
    _ROWS[0] = (total, first, count)
    try:
        yield
    finally:
        _ROWS[0] = old


def rows_of(n: int) -> tuple[int, int]:
    """``(total, first)`` for a batch of ``n`` rows: where it sits in the global batch.

    ``(n, 0)`` in one process, and for a batch of another size than the current slice (a
    sub-batch a model makes itself; it draws locally unless it says which rows it is).
    """
    r = _ROWS[0]
    if r is None or r[2] != n:
        return n, 0
    return r[0], r[1]


def draw_rows(n: int, draw):
    """``draw(total)[first:first+n]``: a per-row random draw made for the whole global batch,
    keeping this slice's rows, so the numbers a row gets do not depend on the world size.
    ``draw(m)`` must draw ``m`` rows (``lambda m: torch.randn(m, 8)``). In one process this
    is ``draw(n)``, the very same call as before data parallelism.
    """
    total, first = rows_of(n)
    out = draw(total)
    return out if (total, first) == (n, 0) else out[first : first + n]


def _flatten(tensors):
    import torch

    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten(flat, tensors) -> None:
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def _ordered_sum(parts):
    acc = parts[0].clone()
    for p in parts[1:]:
        acc += p
    return acc


class LostContact(GankitError):
    """A collective failed: another rank died or did not answer within GANKIT_DIST_TIMEOUT."""


class EveryRankError(GankitError):
    """A failure every rank meets at the same point with the same message (the run diverged,
    the ranks' weights differ): reported once, without naming a rank."""


def _process_gone(pid: int) -> bool:
    """No such process, or a zombie its parent has not reaped yet (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False


def _failure(store, key: str, me: int) -> tuple[int, int] | None:
    if store is None:
        return None
    try:
        if not store.check([key]):
            return None
        rank, code = store.get(key).decode().split()
    except Exception:  # noqa: BLE001 - the store is gone: the job is ending anyway
        return None
    return None if int(rank) == me else (int(rank), int(code))


def report_failure(world: World, exc: BaseException) -> None:
    """A rank's training raised ``exc``: one line for the whole job, then stop this rank.

    The first rank to fail (an atomic counter in the rendezvous store) prints the line, naming
    itself unless the failure is the same on every rank (bad input, Ctrl-C, divergence); any
    other rank stops quietly. Either way the other ranks' watchdogs see the report and stop
    their processes, instead of waiting in a collective for GANKIT_DIST_TIMEOUT. Does nothing
    in one process (the CLI reports the exception as it always has).
    """
    if not world.distributed or isinstance(exc, SystemExit):
        return
    from gankit.errors import INTERRUPTED

    interrupted = isinstance(exc, KeyboardInterrupt) or INTERRUPTED.is_set()
    code = 130 if interrupted else int(getattr(exc, "exit_code", 1))
    first = True
    if world.store is not None:
        try:
            first = world.store.add(world._key("count"), 1) == 1
            if first:
                world.store.set(world._key("failed"), f"{world.rank} {code}")
        except Exception:  # noqa: BLE001 - no store: say it anyway
            first = True
    if not first:
        raise SystemExit(code) from None
    if os.environ.get("GANKIT_DEBUG") and not interrupted:
        return  # the CLI shows the traceback
    if interrupted and not isinstance(exc, GankitError):
        msg = "interrupted"
    elif isinstance(exc, GankitError):
        msg = " ".join(str(exc).split())
    else:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        msg = f"internal failure ({type(exc).__name__}: {detail}); rerun with GANKIT_DEBUG=1 for details"
    if not isinstance(exc, (UsageError, EveryRankError)) and code != 130 and not getattr(exc, "names_rank", False):
        msg = f"rank {world.rank}: {msg}"
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def _watch(world: World, store, stop: threading.Event, interval: float = 0.2) -> None:
    """Watchdog thread: end this process soon after another rank reports a failure.

    The main thread may be blocked in a collective that would wait for GANKIT_DIST_TIMEOUT
    (NCCL, another machine); os._exit ends it from here. Another rank printed the one line.
    """
    key = world._key("failed")
    while not stop.wait(interval):
        try:
            if not store.check([key]):
                continue
        except Exception:  # noqa: BLE001 - the store is gone (its host finished): nothing to watch
            return
        if _failure(store, key, world.rank) is not None and not stop.is_set():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(LOST_CONTACT)
        return  # our own report: this rank is already on its way out


class decide:
    """``with decide(world) as d: ...; d.value = X`` on rank 0; :func:`follow` on the others.

    Rank 0 makes the checks (run directory, lock, config, checkpoint) and tells the other
    ranks either its decision (``d.value``) or that it failed; they then stop with rank 0's
    exit code and print nothing (rank 0 prints the one line), instead of waiting for it.
    """

    def __init__(self, world: World):
        self.world, self.value = world, None

    def __enter__(self) -> "decide":
        return self

    def __exit__(self, etype, exc, tb) -> bool:
        if self.world.distributed:
            if exc is None:
                self.world.broadcast(("ok", self.value))
            elif not isinstance(exc, LostContact):  # with a peer gone, a broadcast would fail too
                self.world.broadcast(("error", int(getattr(exc, "exit_code", 1)), None))
        return False


def follow(world: World) -> Any:
    """Rank 0's decision (see :class:`decide`), or exit quietly with its exit code."""
    kind, *rest = world.broadcast(None)
    if kind == "error":
        raise SystemExit(rest[0])
    return rest[0]


def from_env(device: str | None) -> World:
    """This process's :class:`World`: one process unless ``WORLD_SIZE`` > 1 (torchrun's variables).

    Joins the process group (gloo on CPU, NCCL on CUDA) with a timeout, so a rank that never
    answers fails the job instead of hanging it.
    """
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    forced = size == 1 and "RANK" in os.environ and os.environ.get("GANKIT_DIST_FORCE") == "1"
    if size <= 1 and not forced:
        return SINGLE
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    want = device or "auto"
    use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise UsageError(f"rank {rank}: --device cuda asked for, but no CUDA device is available")
        torch.cuda.set_device(local % torch.cuda.device_count())
    timeout = timedelta(seconds=float(os.environ.get("GANKIT_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    world = World(rank=rank, size=size, local_rank=local, forced=forced)
    world.store = _store_client()
    world.register_pid()
    watch_store = _store_client()  # its own connection: the watchdog polls from another thread
    if watch_store is not None:
        stop = threading.Event()
        thread = threading.Thread(target=_watch, args=(world, watch_store, stop), name="gankit-watchdog", daemon=True)
        thread.start()
        world._watchdog, world._watchdog_thread = stop, thread
    try:
        refuse_mixed_devices(world.gather("cuda" if use_cuda else "cpu"))
    except UsageError as exc:
        report_failure(world, exc)  # every rank sees the same: one line, from one rank
    return world


def _store_client():
    """A client of the rendezvous store (torchrun's agent, the --nproc launcher, or rank 0)."""
    from torch.distributed import TCPStore

    try:
        return TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                        timeout=timedelta(seconds=30), wait_for_workers=False)
    except (KeyError, ValueError, RuntimeError):  # another init method: no failure reports, timeouts only
        return None


def sync_batchnorm_wanted(backend: str, has_batchnorm: bool) -> bool:
    """SyncBatchNorm on NCCL (CUDA) only: gloo has no SyncBatchNorm, and on CPU gankit keeps
    each rank's statistics of its own slice (the exact in-process reference computes those)."""
    return backend == "nccl" and has_batchnorm


def sync_batchnorm(world: World, module):
    """``module`` with SyncBatchNorm layers when :func:`sync_batchnorm_wanted` says so."""
    if not world.distributed:
        return module
    import torch
    import torch.distributed as dist

    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
    if not sync_batchnorm_wanted(dist.get_backend(), has_bn):
        return module
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)


def refuse_mixed_devices(kinds: list[str]) -> None:
    """One kind of device for every rank (gloo on CPU and NCCL on CUDA do not mix in one group)."""
    if len(set(kinds)) > 1:
        ranks = ", ".join(f"rank {r}: {k}" for r, k in enumerate(kinds))
        raise UsageError(f"mixed devices across ranks ({ranks}); every rank must train on the same kind of device")


def close(world: World) -> None:
    if world._watchdog is not None:
        world._watchdog.set()  # a normal end: the ranks that finish first are no failure
        # and wait for it to leave its store call: a daemon thread still inside the C++ store
        # client when the interpreter exits can abort the process ("terminate called without an
        # active exception", SIGABRT), seen once on a rank that finished before rank 0's export
        if world._watchdog_thread is not None and world._watchdog_thread is not threading.current_thread():
            world._watchdog_thread.join(timeout=5)
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------- launcher
def available_slots(device: str | None) -> tuple[int, str]:
    """How many ranks this machine can run side by side: GPUs, else CPU cores."""
    want = device or "auto"
    if want in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count(), "GPU(s)"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return cores, "CPU core(s)"


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str], device: str | None = None) -> int:
    """``gankit train --nproc N``: run ``python -m gankit ARGV`` as N ranks on this machine.

    Like ``torchrun --standalone``: this process hosts the rendezvous store (a TCPStore on a
    free port chosen by the kernel, so two launches never collide), the children join it
    (``TORCHELASTIC_USE_AGENT_STORE``). When a rank exits with an error or is killed, the
    others are stopped and one line names it; the exit code is that rank's.
    """
    import signal
    import subprocess
    import time

    from torch.distributed import TCPStore

    slots, what = available_slots(device)
    if nproc > slots:
        print(f"warning: --nproc {nproc} is more than the {slots} {what} here; ranks will share them and run slower",
              file=sys.stderr)
    store = TCPStore("127.0.0.1", 0, nproc, is_master=True, wait_for_workers=False,
                     timeout=timedelta(seconds=float(os.environ.get("GANKIT_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))))
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "TORCHELASTIC_USE_AGENT_STORE": "True",
            "GANKIT_LAUNCHER": "1"}
    if "OMP_NUM_THREADS" not in base:  # like torchrun: N ranks must not each take every core
        base["OMP_NUM_THREADS"] = str(max(1, slots // nproc))
    procs = []
    for r in range(nproc):
        env = {**base, "RANK": str(r), "LOCAL_RANK": str(r)}
        procs.append(subprocess.Popen([sys.executable, "-m", "gankit", *argv], env=env))
    failed: tuple[int, int] | None = None
    reported = None  # (rank, code) of a rank that printed its own one line (report_failure)
    lost_since = 0.0
    key = World()._key("failed")
    # Ctrl-C in the terminal reaches every rank (one process group): each finishes the same step,
    # rank 0 saves and says how to resume; this process only waits for them
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            reported = _failure(store, key, -1) if bad else None
            if reported is not None:
                failed = reported
                _wait(procs[reported[0] : reported[0] + 1], 30)  # its line is out before it is stopped
                break
            if bad and all(c == LOST_CONTACT for _, c in bad) and not lost_since:
                lost_since = time.monotonic()  # a survivor noticed first: wait for the rank that died
            if bad and (any(c != LOST_CONTACT for _, c in bad) or time.monotonic() - lost_since > 5):
                bad.sort(key=lambda rc: rc[1] == LOST_CONTACT)  # name the cause, not a survivor
                failed = bad[0]
                if failed[1] in (2, 130):  # bad input / Ctrl-C: rank 0 prints why and the others follow
                    _wait(procs, 120)
                break
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, old_sigint)
        if failed is not None:
            _stop(procs)
        del store
    rank, code = failed
    if code in (2, 130) or reported is not None:  # the rank's own one line already said it
        return code
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
        code = 128 - code
    elif code == LOST_CONTACT:
        how = f"lost contact with the other rank(s) (no answer within GANKIT_DIST_TIMEOUT={os.environ.get('GANKIT_DIST_TIMEOUT', DEFAULT_TIMEOUT_S)} s)"
    else:
        how = f"exited with code {code}"
    print(f"error: rank {rank} (pid {procs[rank].pid}) {how}; stopped the other rank(s). "
          f"Resume with the same command and --resume", file=sys.stderr)
    return code


def _wait(procs, seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end and any(p.poll() is None for p in procs):
        time.sleep(0.05)


def _stop(procs) -> None:
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
