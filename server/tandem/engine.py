"""CompletionEngine: context -> cache -> backend -> post-processing. No LSP here.

Requests for one document supersede each other: a new one cancels the older one
(during its debounce sleep that costs nothing; during prompt evaluation or generation
the backend aborts promptly), and the cancelled caller gets ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import attrs
import cachetools

from tandem import latency
from tandem.backends.base import (
    NOT_KEPT,
    Backend,
    GenerateRequest,
    GenerationStats,
)
from tandem.cache import SUFFIX_CHARS, CompletionCache
from tandem.config import CompletionSettings, ContextSettings
from tandem.context import builder
from tandem.context.index import WorkspaceIndex
from tandem.context.symbols import FileSymbols, language_of
from tandem.context.window import Window, cursor_window
from tandem.postprocess import finished, fix_indent, postprocess, whole_lines
from tandem.scheduler import Priority, Scheduler

logger = logging.getLogger(__name__)

T = TypeVar("T")


@attrs.frozen
class Document:
    """A snapshot of one open document."""

    uri: str
    text: str
    language_id: str = ""
    path: str | None = None
    """Workspace-relative path, for formats laid out in file blocks."""
    fs_path: str | None = None
    """The file's path on disk, as the workspace index knows it."""


@attrs.frozen
class Completion:
    """A completion to insert at the cursor, and where it came from."""

    text: str
    source: Literal["model", "cache", "reuse", "prefetch"]
    """``model``: generated for this request; ``cache``: typed-ahead or scanned-back
    from a recent completion; ``reuse``: the rest of a generation under way when
    the request came; ``prefetch``: computed ahead, before the user asked."""
    raw: str = ""
    """The model's output before post-processing."""
    stats: GenerationStats | None = None
    latency_ms: float = 0.0
    debounce_ms: float = 0.0
    context_tokens: int = 0
    context_budget: int = 0
    backend: str = ""


@attrs.define
class EngineStats:
    """Counters since start; shown by the status command."""

    requests: int = 0
    cache_hits: int = 0
    reused: int = 0
    """Requests answered by following a generation already under way."""
    superseded: int = 0
    generations_started: int = 0
    generations_completed: int = 0
    generations_cancelled: int = 0
    generations_failed: int = 0
    prefetches_started: int = 0
    prefetch_hits: int = 0
    """Requests answered (from the cache or in flight) by a prefetch."""
    warmups: int = 0
    """Prompt prefixes evaluated ahead of a request (no generation)."""
    warm_tokens: int = 0
    """Prompt tokens those warm-ups evaluated."""
    windows_grown: int = 0
    """Warm-ups in idle time of a longer window before the cursor than the
    measured speed affords a cold prompt (``CompletionEngine.grow``)."""
    grown_prompts: int = 0
    """Requests whose prompt had such a window (it cost no more to evaluate)."""
    more_lines_stops: int = 0
    """Generations stopped at a line end by ``completion.moreLinesMs``."""
    last: dict[str, Any] = attrs.field(factory=dict)
    """Stats of the most recent generation."""
    last_context: dict[str, Any] = attrs.field(factory=dict)
    """The workspace context of the most recent request: names, files, text."""


_COMMENTS = {
    "python": "#",
    "ruby": "#",
    "shellscript": "#",
    "lua": "--",
    "sql": "--",
    "haskell": "--",
}
"""Line comments other than ``//`` (the default for unlisted languages is ``//``)."""

TAIL_TOKENS = 16
"""Prompt tokens evaluated again after a keystroke besides the suffix: the end of
the prefix and the FIM markers."""


GROW_KEY = "grow"
"""The scheduler key of every ``grow``: a newer one replaces the one before."""


LOCAL_BACKENDS = frozenset({"local", "llama_cpp", "fake"})
"""Backends whose spare time prefetching may use (nothing billed, nothing sent)."""


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a prefetch's outcome: nobody awaits it, and failures are not news."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("prefetch failed: %s", exc)


def _approx_tokens(text: str) -> int:
    """A tokenizer stand-in (before the model is loaded): about 3.5 chars a token."""
    return int(len(text) / 3.5) + 1


def _hold(held: dict[str, int], uri: str, value: int) -> None:
    """Keep ``value`` for ``uri`` (the 64 most recent documents)."""
    held.pop(uri, None)
    held[uri] = value
    if len(held) > 64:
        held.pop(next(iter(held)))


@attrs.frozen
class Prompt:
    """What one completion gives the model, sized."""

    window: Window
    """The text before and after the cursor as the prompt has it."""
    seen: str
    """The text after the cursor as the editor has it (up to ``suffixChars``):
    what the cache, requests following a generation and post-processing see."""
    found: builder.Context
    budget: int
    """The context budget it was sized with (0 for a context given)."""
    grown: bool = False
    """Its window is the longer one grown in idle time (``CompletionEngine.grow``)."""


