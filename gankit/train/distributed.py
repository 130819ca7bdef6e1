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
* exactness: one flat all-reduce of the summed gradients, then a division by the number of
  slices, is the same arithmetic as a single process that accumulates the slices' gradients
  (:class:`World` with ``virtual`` slices): the test reference the weights are compared with.
  (StyleGAN2-ADA reaches the same conclusion and all-reduces by hand as well.)

So each module's gradients are all-reduced (sum, then divided by the number of slices) right
after its phase's backward, once per phase, in one flattened buffer.

BatchNorm: each rank normalises with the statistics of its own slice (on CPU this is what
"local statistics" means: a global batch of 64 on 2 ranks behaves like two batches of 32 for
BatchNorm's batch statistics); the running statistics are averaged over the ranks after
every step, before the EMA copy, so every rank holds the same buffers and a checkpoint is the
same whichever rank writes it. On CUDA the same holds (SyncBatchNorm would make the batch
statistics global, but then a step's result would depend on the world size and differ from
the single-process reference; we keep local statistics on every device, see docs/distributed.md).

Just over 400 lines: process-group set-up, the launcher, rank slicing, gradient and buffer
averaging and the cross-rank checks are one concern (keeping N ranks equal to one reference).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
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

            if os.environ.get("GANKIT_LAUNCHER") == "1":
                # under `gankit train --nproc` the launcher names the rank that died, in one line
                raise SystemExit(LOST_CONTACT) from None
            raise GankitError(f"rank {self.rank}: lost contact with another rank ({first_line(exc, 120)}); "
                              "the job is stopped") from None

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
        self.average_tensors_([p.grad for p in module.parameters() if p.grad is not None])

    def average_tensors_(self, tensors) -> None:
        """Replace each tensor by its sum over all ranks divided by the number of slices, in one
        all-reduce of their concatenation (gradients after a backward, BatchNorm statistics)."""
        import torch

        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        self.all_reduce_sum_(flat)
        flat.div_(self.total_slices)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n

    def average_floats(self, values: dict[str, float], local_slices: int = 1) -> dict[str, float]:
        """The mean over all slices of logged numbers (``values`` holds this process's sums)."""
        if self.total_slices == 1 and not self.distributed:
            return values
        import torch

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device())  # NCCL: on the GPU
        self.all_reduce_sum_(t)
        t /= self.total_slices
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
        if bad:
            raise GankitError(f"rank {self.rank}: the weights of rank(s) {', '.join(map(str, bad))} differ from "
                              "rank 0's; refusing to write a checkpoint (report this as a bug)")

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


SINGLE = World()


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
            elif not isinstance(exc, GankitError) or "lost contact" not in str(exc):
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
    refuse_mixed_devices(world.gather("cuda" if use_cuda else "cpu"))
    return world


def refuse_mixed_devices(kinds: list[str]) -> None:
    """One kind of device for every rank (gloo on CPU and NCCL on CUDA do not mix in one group)."""
    if len(set(kinds)) > 1:
        ranks = ", ".join(f"rank {r}: {k}" for r, k in enumerate(kinds))
        raise UsageError(f"mixed devices across ranks ({ranks}); every rank must train on the same kind of device")


def close(world: World) -> None:
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
    lost_since = 0.0
    # Ctrl-C in the terminal reaches every rank (one process group): each finishes the same step,
    # rank 0 saves and says how to resume; this process only waits for them
    old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
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
    if code in (2, 130):  # a usage error or Ctrl-C: rank 0's one line already said it
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
