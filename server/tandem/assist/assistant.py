"""Explanations and checked rewrites of a document's code. No LSP here.

The assistant shares the completion engine's backend, workspace index and token
counter. A rewrite is generated, reduced to minimal line changes and checked (see
``edits``); an answer that fails a check is retried once at a higher temperature,
and when that fails too the caller gets ``NoSafeEdit`` with the reasons: an edit
that was not checked is never returned.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from tandem.assist import edits, prompts
from tandem.assist.edits import TextChange, UnsafeEdit
from tandem.backends.base import Backend, BackendError, ChatRequest, GenerationStats
from tandem.context import builder
from tandem.context.symbols import enclosing_definition, language_of
from tandem.engine import BackendMissing, CompletionEngine, Document

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

_DOC_MARKERS = {"python": ('"""', "'''")}
_COMMENT_MARKERS = ("/**", "///", "//", "/*", "#")


class NoSafeEdit(Exception):
    """No answer passed the checks; the message gives the reasons."""


class TooLarge(Exception):
    """The code to work on is larger than the setting allows."""


@attrs.frozen
class Rewrite:
    """A checked rewrite: minimal changes inside ``region``."""

    changes: tuple[TextChange, ...]
    region: tuple[int, int]
    """Character offsets of the lines the model was asked to rewrite."""
    attempts: int
    backend: str
    rejected: tuple[str, ...] = ()
    """Why earlier attempts were not offered."""


@attrs.frozen
class Explanation:
    """An explanation in Markdown of the code in ``region``."""

    text: str
    region: tuple[int, int]
    backend: str


@attrs.define
class AssistStats:
    """Counters since start, for the status command."""

    explanations: int = 0
    rewrites_offered: int = 0
    rewrites_refused: int = 0
    """Rewrites for which no attempt passed the checks."""
    answers_rejected: int = 0
    """Single model answers that failed a check (each may be retried)."""
    last: dict[str, Any] = attrs.field(factory=dict)


class CloudRefused(Exception):
    """The user asked for the cloud, and the settings do not allow it."""


@attrs.frozen
class Routing:
    """How a request may be escalated: the user's ask, the size limit."""

    cloud: bool = False
    """The user asked for the cloud ("Ask Cloud")."""
    escalate_lines: int = 0
    """Code longer than this (lines) is a hard request; 0: no limit."""


