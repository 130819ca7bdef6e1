"""Where a batch-1 call of an exported generator spends its time (issue 28's batch-1 gap).

    python benchmarks/batch1_profile.py [FAMILY]    # default cgan; fresh-init weights

onnxruntime with 1 and 2 intra-op threads, through ``run()`` and through IO binding with a
pre-allocated output, against PyTorch eager channels-last on the same folded module, timed in
alternating rounds in one process; then onnxruntime's own per-node profile (kernel time per
call, summed over 300 calls) at 1 and 2 threads. Speed depends on the shapes, not the weights.
"""
import sys, time, statistics, tempfile, json
from pathlib import Path
import numpy as np, onnxruntime as ort
from gankit.bench.models import prepare_model, example_inputs
import torch
spec = sys.argv[1] if len(sys.argv) > 1 else "cgan"
tmp = Path(tempfile.mkdtemp())
m = prepare_model(spec, tmp, fresh=True)
import onnx
g = onnx.load(str(m.onnx_path)).graph
print("ops:", [n.op_type for n in g.node])
inp = example_inputs(m, 1)
def sess(threads, spin=True, prof=False):
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin: so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if prof: so.enable_profiling = True
    return ort.InferenceSession(str(m.onnx_path), so, providers=["CPUExecutionProvider"])
variants = {}
for t in (1, 2):
    s = sess(t)
    variants[f"ort t{t} run"] = (lambda s=s: s.run(None, inp))
    b = s.io_binding()
    for k, v in inp.items(): b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))
    out = s.get_outputs()[0].name
    y = s.run(None, inp)[0]
    buf = np.empty_like(y)
    b.bind_ortvalue_output(out, ort.OrtValue.ortvalue_from_numpy(buf))
    variants[f"ort t{t} iobind"] = (lambda s=s, b=b: s.run_with_iobinding(b))
net = m.module.to(memory_format=torch.channels_last)
tin = {k: torch.from_numpy(v) for k, v in inp.items()}
def tr():
    with torch.inference_mode(): return net(**tin).numpy()
variants["torch cl"] = tr
for f in variants.values():
    for _ in range(50): f()
res = {k: [] for k in variants}
for r in range(30):
    for k, f in variants.items():
        t0 = time.perf_counter()
        for _ in range(20): f()
        res[k].append((time.perf_counter() - t0) / 20)
for k, v in res.items(): print(f"{k:20s} {statistics.median(v)*1e3:.3f} ms")
# per-op profile, 1 and 2 threads
for t in (1, 2):
    s = sess(t, prof=True)
    for _ in range(300): s.run(None, inp)
    f = s.end_profiling()
    ev = json.load(open(f))
    agg = {}
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?") + ":" + e["name"].replace("_kernel_time", "")
            agg[op] = agg.get(op, 0) + e["dur"]
    tot = sum(agg.values()) / 300
    print(f"threads {t}: sum of kernels {tot:.1f} us per call")
    for op, d in sorted(agg.items(), key=lambda x: -x[1])[:12]:
        print(f"   {d/300:8.1f} us  {op}")
    Path(f).unlink()
