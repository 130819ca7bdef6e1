"""Start a real uvicorn server on 127.0.0.1 (a free port) in a thread, for the serve tests."""

from __future__ import annotations

import socket
import threading
import time

import httpx


class LiveServer:
    def __init__(self, app, ready: bool = True, lifespan: str = "on"):
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, "uvicorn start")
        if ready:
            wait_for(lambda: httpx.get(self.url + "/readyz").status_code == 200, "readiness")

    @property
    def state(self):
        return self.app.state.gankit

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def wait_for(cond, what: str, limit_s: float = 60.0):
    """Poll until cond() is true; a generous bound so a loaded machine does not fail the test."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text (0 when absent), parsed with prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
