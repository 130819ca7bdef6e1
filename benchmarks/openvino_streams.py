"""Batch 64 through OpenVINO: one request on 2 threads vs the batch split over 2 streams.

Usage: python benchmarks/openvino_streams.py MODEL.onnx   (a generate file with inputs z, label)
Numbers: benchmarks/RESULTS.md, "cgan at batch 64 over two OpenVINO streams".
"""
import sys, time, statistics
import numpy as np
import openvino as ov
path = sys.argv[1]
core = ov.Core()
model = core.read_model(path)
inputs = {p.get_any_name(): p for p in model.inputs}
print(list(inputs))
rng = np.random.default_rng(0)
def feed(n):
    d = {}
    for name, p in inputs.items():
        if name == "z":
            d[name] = rng.standard_normal((n, p.get_partial_shape()[1].get_length())).astype(np.float32)
        else:
            d[name] = rng.integers(0, 10, (n,)).astype(np.int64)
    return d
def bench(fn, reps=60):
    for _ in range(5): fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3
res = {}
for prec in ("bf16", "f32"):
    lat = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2})
    req = lat.create_infer_request()
    x64 = feed(64)
    res[(prec, "latency 1x64")] = bench(lambda: req.infer(x64))
    for streams in (2,):
        thr = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": prec, "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": 2})
        q = ov.AsyncInferQueue(thr, streams)
        halves = [feed(64 // streams) for _ in range(streams)]
        def split():
            for h in halves: q.start_async(h)
            q.wait_all()
        res[(prec, f"{streams} streams x{64//streams}")] = bench(split)
for k, v in res.items(): print(k, round(v, 3), "ms")
