"""Prometheus metrics of one app, in its own registry (two apps in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gankit_serve_requests", "HTTP requests answered, by route and status.",
                                ["route", "model", "status"], registry=r)
        self.latency = Histogram("gankit_serve_request_seconds", "Time from request start to response start.",
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("gankit_serve_batch_size", "Rows (images or tiles) per runtime call.",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("gankit_serve_batch_requests", "Requests merged into one runtime call.",
                                        ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("gankit_serve_queue_depth", "Requests accepted and not yet answered.",
                                 ["model"], registry=r)
        self.rejected = Counter("gankit_serve_rejected", "Requests refused with 503 because the queue was full.",
                                ["model"], registry=r)
        self.cancelled = Counter("gankit_serve_cancelled", "Requests dropped before inference because the client left.",
                                 ["model"], registry=r)
        self.ready = Gauge("gankit_serve_ready", "1 once every model is loaded and warmed up.", registry=r)
