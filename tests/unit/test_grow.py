"""The window before the cursor grows in idle time and serves the requests after it."""

from __future__ import annotations

import asyncio

import attrs

from tandem.backends.base import NOT_KEPT, GenerateRequest
from tandem.backends.fake import FakeBackend
from tandem.backends.llama_kv import common_prefix
from tandem.config import CompletionSettings, ContextSettings
from tandem.engine import CompletionEngine, Document

FAST = CompletionSettings(debounce_ms=0, adaptive_debounce=False, prefetch=False)
ROOMY = attrs.evolve(FAST, suffix_chars=1200, grow_window=True)
LONG = "".join(f"def f{i}(a, b):\n    return a + b + {i}\n\n" for i in range(200))
AT = LONG.index("return a + b + 150") + 4
DOC = Document("file:///l.py", LONG, "python", "l.py")


def words(req: GenerateRequest) -> list[str]:
    """A prompt's "tokens": its words, the text after the cursor after a marker."""
    return [*req.prompt.split(), "<suffix>", *(req.suffix or "").split()]


class Cached(FakeBackend):
    """A loaded model of known speed whose tokens are words, with a KV cache:
    the live prompt (the last one warmed or asked) and the ones saved."""

    loaded = True

    def __init__(self, prompt_tps: float) -> None:
        super().__init__(warm=True)
        self.calibration = (prompt_tps, 30.0)
        self.live: list[str] = []
        self.saved: list[list[str]] = []
        self.warm = self._warm_cached
        self.growing = asyncio.Event()
        """Set when a growing stops half way (at ``grow_hold``)."""
        self.keeps = True
        """Whether the prompt cached before a growing can be kept (saved)."""
        self.counts = True
        """Whether it can tell what is cached (False: ``new_tokens`` is None)."""
        self.grow_hold: asyncio.Event | None = None
        """When set, a warm-up that keeps the live prompt (a growing) stops half
        way through its prompt until it is set (a request preempts it)."""

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def new_tokens(self, req: GenerateRequest) -> int | None:
        if not self.counts:
            return None
        tokens = words(req)
        cached = max(
            (common_prefix(c, tokens) for c in [self.live, *self.saved]), default=0
        )
        return len(tokens) - cached

    async def _warm_cached(
        self, req: GenerateRequest, tail: bool = True, keep_live: bool = False
    ) -> int:
        new = self.new_tokens(req) or 0
        if keep_live and not self.keeps:
            return NOT_KEPT
        await self._warm(req, tail, keep_live)
        if keep_live:
            self.saved.append(self.live)
            if self.grow_hold is not None:
                self.live = words(req)[: len(words(req)) // 2]
                self.growing.set()
                await self.grow_hold.wait()
        self.live = words(req)
        return new


async def warm_and_grow(engine: CompletionEngine) -> None:
    """A warm-up at ``AT``, and the growing after it."""
    await engine.warm(DOC, AT, ROOMY, ContextSettings())
    await engine._growing[DOC.uri]


async def _asked(backend: Cached, engine: CompletionEngine, offset: int) -> str:
    backend.enqueue(["x\n"])
    await engine.complete(DOC, offset, ROOMY, ContextSettings())
    req = backend.requests[-1]
    assert isinstance(req, GenerateRequest)
    return req.prompt


async def test_idle_time_grows_the_window_and_the_request_after_it_takes_it() -> None:
    backend = Cached(80.0)
    engine = CompletionEngine(backend)
    await warm_and_grow(engine)
    short, grown = backend.warmed
    # The short window first (what 80 tokens/s afford), then all of prefixChars,
    # with the short prompt kept for a request that preempts the growing.
    assert len(short.prompt.split()) <= 256 < len(grown.prompt.split())
    assert grown.prompt.endswith(short.prompt) and grown.suffix == short.suffix
    assert len(grown.prompt) <= ROOMY.prefix_chars
    assert backend.kept_live == [False, True]
    assert engine.stats.windows_grown == 1
    # Asked there, the longer window costs no more: the request takes it.
    assert await _asked(backend, engine, AT) == grown.prompt
    assert engine.stats.grown_prompts == 1


async def test_a_request_takes_the_short_window_where_the_long_one_costs_more() -> None:
    backend = Cached(80.0)
    engine = CompletionEngine(backend)
    await warm_and_grow(engine)
    short = backend.warmed[0]
    backend.live, backend.saved = [], []  # the KV cache went to other prompts
    assert await _asked(backend, engine, AT) == short.prompt
    assert engine.stats.grown_prompts == 0


async def test_a_request_while_the_window_grows_finds_the_short_prompt_cached() -> None:
    backend = Cached(80.0)
    backend.grow_hold = asyncio.Event()
    engine = CompletionEngine(backend)
    engine.grow_after_s = 3600.0  # no growing after the request
    warmed = await engine.warm(DOC, AT, ROOMY, ContextSettings())
    await backend.growing.wait()  # the short warm-up is done, the growing holds
    short = backend.warmed[0]
    assert warmed == len(words(short))
    assert backend.new_tokens(short) == 0  # kept (saved), though no longer live
    growing = engine._growing[DOC.uri]
    asked = await _asked(backend, engine, AT)  # preempts the growing
    assert growing.cancelled()
    assert asked == short.prompt
    assert engine.stats.windows_grown == 0
    assert engine.stats.grown_prompts == 0
    engine.forget(DOC.uri)


async def test_nothing_grows_where_the_speed_affords_the_whole_window() -> None:
    backend = Cached(5000.0)
    engine = CompletionEngine(backend)
    await warm_and_grow(engine)
    assert len(backend.warmed) == 1
    assert engine.stats.windows_grown == 0


async def test_a_pause_after_a_request_grows_its_window() -> None:
    backend = Cached(80.0)
    engine = CompletionEngine(backend)
    engine.grow_after_s = 0.0
    asked = await _asked(backend, engine, AT)
    growing = engine._growing[DOC.uri]
    await growing
    assert engine.stats.windows_grown == 1
    assert backend.warmed[0].prompt.endswith(asked)
    assert len(backend.warmed[0].prompt) > len(asked)


async def test_typing_on_puts_the_growing_off() -> None:
    backend = Cached(80.0)
    engine = CompletionEngine(backend)
    engine.grow_after_s = 3600.0
    await _asked(backend, engine, AT)
    first = engine._growing[DOC.uri]
    await _asked(backend, engine, AT + 2)  # a keystroke within the pause
    await asyncio.sleep(0)
    assert first.cancelled()
    second = engine._growing[DOC.uri]
    engine.forget(DOC.uri)  # closed: nothing grows
    await asyncio.sleep(0)
    assert second.cancelled() and DOC.uri not in engine._growing
    assert not backend.warmed


async def test_nothing_grows_where_the_prompt_before_cannot_be_kept() -> None:
    # No prefix cache (or one too small): a request during the growing would
    # evaluate the short prompt again, so there is none.
    backend = Cached(80.0)
    backend.keeps = False
    engine = CompletionEngine(backend)
    await warm_and_grow(engine)
    assert backend.warmed == backend.warmed[:1]
    assert engine.stats.windows_grown == 0
    assert DOC.uri not in engine._window_grown


async def test_nothing_grows_where_the_backend_cannot_tell_what_it_cached() -> None:
    backend = Cached(80.0)
    backend.counts = False  # e.g. a server or cloud backend first
    engine = CompletionEngine(backend)
    await warm_and_grow(engine)
    assert len(backend.warmed) == 1
    assert engine.stats.windows_grown == 0
    assert DOC.uri not in engine._window_grown


async def test_closing_the_document_stops_its_growing() -> None:
    backend = Cached(80.0)
    backend.grow_hold = asyncio.Event()
    engine = CompletionEngine(backend)
    await engine.warm(DOC, AT, ROOMY, ContextSettings())
    await backend.growing.wait()
    growing = engine._growing[DOC.uri]
    engine.forget(DOC.uri)
    await asyncio.sleep(0)
    assert growing.cancelled()
    assert engine.stats.windows_grown == 0 and DOC.uri not in engine._window_grown


async def test_one_document_grows_at_a_time() -> None:
    backend = Cached(80.0)
    backend.grow_hold = asyncio.Event()
    engine = CompletionEngine(backend)
    other = Document("file:///m.py", LONG, "python", "m.py")
    await engine.warm(DOC, AT, ROOMY, ContextSettings())
    await backend.growing.wait()
    first = engine._growing[DOC.uri]
    await engine.warm(other, AT, ROOMY, ContextSettings())  # preempts it
    backend.grow_hold.set()
    await engine._growing[other.uri]
    assert await first is None  # replaced by the newer growing
    assert engine.stats.windows_grown == 1
    assert list(engine._window_grown) == [other.uri]


async def test_nothing_grows_by_default() -> None:
    backend = Cached(80.0)
    engine = CompletionEngine(backend)
    settings = attrs.evolve(ROOMY, grow_window=False)
    await engine.warm(DOC, AT, settings, ContextSettings())
    backend.enqueue(["x\n"])
    await engine.complete(DOC, AT, settings, ContextSettings())
    assert not engine._growing and len(backend.warmed) == 1
