"""The server loads one model at a time: a settings change mid-load closes the
loading backend before the next load starts (no subprocess: fake backends)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tandem import models, server
from tandem.config import LocalSettings, Settings


class FakeLoad:
    """A backend whose load waits until the test lets it finish."""

    events: ClassVar[list[str]] = []
    gate: ClassVar[asyncio.Event]
    started: ClassVar[asyncio.Event]

    def __init__(self, options: Any) -> None:
        self.name = Path(options.model_path).name
        self.loaded = False

    async def load(self) -> None:
        FakeLoad.events.append(f"load {self.name}")
        FakeLoad.started.set()
        try:
            await FakeLoad.gate.wait()
        except asyncio.CancelledError:
            FakeLoad.events.append(f"load cancelled {self.name}")
            raise
        self.loaded = True

    async def aclose(self) -> None:
        await asyncio.sleep(0)  # a close that takes a moment, as a real one does
        FakeLoad.events.append(f"closed {self.name}")


@pytest.fixture
def fake_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    FakeLoad.events = []
    FakeLoad.gate = asyncio.Event()
    FakeLoad.started = asyncio.Event()
    monkeypatch.setattr(server, "LlamaCppBackend", FakeLoad)
    monkeypatch.setattr(models, "hub_offline", lambda: None)

    def resolve(local: Any, *, offline: bool) -> models.Resolution:
        return models.Resolution(Path(local.model_path), "setting")

    monkeypatch.setattr(models, "resolve", resolve)
    return FakeLoad.events


async def test_a_new_load_waits_until_the_old_one_is_closed(
    fake_loads: list[str],
) -> None:
    ls = server.TandemServer()
    ls.notify_status = lambda: None  # type: ignore[method-assign]
    ls.work_done = _no_progress  # type: ignore[method-assign]
    first = LocalSettings(model_path="/m/first.gguf")
    ls.settings = Settings(local=first)
    ls.start_backend()
    await FakeLoad.started.wait()
    assert fake_loads == ["load first.gguf"]
    second = LocalSettings(model_path="/m/second.gguf")
    ls.settings = Settings(local=second)
    ls.start_backend()  # a settings change in the middle of the first load
    FakeLoad.gate.set()
    task = ls._backend_task
    assert task is not None
    await asyncio.wait({task})
    assert fake_loads == [
        "load first.gguf",
        "load cancelled first.gguf",
        "closed first.gguf",
        "load second.gguf",
    ]
    assert ls.model_state == "ready"
    await ls.aclose()
    assert fake_loads[-1] == "closed second.gguf"


class _Report:
    async def __aenter__(self) -> Any:
        return lambda message, percentage: None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _no_progress(title: str, *, cancellable: bool = False) -> _Report:
    return _Report()
