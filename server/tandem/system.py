"""What this machine has: memory. No I/O beyond reading /proc."""

from __future__ import annotations

import contextlib
import os

GIB = 1024**3
MODEL_RAM_FACTOR = 1.2
"""A GGUF needs about its file size in RAM, plus context and compute buffers."""


def memory() -> dict[str, int | None]:
    """Total and available RAM in bytes (Linux /proc/meminfo, else sysconf)."""
    total = available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {
                k: int(v.split()[0]) * 1024
                for k, v in (line.split(":", 1) for line in f)
            }
        total, available = info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError):
        with contextlib.suppress(ValueError, OSError, AttributeError):
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"total": total, "available": available}


def memory_available() -> int | None:
    """Free RAM in bytes (None where the platform does not say)."""
    return memory()["available"]
