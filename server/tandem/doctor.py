"""``tandem-ls doctor``: what this machine and configuration give the server.

Nothing here loads a model or opens a socket: it reads versions, the llama.cpp
build's capabilities, memory, and where the model would come from.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

from tandem import __version__, models
from tandem.config import Settings

GIB = 1024**3
MODEL_RAM_FACTOR = 1.2
"""A GGUF needs about its file size in RAM, plus context and compute buffers."""


def _memory() -> dict[str, int | None]:
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


def _llama() -> dict[str, Any]:
    try:
        import llama_cpp
    except ImportError as e:
        return {"installed": False, "error": str(e)}
    system_info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {
        "installed": True,
        "version": metadata.version("llama-cpp-python"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": system_info.strip(),
    }


def _model(settings: Settings, available: int | None) -> dict[str, Any]:
    found = models.resolve(settings.local, offline=settings.offline)
    out: dict[str, Any] = {
        "source": found.source,
        "path": str(found.path) if found.path else None,
        "message": found.message,
        "found": False,
    }
    if found.path is not None and found.path.is_file():
        size = found.path.stat().st_size
        with found.path.open("rb") as f:
            is_gguf = f.read(4) == b"GGUF"
        out.update(found=is_gguf, gguf=is_gguf, size=size)
        if available is not None:
            out["fits_in_ram"] = size * MODEL_RAM_FACTOR < available
    elif found.path is not None:
        out["message"] = f"{found.path} does not exist"
    elif found.needs_download:
        out["message"] = (
            f"{settings.local.model_file} from {settings.local.model_repo} is not "
            "downloaded yet; the server downloads it when it starts"
        )
    return out


def report(settings: Settings) -> dict[str, Any]:
    """The doctor's findings as plain data."""
    memory = _memory()
    return {
        "tandem": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory": memory,
        "llama_cpp": _llama(),
        "offline": settings.offline,
        "model": _model(settings, memory["available"]),
    }


def text(found: dict[str, Any]) -> str:
    """The report as lines for people."""
    llama = found["llama_cpp"]
    model = found["model"]
    mem = found["memory"]
    lines = [
        f"tandem-ls {found['tandem']} on Python {found['python']} "
        f"({found['platform']}, {found['cpus']} CPUs)",
    ]
    if mem["total"]:
        avail = f", {mem['available'] / GIB:.1f} GiB free" if mem["available"] else ""
        lines.append(f"memory: {mem['total'] / GIB:.1f} GiB{avail}")
    if llama["installed"]:
        gpu = "available" if llama["gpu_offload"] else "not in this build (CPU only)"
        lines.append(f"llama-cpp-python {llama['version']}: GPU offload {gpu}")
    else:
        lines.append(f"llama-cpp-python: NOT INSTALLED ({llama['error']})")
    if model["found"]:
        fits = model.get("fits_in_ram")
        fit = "" if fits is None else (", fits in RAM" if fits else ", TOO BIG FOR RAM")
        lines.append(
            f"model: {model['path']} ({model['size'] / 1e6:.0f} MB, "
            f"from {model['source']}{fit})"
        )
    else:
        lines.append(f"model: not found ({model['message'] or 'no model'})")
    lines.append(f"offline: {'on' if found['offline'] else 'off'}")
    return "\n".join(lines)
