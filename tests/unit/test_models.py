"""Model resolution order, without any network access."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem import models
from tandem.config import LocalSettings


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any network attempt would fail


def test_env_wins_over_setting() -> None:
    local = LocalSettings(model_path="/models/a.gguf")
    found = models.resolve(local, offline=False, env={"TANDEM_MODEL": "~/b.gguf"})
    assert found.source == "env"
    assert found.path == Path("~/b.gguf").expanduser()


def test_setting() -> None:
    found = models.resolve(LocalSettings(model_path="/m/a.gguf"), offline=True, env={})
    assert (found.source, found.path) == ("setting", Path("/m/a.gguf"))


def test_default_model_not_cached_is_downloaded_when_allowed() -> None:
    found = models.resolve(LocalSettings(), offline=False, env={})
    assert found.needs_download and found.path is None
    assert "codellama-7b.Q4_K_M.gguf" in found.message


@pytest.mark.parametrize(
    ("offline", "allow", "why"),
    [(True, True, "offline is on"), (False, False, "allowDownload is off")],
)
def test_no_download_says_what_to_do(offline: bool, allow: bool, why: str) -> None:
    found = models.resolve(LocalSettings(allow_download=allow), offline=offline, env={})
    assert found.path is None and not found.needs_download
    assert why in found.message
    assert "modelPath" in found.message and "TANDEM_MODEL" in found.message