def _memo_by_hash(count: Callable[[str], int]) -> Callable[[str], int]:
    """``count`` memoised by the text's hash.

    Windows of 4,000 characters are counted; a cache keyed on the texts
    themselves would keep them all alive.
    """
    memo: cachetools.LRUCache[tuple[int, int], int] = cachetools.LRUCache(8192)

    def counted(text: str) -> int:
        key = (hash(text), len(text))
        found = memo.get(key)
        if found is None:
            memo[key] = found = count(text)
        return found

    return counted


class BackendMissing(Exception):
    """No backend is ready; the message says why and what to do."""


@attrs.define(eq=False)
class Flight:
    """A generation under way for one document, which later requests may follow."""

    uri: str
    prefix: str
    """The document's text before the cursor it generates for."""
    suffix_head: str
    kind: Literal["model", "prefetch"]
    partial: str = ""
    """What it generated so far (indentation fixed, not post-processed)."""
    waiters: int = 0
    """Requests awaiting it; a flight nobody awaits gives way to a new one."""
    task: asyncio.Task[Completion] | None = None
    _progress: asyncio.Event = attrs.field(factory=asyncio.Event)

    def update(self, partial: str) -> None:
        """New output: wake the requests following it."""
        self.partial = partial
        self._progress.set()
        self._progress = asyncio.Event()

    def landed(self, _task: object = None) -> None:
        """Done (answered, failed or cancelled): wake the requests following it."""
        self._progress.set()

    async def progressed(self) -> None:
        """Wait for more output or the end."""
        await self._progress.wait()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def typed(self, prefix: str, suffix: str) -> str | None:
        """What was typed since the flight began, if the flight may still serve."""
        if suffix[:SUFFIX_CHARS] != self.suffix_head or not prefix.startswith(
            self.prefix
        ):
            return None
        typed = prefix[len(self.prefix) :]
        if self.partial.startswith(typed) or typed.startswith(self.partial):
            return typed
        return None


