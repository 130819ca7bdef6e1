"""Timing: medians over many calls after warm-up, and interleaved rounds so that a drifting
machine speed spreads over every backend alike."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable


def sample_times(fn: Callable[[], Any], *, warmup: int = 3, min_runs: int = 10, max_runs: int = 300,
                 budget_s: float = 1.0) -> list[float]:
    """Seconds per call after ``warmup`` calls; runs until ``min_runs`` and ``budget_s``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    end = time.perf_counter() + budget_s
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() < end):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize_times(times: list[float]) -> tuple[float, float, int]:
    """(median ms, p90 ms, runs)."""
    times = sorted(times)
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(math.ceil(0.9 * len(times))) - 1)] * 1e3, len(times)


def time_it(fn: Callable[[], Any], **kw) -> tuple[float, float, int]:
    """(median ms, p90 ms, runs); see :func:`sample_times`."""
    return summarize_times(sample_times(fn, **kw))


def time_interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int = 4, budget_s: float = 1.0,
                     warmup: int = 3, min_runs: int = 3) -> dict[str, tuple[float, float, int]]:
    """Time several functions in ``rounds`` alternating rounds (``budget_s`` per function in
    all; at least ``min_runs`` calls per round, after ``warmup`` calls in the first round and
    one in each later one) and pool each one's samples.

    On a shared VM the machine's speed drifts over tens of seconds; timing backend A fully
    and then backend B puts that drift into the A/B ratio.
    Alternating spreads it over every backend alike."""
    pooled: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            pooled[name] += sample_times(fn, warmup=warmup if r == 0 else min(warmup, 1), min_runs=min_runs,
                                         budget_s=budget_s / rounds)
    return {k: summarize_times(v) for k, v in pooled.items()}


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
