"""Cold start of the torch-free runtime: a fresh interpreter, ``import gankit.runtime``, load,
first batch of 16. Each repeat is a new process, which is what a user or a server pays."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import time, json, sys
t0 = time.perf_counter()
import gankit.runtime as gr
t1 = time.perf_counter()
m = gr.load(sys.argv[1], threads=int(sys.argv[3]) or None)
t2 = time.perf_counter()
if m.task == "generate":
    m.generate(int(sys.argv[2]), seed=0)
elif m.task == "restore":  # the first result: one low-quality image of the file's nominal input size
    import numpy as np
    m.restore(np.zeros((m.height // m.scale, m.width // m.scale, m.channels), np.uint8))
else:
    import numpy as np
    img = np.zeros((m.height, m.width, m.channels), np.uint8); mask = np.zeros((m.height, m.width), bool); mask[:4, :4] = True
    for _ in range(int(sys.argv[2])): m.inpaint(img, mask)
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1-t0)*1e3, "load_ms": (t2-t1)*1e3, "first_batch_ms": (t3-t2)*1e3,
                  "in_process_ms": (t3-t0)*1e3, "torch_imported": "torch" in sys.modules,
                  # onnxruntime's intra-op threads as the session has them (0: its default)
                  "session_threads": m.session.get_session_options().intra_op_num_threads if m.session else None}))
"""


def cold_start(model: str | Path, repeats: int = 5, batch: int = 16, threads: int | None = None) -> dict:
    """Medians over ``repeats`` fresh processes, in milliseconds. ``threads``: the runtime's
    intra-op threads (``gankit bench --threads``); None leaves the runtime's default."""
    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(model), str(batch), str(threads or 0)],
                             capture_output=True, text=True, check=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec["process_ms"] = (time.perf_counter() - t0) * 1e3
        rows.append(rec)
    summary = {k: round(statistics.median(r[k] for r in rows), 1)
               for k in ("import_ms", "load_ms", "first_batch_ms", "in_process_ms", "process_ms")}
    summary.update(torch_imported=any(r["torch_imported"] for r in rows), batch=batch, repeats=repeats,
                   threads=threads or "runtime default", session_threads=rows[0]["session_threads"])
    return summary