class CompletionEngine:
    """Turns (document, cursor) into a completion."""

    def __init__(
        self, backend: Backend | None = None, index: WorkspaceIndex | None = None
    ) -> None:
        self.backend = backend
        self.index = index or WorkspaceIndex()
        self.roots: list[str] = []
        """Workspace folders, to show context files by relative path."""
        self.repo: str | None = None
        self.open_documents: Callable[[], list[builder.OpenDocument]] = list
        """The other documents open in the editor (set by the server)."""
        self._counter_for: object = None
        self._counter: Callable[[str], int] = _approx_tokens
        self.backend_problem = "the model is not loaded yet"
        self.cache = CompletionCache()
        self.stats = EngineStats()
        self.scheduler = Scheduler()
        """Decides which model work runs: requests first, then background work."""
        self._stable: dict[str, tuple[object, builder.Context, tuple[Any, ...]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.budget_reason = "not sized yet"
        """Why the context budget is what it is (for the status command)."""
        self.window_cap: int | None = None
        """Most tokens of the current file before the cursor, as last sized."""
        self.suffix_cap: int | None = None
        """Most tokens of the text after the cursor (None: not sized)."""
        self.more_lines_tokens: int | None = None
        """Generated tokens after which a completion stops at a line end."""
        self._window_held: dict[str, int] = {}
        self._window_grown: dict[str, int] = {}
        """Per document: the characters of a longer window warmed in idle time
        (the budget it was cut with: nearby cursors get the same start)."""
        self._growing: dict[str, asyncio.Task[Any]] = {}
        """Per document: the window growth waiting for a pause in typing."""
        self.grow_after_s = latency.BURST_GAP_MS / 1000
        """The pause after a request before its window grows (``grow``)."""
        self._budget_held: dict[str, int] = {}
        self.debouncer = latency.Debouncer()
        self.meter = latency.SpeedMeter()
        self.changes = latency.ContextChanges()
        self.context_budget: int | None = None
        """The context budget as last sized (None: not sized yet)."""
        self.suggestions: deque[dict[str, Any]] = deque(maxlen=200)
        """Per-suggestion stats, newest last."""
        self._suggestion_id = 0
        self._latest: dict[str, asyncio.Task[Any]] = {}
        self._flights: dict[str, Flight] = {}
        self._warming: tuple[str, Window, tuple[builder.ContextFile, ...]] | None = None
        """(uri, text around the cursor, context) of the warm-up running now."""
        self.orphan_grace_s = latency.BURST_GAP_MS / 1000
        """How long a generation whose request was cancelled waits to be followed."""

    async def complete(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        context: ContextSettings | None = None,
    ) -> Completion | None:
        """The completion at ``offset``; ``None`` when superseded by a newer request.

        Raises ``BackendMissing`` when there is no backend and the backend's own
        errors when it fails.
        """
        self.stats.requests += 1
        started = time.perf_counter()
        if (growing := self._growing.pop(doc.uri, None)) is not None:
            growing.cancel()  # not idle: the user is typing here
        # The suffix is all the cache and in-flight checks need; the prefix is cut
        # to its token budget only when a generation starts.
        window = cursor_window(
            doc.text, offset, settings.prefix_chars, settings.suffix_chars
        )
        before = doc.text[:offset]
        wait_ms = self._debounce_ms(doc.uri, before, settings)
        if settings.cache:
            hit = self.cache.find(doc.uri, before, window.suffix)
            if hit is not None:
                self.stats.cache_hits += 1
                prefetched = hit.origin == "prefetch"
                self.stats.prefetch_hits += prefetched
                return self._record(
                    doc.uri,
                    Completion(hit.text, "prefetch" if prefetched else "cache"),
                    started,
                )

        async def job() -> Completion:
            flight = self._flights.get(doc.uri)
            if flight is not None and flight.running:
                if settings.reuse_in_flight and (
                    flight.typed(before, window.suffix) is not None
                ):
                    followed = await self._follow(flight, before, window.suffix)
                    if followed is not None:
                        self.stats.reused += followed.source == "reuse"
                        self.stats.prefetch_hits += followed.source == "prefetch"
                        return self._record(doc.uri, followed, started)
                if flight.task is not None:
                    flight.task.cancel()
            await asyncio.sleep(wait_ms / 1000)  # a newer keystroke cancels it here
            prompt = self.prompt(doc, offset, settings, context)
            self.stats.grown_prompts += prompt.grown
            warming = self._warming
            if (
                warming is not None
                and warming[0] == doc.uri
                and prompt.found.files == warming[2]
                and prompt.window.prefix.startswith(warming[1].prefix)
            ):
                # This prompt continues the warm-up's: its chunk is not wasted
                # (nor one of its tail, where the prompts are the same).
                keep = getattr(self.backend, "keep_chunk", None)
                if keep is not None:
                    keep(whole=prompt.window == warming[1])
            async with self.scheduler.request():
                flight = self._launch(
                    doc, offset, settings, context, "model", prompt=prompt
                )
                result = await self._await(flight)
            if settings.warm_up and settings.grow_window:
                self._grow_soon(doc, offset, settings, prompt)
            result = attrs.evolve(result, debounce_ms=wait_ms)
            return self._record(doc.uri, result, started)

        return await self.supersede(doc.uri, job)

    def in_flight(self) -> list[dict[str, Any]]:
        """The generations under way: which document, why, what they made so far."""
        return [
            {
                "uri": f.uri,
                "kind": f.kind,
                "waiters": f.waiters,
                "partial": f.partial[:400],
            }
            for f in self._flights.values()
            if f.running
        ]

    def _debounce_ms(
        self, uri: str, before: str, settings: CompletionSettings
    ) -> float:
        """This request's wait before generating (and a keystroke for the rhythm)."""
        debouncer = self.debouncer
        debouncer.min_ms = settings.debounce_min_ms
        debouncer.max_ms = max(settings.debounce_min_ms, settings.debounce_max_ms)
        wait = debouncer.keystroke(uri, time.monotonic(), before[-1:])
        return wait if settings.adaptive_debounce else settings.debounce_ms

    async def _follow(
        self, flight: Flight, prefix: str, suffix: str
    ) -> Completion | None:
        """The rest of ``flight``'s completion after what was typed.

        None if it went elsewhere, failed, or was all typed already.
        """
        flight.waiters += 1
        try:
            while flight.running:
                if flight.typed(prefix, suffix) is None:
                    return None
                await flight.progressed()
        finally:
            flight.waiters -= 1
        task = flight.task
        if task is None or task.cancelled() or task.exception() is not None:
            return None
        result = task.result()
        typed = prefix[len(flight.prefix) :]
        rest = result.text[len(typed) :]
        if not result.text.startswith(typed) or (typed and not rest.strip()):
            return None
        source: Literal["reuse", "prefetch"] = (
            "prefetch" if flight.kind == "prefetch" else "reuse"
        )
        return attrs.evolve(result, text=rest, source=source)

    async def _await(self, flight: Flight) -> Completion:
        """Wait for ``flight``; it goes on if this request is cancelled.

        The next request may follow it.
        """
        assert flight.task is not None
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.running and not flight.waiters:
                # Cancelled: give the next keystroke's request a moment to
                # follow it; nobody did, then it stops.
                asyncio.get_running_loop().call_later(
                    self.orphan_grace_s, self._drop_orphan, flight
                )

    def _drop_orphan(self, flight: Flight) -> None:
        if flight.running and not flight.waiters and flight.task is not None:
            flight.task.cancel()

    def _launch(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        context: ContextSettings | None,
        kind: Literal["model", "prefetch"],
        found: builder.Context | None = None,
        prompt: Prompt | None = None,
    ) -> Flight:
        """Start a generation at ``offset`` (with ``prompt`` if already sized).

        One model runs one generation at a time, so flights nobody awaits
        (orphans, prefetches) give way.
        """
        for other in list(self._flights.values()):
            if other.running and other.waiters == 0 and other.task is not None:
                other.task.cancel()
        if prompt is None:
            prompt = self.prompt(doc, offset, settings, context, found)
        flight = Flight(doc.uri, doc.text[:offset], prompt.seen[:SUFFIX_CHARS], kind)
        flight.task = task = asyncio.ensure_future(
            self._fly(flight, doc, prompt, settings, context)
        )
        task.add_done_callback(flight.landed)
        if kind == "prefetch":
            task.add_done_callback(_consume)  # nobody may await it
        self._flights[doc.uri] = flight
        return flight

    async def _fly(
        self,
        flight: Flight,
        doc: Document,
        prompt: Prompt,
        settings: CompletionSettings,
        context: ContextSettings | None,
    ) -> Completion:
        started = time.perf_counter()
        window, seen, found = prompt.window, prompt.seen, prompt.found
        result = await self._generate(
            doc, window.prefix, window.suffix, settings, found, flight.update, seen
        )
        if result.stats is not None:
            self.meter.observe(result.stats)
        self.debouncer.responded((time.perf_counter() - started) * 1000)
        self.cache.store(doc.uri, flight.prefix, seen, result.text, flight.kind)
        result = attrs.evolve(
            result, context_tokens=found.tokens, context_budget=prompt.budget
        )
        if flight.kind == "model" and settings.prefetch:
            asyncio.get_running_loop().call_soon(
                self._prefetch,
                doc,
                len(flight.prefix),
                result,
                settings,
                context,
                found,
            )
        return result

    def _prefetch(
        self,
        doc: Document,
        offset: int,
        shown: Completion,
        settings: CompletionSettings,
        context: ContextSettings | None,
        found: builder.Context,
    ) -> None:
        """Compute the completion that follows ``shown`` once it is accepted.

        Only for the in-process model (a cloud backend would bill for guesses),
        only when nothing else is under way, and with the same context, so the
        prompt shares everything up to the cursor with the one just evaluated.
        """
        if not shown.text.strip() or shown.backend not in LOCAL_BACKENDS:
            return
        if not getattr(self.backend, "local_first", True):
            return  # the guess would go to the first backend of the chain
        if any(f.running for f in self._flights.values()):
            return
        text = doc.text[:offset] + shown.text + doc.text[offset:]
        ahead = attrs.evolve(doc, text=text)
        self.stats.prefetches_started += 1
        launched: list[Flight] = []

        async def run() -> Completion:
            flight = self._launch(
                ahead,
                offset + len(shown.text),
                settings,
                context,
                "prefetch",
                found=found,
            )
            launched.append(flight)
            assert flight.task is not None
            return await flight.task  # preempting this cancels the flight

        def followed() -> bool:
            return bool(launched) and launched[0].waiters > 0

        self._in_background(
            self.scheduler.run(Priority.PREFETCH, doc.uri, run, protected=followed)
        )

    def _in_background(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` without a caller: keep a reference, swallow its outcome."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_consume)

    def warm_soon(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        context: ContextSettings | None,
        at_cursor: bool = True,
    ) -> None:
        """Warm ``doc``'s prompt for a cursor at ``offset`` in idle time."""
        if settings.warm_up and getattr(self.backend, "warm", None) is not None:
            self._in_background(self.warm(doc, offset, settings, context, at_cursor))

    async def warm(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        context: ContextSettings | None,
        at_cursor: bool = True,
    ) -> int | None:
        """Evaluate the prompt a request at ``offset`` would have, ahead.

        The context, the text before the cursor and then the text after it go
        into the model's KV cache with no generation, when no request needs the
        model, so the first completion in a newly opened file does not evaluate
        them (nor, asked right there, the text after the cursor). ``at_cursor``
        false: ``offset`` is a guess (no cursor reported), so the text after it
        is left out (the backend's ``tail``). Returns the tokens evaluated; None
        when preempted by a request or not supported.
        """
        warm = getattr(self.backend, "warm", None)
        if warm is None:
            return None

        async def run() -> int:
            # The window and suffix are sized from the measured speed: the one the
            # request after this will see, not the unknown one before calibration.
            calibrated = getattr(self.backend, "calibrated", None)
            if calibrated is not None and not self.meter.pinned:
                await calibrated()
            prompt = self.prompt(doc, offset, settings, context, record=False)
            window = prompt.window
            req = self._request(
                doc, window.prefix, window.suffix, settings, prompt.found
            )
            self._warming = (doc.uri, window, prompt.found.files)
            try:
                evaluated = int(await warm(req, tail=at_cursor))
            finally:
                self._warming = None
            self.stats.warmups += 1
            self.stats.warm_tokens += evaluated
            warmed.append(prompt)
            return evaluated

        warmed: list[Prompt] = []
        evaluated = await self.scheduler.run(Priority.WARM, doc.uri, run)
        if warmed and at_cursor and settings.grow_window:
            self._grow_soon(doc, offset, settings, warmed[0], 0.0)
        return evaluated

    async def grow(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        warmed: Prompt,
    ) -> int | None:
        """After a warm-up, evaluate the whole window the settings ask for.

        On a slow machine the text before the cursor shrinks (see ``window``)
        so that a cold prompt is evaluated in the pause before the user types.
        A longer pause pays for more: this evaluates ``warmed``'s prompt with
        the window ``prefixChars`` asks for (same context, same text after the
        cursor) at the lowest priority, any request or warm-up preempting it,
        one document at a time (the newest). The prompt cached before is saved
        first, so a request meanwhile still finds it; where it cannot be saved
        nothing grows. Once done, requests in this document take the longer
        window whenever it costs them no more new tokens than the short one
        (``prompt``). Returns the tokens evaluated; None when not done (not
        needed, preempted, not kept, or the backend cannot tell what it has
        cached).
        """
        warm = getattr(self.backend, "warm", None)
        new_tokens = getattr(self.backend, "new_tokens", None)
        if warm is None or new_tokens is None:
            return None
        full = self._full_window(settings)
        held = self._window_held.get(doc.uri)
        if held is None or full <= held:
            return None  # the speed affords the whole window already

        async def run() -> int | None:
            longer, chars = self._fit(doc.text, offset, settings, full)
            if longer.start >= warmed.window.start:
                return None  # the prompt had the whole window (or all there is)
            # The same text after the cursor as the prompt warmed.
            window = attrs.evolve(longer, suffix=warmed.window.suffix)
            req = self._request(
                doc, window.prefix, window.suffix, settings, warmed.found
            )
            new = new_tokens(req)
            if new is None:
                return None  # not the in-process model's (or not loaded)
            evaluated = 0
            if new:  # not cached (or only saved) yet
                self._warming = (doc.uri, window, warmed.found.files)
                try:
                    evaluated = int(await warm(req, keep_live=True))
                finally:
                    self._warming = None
                if evaluated == NOT_KEPT:
                    return None
                self.stats.windows_grown += 1
                self.stats.warm_tokens += evaluated
            _hold(self._window_grown, doc.uri, chars)
            return evaluated

        return await self.scheduler.run(Priority.GROW, GROW_KEY, run)

    def _grow_soon(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        asked: Prompt,
        after_s: float | None = None,
    ) -> None:
        """``grow`` the window of a prompt warmed or asked, after a pause.

        A pause in typing (``after_s``, by default ``grow_after_s``, with no
        request in this document), so that growing does not start and stop
        between keystrokes. A request in the document cancels it, waiting or
        running.
        """
        if (older := self._growing.pop(doc.uri, None)) is not None:
            older.cancel()

        async def later() -> None:
            await asyncio.sleep(self.grow_after_s if after_s is None else after_s)
            await self.grow(doc, offset, settings, asked)

        task = asyncio.ensure_future(later())
        self._growing[doc.uri] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_consume)
        task.add_done_callback(
            lambda t: (
                self._growing.pop(doc.uri, None)
                if self._growing.get(doc.uri) is t
                else None
            )
        )

    @staticmethod
    def _full_window(settings: CompletionSettings) -> int:
        """Tokens of the window ``prefixChars`` asks for (about 3 chars a token)."""
        return settings.prefix_chars // 3

    def prompt(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        context: ContextSettings | None,
        found: builder.Context | None = None,
        record: bool = True,
    ) -> Prompt:
        """What a completion at ``offset`` gives the model, in the order it is sized.

        The text after the cursor (what a keystroke affords), the context budget
        (what is left of the latency target), the context, then the text before
        the cursor (what a cold prompt affords after that context; the longer
        window grown in idle time where that costs no more new tokens). ``found``:
        a context already built (a prefetch keeps its request's). ``record``: a
        request (kept as the last context, counted as a context change or not);
        a warm-up is not one.
        """
        seen = cursor_window(doc.text, offset, 0, settings.suffix_chars).suffix
        suffix = self._cut_suffix(seen, settings)
        budget = 0
        if found is None:
            budget = self._context_budget(suffix, settings, context, doc.uri)
            found = self.context(doc, offset, context, budget, record=record)
            if record:
                text = self.stats.last_context.get("text", "") if found.files else ""
                self.changes.observe(doc.uri, text)
        short = self.window(doc.uri, doc.text, offset, settings, found.tokens)
        window = self._grown(doc, offset, settings, found, short, suffix)
        return Prompt(
            attrs.evolve(window, suffix=suffix), seen, found, budget, window != short
        )

    def _grown(
        self,
        doc: Document,
        offset: int,
        settings: CompletionSettings,
        found: builder.Context,
        window: Window,
        suffix: str,
    ) -> Window:
        """The window grown in idle time (``grow``) where it costs no more.

        That is, where the backend has no more of its prompt to evaluate than of
        the prompt with ``window`` (the one the speed affords): the same context
        and a cursor in the same region; otherwise ``window``.
        """
        grown = self._window_grown.get(doc.uri)
        new_tokens = getattr(self.backend, "new_tokens", None)
        if grown is None or new_tokens is None or not settings.grow_window:
            return window
        longer = cursor_window(doc.text, offset, grown, settings.suffix_chars)
        if longer.start >= window.start:
            return window
        cost_short = new_tokens(
            self._request(doc, window.prefix, suffix, settings, found)
        )
        cost_long = new_tokens(
            self._request(doc, longer.prefix, suffix, settings, found)
        )
        if cost_short is None or cost_long is None or cost_long > cost_short:
            return window
        return longer

    def window(
        self,
        uri: str,
        text: str,
        offset: int,
        settings: CompletionSettings,
        context_tokens: int = 0,
    ) -> Window:
        """The text around the cursor, cut at anchored line starts.

        Before the cursor: at most ``prefixChars``, and at most the tokens a cold
        prompt affords at the measured speed once the ``context_tokens`` of this
        request's context are paid for (see ``latency.window_tokens``); the cap
        is held per document through small changes of either. After the cursor:
        at most ``suffixChars`` (``prompt`` cuts it further).
        """
        if not getattr(self.backend, "loaded", False):
            # No tokenizer, no speed yet.
            return cursor_window(
                text, offset, settings.prefix_chars, settings.suffix_chars
            )
        self._seed_speed()
        cap = latency.window_tokens(
            self.meter, context_tokens, self._full_window(settings)
        )
        held = self._window_held.get(uri, cap)
        if abs(cap - held) > latency.WINDOW_STEP:
            held = cap
        _hold(self._window_held, uri, held)
        self.window_cap = held
        return self._fit(text, offset, settings, held)[0]

    def _fit(
        self, text: str, offset: int, settings: CompletionSettings, tokens: int
    ) -> tuple[Window, int]:
        """A window of at most ``tokens`` before the cursor, and its budget.

        The budget: the characters it was cut to (at most ``prefixChars``),
        which give the same start for cursors nearby.
        """
        chars = settings.prefix_chars
        window = cursor_window(text, offset, chars, settings.suffix_chars)
        count = self.token_counter()
        for _ in range(4):
            # The lines before the cursor line: the same while typing on a line.
            head = window.prefix[: window.prefix.rfind("\n") + 1]
            counted = count(head)
            if counted <= tokens or chars <= 256:
                break
            chars = max(256, int(chars * tokens / counted * 0.95))
            window = cursor_window(text, offset, chars, settings.suffix_chars)
        return window, chars

    def _cut_suffix(self, suffix: str, settings: CompletionSettings) -> str:
        """The part of ``suffix`` (the text after the cursor) the prompt gets.

        At most the tokens ``latency.suffix_tokens`` affords, cut at a line end:
        the suffix comes after the cursor in the prompt, so it is evaluated again
        after every keystroke. It always keeps the rest of the cursor line and
        the lines up to the first one with code after it (which may be more).
        """
        if not getattr(self.backend, "loaded", False):
            return suffix
        self._seed_speed()
        self.suffix_cap = cap = latency.suffix_tokens(
            self.meter, settings.suffix_chars // 3
        )
        count = self.token_counter()
        if count(suffix) <= cap:
            return suffix
        keep, used, code = 0, 0, False
        for i, line in enumerate(re.split(r"(?<=\n)", suffix)):
            used += count(line)
            if used > cap and code:
                break
            keep += len(line)
            code = code or (i > 0 and bool(line.strip()))
        return suffix[:keep]

    def _seed_speed(self) -> None:
        """Seed the speed meter from the backend's load-time calibration."""
        speed = getattr(self.backend, "calibration", None)
        if speed is not None:
            self.meter.seed(*speed)

    def _context_budget(
        self,
        suffix: str,
        settings: CompletionSettings,
        context: ContextSettings | None,
        uri: str = "",
    ) -> int:
        """Context tokens for a request in ``uri``: sized from the measured speed.

        Held per document through small changes: a new budget means a new
        context, so a new prompt prefix.
        """
        if context is None or not context.enabled:
            self.budget_reason = "context is off"
            return 0
        maximum = context.budget_tokens
        floor = (
            f"; the cursor's direct dependencies get at least {context.floor_tokens}"
        )
        if not settings.latency_target_ms:
            self.budget_reason = f"latencyTargetMs is 0: budgetTokens {maximum}"
            return maximum
        self._seed_speed()
        tail = self.token_counter()(suffix) + TAIL_TOKENS
        budget = latency.context_budget(
            settings.latency_target_ms, self.meter, tail, self.changes.rate, maximum
        )
        current = self._budget_held.get(uri)
        if current is None or abs(budget - current) > latency.BUDGET_STEP or not budget:
            current = budget
        _hold(self._budget_held, uri, current)
        self.context_budget = current = min(current, maximum)
        meter = self.meter
        if meter.prompt_tps is None or meter.gen_tps is None:
            why = f"speed not measured yet: budgetTokens {maximum}"
        else:
            why = (
                f"{current} tokens: a completion after a keystroke re-evaluates "
                f"~{tail} tokens and generates ~{meter.generated_tokens:.0f} at "
                f"{meter.prompt_tps:.0f} prompt / {meter.gen_tps:.0f} generated "
                f"tokens/s; the context changes in {self.changes.rate:.0%} of "
                f"requests; what is left of latencyTargetMs "
                f"{settings.latency_target_ms} pays for {current} (at most "
                f"budgetTokens {maximum})"
            )
        self.budget_reason = why + floor
        return current

    def _record(self, uri: str, result: Completion, started: float) -> Completion:
        """Stamp the latency and keep the suggestion's stats for clients."""
        result = attrs.evolve(result, latency_ms=(time.perf_counter() - started) * 1000)
        self._suggestion_id += 1
        stats = result.stats
        entry: dict[str, Any] = {
            "id": self._suggestion_id,
            "uri": uri,
            "source": result.source,
            "backend": result.backend,
            "latencyMs": round(result.latency_ms, 2),
            "debounceMs": round(result.debounce_ms, 1),
            "chars": len(result.text),
            "contextTokens": result.context_tokens,
            "contextBudget": result.context_budget,
        }
        if stats is not None and result.source in ("model", "reuse", "prefetch"):
            entry.update(
                cachedTokens=stats.cached_tokens,
                newPromptTokens=stats.prompt_tokens - stats.cached_tokens,
                promptMs=round(stats.prompt_ms, 1),
                generatedTokens=stats.generated_tokens,
                generationMs=round(stats.generation_ms, 1),
            )
        self.suggestions.append(entry)
        logger.debug("suggestion %s", entry)
        return result

    async def supersede(self, key: str, job: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``job`` as the only one for ``key``, cancelling the one before it."""
        if (older := self._latest.get(key)) is not None and not older.done():
            older.cancel()
            self.stats.superseded += 1
        task: asyncio.Task[T] = asyncio.ensure_future(job())
        self._latest[key] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller was cancelled ($/cancelRequest), not superseded
            return None
        finally:
            if self._latest.get(key) is task:
                del self._latest[key]

    def context(
        self,
        doc: Document,
        offset: int,
        settings: ContextSettings | None,
        budget: int | None = None,
        record: bool = True,
    ) -> builder.Context:
        """Definitions from other files for this cursor (empty when off).

        ``budget`` overrides the settings' token budget (the part sized from the
        speed); the definitions the cursor directly depends on get at least
        ``floor_tokens`` either way. ``record``: keep it as the last context.
        """
        if settings is None or not settings.enabled:
            return builder.Context()
        if budget is None:
            budget = settings.budget_tokens
        budget = min(budget, settings.budget_tokens)
        direct = min(settings.budget_tokens, max(settings.floor_tokens, budget))
        if not direct:
            return builder.Context()
        path = doc.fs_path or doc.uri
        language = language_of(path, doc.language_id)
        if language is None or len(doc.text) > settings.max_file_bytes:
            return builder.Context()
        started = time.perf_counter()
        current = self.index.update(path, doc.text, doc.language_id)
        if current is None:
            return builder.Context()
        count = self.token_counter()
        found = builder.build(
            current,
            doc.text,
            offset,
            self.index,
            budget,
            count,
            self.open_documents() if settings.open_documents else (),
            floor_tokens=direct,
            stable=self._stable_context(
                current, doc.text, builder.stable_budget(direct), count
            ),
        )
        files = tuple(
            attrs.evolve(f, path=builder.relative(f.path, self.roots), fs_path=f.path)
            for f in found.files
        )
        found = attrs.evolve(found, files=files)
        if not record:
            return found
        self.stats.last_context = {
            "symbols": list(found.symbols),
            "files": [f.path for f in files],
            "tokens": found.tokens,
            "build_ms": (time.perf_counter() - started) * 1000,
            "text": "\n".join(f"# {f.path}\n{f.text}" for f in files),
        }
        return found

    def _stable_context(
        self,
        current: FileSymbols,
        text: str,
        budget: int,
        count: Callable[[str], int],
    ) -> builder.Context:
        """The file's import context, computed once per set of imports.

        It must not change while the user types (it leads the prompt, and the KV
        cache holds what follows it); it changes when the imports, the budget,
        the tokenizer or the index do.
        """
        key = (current.imports, budget, id(count), len(self.index))
        memo = self._stable.get(current.path)
        if (
            memo is not None
            and memo[0] == key
            and all(self.index.file(path) is entry for path, entry in memo[2])
        ):
            return memo[1]
        stable = builder.stable_context(current, text, self.index, budget, count)
        # The imported files it was made from: re-indexing one (saved, changed on
        # disk) makes it stale.
        entries = tuple((p, self.index.file(p)) for p in {k[0] for k in stable.keys})
        self._stable[current.path] = (key, stable, entries)
        if len(self._stable) > 64:
            self._stable.pop(next(iter(self._stable)))
        return stable

    def token_counter(self) -> Callable[[str], int]:
        """The backend's tokenizer, memoised; an estimate before the model loads.

        The same definitions are counted request after request while typing.
        """
        backend = self.backend
        count = getattr(backend, "count_tokens", None)
        if count is None or not getattr(backend, "loaded", True):
            return _approx_tokens
        if self._counter_for is not backend:
            self._counter_for = backend
            self._counter = _memo_by_hash(count)
        return self._counter

    async def _generate(
        self,
        doc: Document,
        prefix: str,
        suffix: str,
        settings: CompletionSettings,
        context: builder.Context | None = None,
        on_partial: Callable[[str], None] | None = None,
        seen: str | None = None,
    ) -> Completion:
        """Generate and post-process a completion of ``prefix``/``suffix``.

        ``seen``: the text after the cursor as the editor has it, when the
        prompt got less of it (post-processing compares the completion with it).
        """
        backend = self.backend
        if backend is None:
            raise BackendMissing(self.backend_problem)
        line_prefix = prefix.rsplit("\n", 1)[-1]
        req = self._request(doc, prefix, suffix, settings, context)
        suffix = suffix if seen is None else seen
        stats = GenerationStats()
        self.stats.generations_started += 1
        chunks: list[str] = []
        limit = self.more_lines_limit(settings)
        cut: str | None = None
        try:
            async with contextlib.aclosing(backend.generate(req, stats)) as stream:
                async for chunk in stream:
                    chunks.append(chunk)
                    partial = fix_indent("".join(chunks), line_prefix)
                    if on_partial is not None:
                        on_partial(partial)
                    if settings.postprocess and finished(
                        partial,
                        prefix,
                        suffix,
                        doc.language_id,
                        max_lines=settings.max_lines,
                        multiline=settings.multiline,
                    ):
                        break  # aclosing stops the backend now, not at GC
                    if (
                        limit is not None
                        and len(chunks) >= limit  # read, not generated: steady
                        and (cut := whole_lines(partial, doc.language_id)) is not None
                    ):
                        self.stats.more_lines_stops += 1
                        break  # the lines so far; the next come after accepting
        except asyncio.CancelledError:
            self.stats.generations_cancelled += 1
            raise
        except Exception:
            self.stats.generations_failed += 1
            raise
        self.stats.generations_completed += 1
        raw = cut if cut is not None else fix_indent("".join(chunks), line_prefix)
        text = raw
        if settings.postprocess:
            text = postprocess(
                raw,
                prefix,
                suffix,
                doc.language_id,
                max_lines=settings.max_lines,
                multiline=settings.multiline,
            )
        used = getattr(backend, "last_backend", "") or backend.name
        self.stats.last = {"backend": used, **stats.summary()}
        logger.debug("completion %r -> %r (%s)", raw, text, self.stats.last)
        return Completion(text, "model", raw=raw, stats=stats, backend=used)

    def more_lines_limit(self, settings: CompletionSettings) -> int | None:
        """Chunks after which a completion with a whole line stops (None: none).

        The in-process model streams a chunk a token. Only where it answers
        (``loaded``: it is; ``local_first``: a router view goes to it first): a
        remote server's chunks are not tokens, nor is its speed the one measured.
        """
        backend = self.backend
        if (
            not settings.multiline
            or not getattr(backend, "loaded", False)
            or not getattr(backend, "local_first", True)
        ):
            self.more_lines_tokens = None
            return None
        self._seed_speed()
        self.more_lines_tokens = latency.more_lines_tokens(
            self.meter, settings.more_lines_ms
        )
        return self.more_lines_tokens

    def _request(
        self,
        doc: Document,
        prefix: str,
        suffix: str,
        settings: CompletionSettings,
        context: builder.Context | None,
    ) -> GenerateRequest:
        """The backend request for a completion (and for warming its prompt)."""
        return GenerateRequest(
            prompt=prefix,
            suffix=suffix,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            path=doc.path,
            fs_path=doc.fs_path,
            context=context.files if context else (),
            repo=self.repo,
            comment=_COMMENTS.get(doc.language_id, "//"),
        )

    def forget(self, uri: str) -> None:
        """Drop cached completions and cancel work for a closed document."""
        self.cache.forget(uri)
        self.debouncer.forget(uri)
        self.changes.forget(uri)
        self._window_held.pop(uri, None)
        self._window_grown.pop(uri, None)
        if (growing := self._growing.pop(uri, None)) is not None:
            growing.cancel()
        self._budget_held.pop(uri, None)
        self.scheduler.cancel(uri)
        if (task := self._latest.pop(uri, None)) is not None:
            task.cancel()
        if (flight := self._flights.pop(uri, None)) is not None and flight.task:
            flight.task.cancel()

    async def aclose(self) -> None:
        """Cancel in-flight work and close the backend."""
        self.scheduler.cancel_all()
        for task in list(self._latest.values()):
            task.cancel()
        self._latest.clear()
        for flight in self._flights.values():
            if flight.task is not None:
                flight.task.cancel()
        self._flights.clear()
        backend, self.backend = self.backend, None
        if backend is not None:
            await backend.aclose()
