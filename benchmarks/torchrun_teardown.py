"""Does torchrun stop the other ranks when one exits non-zero, and how fast?

    OMP_NUM_THREADS=1 python benchmarks/torchrun_teardown.py [--nproc 2] [--repeat 3]

Each run starts ``--nproc`` gloo ranks under ``torchrun --standalone``: rank 0 exits with code
3 two seconds after joining; every other rank sleeps (in no collective, so gloo cannot notice).
Printed per run: torchrun's exit code and the seconds from rank 0's exit to torchrun's return
(the agent's teardown of the sleeping ranks), as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def worker(stamp: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=600))
    if dist.get_rank() == 0:
        time.sleep(2)
        with open(stamp, "w") as f:
            f.write(repr(time.time()))
        os._exit(3)
    time.sleep(600)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            stamp = os.path.join(d, "exit")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
                   __file__, "--worker", stamp]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            done = time.time()
            with open(stamp) as f:
                died = float(f.read())
            runs.append({"torchrun_exit_code": p.returncode, "teardown_s": round(done - died, 2)})
    print(json.dumps({"nproc": args.nproc, "runs": runs}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
