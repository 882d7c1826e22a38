"""CompletionEngine against the scripted backend: supersede, cancel, cache, errors."""

from __future__ import annotations

import asyncio

import pytest

from tandem.backends.base import BackendError
from tandem.backends.fake import FakeBackend
from tandem.config import CompletionSettings
from tandem.engine import BackendMissing, CompletionEngine, Document

TEXT = "def is_palindrome(s):\n    \n\nprint(is_palindrome('abba'))\n"
OFFSET = TEXT.index("    \n") + 4
DOC = Document("file:///p.py", TEXT, "python", "p.py")
FAST = CompletionSettings(debounce_ms=0)


async def test_completion_is_post_processed_and_cached() -> None:
    backend = FakeBackend()
    backend.enqueue(["return s == ", "s[::-1]\n", "\nprint(1)\n"])
    engine = CompletionEngine(backend)
    first = await engine.complete(DOC, OFFSET, FAST)
    assert first is not None
    assert (first.text, first.source) == ("return s == s[::-1]", "model")
    req = backend.requests[0]
    assert req.prompt.endswith("def is_palindrome(s):\n    ")
    assert req.suffix is not None and req.suffix.startswith("\n\nprint")

    # Typing the first characters of the shown completion: served from the cache.
    typed = Document(DOC.uri, TEXT[:OFFSET] + "ret" + TEXT[OFFSET:], "python")
    again = await engine.complete(typed, OFFSET + 3, FAST)
    assert again is not None
    assert (again.text, again.source) == ("urn s == s[::-1]", "cache")
    assert len(backend.requests) == 1
    assert engine.stats.cache_hits == 1


async def test_generation_stops_once_the_block_is_over() -> None:
    backend = FakeBackend()
    chunks = ["return s", " == s[::-1]\n", "\n", "print(", "'never needed'", ")\n"]
    backend.enqueue(chunks)
    engine = CompletionEngine(backend)
    result = await engine.complete(DOC, OFFSET, FAST)
    assert result is not None and result.text == "return s == s[::-1]"
    assert result.stats is not None
    assert result.stats.generated_tokens == 4  # stopped at the dedent, not the end


async def test_newer_request_supersedes_older() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["a", "b", "c"], ["return True"])
    engine = CompletionEngine(backend)
    older = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.06)  # the older one is mid-stream
    newer = await engine.complete(DOC, OFFSET, FAST)
    assert await older is None
    assert newer is not None and newer.text == "return True"
    assert backend.cancelled == 1
    assert engine.stats.superseded == 1
    assert engine.stats.generations_cancelled == 1


async def test_burst_during_debounce_starts_one_generation() -> None:
    backend = FakeBackend()
    backend.enqueue(["return True"])
    engine = CompletionEngine(backend)
    settings = CompletionSettings(debounce_ms=30)
    tasks = [
        asyncio.create_task(engine.complete(DOC, OFFSET, settings)) for _ in range(5)
    ]
    results = await asyncio.gather(*tasks)
    assert results[:4] == [None] * 4
    assert results[4] is not None and results[4].text == "return True"
    assert engine.stats.generations_started == 1


async def test_caller_cancellation_propagates() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["a", "b", "c"])
    engine = CompletionEngine(backend)
    task = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.06)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.cancelled == 1


async def test_backend_error_reaches_caller_and_engine_recovers() -> None:
    backend = FakeBackend()
    backend.enqueue(BackendError("boom"), ["return False"])
    engine = CompletionEngine(backend)
    with pytest.raises(BackendError, match="boom"):
        await engine.complete(DOC, OFFSET, FAST)
    result = await engine.complete(DOC, OFFSET, FAST)
    assert result is not None and result.text == "return False"
    assert engine.stats.generations_failed == 1


async def test_no_backend_says_why() -> None:
    engine = CompletionEngine(None)
    engine.backend_problem = "no model: set tandem.local.modelPath"
    with pytest.raises(BackendMissing, match="modelPath"):
        await engine.complete(DOC, OFFSET, FAST)


async def test_postprocess_off_shows_raw() -> None:
    backend = FakeBackend()
    backend.enqueue(["return 1\n\nprint(2)\n"])
    engine = CompletionEngine(backend)
    settings = CompletionSettings(debounce_ms=0, postprocess=False, max_lines=99)
    result = await engine.complete(DOC, OFFSET, settings)
    assert result is not None and result.text == "return 1\n\nprint(2)\n"


async def test_forget_and_aclose() -> None:
    backend = FakeBackend()
    backend.enqueue(["return 1"])
    engine = CompletionEngine(backend)
    await engine.complete(DOC, OFFSET, FAST)
    engine.forget(DOC.uri)
    assert engine.cache.lookup(DOC.uri, TEXT[:OFFSET], TEXT[OFFSET:]) is None
    await engine.aclose()
    assert backend.closed and engine.backend is None
