"""Find the GGUF model to run: environment, settings, local cache, then download.

Order: ``TANDEM_MODEL`` (a path; overrides everything), ``local.modelPath``, the
default model (``local.modelRepo``/``local.modelFile``) in the local Hugging Face
cache, and last a download with huggingface_hub when downloads are allowed and
``offline`` is off. Nothing here opens a socket unless it downloads.
"""

from __future__ import annotations

import io
import logging
import os
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


def _cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = hf_hub_download(repo, filename, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        return None
    return Path(str(path))


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
