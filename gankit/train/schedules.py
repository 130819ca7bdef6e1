"""Schedules in absolute steps (so a resumed run repeats the uninterrupted run exactly)."""

from __future__ import annotations

import math


def linear_fall(step: int, start: int, end: int) -> float:
    """1 until ``start``, falling linearly to 0 at ``end``, 0 after (the trainer's schedules)."""
    return min(1.0, max(0.0, (end - step) / (end - start)))


def non_negative(value, key: str) -> float:
    """A finite weight >= 0 from the config (None/False = 0), or a one-line UsageError."""
    try:
        w = float(value or 0.0)
    except (TypeError, ValueError):
        w = math.nan
    if not (math.isfinite(w) and w >= 0):
        from gankit.errors import UsageError

        raise UsageError(f"{key} must be a number >= 0, got {value!r}")
    return w


def step_range(value, key: str) -> tuple[int, int] | None:
    """``[start, end]`` absolute steps with 0 <= start < end, or None when unset."""
    if value in (None, 0, False, [], "") or (isinstance(value, str) and value.lower() in ("none", "off")):
        return None
    from gankit.errors import UsageError

    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        start = end = math.nan
    if not all(math.isfinite(v) and v.is_integer() for v in (start, end)):  # also refuses 2.5
        raise UsageError(f"{key} must be two step counts [start, end], got {value!r}")
    start, end = int(start), int(end)
    if not 0 <= start < end:
        raise UsageError(f"{key} must satisfy 0 <= start < end, got [{start}, {end}]")
    return start, end
