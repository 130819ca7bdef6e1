"""Kill a training run with SIGKILL at random moments, resume it each time, and check that the
final weights are bit-identical to an uninterrupted run with the same seed.

Usage: python benchmarks/kill_resume.py [--kills 3] [--steps 200] [--seed 0] [--workdir DIR]

Exit code 0 when identical. The test suite runs the same function with small numbers.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _args(out: Path, steps: int, resume: bool) -> list[str]:
    a = [sys.executable, "-m", "gankit.cli", "train", "--plugin", "gan", "--steps", str(steps), "--batch-size", "4",
         "--save-every", "3", "--sample-every", str(10**6), "--keep", "2", "--out", str(out), "--no-export",
         "--no-evaluate"]
    return a + (["--resume"] if resume else [])


def final_tensors(run: Path) -> dict:
    from safetensors.numpy import load_file

    last = sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]
    return {k: v for k, v in load_file(str(last)).items() if not k.startswith("rng/")}


def kill_and_resume(workdir: Path, kills: int = 3, steps: int = 200, seed: int = 0) -> dict:
    """Returns a report; ``identical`` says whether the killed-and-resumed run matches."""
    rng = random.Random(seed)
    ref, victim = workdir / "uninterrupted", workdir / "killed"
    subprocess.run(_args(ref, steps, False), check=True, capture_output=True, cwd=workdir)
    kill_steps, killed = [], []
    for i in range(kills):
        proc = subprocess.Popen(_args(victim, steps, resume=i > 0), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=workdir)
        # wait until this attempt has made progress (a new checkpoint), then kill at a random moment
        before = len(list((victim / "checkpoints").glob("step-*"))) if (victim / "checkpoints").exists() else 0
        newest = lambda: max([int(p.stem.split("-")[1]) for p in (victim / "checkpoints").glob("step-*.safetensors")] or [0])  # noqa: E731
        start = newest() if before else 0
        deadline = time.monotonic() + 300
        while proc.poll() is None and newest() <= start and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        killed.append(proc.wait() == -signal.SIGKILL)
        kill_steps.append(newest())
    done = subprocess.run(_args(victim, steps, True), capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"final resume failed: {done.stderr.strip()}")
    import numpy as np

    a, b = final_tensors(ref), final_tensors(victim)
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return {"identical": bool(same), "killed": killed, "newest_checkpoint_at_kill": kill_steps, "steps": steps, "tensors": len(a)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gankit-kill-"))
    report = kill_and_resume(workdir, args.kills, args.steps, args.seed)
    print(report)
    sys.exit(0 if report["identical"] else 1)


if __name__ == "__main__":
    main()
