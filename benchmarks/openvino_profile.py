"""OpenVINO's per-node profile of an exported generator (issue 28's batch-64 and roof-share gaps):

    python benchmarks/openvino_profile.py RUN_DIR_OR_FAMILY [BATCH=64] [PRECISION=bf16]

Compiles the file as `gankit bench` does (LATENCY hint, 2 threads) with PERF_COUNT on, runs 20
warm-up and 30 timed calls, and prints the real time per call of each kind of executed node
(type and kernel), costliest first."""
import sys, tempfile, collections
from pathlib import Path
import numpy as np, openvino as ov
from gankit.bench.models import prepare_model, example_inputs
m = prepare_model(sys.argv[1], Path(tempfile.mkdtemp()))
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
prec = sys.argv[3] if len(sys.argv) > 3 else "bf16"
core = ov.Core()
cm = core.compile_model(str(m.onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": "2"})
req = cm.create_infer_request()
inp = example_inputs(m, batch)
for _ in range(20): req.infer(inp)
tot = collections.Counter(); cnt = collections.Counter()
N = 30
for _ in range(N):
    req.infer(inp)
    for p in req.profiling_info:
        if p.status == p.Status.EXECUTED:
            key = f"{p.node_type}:{p.exec_type}"
            tot[key] += p.real_time.total_seconds() * 1e6
            cnt[key] += 1
s = sum(tot.values()) / N
print(f"sum {s/1000:.2f} ms per call")
for k, v in tot.most_common(15): print(f"{v/N/1000:7.3f} ms  {cnt[k]//N:3d}x  {k}")
