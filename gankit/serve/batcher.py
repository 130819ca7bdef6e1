"""Micro-batching: concurrent requests to one model become one runtime call.

Each model gets one worker thread. Requests are appended to a deque; the worker takes the
oldest and every queued request with the same key, up to ``max_batch`` rows. If the batch is
not full it lingers for more, but never longer than ``max_wait_ms`` and never longer than the
last run took: waiting longer than one run cannot pay, since running now and taking the
newcomers in the next batch finishes them no later (and under closed-loop load, every
millisecond spent waiting is a millisecond the clients are not sending). With a 0.3 ms
model that is a 0.3 ms linger, with a 40 ms one the full ``max_wait_ms``. ``linger="fixed"``
always waits the whole window (a batch then closes exactly when it is full, which the tests
use to make merging deterministic). Calls made inside :meth:`Batcher.warming` (the server's
warm-up, one request per model with no client waiting on it) run at once in either mode. The
event loop never runs inference: handlers await a ``concurrent.futures.Future`` that the
worker resolves. A request is never split (one larger than ``max_batch`` runs alone, the
runner chunks it), and one whose future was cancelled (client gone) is dropped before the
run, so it costs no inference.

Admission is bounded separately (:class:`Admission`): the queue depth counts whole requests
from the moment they are accepted until they are answered, so tiled inpainting requests
that submit several tile batches count once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Hashable

import numpy as np


LINGER = ("adaptive", "fixed")
# the longest batching window taken (ten minutes; the tests hold one open for a minute on a loaded
# machine): inf overflowed the condition variable's timeout and killed the batcher thread
MAX_WAIT_MS = 600_000.0


class QueueFull(Exception):
    """The model's bounded queue is full: answer 503 with Retry-After."""


@dataclass
class Item:
    feed: dict[str, np.ndarray]  # arrays with the rows on axis 0
    rows: int
    key: Hashable = None  # only items with equal keys are merged (e.g. a scalar truncation value)
    future: Future = field(default_factory=Future)
    at_once: bool = False  # submitted inside warming(): run without lingering for company


class Admission:
    """A counter of requests in flight for one model, bounded by ``limit``."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None):
        self.limit = int(limit)
        self.depth = 0
        self._lock = threading.Lock()
        self._on_change = on_change

    def enter(self) -> None:
        with self._lock:
            if self.depth >= self.limit:
                raise QueueFull
            self.depth += 1
            depth = self.depth
        if self._on_change:
            self._on_change(depth)

    def leave(self) -> None:
        with self._lock:
            self.depth -= 1
            depth = self.depth
        if self._on_change:
            self._on_change(depth)


class Batcher:
    """Merge :class:`Item` s into batches and run them on one worker thread.

    ``run(feed) -> array`` gets the concatenated feed and returns an array whose rows match;
    ``on_batch(rows, requests)`` is told the size of every call (for metrics and tests).
    """

    def __init__(self, name: str, run: Callable[[dict[str, np.ndarray]], np.ndarray], *, max_batch: int = 32,
                 max_wait_ms: float = 5.0, linger: str = "adaptive", on_batch: Callable[[int, int], None] | None = None,
                 on_cancel: Callable[[], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if not 0 <= max_wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"max_wait_ms must be from 0 to {MAX_WAIT_MS}")
        if linger not in LINGER:
            raise ValueError(f"linger must be one of {', '.join(LINGER)}")
        self.adaptive = linger == "adaptive"
        self.name = name
        self._run = run
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self._on_batch = on_batch
        self._on_cancel = on_cancel
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._last_run = 0.0  # nothing timed yet: the very first request runs alone
        self._warming_thread: int | None = None  # the thread inside warming(), if any
        self._thread = threading.Thread(target=self._loop, name=f"gankit-batcher-{name}", daemon=True)
        self._thread.start()

    @contextmanager
    def warming(self):
        """Within this block, this thread's submissions run at once, without lingering."""
        self._warming_thread = threading.get_ident()
        try:
            yield
        finally:
            self._warming_thread = None

    def submit(self, feed: dict[str, np.ndarray], key: Hashable = None) -> Future:
        rows = len(next(iter(feed.values())))
        item = Item(feed, rows, key, at_once=threading.get_ident() == self._warming_thread)
        with self._cond:
            if self._stopped:
                raise RuntimeError(f"batcher for {self.name} is stopped")
            self._items.append(item)
            self._cond.notify()
        return item.future

    def run_sync(self, feed: dict[str, np.ndarray], key: Hashable = None) -> np.ndarray:
        """Submit from a worker thread and wait (used by the tiled inpainting path)."""
        return self.submit(feed, key).result()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        for item in list(self._items):  # answer whatever was left rather than hang its caller
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(RuntimeError("server is shutting down"))
        self._items.clear()

    # -- worker ---------------------------------------------------------------------------
    def _take_batch(self) -> list[Item] | None:
        with self._cond:
            while not self._items and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            first = self._items.popleft()
            batch, rows = [first], first.rows
            wait = min(self.max_wait, self._last_run) if self.adaptive else self.max_wait
            deadline = time.monotonic() + (0.0 if first.at_once else wait)
            while rows < self.max_batch:
                if self._items:
                    nxt = self._items[0]
                    if nxt.key != first.key or rows + nxt.rows > self.max_batch:
                        break  # it starts the next batch
                    batch.append(self._items.popleft())
                    rows += nxt.rows
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped:
                    break
                self._cond.wait(timeout=left)
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            # Drop requests whose client went away before their batch ran: they cost nothing.
            live = []
            for item in batch:
                if item.future.set_running_or_notify_cancel():
                    live.append(item)
                elif self._on_cancel:
                    self._on_cancel()
            if not live:
                continue
            try:
                feed = {k: np.concatenate([it.feed[k] for it in live]) for k in live[0].feed}
                t0 = time.monotonic()
                out = self._run(feed)
                self._last_run = time.monotonic() - t0
                rows = sum(it.rows for it in live)
                if self._on_batch:
                    self._on_batch(rows, len(live))
            except BaseException as exc:  # noqa: BLE001 - every waiter must be answered
                for item in live:
                    item.future.set_exception(exc)
                continue
            start = 0
            for item in live:
                item.future.set_result(out[start : start + item.rows])
                start += item.rows


__all__ = ["Admission", "Batcher", "Item", "LINGER", "QueueFull"]
