"""The body of ``gankit serve`` (registered in :mod:`gankit.cli`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Sequence

from gankit.errors import UsageError


def serve(models: Sequence[Path], *, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32,
          max_wait_ms: float = 5.0, queue: int = 256, log_level: str = "info", linger: str = "adaptive") -> None:
    """Load the models (bad files fail here, before a port is opened), then run uvicorn until Ctrl-C."""
    import uvicorn

    from gankit.serve.app import create_app

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {port}")
    for name, value in (("--max-batch", max_batch), ("--queue", queue)):
        if value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    from gankit.serve.batcher import MAX_WAIT_MS

    if not 0 <= max_wait_ms <= MAX_WAIT_MS:  # nan fails both comparisons
        raise UsageError(f"--max-wait-ms must be from 0 to {MAX_WAIT_MS:g}, got {max_wait_ms}")
    if linger not in ("adaptive", "fixed"):
        raise UsageError(f"--linger must be adaptive or fixed, got {linger!r}")
    for path in models:
        if Path(path).is_dir():
            raise UsageError(f"{path} is a folder, not a model file (give the .onnx files in it)")
        if not Path(path).exists():
            raise UsageError(f"model file not found: {path}")
    app = create_app(list(models), max_batch=max_batch, max_wait_ms=max_wait_ms, queue=queue, linger=linger)
    # bind ourselves so that a taken port or a bad host is one line, not uvicorn's traceback
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    shown = f"[{addr[0]}]" if family == socket.AF_INET6 else addr[0]
    print(f"gankit serve: {len(models)} model(s) on http://{shown}:{sock.getsockname()[1]}/ "
          f"(page at /, API docs at /docs)", flush=True)
    # no per-request access log: /metrics counts requests, and a log line per request costs
    # about as much CPU as a small model's inference
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