class Assistant:
    """Explain and rewrite code with the backend each task is routed to."""

    def __init__(self, engine: CompletionEngine) -> None:
        self.engine = engine
        self.stats = AssistStats()
        self.backend_for: Callable[[str], Backend | None] = lambda task: engine.backend
        """The backend (a router view, in the server) for "explain" or "refactor"."""

    def _backend(self, task: str, code: str, routing: Routing) -> Backend:
        """The task's backend, escalated when the request is hard or asked to be."""
        backend = self.backend_for(task)
        if backend is None:
            raise BackendMissing(self.engine.backend_problem)
        escalate: Callable[[str], Backend | None] | None = getattr(
            backend, "escalated", None
        )
        lines = len(code.splitlines())
        if routing.cloud:
            found = escalate("asked for the cloud") if escalate else None
            if found is None:
                refusal = getattr(backend, "router", None)
                why = refusal.escalation_refusal() if refusal else "no router"
                raise CloudRefused(f"cannot ask the cloud: {why}")
            return found
        if escalate and routing.escalate_lines and lines > routing.escalate_lines:
            reason = f"escalated: {lines} lines > {routing.escalate_lines}"
            return escalate(reason) or backend
        return backend

    # -- regions -----------------------------------------------------------------

    def region(
        self, doc: Document, start: int, end: int, scope: prompts.Scope
    ) -> tuple[int, int]:
        """The whole lines to work on: the selection, or the definition around it.

        An empty selection means the definition around the cursor (or its line).
        """
        text = doc.text
        grammar = _grammar(doc)
        if grammar is not None and (scope == "definition" or start == end):
            first, last = edits.line_of(text, start), edits.line_of(text, end)
            if end > start and text[end - 1] == "\n":
                last = max(first, last - 1)
            found = enclosing_definition(text, grammar, first, last)
            if found is not None:
                return edits.lines_span(text, *found)
        return edits.line_span(text, start, end)

    def _context(self, doc: Document, code: str, budget: int) -> builder.Context:
        grammar = _grammar(doc)
        if grammar is None or budget <= 0:
            return builder.Context()
        current = self.engine.index.update(
            doc.fs_path or doc.uri, doc.text, doc.language_id
        )
        if current is None:
            return builder.Context()
        found = builder.for_code(
            current, code, self.engine.index, budget, self.engine.token_counter()
        )
        files = tuple(
            attrs.evolve(
                f, path=builder.relative(f.path, self.engine.roots), fs_path=f.path
            )
            for f in found.files
        )
        return attrs.evolve(found, files=files)

    # -- explain -----------------------------------------------------------------

    async def explain(
        self,
        doc: Document,
        start: int,
        end: int,
        *,
        max_tokens: int,
        max_lines: int,
        context_budget: int,
        on_text: Progress | None = None,
        routing: Routing = Routing(),
    ) -> Explanation:
        """Explain the selection (or the definition at the cursor), streaming."""
        if start != end:
            region = (start, end)
        else:
            region = self.region(doc, start, end, "definition")
        code, _ = edits.dedent(doc.text[region[0] : region[1]])
        _check_size(code, max_lines)
        backend = self._backend("explain", code, routing)
        language = _language_name(doc)
        context = self._context(doc, code, context_budget)
        path = doc.path or doc.uri
        messages = prompts.explain_messages(code, language, path)
        stats = GenerationStats()
        started = time.perf_counter()
        chunks: list[str] = []
        req = ChatRequest(
            messages,
            max_tokens=max_tokens,
            path=doc.path,
            fs_path=doc.fs_path,
            context=context.files,
            language=language,
        )
        # A user's request: background model work (warm-up, next edit) gives way.
        async with (
            self.engine.scheduler.request(),
            contextlib.aclosing(backend.chat(req, stats)) as stream,
        ):
            async for chunk in stream:
                chunks.append(chunk)
                if on_text is not None:
                    on_text("".join(chunks))
        text = "".join(chunks).strip()
        self.stats.explanations += 1
        used = _used(backend)
        self._record("explain", used, stats, started, 1)
        return Explanation(text, region, used)

    # -- rewrite -----------------------------------------------------------------

    async def rewrite(
        self,
        doc: Document,
        start: int,
        end: int,
        task: prompts.Task,
        *,
        text: str = "",
        max_lines: int,
        context_budget: int,
        retries: int = 1,
        progress: Progress | None = None,
        routing: Routing = Routing(),
    ) -> Rewrite:
        """A checked rewrite of the region ``task`` works on.

        ``text`` is the user's instruction (``rewrite``) or the diagnostic (``fix``).
        Raises NoSafeEdit when no answer passes the checks. When the local answers
        fail, the request is escalated once (if the settings allow it).
        """
        region = self.region(doc, start, end, task.scope)
        old = doc.text[region[0] : region[1]]
        code, _ = edits.dedent(old)
        _check_size(code, max_lines)
        backend = self._backend("refactor", code, routing)
        language = _language_name(doc)
        grammar = _grammar(doc)
        region_line = edits.line_of(doc.text, region[0])
        line = edits.line_of(doc.text, start) - region_line + 1
        request = prompts.instruction(
            task,
            language,
            text=text,
            selection=doc.text[start:end],
            line=line if task.id == "fix" else None,
        )
        context = self._context(doc, code, context_budget)
        messages = prompts.edit_messages(code, language, doc.path or doc.uri, request)
        count = self.engine.token_counter()
        max_tokens = int(count(code) * 1.5) + 256
        rejected: list[str] = []
        started = time.perf_counter()
        attempts = [backend] * (retries + 1)
        escalate = getattr(backend, "escalated", None)
        already = bool(getattr(backend, "escalation", ""))
        cloud = (
            escalate("escalated: the local rewrite failed its checks")
            if escalate is not None and not already
            else None
        )
        if cloud is not None:
            attempts.append(cloud)
        for attempt, chosen in enumerate(attempts, start=1):
            if progress is not None:
                progress(f"attempt {attempt}: generating")
            stats = GenerationStats()
            temperature = 0.0 if attempt == 1 or chosen is not backend else 0.4
            req = ChatRequest(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                path=doc.path,
                fs_path=doc.fs_path,
                context=context.files,
                language=language,
            )
            try:
                async with self.engine.scheduler.request():
                    answer = await _collect(chosen, req, stats)
                changes = self._checked(doc, region, old, answer, task, grammar)
            except UnsafeEdit as e:
                self.stats.answers_rejected += 1
                logger.info("rewrite attempt %d rejected: %s", attempt, e)
                logger.debug("rejected answer: %r", answer)
                rejected.append(str(e))
                continue
            except BackendError as e:
                if attempt == len(attempts):
                    raise
                logger.info("rewrite attempt %d failed: %s", attempt, e)
                rejected.append(str(e))
                continue
            self.stats.rewrites_offered += 1
            used = _used(chosen)
            self._record(task.id, used, stats, started, attempt)
            return Rewrite(tuple(changes), region, attempt, used, tuple(rejected))
        self.stats.rewrites_refused += 1
        reasons = "; ".join(dict.fromkeys(rejected))
        raise NoSafeEdit(f"no safe edit found for '{task.title}' ({reasons})")

    def _checked(
        self,
        doc: Document,
        region: tuple[int, int],
        old: str,
        answer: str,
        task: prompts.Task,
        grammar: str | None,
    ) -> list[TextChange]:
        code = edits.extract_code(answer)
        if not code.strip():
            raise UnsafeEdit("the model returned no code")
        replacement = edits.new_region(old, code)
        changes = edits.minimal_changes(doc.text, *region, replacement)
        edits.check(doc.text, *region, changes, grammar, inserts_only=task.inserts_only)
        if task.id == "docstring":
            added = "".join(c.new_text for c in changes)
            markers = _DOC_MARKERS.get(grammar or "", _COMMENT_MARKERS)
            if not any(m in added for m in markers):
                raise UnsafeEdit("the model added no documentation")
        return changes

    def _record(
        self,
        action: str,
        backend: str,
        stats: GenerationStats,
        started: float,
        attempts: int,
    ) -> None:
        self.stats.last = {
            "action": action,
            "backend": backend,
            "attempts": attempts,
            "ms": round((time.perf_counter() - started) * 1000),
            **stats.summary(),
        }


async def _collect(backend: Backend, req: ChatRequest, stats: GenerationStats) -> str:
    chunks: list[str] = []
    async with contextlib.aclosing(backend.chat(req, stats)) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return "".join(chunks)


def _used(backend: Backend) -> str:
    """The backend that answered (a router view knows which one it used)."""
    return str(getattr(backend, "last_backend", "") or backend.name)


def _grammar(doc: Document) -> str | None:
    return language_of(doc.fs_path or doc.uri, doc.language_id)


def _language_name(doc: Document) -> str:
    return doc.language_id or _grammar(doc) or "text"


def _check_size(code: str, max_lines: int) -> None:
    lines = len(code.splitlines())
    if lines > max_lines:
        raise TooLarge(
            f"the code is {lines} lines long; select at most {max_lines} lines "
            "(setting tandem.actions.maxLines)"
        )
