"""Load test of ``gankit serve`` on loopback: micro-batching vs batching off vs a PyTorch-eager server.

Usage:
    python benchmarks/serve_load.py [--models cgan,auto] [--clients 32] [--seconds 20] [--soak 60] [--queue 256]
    python benchmarks/serve_load.py --short          # a quick check that everything runs (numbers meaningless)

For each model (``auto`` = the built-in generate family with the most parameters), in one run:
1. 32 concurrent clients, each sending single-image generate requests back to back for
   ``--seconds`` (bounded by ``--max-requests`` too), against (a) gankit serve with
   micro-batching, (b) the same with ``--max-batch 1``, (c) ``serve_torch_baseline.py``
   (FastAPI + PyTorch eager, one forward per request): throughput, p50, p99, errors; plus
   the runtime's own batched images/s (``run_raw`` at batch 32) as the ceiling.
2. Soak (first model only): ``--soak`` seconds at 80% of the best measured throughput,
   open loop: errors and the server's resident-memory growth.
3. Burst: 2x ``--queue`` simultaneous requests: how many got 503, whether /readyz stayed 200,
   and whether every accepted request completed.

Every server is a subprocess on 127.0.0.1 with a free port and is stopped at the end. The
clients share the machine with the servers, which matters on 2 cores: compare ratios only.
Models come from ``gankit.bench.core.prepare_model`` (newest trained run under runs/, else a
fresh init), so the ONNX and the PyTorch baseline run the same weights.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, args: list[str], port: int, env: dict | None = None):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        # stderr to a file, not a pipe: an unread pipe that fills up would stall the server
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log, text=True,
                                     env={**os.environ, **(env or {})})

    def wait_ready(self, limit_s: float = 300) -> None:
        import httpx

        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


class Conn:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams.

    The load generator shares the 2 cores with the server it measures, so it must be cheap:
    httpx's AsyncClient spends about as much CPU per request as the server under test, which
    squeezes every ratio toward 1. This client sends pre-built bytes and reads the answer by
    Content-Length (every server here sends one), a few tens of microseconds per request.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"", ctype: str = "application/json",
                      accept: str = "image/png") -> tuple[int, dict[str, str], bytes]:
        if self.writer is None or self.reader.at_eof():
            # a pooled connection the server has closed meanwhile (uvicorn drops keep-alive
            # connections idle for 5 s): reconnect, as every HTTP client library does
            self.close()
            await self.open()
        head = (f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\naccept: {accept}\r\n"
                f"content-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise ConnectionError("connection closed") from None
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        data = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _arun(coro):
    """Run the client on uvloop when it is installed (uvicorn uses it too): less client CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _split(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


def _body(obj) -> bytes:
    return json.dumps(obj).encode()


async def closed_loop(url: str, body_fn, clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` workers, each sending its next request when the previous one is answered."""
    host, port, path = _split(url)
    lat, errors, sent = [], 0, 0
    end = time.perf_counter() + seconds

    async def worker(k: int):
        nonlocal errors, sent
        conn = Conn(host, port)
        while time.perf_counter() < end and sent < max_requests:
            sent += 1
            t0 = time.perf_counter()
            try:
                status, _, _ = await conn.request("POST", path, _body(body_fn(sent)))
                ok = status == 200
            except (OSError, ValueError, asyncio.IncompleteReadError):
                conn.close()
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    return {"requests": len(lat) + errors, "ok": len(lat), "errors": errors, "seconds": round(elapsed, 2),
            "throughput": round(len(lat) / elapsed, 1), "p50_ms": round(percentile(lat, 50) * 1e3, 1),
            "p99_ms": round(percentile(lat, 99) * 1e3, 1)}


async def open_loop(url: str, body_fn, rate: float, seconds: float, concurrency: int = 64) -> dict:
    """Requests started at a fixed rate (not waiting for answers), at most ``concurrency`` in flight."""
    host, port, path = _split(url)
    lat, errors, statuses = [], 0, {}
    # a FIFO pool, one connection per request in flight: each is reused about equally often
    idle = collections.deque(Conn(host, port) for _ in range(concurrency))
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int):
        nonlocal errors
        async with sem:
            conn = idle.popleft()
            t0 = time.perf_counter()
            try:
                status, _, _ = await conn.request("POST", path, _body(body_fn(i)))
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    lat.append(time.perf_counter() - t0)
                    return
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                conn.close()
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            finally:
                idle.append(conn)
            errors += 1

    tasks, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return {"sent": i, "ok": len(lat), "errors": errors, "statuses": statuses, "p50_ms": round(percentile(lat, 50) * 1e3, 1),
            "p99_ms": round(percentile(lat, 99) * 1e3, 1)}


async def burst(base: str, url: str, body_fn, n: int) -> dict:
    """``n`` requests at once, each on its own connection; /readyz polled while they are in flight."""
    host, port, path = _split(url)

    async def one(i):
        conn = Conn(host, port)
        try:
            status, headers, _ = await asyncio.wait_for(conn.request("POST", path, _body(body_fn(i))), 120)
            return status, headers.get("retry-after")
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            return type(exc).__name__, None
        finally:
            conn.close()

    async def ready() -> int | str:
        conn = Conn(host, port)
        try:
            return (await asyncio.wait_for(conn.request("GET", "/readyz", accept="application/json"), 5))[0]
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            return type(exc).__name__
        finally:
            conn.close()

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    probes = []
    while not all(t.done() for t in tasks):
        probes.append(await ready())
        await asyncio.sleep(0.05)
    results = [t.result() for t in tasks]
    after = await ready()
    codes = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    return {"sent": n, "statuses": codes, "rejected_with_retry_after": sum(1 for c, ra in results if c == 503 and ra),
            "accepted_completed": codes.get(200, 0), "other": n - codes.get(200, 0) - codes.get(503, 0),
            "readyz_during": sorted(set(map(str, probes))), "readyz_probes": len(probes), "readyz_after": after}


def runtime_batched(onnx: Path, batch: int, seconds: float) -> float:
    import numpy as np

    import gankit.runtime as gr

    m = gr.load(onnx)
    z = np.random.default_rng(0).standard_normal((batch, m.latent_dim)).astype(np.float32)
    lab = (np.arange(batch) % m.num_classes).astype(np.int64) if m.num_classes else None
    m.run_raw(z, lab)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        m.run_raw(z, lab)
        n += batch
    return n / (time.perf_counter() - t0)


def pick_models(spec: str, workdir: Path, fresh: bool):
    from gankit.bench.core import prepare_model
    from gankit.plugins import get_manager

    names = [s.strip() for s in spec.split(",") if s.strip()]
    out = {}
    if "auto" in names:
        sizes = {}
        for name, (fam, _) in get_manager().families.items():
            if fam.task == "generate":
                bm = prepare_model(name, workdir, fresh=fresh)
                sizes[name] = (sum(p.numel() for p in bm.module.parameters()), bm)
        largest = max(sizes, key=lambda k: sizes[k][0])
        print(f"largest generate family: {largest} ({sizes[largest][0]:,} parameters; "
              + ", ".join(f"{k} {v[0]:,}" for k, v in sizes.items()) + ")", flush=True)
        out.update({k: v[1] for k, v in sizes.items() if k in names or k == largest})
    for name in names:
        if name != "auto" and name not in out:
            out[name] = prepare_model(name, workdir, fresh=fresh)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cgan,auto")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--soak", type=float, default=60.0)
    ap.add_argument("--queue", type=int, default=256)
    ap.add_argument("--fresh", action="store_true", help="fresh-init weights even when a trained run exists")
    ap.add_argument("--short", action="store_true", help="seconds=3, soak=5, queue=32, models=cgan: checks the script runs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--soak-rate", type=float, default=None,
                    help="soak and burst only, at this many requests/s (skips the server comparison)")
    args = ap.parse_args()
    if args.short:
        args.seconds, args.soak, args.queue, args.models = 3.0, 5.0, 32, "cgan"
    for v, name in ((args.clients, "--clients"), (args.queue, "--queue"), (args.max_requests, "--max-requests")):
        if v < 1:
            sys.exit(f"error: {name} must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="serve-load-"))
    models = pick_models(args.models, workdir, args.fresh)
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    report = {"machine": _machine(), "args": vars(args) | {"json": str(args.json)}, "models": {}}
    for name, bm in (models.items() if args.soak_rate is None else ()):
        onnx = bm.onnx_path
        classes = int(bm.config.get("num_classes", 0) or 0) if bm.family.condition == "label" else 0
        body_fn = (lambda i, c=classes: {"seed": i, "labels": i % c}) if classes else (lambda i: {"seed": i})
        rec = {"weights": bm.weights, "runtime_batch32_img_s": round(runtime_batched(onnx, 32, min(5.0, args.seconds)), 1)}
        configs = {
            "gankit serve (micro-batching)": [sys.executable, "-m", "gankit.cli", "serve", str(onnx), "--max-batch", "32",
                                              "--max-wait-ms", "5", "--queue", str(args.queue)],
            "gankit serve --max-batch 1": [sys.executable, "-m", "gankit.cli", "serve", str(onnx), "--max-batch", "1",
                                           "--queue", str(args.queue)],
            "FastAPI + PyTorch eager": [sys.executable, str(HERE / "serve_torch_baseline.py"), bm.family.name if not
                                        bm.weights.startswith("trained") else bm.weights.split()[1],
                                        "--workdir", str(workdir / "baseline")] + (["--fresh"] if "fresh" in bm.weights else []),
        }
        for label, cmd in configs.items():
            port = free_port()
            srv = Server(cmd + ["--port", str(port)], port, env)
            try:
                srv.wait_ready()
                url = f"{srv.url}/v1/models/{onnx.stem}/generate"
                _arun(closed_loop(url, body_fn, args.clients, min(1.0, args.seconds), 2_000))  # warm connections
                rec[label] = _arun(closed_loop(url, body_fn, args.clients, args.seconds, args.max_requests))
                print(f"{name:8s} {label:32s} {json.dumps(rec[label])}", flush=True)
            finally:
                srv.stop()
        best = rec["gankit serve (micro-batching)"]["throughput"]
        rec["ratios"] = {
            "micro_batching_vs_pytorch": round(best / max(rec["FastAPI + PyTorch eager"]["throughput"], 1e-9), 2),
            "micro_batching_vs_batch1": round(best / max(rec["gankit serve --max-batch 1"]["throughput"], 1e-9), 2),
            "served_vs_runtime_batched": round(best / max(rec["runtime_batch32_img_s"], 1e-9), 2),
        }
        print(f"{name:8s} ratios {json.dumps(rec['ratios'])}", flush=True)
        report["models"][name] = rec

    # soak and burst on the first model
    name, bm = next(iter(models.items()))
    onnx = bm.onnx_path
    classes = int(bm.config.get("num_classes", 0) or 0) if bm.family.condition == "label" else 0
    body_fn = (lambda i, c=classes: {"seed": i, "labels": i % c}) if classes else (lambda i: {"seed": i})
    port = free_port()
    srv = Server([sys.executable, "-m", "gankit.cli", "serve", str(onnx), "--queue", str(args.queue), "--port", str(port)], port, env)
    try:
        srv.wait_ready()
        url = f"{srv.url}/v1/models/{onnx.stem}/generate"
        rate = args.soak_rate or 0.8 * report["models"][name]["gankit serve (micro-batching)"]["throughput"]
        _arun(closed_loop(url, body_fn, args.clients, min(2.0, args.soak), 5_000))  # reach steady state first
        rss0 = rss_mb(srv.proc.pid)
        soak = _arun(open_loop(url, body_fn, max(rate, 1.0), args.soak))
        rss1 = rss_mb(srv.proc.pid)
        soak |= {"rate_per_s": round(rate, 1), "seconds": args.soak, "rss_start_mb": round(rss0, 1), "rss_end_mb": round(rss1, 1),
                 "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2)}
        print(f"soak  {json.dumps(soak)}", flush=True)
        b = _arun(burst(srv.url, url, body_fn, 2 * args.queue))
        b["queue"] = args.queue
        print(f"burst {json.dumps(b)}", flush=True)
        report["soak"], report["burst"] = soak, b
    finally:
        srv.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _machine() -> dict:
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


if __name__ == "__main__":
    main()
