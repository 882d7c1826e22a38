"""Find the GGUF model to run: environment, settings, local cache, then download.

Order: ``TANDEM_MODEL`` (a path; overrides everything), ``local.modelPath``, the
default model (``local.modelRepo``/``local.modelFile``) in the local Hugging Face
cache, and last a download with huggingface_hub when downloads are allowed and
``offline`` is off.

Nothing here opens a socket unless it downloads. The cache lookup reads the file
system only (``try_to_load_from_cache``), and the server keeps huggingface_hub
itself offline (``HF_HUB_OFFLINE``, telemetry off: ``hub_offline``). A download
runs in a child process (``python -m tandem.models download``), so stopping it
(going offline, a settings change, shutdown) kills it at once: its connection
closes with it and not one more byte is read.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from tandem.config import LocalSettings

logger = logging.getLogger(__name__)

ENV_MODEL = "TANDEM_MODEL"

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, bytes in all or None) while a download runs."""


@attrs.frozen
class Resolution:
    """Where the model is, or why there is none and what the user can do."""

    path: Path | None
    source: str
    """One of env, setting, cache, download, none."""
    message: str = ""
    needs_download: bool = False


def resolve(
    local: LocalSettings, *, offline: bool, env: dict[str, str] | None = None
) -> Resolution:
    """Find the model without any network access.

    When the default model is not cached and may be downloaded, returns
    ``needs_download=True``; call :func:`download` for it.
    """
    env = dict(os.environ) if env is None else env
    if value := env.get(ENV_MODEL, "").strip():
        return Resolution(Path(value).expanduser(), "env")
    if local.model_path:
        return Resolution(Path(local.model_path).expanduser(), "setting")
    cached = _cached(local.model_repo, local.model_file)
    if cached is not None:
        return Resolution(cached, "cache")
    what = f"{local.model_file} from {local.model_repo}"
    if offline or not local.allow_download:
        why = "offline is on" if offline else "local.allowDownload is off"
        return Resolution(
            None,
            "none",
            f"No local model: {what} is not cached and {why}. Set "
            "tandem.local.modelPath (or TANDEM_MODEL) to a .gguf file.",
        )
    return Resolution(None, "download", f"Downloading {what}", needs_download=True)


_USER_HUB_OFFLINE = os.environ.get("HF_HUB_OFFLINE")
"""HF_HUB_OFFLINE as the user set it before tandem touched it."""


def hub_offline() -> None:
    """Keep huggingface_hub off the network in this process, telemetry included.

    The server calls it before any cache lookup: huggingface_hub may otherwise
    make requests of its own (an agent registry, telemetry) even for
    ``local_files_only`` lookups. Downloads run in a child process that is
    started without it.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # read from the environment at import only
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 (a module)
        setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # noqa: B010


def _cached(repo: str, filename: str) -> Path | None:
    """The cached file, found by reading the cache folder only."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo, filename)
    except (ValueError, OSError):
        return None
    if not isinstance(path, str) or not Path(path).is_file():
        return None
    return Path(path)


def download(local: LocalSettings, progress: ProgressCallback | None = None) -> Path:
    """Download the default model into the Hugging Face cache (blocking).

    Raises ``OSError`` (or a huggingface_hub error) when the hub is unreachable.
    """
    from huggingface_hub import hf_hub_download
    from tqdm.auto import tqdm

    class _Progress(tqdm):  # type: ignore[type-arg]
        """Forwards huggingface_hub's byte counts to our callback."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs.setdefault("file", io.StringIO())  # no terminal output
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            result: bool | None = super().update(n)
            if progress is not None:
                progress(int(self.n), int(self.total) if self.total else None)
            return result

    logger.info("downloading %s from %s", local.model_file, local.model_repo)
    path = hf_hub_download(local.model_repo, local.model_file, tqdm_class=_Progress)
    return Path(str(path))


class DownloadFailed(OSError):
    """The download child process failed; the message says why."""


def _child_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    if _USER_HUB_OFFLINE is None:
        env.pop("HF_HUB_OFFLINE", None)
    else:
        env["HF_HUB_OFFLINE"] = _USER_HUB_OFFLINE
    return env


async def download_process(
    local: LocalSettings, progress: ProgressCallback | None = None
) -> Path:
    """Download the default model in a child process; the path in the cache.

    Cancelling the awaiting task kills the child at once, which closes its
    connection (a partial file stays in the cache for the next attempt). Raises
    ``DownloadFailed`` when the child fails (hub unreachable, disk full).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tandem.models",
        "download",
        local.model_repo,
        local.model_file,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    try:
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if "done" in event and progress is not None:
                progress(int(event["done"]), event.get("total"))
            result.update({k: v for k, v in event.items() if k in ("path", "error")})
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
            logger.info("model download stopped")
    if proc.returncode != 0 or "path" not in result:
        raise DownloadFailed(str(result.get("error") or f"exit {proc.returncode}"))
    return Path(str(result["path"]))


def _main(argv: list[str]) -> int:
    """``download REPO FILE``: download with JSON lines of progress on stdout."""
    if len(argv) != 3 or argv[0] != "download":
        print("usage: python -m tandem.models download REPO FILE", file=sys.stderr)
        return 2
    local = LocalSettings(model_repo=argv[1], model_file=argv[2])

    def report(done: int, total: int | None) -> None:
        print(json.dumps({"done": done, "total": total}), flush=True)

    try:
        path = download(local, report)
    except Exception as e:  # network down, hub unreachable, disk full
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps({"path": str(path)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
