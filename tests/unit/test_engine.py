"""CompletionEngine against the scripted backend: supersede, cancel, cache, errors."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from tandem.backends.base import BackendError, GenerateRequest
from tandem.backends.fake import FakeBackend
from tandem.config import CompletionSettings, ContextSettings
from tandem.engine import BackendMissing, CompletionEngine, Document

TEXT = "def is_palindrome(s):\n    \n\nprint(is_palindrome('abba'))\n"
OFFSET = TEXT.index("    \n") + 4
DOC = Document("file:///p.py", TEXT, "python", "p.py")
FAST = CompletionSettings(debounce_ms=0, adaptive_debounce=False, prefetch=False)
PLAIN = attrs.evolve(FAST, reuse_in_flight=False)


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
    older = asyncio.create_task(engine.complete(DOC, OFFSET, PLAIN))
    await asyncio.sleep(0.06)  # the older one is mid-stream
    newer = await engine.complete(DOC, OFFSET, PLAIN)
    assert await older is None
    assert newer is not None and newer.text == "return True"
    assert backend.cancelled == 1
    assert engine.stats.superseded == 1
    assert engine.stats.generations_cancelled == 1


async def test_burst_during_debounce_starts_one_generation() -> None:
    backend = FakeBackend()
    backend.enqueue(["return True"])
    engine = CompletionEngine(backend)
    settings = attrs.evolve(FAST, debounce_ms=30)
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
    engine.orphan_grace_s = 0.05
    task = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.06)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.cancelled == 0  # the next keystroke's request may follow it
    await asyncio.sleep(0.08)
    assert backend.cancelled == 1  # none did


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
    settings = attrs.evolve(FAST, postprocess=False, max_lines=99)
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


def typed(chars: str) -> tuple[Document, int]:
    """DOC with ``chars`` typed at the cursor, and the cursor after them."""
    return Document(DOC.uri, TEXT[:OFFSET] + chars + TEXT[OFFSET:], "python"), (
        OFFSET + len(chars)
    )


async def test_typing_what_is_being_generated_follows_the_generation() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["return s", " == s", "[::-1]\n"])
    engine = CompletionEngine(backend)
    first = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.07)  # "return s" is out
    second = await engine.complete(*typed("ret"), FAST)
    assert await first is None  # superseded: the client shows the newer one
    assert second is not None
    assert (second.text, second.source) == ("urn s == s[::-1]", "reuse")
    assert len(backend.requests) == 1 and backend.cancelled == 0
    assert engine.stats.reused == 1 and engine.stats.generations_started == 1
    assert engine.suggestions[-1]["source"] == "reuse"
    assert engine.suggestions[-1]["generatedTokens"] == 3


async def test_typing_ahead_of_the_output_waits_for_it() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["return s", " == s", "[::-1]\n"])
    engine = CompletionEngine(backend)
    first = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.07)
    second = await engine.complete(*typed("return s =="), FAST)
    assert await first is None
    assert second is not None and second.text == " s[::-1]"
    assert len(backend.requests) == 1


async def test_typing_something_else_starts_over() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["return s", " == s", "[::-1]\n"], ["se(s) == s"])
    engine = CompletionEngine(backend)
    first = asyncio.create_task(engine.complete(DOC, OFFSET, FAST))
    await asyncio.sleep(0.07)
    second = await engine.complete(*typed("rever"), FAST)
    assert await first is None
    assert second is not None and (second.text, second.source) == (
        "se(s) == s",
        "model",
    )
    assert backend.cancelled == 1 and engine.stats.reused == 0


async def test_prefetch_answers_the_completion_after_an_accepted_one() -> None:
    backend = FakeBackend()
    backend.enqueue(["return s == s[::-1]"], ["  # same backwards"])
    engine = CompletionEngine(backend)
    settings = attrs.evolve(FAST, prefetch=True)
    shown = await engine.complete(DOC, OFFSET, settings)
    assert shown is not None and shown.text == "return s == s[::-1]"
    await asyncio.sleep(0.01)  # the prefetch runs while the user reads
    assert engine.stats.prefetches_started == 1
    prefetch = backend.requests[1]
    assert prefetch.prompt.endswith("    return s == s[::-1]")
    accepted = await engine.complete(*typed(shown.text), settings)
    assert accepted is not None
    assert (accepted.text, accepted.source) == ("  # same backwards", "prefetch")
    assert len(backend.requests) == 2 and engine.stats.prefetch_hits == 1


async def test_prefetch_gives_way_to_a_real_request() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(["return True"], ["a", "b", "c", "d"], ["return False"])
    engine = CompletionEngine(backend)
    settings = attrs.evolve(FAST, prefetch=True)
    assert await engine.complete(DOC, OFFSET, settings) is not None
    await asyncio.sleep(0.06)  # the prefetch is generating
    other = await engine.complete(*typed("x"), settings)
    assert other is not None and other.text == "return False"
    assert backend.cancelled == 1  # the prefetch, not the user's request


async def test_debounce_follows_the_setting() -> None:
    backend = FakeBackend(chunk_delay=0.05)
    backend.enqueue(*[["return True"]] * 4)
    engine = CompletionEngine(backend)
    fixed = attrs.evolve(FAST, debounce_ms=40, cache=False)
    await engine.complete(DOC, OFFSET, fixed)
    assert engine.suggestions[-1]["debounceMs"] == 40
    adaptive = attrs.evolve(fixed, adaptive_debounce=True, debounce_min_ms=5)
    await engine.complete(*typed("r"), adaptive)
    # The keystroke came after a pause (the 40 ms wait and the 50 ms answer):
    # the user is waiting, so the adaptive wait is the shortest.
    assert engine.suggestions[-1]["debounceMs"] == 5
    assert engine.debouncer.response_ms is not None


class Timed(FakeBackend):
    """A backend whose speed is known (as a loaded model's is)."""

    def __init__(self, prompt_tps: float, gen_tps: float) -> None:
        super().__init__()
        self.calibration = (prompt_tps, gen_tps)


def test_context_budget_shrinks_on_a_slow_machine() -> None:
    settings = attrs.evolve(FAST, latency_target_ms=800)
    context = ContextSettings(budget_tokens=2048)
    suffix = "\n\nprint(is_palindrome('abba'))\n"
    budgets = []
    for speed in ((5000.0, 200.0), (400.0, 40.0), (200.0, 40.0), (30.0, 8.0)):
        engine = CompletionEngine(Timed(*speed))
        budgets.append(engine._context_budget(suffix, settings, context))
    assert budgets[0] == 2048  # a GPU affords all of it
    assert budgets[0] > budgets[1] > budgets[2] > budgets[3] == 0, budgets
    off = attrs.evolve(settings, latency_target_ms=0)
    assert (
        CompletionEngine(Timed(30.0, 8.0))._context_budget(suffix, off, context) == 2048
    )


async def test_warm_up_evaluates_the_prompt_a_request_there_starts_with() -> None:
    backend = FakeBackend(warm=True)
    backend.enqueue(["return s == s[::-1]\n"])
    engine = CompletionEngine(backend)
    assert await engine.warm(DOC, OFFSET, FAST, ContextSettings()) is not None
    assert engine.stats.warmups == 1
    await engine.complete(DOC, OFFSET, FAST, ContextSettings())
    warmed, asked = backend.warmed[0], backend.requests[0]
    assert isinstance(asked, type(warmed))
    # Everything up to the cursor is the same: the KV cache holds it already.
    assert (warmed.prompt, warmed.context, warmed.path) == (
        asked.prompt,
        asked.context,
        asked.path,
    )


async def _warming() -> tuple[
    FakeBackend, CompletionEngine, asyncio.Future[int | None]
]:
    """An engine whose model is warming DOC at OFFSET (a long prompt under way)."""
    backend = FakeBackend(warm=True)
    backend.warm_hold = asyncio.Event()  # never set
    backend.enqueue(["return s == s[::-1]\n"])
    engine = CompletionEngine(backend)
    warming = asyncio.ensure_future(engine.warm(DOC, OFFSET, FAST, None))
    await backend.warm_started.wait()
    return backend, engine, warming


async def test_a_request_preempts_a_warm_up() -> None:
    _, engine, warming = await _warming()
    result = await engine.complete(DOC, OFFSET, FAST)
    assert result is not None and result.text == "return s == s[::-1]"
    assert await warming is None  # gave way to the request
    assert engine.scheduler.stats.preempted == {"warm": 1}


@pytest.mark.parametrize(
    ("request_text", "kept", "whole"),
    [
        (TEXT, True, True),  # asked where the warm-up was: its very prompt
        (TEXT[:OFFSET] + "ret" + TEXT[OFFSET:], True, False),  # typed on from there
        ("x = 1\n" + TEXT, False, False),  # an edit above: another prompt
    ],
)
async def test_a_request_lets_the_chunk_of_its_own_warm_up_finish(
    request_text: str, kept: bool, whole: bool
) -> None:
    backend, engine, warming = await _warming()
    doc = Document(DOC.uri, request_text, "python", "p.py")
    offset = OFFSET + len(request_text) - len(TEXT)
    assert await engine.complete(doc, offset, FAST) is not None
    assert await warming is None
    assert backend.kept_chunks == kept
    assert backend.kept_whole == whole


async def test_no_warm_up_without_backend_support() -> None:
    engine = CompletionEngine(FakeBackend())
    assert await engine.warm(DOC, OFFSET, FAST, None) is None


async def test_prefetch_runs_through_the_scheduler_after_the_request() -> None:
    backend = FakeBackend()
    backend.enqueue(["return s == s[::-1]\n"], ["\n"])
    engine = CompletionEngine(backend)
    settings = attrs.evolve(FAST, prefetch=True)
    await engine.complete(DOC, OFFSET, settings)
    for _ in range(100):
        if engine.scheduler.stats.completed.get("prefetch"):
            break
        await asyncio.sleep(0.01)
    assert engine.scheduler.stats.started == {"prefetch": 1}
    assert len(backend.requests) == 2


async def test_the_import_context_follows_changes_to_the_imported_file() -> None:
    from tandem.context.index import WorkspaceIndex

    index = WorkspaceIndex()
    index.update("/ws/shop/pricing.py", "def apply_volume_discount(p, q):\n    pass\n")
    text = "from shop import pricing\n\ndef f():\n    return pricing."
    doc = Document("file:///ws/shop/cart.py", text, "python", None, "/ws/shop/cart.py")
    engine = CompletionEngine(FakeBackend(), index)
    settings = ContextSettings()
    first = engine.context(doc, len(text), settings, 0)
    assert "apply_volume_discount" in first.symbols
    index.update("/ws/shop/pricing.py", "def apply_discount(p, q):\n    pass\n")
    again = engine.context(doc, len(text), settings, 0)
    assert "apply_discount" in again.symbols
    assert "apply_volume_discount" not in again.symbols


class Loaded(Timed):
    """A loaded model of known speed whose tokens are words."""

    loaded = True

    def count_tokens(self, text: str) -> int:
        return len(text.split())


LONG = "".join(f"def f{i}(a, b):\n    return a + b + {i}\n\n" for i in range(60))


def _suffix(engine: CompletionEngine, text: str, offset: int) -> str:
    settings = attrs.evolve(FAST, suffix_chars=1200)
    doc = Document("file:///l.py", text, "python", "l.py")
    suffix = engine.prompt(doc, offset, settings, None).window.suffix
    assert suffix is not None
    return suffix


def test_the_suffix_is_cut_at_a_line_end_on_a_slow_machine() -> None:
    offset = LONG.index("return a + b + 3") + 6
    slow = _suffix(CompletionEngine(Loaded(40.0, 10.0)), LONG, offset)
    # The rest of the cursor line and whole lines after it, within 32 "tokens".
    assert slow.startswith(" a + b + 3\n\ndef f4(a, b):\n")
    assert slow.endswith("\n") and len(slow.split()) <= 32
    fast = _suffix(CompletionEngine(Loaded(5000.0, 100.0)), LONG, offset)
    assert fast.startswith(slow) and len(fast) > len(slow)
    assert len(fast) <= 1200


def test_the_suffix_keeps_the_next_line_of_code_whatever_it_costs() -> None:
    text = "def f():\n    return 1\n\n\n" + "x = " + " + ".join("ab" * 40) + "\n"
    offset = text.index("return 1") + len("return 1")
    kept = _suffix(CompletionEngine(Loaded(40.0, 10.0)), text, offset)
    # Post-processing needs the code that follows (the blank lines are not enough).
    assert kept == text[offset:]
    assert len(kept.split()) > 32


WARM_AT = LONG.index("return a + b + 50") + 4
ROOMY = attrs.evolve(FAST, suffix_chars=1200)


async def warm_then_ask(
    backend: FakeBackend,
) -> tuple[GenerateRequest, GenerateRequest]:
    """Warm ``LONG`` at ``WARM_AT``, then ask there: (warmed, asked)."""
    backend.enqueue(["x\n"])
    engine = CompletionEngine(backend)
    doc = Document("file:///l.py", LONG, "python", "l.py")
    await engine.warm(doc, WARM_AT, ROOMY, ContextSettings())
    await engine.complete(doc, WARM_AT, ROOMY, ContextSettings())
    return backend.warmed[0], backend.requests[0]


async def test_a_warm_up_and_the_request_after_it_have_the_same_prompt() -> None:
    backend = Loaded(80.0, 30.0)
    backend.warm = backend._warm
    warmed, asked = await warm_then_ask(backend)
    assert (warmed.prompt, warmed.suffix) == (asked.prompt, asked.suffix)
    # Cut to what 80 tokens/s afford: not all of prefixChars and suffixChars.
    assert len(asked.prompt) < min(len(LONG[:WARM_AT]), ROOMY.prefix_chars)
    assert asked.suffix is not None and len(asked.suffix) < 1200


async def test_a_warm_up_at_a_guessed_cursor_leaves_out_the_text_after_it() -> None:
    backend = Loaded(80.0, 30.0)
    backend.warm = backend._warm
    engine = CompletionEngine(backend)
    doc = Document("file:///l.py", LONG, "python", "l.py")
    await engine.warm(doc, WARM_AT, ROOMY, ContextSettings(), at_cursor=False)
    await engine.warm(doc, WARM_AT, ROOMY, ContextSettings())
    guessed, reported = backend.warmed
    assert (guessed.prompt, guessed.suffix) == (reported.prompt, reported.suffix)
    assert backend.warmed_tails == [False, True]


class Calibrating(Loaded):
    """A model whose speed is measured after it loads (none known at first)."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)
        self.calibration: tuple[float, float] | None = None
        self.warm = self._warm

    async def calibrated(self) -> None:
        await asyncio.sleep(0)
        self.calibration = (80.0, 30.0)


async def test_a_warm_up_waits_for_the_speed_its_request_will_be_sized_with() -> None:
    warmed, asked = await warm_then_ask(Calibrating())
    # Sized before the calibration, the warm-up would have had all of
    # prefixChars: not the request's prompt, and the KV cache would not serve it.
    assert warmed.prompt == asked.prompt
    assert len(asked.prompt) < min(len(LONG[:WARM_AT]), ROOMY.prefix_chars)


def test_each_document_keeps_its_own_window_whatever_others_were_sized_with() -> None:
    engine = CompletionEngine(Loaded(400.0, 40.0))
    settings = attrs.evolve(FAST, prefix_chars=8000)
    offset = LONG.index("return a + b + 50") + 4

    def window(uri: str, context_tokens: int) -> str:
        return engine.window(uri, LONG, offset, settings, context_tokens).prefix

    window("file:///z.py", 0)  # 896 tokens afforded (1,000 at most)
    warmed = window("file:///a.py", 200)  # 768: a warm-up in a.py
    window("file:///b.py", 350)  # 640
    # The request in a.py after it: the prompt its warm-up put in the KV cache
    # (with one cap held for all documents it got b's 640, or z's 896 before).
    assert window("file:///a.py", 200) == warmed
    assert engine.window_cap == 768


BLOCK = "def is_palindrome(s):\n    \n"
BLOCK_OFFSET = len(BLOCK) - 1
LINES = ["s = s.lower()", "\n    ", "t = s[::-1]", "\n    ", "return s == t", "\n"]
"""Three lines of a function body, one chunk a token."""


@pytest.mark.parametrize(
    ("gen_tps", "shown"),
    [
        (4.0, "s = s.lower()"),  # 2 tokens in 500 ms: the first whole line
        (8.0, "s = s.lower()\n    t = s[::-1]"),  # 4 tokens: the lines done by then
        (400.0, "s = s.lower()\n    t = s[::-1]\n    return s == t"),  # no limit
    ],
)
async def test_a_slow_model_stops_at_a_line_end_after_more_lines_ms(
    gen_tps: float, shown: str
) -> None:
    backend = Loaded(100.0, gen_tps)
    backend.enqueue(LINES)
    engine = CompletionEngine(backend)
    settings = attrs.evolve(FAST, more_lines_ms=500)
    doc = Document("file:///b.py", BLOCK, "python", "b.py")
    result = await engine.complete(doc, BLOCK_OFFSET, settings)
    assert result is not None and result.text == shown
    assert engine.more_lines_tokens == round(gen_tps / 2)
    assert engine.stats.more_lines_stops == (shown.count("\n") < 2)


async def test_more_lines_ms_zero_or_one_line_only_sets_no_limit() -> None:
    for settings in (
        attrs.evolve(FAST, more_lines_ms=0),
        attrs.evolve(FAST, more_lines_ms=500, multiline=False),
    ):
        backend = Loaded(100.0, 2.0)
        backend.enqueue(LINES)
        engine = CompletionEngine(backend)
        doc = Document("file:///b.py", BLOCK, "python", "b.py")
        result = await engine.complete(doc, BLOCK_OFFSET, settings)
        assert result is not None
        assert result.text.count("\n") == (2 if settings.multiline else 0)
        assert engine.stats.more_lines_stops == 0
        assert engine.more_lines_tokens is None


async def test_no_more_lines_limit_for_a_backend_other_than_the_local_model() -> None:
    """A remote server's chunks are not tokens, nor is its speed the one measured."""
    backend = Loaded(100.0, 2.0)
    backend.local_first = False  # type: ignore[attr-defined]  # a router view
    backend.enqueue(LINES)
    engine = CompletionEngine(backend)
    doc = Document("file:///b.py", BLOCK, "python", "b.py")
    settings = attrs.evolve(FAST, more_lines_ms=500)
    result = await engine.complete(doc, BLOCK_OFFSET, settings)
    assert result is not None and result.text.count("\n") == 2
    assert engine.more_lines_tokens is None
