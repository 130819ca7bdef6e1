"""What the machine is: the CPU's model name and instruction-set flags from ``/proc/cpuinfo``
(empty where there is none, e.g. macOS). Torch-free, so the runtime may use it too."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _cpuinfo_first_cpu() -> dict[str, str]:
    """``key: value`` lines of the first processor in ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block ends at the first blank line
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``avx2``, ``avx512_bf16``, ``amx_bf16`` ...); ARM calls them features."""
    info = _cpuinfo_first_cpu()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """The CPU's marketing name, as ``lscpu`` shows it under ``Model name``."""
    return _cpuinfo_first_cpu().get("model name") or platform.processor()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX or AVX-512 bf16): then bf16 pays."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})
