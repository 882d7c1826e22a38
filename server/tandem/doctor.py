"""``tandem-ls doctor``: what this machine and configuration give the server.

Nothing here loads a model's weights: it reads versions, the llama.cpp build's
capabilities, memory and GPU memory, where the model would come from and its FIM
family (from its vocabulary alone, so a model too big for this machine is read
too), asks each configured remote backend whether it answers (never when
offline; no generation, no code sent), and recommends a model size for this
machine.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from tandem import __version__, models, system
from tandem.config import Settings
from tandem.system import GIB, MODEL_RAM_FACTOR

PROBE_TIMEOUT_S = 3.0
"""How long doctor waits for each backend."""


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


def _model(
    settings: Settings, available: int | None, model: Path | None = None
) -> dict[str, Any]:
    found = (
        models.Resolution(model.expanduser(), "argument")
        if model is not None
        else models.resolve(settings.local, offline=settings.offline)
    )
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
        if is_gguf:
            out["fim"] = _fim(found.path)
    elif found.path is not None:
        out["message"] = f"{found.path} does not exist"
    elif found.needs_download:
        out["message"] = (
            f"{settings.local.model_file} from {settings.local.model_repo} is not "
            "downloaded yet; the server downloads it when it starts"
        )
    return out


def _fim(path: Path) -> dict[str, Any]:
    """The model's FIM family, from a vocabulary-only load (no weights read)."""
    try:
        from tandem.backends import llama_vocab

        return llama_vocab.describe(path)
    except ImportError as e:
        return {"error": f"llama-cpp-python is not installed ({e})"}
    except (ValueError, RuntimeError, OSError) as e:
        return {"error": f"llama.cpp cannot read its vocabulary: {e}"}


def _vram() -> dict[str, int] | None:
    """Total and free memory of the first NVIDIA GPU in bytes, if there is one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [
                smi,
                "--query-gpu=memory.total,memory.free",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.splitlines()[0]
        total, free = (int(v) * 1024**2 for v in out.split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return {"total": total, "free": free}


@attrs.frozen
class Tier:
    """A model size, what its Q4_K_M GGUF needs, and the CPUs it is quick on."""

    size: str
    need_gb: float
    """Memory for weights, KV cache and buffers (Q4_K_M, 4k context)."""
    min_cpus: int
    """CPU cores for ~15 tokens/s without a GPU (what completions need)."""


TIERS = (
    Tier("32B", 26.0, 64),
    Tier("14B", 12.0, 32),
    Tier("7B", 8.0, 16),
    Tier("3B", 4.0, 8),
    Tier("1.5B", 2.5, 2),
    Tier("0.5B", 1.2, 1),
)
"""Qwen2.5-Coder sizes (FIM-trained). The rule of thumb: 7B needs about 8 GB,
13-14B about 16 GB, 70B 64 GB or more, or a GPU."""


def recommend(
    cpus: int, ram_free: int | None, gpu_offload: bool, vram: dict[str, int] | None
) -> dict[str, Any]:
    """The largest model that fits this machine's memory and is quick enough."""
    on_gpu = gpu_offload and vram is not None
    budget = (vram["free"] if on_gpu and vram else ram_free) or 0
    fits = [t for t in TIERS if t.need_gb * GIB <= budget]
    quick = fits if on_gpu else [t for t in fits if t.min_cpus <= cpus]
    tier = (quick or fits or [TIERS[-1]])[0]
    where = (
        f"{budget / GIB:.1f} GiB free GPU memory"
        if on_gpu
        else f"{budget / GIB:.1f} GiB free RAM and {cpus} CPU cores, no GPU offload"
    )
    why = f"{where}: {tier.size} needs about {tier.need_gb:g} GB"
    if not on_gpu and fits and tier is not fits[0]:
        why += (
            f"; {fits[0].size} would fit but generate too slowly on {cpus} cores"
            " for completions"
        )
    quant = (
        "Q8_0"
        if on_gpu and tier is TIERS[0] and budget > 2 * tier.need_gb * GIB
        else "Q4_K_M"
    )
    name = f"qwen2.5-coder-{tier.size.lower()}-instruct-{quant.lower()}.gguf"
    return {
        "size": tier.size,
        "quantization": quant,
        "repo": f"Qwen/Qwen2.5-Coder-{tier.size}-Instruct-GGUF",
        "file": name,
        "why": why,
    }


async def _probe(settings: Settings) -> dict[str, str]:
    from tandem.backends import BackendError, backend_class

    names = [
        *settings.routing.completion,
        *settings.routing.explain,
        *settings.routing.refactor,
        settings.routing.escalate_to,
    ]
    from tandem.keys import unconfirmed_host

    found: dict[str, str] = {}
    for name in dict.fromkeys(n for n in names if n and n != "local"):
        backend: Any = None
        if (why := unconfirmed_host(settings, name)) is not None:
            found[name] = f"not probed: {why}"  # the probe would send the key
            continue
        try:
            cls: Any = backend_class(name)
            backend = cls(getattr(settings, name))
            found[name] = await asyncio.wait_for(backend.probe(), PROBE_TIMEOUT_S)
        except TimeoutError:
            found[name] = f"no answer in {PROBE_TIMEOUT_S:g} s"
        except BackendError as e:
            found[name] = f"FAILED: {e}"
        finally:
            if backend is not None:
                await backend.aclose()
    return found


def probe_backends(settings: Settings) -> dict[str, str] | str:
    """Each configured remote backend: whether it answers (nothing when offline)."""
    if settings.offline:
        return "not checked: offline"
    return asyncio.run(_probe(settings))


def report(
    settings: Settings, probe: bool = True, model: Path | None = None
) -> dict[str, Any]:
    """The doctor's findings as plain data; ``model``: this GGUF, not the setting's."""
    memory = system.memory()
    llama = _llama()
    vram = _vram()
    cpus = os.cpu_count() or 1
    return {
        "tandem": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": cpus,
        "memory": memory,
        "vram": vram,
        "llama_cpp": llama,
        "offline": settings.offline,
        "model": _model(settings, memory["available"], model),
        "backends": probe_backends(settings) if probe else "not checked",
        "recommended": recommend(
            cpus, memory["available"], bool(llama.get("gpu_offload")), vram
        ),
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
        fim = model.get("fim") or {}
        if "error" in fim:
            lines.append(f"FIM: unknown ({fim['error']})")
        elif fim:
            family = fim["fim_family"]
            tokens = " ".join(fim["fim_tokens"])
            lines.append(
                f"FIM: {family} ({tokens}; {fim['architecture']}, {fim['name']})"
                if family
                else "FIM: none, completes from the text before the cursor "
                f"({fim['architecture']}, {fim['name']})"
            )
    else:
        lines.append(f"model: not found ({model['message'] or 'no model'})")
    if found.get("vram"):
        vram = found["vram"]
        lines.append(
            f"GPU memory: {vram['total'] / GIB:.1f} GiB, "
            f"{vram['free'] / GIB:.1f} GiB free"
        )
    lines.append(f"offline: {'on' if found['offline'] else 'off'}")
    backends = found.get("backends")
    if backends == {}:
        lines.append("remote backends: none configured (routing uses local only)")
    elif isinstance(backends, dict):
        for name, state in backends.items():
            lines.append(f"backend {name}: {state}")
    elif backends:
        lines.append(f"backends: {backends}")
    rec = found.get("recommended")
    if rec:
        lines.append(
            f"recommended model: Qwen2.5-Coder-{rec['size']} {rec['quantization']} "
            f"({rec['repo']}, {rec['file']}): {rec['why']}"
        )
    return "\n".join(lines)
