"""Worker for tests/test_distributed.py: run under torchrun, train each case a few steps, save weights.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_cases.py OUT_DIR
    python -m torch.distributed.run --standalone --nproc-per-node 3 tests/distributed_cases.py OUT_DIR

(2 ranks: ``CASES`` with batch 8; 3 ranks: ``CASES_3`` with batch 6.)

Every rank trains (``Trainer.train_step``) with its slice of the global batch; rank 0 writes
``OUT_DIR/<i>.safetensors`` with G's, D's (and the EMA generator's) parameters and buffers.
The test trains the same cases in one process that accumulates both slices
(``World(virtual=2)``) and compares the files bit for bit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

STEPS = 3
BATCH = 8
CASES = [
    ("gan", {}),
    ("cgan", {"ema": 0.9}),
    ("inpaint", {}),
    ("cgan", {"loss": "wgan-gp", "diffaug": "all"}),
    ("cgan", {"r1": 10.0, "diffaug": "all"}),
    ("gan", {"r1": 1.0, "loss": "hinge"}),
    # lazy R1 and path length (a G-phase regulariser with its own buffer) every step
    ("stylegan", {"pl_weight": 2.0, "pl_every": 1, "r1_every": 1}),
    # degradations drawn for the global batch; the GAN model, and the supervised one that skips D
    ("restore", {}),
    ("restore", {"gan_weight": 0.0, "degradation": "noise"}),
]
# 3 ranks (an all-reduce would add in its own order; BatchNorm; constant buffers; style mixing)
BATCH_3 = 6
CASES_3 = [
    ("gan", {}),
    ("stylegan", {"pl_weight": 2.0, "pl_every": 1, "r1_every": 1}),
]


def cases_for(size: int) -> tuple[list, int]:
    return (CASES, BATCH) if size == 2 else (CASES_3, BATCH_3)


def available(plugin: str) -> bool:
    from gankit.errors import GankitError
    from gankit.plugins import get_family

    try:
        get_family(plugin)
    except GankitError:  # e.g. stylegan not installed in this environment
        return False
    return True


def build(plugin, over, world, run_root, batch=BATCH):
    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config
    from gankit.train.run import RunDir
    from gankit.train.trainer import Trainer

    fam = get_family(plugin)
    ds = load_dataset("mnist5k")
    cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu",
                       overrides={"steps": STEPS, "batch_size": batch, **over})
    return Trainer(fam, ds, cfg, RunDir(Path(run_root) / "run"), world=world)


def state(trainer) -> dict:
    out = {}
    mods = {"G": trainer.G, "D": trainer.D, **({"G_ema": trainer.G_ema} if trainer.G_ema is not None else {})}
    for name, m in mods.items():
        for k, v in m.state_dict().items():
            out[f"{name}/{k}"] = v.detach().clone().contiguous()
    return out


def train(trainer, steps: int = STEPS) -> dict:
    losses = {}
    for _ in range(steps):
        losses = trainer.train_step()
    return losses


def main(out: str) -> None:
    from safetensors.torch import save_file

    from gankit.train import distributed

    world = distributed.from_env("cpu")
    cases, batch = cases_for(world.size)
    for i, (plugin, over) in enumerate(cases):
        if not available(plugin):
            continue
        with tempfile.TemporaryDirectory() as d:
            t = build(plugin, over, world, d, batch)
            losses = train(t)
            modules = {"G": t.G, "D": t.D}
            world.check_consistent(modules)  # every rank holds the same weights
            if world.is_main:
                save_file(state(t), str(Path(out) / f"{i}.safetensors"),
                          metadata={k: repr(v) for k, v in losses.items()})
    distributed.close(world)


def fail_and_hold() -> None:
    """Rank 1 reports a failure, then stays alive with its connections open (as a rank on another
    machine, or one stuck in NCCL, would); rank 0 waits in a barrier. The watchdog must end rank 0."""
    import time

    from gankit.train import distributed

    world = distributed.from_env("cpu")
    if world.rank == 1:
        try:
            distributed.report_failure(world, RuntimeError("injected failure, rank still alive"))
        except SystemExit:
            time.sleep(900)
    world.barrier()


if __name__ == "__main__":
    if sys.argv[1] == "--fail-and-hold":
        fail_and_hold()
    else:
        main(sys.argv[1])
