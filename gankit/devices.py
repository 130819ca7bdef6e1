"""The ``--device`` option, one definition for every command that takes it (train, bench), and
the training arithmetic that ``precision = "auto"`` picks on a device."""

from __future__ import annotations

from gankit.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def check_device(name: str) -> str:
    """Validate a ``--device`` value without importing torch (commands check their options first)."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}; use {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    return name


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is bad input."""
    import torch

    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    return name


def resolve_precision(name: str, device_type: str) -> str:
    """The training arithmetic ``precision`` stands for: ``auto`` is bf16 on a CPU that computes
    bf16 natively (AMX or AVX-512 bf16, where it was measured to pay: benchmarks/RESULTS.md) and
    fp32 everywhere else, CUDA included, where gankit has no bf16 measurement yet."""
    if name != "auto":
        return name
    from gankit.sysinfo import cpu_has_bf16

    return "bf16" if device_type == "cpu" and cpu_has_bf16() else "fp32"
