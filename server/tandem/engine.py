"""CompletionEngine: context -> cache -> backend -> post-processing. No LSP here.

Requests for one document supersede each other: a new one cancels the older one
(during its debounce sleep that costs nothing; during prompt evaluation or generation
the backend aborts promptly), and the cancelled caller gets ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import attrs

from tandem.backends.base import Backend, GenerateRequest, GenerationStats
from tandem.cache import CompletionCache
from tandem.config import CompletionSettings, ContextSettings
from tandem.context import builder
from tandem.context.index import WorkspaceIndex
from tandem.context.symbols import language_of
from tandem.context.window import cursor_window
from tandem.postprocess import finished, fix_indent, postprocess

logger = logging.getLogger(__name__)

T = TypeVar("T")


@attrs.frozen
class Document:
    """A snapshot of one open document."""

    uri: str
    text: str
    language_id: str = ""
    path: str | None = None
    """Workspace-relative path, for models with file-level markers."""
    fs_path: str | None = None
    """The file's path on disk, as the workspace index knows it."""


@attrs.frozen
class Completion:
    """A completion to insert at the cursor, and where it came from."""

    text: str
    source: Literal["model", "cache"]
    raw: str = ""
    """The model's output before post-processing."""
    stats: GenerationStats | None = None
    latency_ms: float = 0.0


@attrs.define
class EngineStats:
    """Counters since start; shown by the status command."""

    requests: int = 0
    cache_hits: int = 0
    superseded: int = 0
    generations_started: int = 0
    generations_completed: int = 0
    generations_cancelled: int = 0
    generations_failed: int = 0
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


def _approx_tokens(text: str) -> int:
    """A tokenizer stand-in (before the model is loaded): about 3.5 chars a token."""
    return int(len(text) / 3.5) + 1


class BackendMissing(Exception):
    """No backend is ready; the message says why and what to do."""


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
        self._latest: dict[str, asyncio.Task[Any]] = {}

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
        window = cursor_window(
            doc.text, offset, settings.prefix_chars, settings.suffix_chars
        )
        cached = self.cache.lookup(doc.uri, doc.text[:offset], window.suffix)
        if cached is not None:
            self.stats.cache_hits += 1
            latency = (time.perf_counter() - started) * 1000
            return Completion(cached, "cache", latency_ms=latency)

        async def job() -> Completion:
            await asyncio.sleep(settings.debounce_ms / 1000)
            found = self.context(doc, offset, context)
            result = await self._generate(
                doc, window.prefix, window.suffix, settings, found
            )
            self.cache.store(doc.uri, doc.text[:offset], window.suffix, result.text)
            latency = (time.perf_counter() - started) * 1000
            return attrs.evolve(result, latency_ms=latency)

        return await self.supersede(doc.uri, job)

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
        self, doc: Document, offset: int, settings: ContextSettings | None
    ) -> builder.Context:
        """Definitions from other files for this cursor (empty when off)."""
        if settings is None or not settings.enabled or not settings.budget_tokens:
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
            settings.budget_tokens,
            count,
            self.open_documents() if settings.open_documents else (),
        )
        files = tuple(
            attrs.evolve(f, path=builder.relative(f.path, self.roots))
            for f in found.files
        )
        found = attrs.evolve(found, files=files)
        self.stats.last_context = {
            "symbols": list(found.symbols),
            "files": [f.path for f in files],
            "tokens": found.tokens,
            "build_ms": (time.perf_counter() - started) * 1000,
            "text": "\n".join(f"# {f.path}\n{f.text}" for f in files),
        }
        return found

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
            self._counter = functools.lru_cache(maxsize=8192)(count)
        return self._counter

    async def _generate(
        self,
        doc: Document,
        prefix: str,
        suffix: str,
        settings: CompletionSettings,
        context: builder.Context | None = None,
    ) -> Completion:
        backend = self.backend
        if backend is None:
            raise BackendMissing(self.backend_problem)
        line_prefix = prefix.rsplit("\n", 1)[-1]
        req = GenerateRequest(
            prompt=prefix,
            suffix=suffix,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            path=doc.path,
            context=context.files if context else (),
            repo=self.repo,
            comment=_COMMENTS.get(doc.language_id, "//"),
        )
        stats = GenerationStats()
        self.stats.generations_started += 1
        chunks: list[str] = []
        try:
            async with contextlib.aclosing(backend.generate(req, stats)) as stream:
                async for chunk in stream:
                    chunks.append(chunk)
                    partial = fix_indent("".join(chunks), line_prefix)
                    if settings.postprocess and finished(
                        partial,
                        prefix,
                        suffix,
                        doc.language_id,
                        max_lines=settings.max_lines,
                        multiline=settings.multiline,
                    ):
                        break  # aclosing stops the backend now, not at GC
        except asyncio.CancelledError:
            self.stats.generations_cancelled += 1
            raise
        except Exception:
            self.stats.generations_failed += 1
            raise
        self.stats.generations_completed += 1
        raw = fix_indent("".join(chunks), line_prefix)
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
        self.stats.last = {"backend": used, **attrs.asdict(stats)}
        logger.debug("completion %r -> %r (%s)", raw, text, self.stats.last)
        return Completion(text, "model", raw=raw, stats=stats)

    def forget(self, uri: str) -> None:
        """Drop cached completions and cancel work for a closed document."""
        self.cache.forget(uri)
        if (task := self._latest.pop(uri, None)) is not None:
            task.cancel()

    async def aclose(self) -> None:
        """Cancel in-flight work and close the backend."""
        for task in list(self._latest.values()):
            task.cancel()
        self._latest.clear()
        backend, self.backend = self.backend, None
        if backend is not None:
            await backend.aclose()
