"""Next-edit prediction: history -> window -> prompt -> generate -> gate. No LSP here.

The model work is background work for the engine's scheduler (priority
``NEXT_EDIT``): it never runs in front of a completion request, a request
preempts it (even in the middle of the prompt), and a newer prediction for the
same document replaces the one waiting or running. Generation stops as soon as
the rewrite has made its change and copied two lines unchanged after it: the
rest of the window is taken as it was, and the next change is the next
prediction's. The backend reports each token's log-probability; the confidence
that gates what is shown combines the heuristic's fit with the probabilities of
the tokens that wrote the change (see ``gate.judge``, ``gate.change_logprobs``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs

from tandem.assist.edits import TextChange, UnsafeEdit
from tandem.backends.base import (
    Backend,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)
from tandem.config import NextEditSettings
from tandem.context import builder
from tandem.context.symbols import language_of
from tandem.engine import BackendMissing, CompletionEngine, Document
from tandem.nextedit import gate, prompts
from tandem.nextedit.history import EditHistory
from tandem.scheduler import Priority

logger = logging.getLogger(__name__)


@attrs.frozen
class Prediction:
    """A predicted next edit, shown or not, and why."""

    changes: tuple[TextChange, ...]
    """Minimal changes, the one to offer first (after the cursor) first."""
    confidence: float
    shown: bool
    reason: str
    """Why it is not shown (empty when it is)."""
    format: prompts.Format
    window: tuple[int, int]
    raw: str = ""
    """The model's answer (cut where generation stopped)."""
    latency_ms: float = 0.0
    stats: GenerationStats | None = None
    backend: str = ""
    logprobs: tuple[float, ...] = ()
    """The log-probabilities of the change's tokens that went into the
    confidence (empty: none reported, or none tied to the change)."""
    confidence_from: str = "heuristic"
    """``logprobs``, ``unmapped`` or ``heuristic`` (see ``gate.Verdict.source``)."""


@attrs.define
class NextEditStats:
    """Counters since start, for the status command."""

    requests: int = 0
    predictions: int = 0
    shown: int = 0
    accepted: int = 0
    preempted: int = 0
    """Predictions given up for a user's request or a newer prediction."""
    failed: int = 0
    quiet: dict[str, int] = attrs.field(factory=dict)
    """Predictions not shown, by reason."""
    last: dict[str, Any] = attrs.field(factory=dict)


class NextEditor:
    """Predicts the user's next edit from their recent ones."""

    def __init__(self, engine: CompletionEngine) -> None:
        self.engine = engine
        self.history = EditHistory()
        self.stats = NextEditStats()
        self.model_name: Callable[[], str] = lambda: ""
        """The local model's name and file (set by the server), for ``auto``."""

    def format_for(self, settings: NextEditSettings) -> prompts.Format:
        """The prompt format: the setting, or the model's family."""
        if settings.format != "auto":
            return settings.format  # type: ignore[return-value]
        return prompts.detect(self.model_name())

    async def predict(
        self, doc: Document, offset: int, settings: NextEditSettings
    ) -> Prediction | None:
        """The next edit after the user's recent ones; None when preempted."""
        self.stats.requests += 1
        started = time.perf_counter()
        backend = self.engine.backend
        if backend is None:
            raise BackendMissing(self.engine.backend_problem)
        # Recent edits of other files go into the prompt: next edits are predicted
        # by the in-process model only and never leave the machine.
        only_local = getattr(backend, "only_local", None)
        if only_local is not None:
            backend = only_local()
        self.history.group_s = settings.group_ms / 1000
        kind = self.format_for(settings)
        latest = self.history.latest(doc.uri)
        window = prompts.editable_window(
            doc.text, offset, latest, settings.lines_before, settings.lines_after
        )
        path = doc.path or doc.uri.rsplit("/", 1)[-1]
        recent = [
            attrs.evolve(e, path=path if e.uri == doc.uri else self._relative(e.path))
            for e in self.history.recent(doc.uri, settings.history_edits)
        ]
        grammar = language_of(doc.fs_path or doc.uri, doc.language_id)
        if not recent:
            quiet = Prediction((), 0.0, False, "no recent edits", kind, (0, 0))
            self._record(doc.uri, quiet)
            return quiet
        lines = prompts.model_lines(kind, window)
        count = self.engine.token_counter()
        max_tokens = min(settings.max_tokens, int(count(window.text) * 1.3) + 48)
        stats = GenerationStats()
        answer: list[str] = []

        async def job() -> str:
            return await self._generate(
                backend,
                kind,
                doc,
                path,
                window,
                recent,
                lines,
                max_tokens,
                stats,
                answer,
            )

        try:
            body = await self.engine.scheduler.run(Priority.NEXT_EDIT, doc.uri, job)
        except UnsafeEdit as e:
            body, unsafe = "", str(e)
        else:
            unsafe = ""
        if body is None:
            self.stats.preempted += 1
            return None
        self.stats.predictions += 1
        raw = "".join(answer)
        shown_window = doc.text[window.start : window.end]

        def row(offset: int) -> int:
            # Lines as the gate splits the window (str.splitlines: form feeds too).
            return len((shown_window[: offset - window.start] + "x").splitlines()) - 1

        def scores(change: TextChange) -> list[float]:
            rows = (row(change.start), row(max(change.end - 1, change.start)))
            return change_logprobs(kind, lines, body, raw, stats, rows)

        try:
            if unsafe:
                raise UnsafeEdit(unsafe)
            replacement = prompts.shaped(kind, body, window)
            verdict = gate.judge(
                doc.text,
                (window.start, window.end),
                replacement,
                latest,
                grammar,
                offset,
                scores,
                reported=bool(stats.token_logprobs),
            )
        except UnsafeEdit as e:
            verdict = gate.Verdict(reason=str(e))
        shown = bool(verdict.changes) and verdict.confidence >= settings.min_confidence
        reason = verdict.reason or (
            "" if shown else f"confidence {verdict.confidence:.2f} too low"
        )
        used = str(getattr(backend, "last_backend", "") or backend.name)
        prediction = Prediction(
            verdict.changes,
            verdict.confidence,
            shown,
            reason,
            kind,
            (window.start, window.end),
            raw,
            (time.perf_counter() - started) * 1000,
            stats,
            used,
            verdict.logprobs,
            verdict.source,
        )
        self._record(doc.uri, prediction)
        return prediction

    async def _generate(
        self,
        backend: Backend,
        kind: prompts.Format,
        doc: Document,
        path: str,
        window: prompts.Window,
        recent: list[Any],
        lines: list[str],
        max_tokens: int,
        stats: GenerationStats,
        answer: list[str],
    ) -> str:
        """The model's rewrite of the window, in the model's own indentation.

        Cut short once it has made its change and gone back to copying.
        """
        if kind == "chat":
            language = doc.language_id or language_of(path, "") or "text"
            latest = self.history.latest(doc.uri)
            rename = gate.rename_of(doc.text, latest) if latest is not None else None
            messages = prompts.chat_messages(path, language, window, recent, rename)
            stream = backend.chat(
                ChatRequest(
                    messages, max_tokens=max_tokens, path=doc.path, logprobs=True
                ),
                stats,
            )
        else:
            text = (
                prompts.sweep_prompt(path, window, recent)
                if kind == "sweep"
                else prompts.zeta_prompt(path, window, recent)
            )
            stop = prompts.SWEEP_STOP if kind == "sweep" else ()
            stream = backend.generate(
                GenerateRequest(
                    text,
                    None,
                    max_tokens=max_tokens,
                    stop=stop,
                    path=doc.path,
                    logprobs=True,
                ),
                stats,
            )
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                answer.append(chunk)
                out = prompts.answer_lines(kind, "".join(answer))
                if out is not None and (at := prompts.settled(lines, out)) is not None:
                    return "".join(out) + "".join(lines[at:])
        if kind == "sweep" and stats.generated_tokens >= max_tokens:
            raise UnsafeEdit("the answer was cut off by the token limit")
        return prompts.extract(kind, "".join(answer))

    def _relative(self, path: str) -> str:
        """A path as prompts show it: relative to the workspace when inside it."""
        return builder.relative(path, self.engine.roots) if path else path

    def _record(self, uri: str, prediction: Prediction) -> None:
        if prediction.shown:
            self.stats.shown += 1
        else:
            why = prediction.reason.split(" (")[0]
            self.stats.quiet[why] = self.stats.quiet.get(why, 0) + 1
        stats = prediction.stats
        self.stats.last = {
            "uri": uri,
            "format": prediction.format,
            "shown": prediction.shown,
            "reason": prediction.reason,
            "confidence": round(prediction.confidence, 3),
            "changes": len(prediction.changes),
            "latencyMs": round(prediction.latency_ms, 1),
            "backend": prediction.backend,
            "confidenceFrom": prediction.confidence_from,
            **(stats.summary() if stats is not None else {}),
        }
        logger.debug("next edit %s: %r", self.stats.last, prediction.raw)

    def forget(self, uri: str) -> None:
        """A document was closed: drop its history and any work for it."""
        self.history.closed(uri)


def change_logprobs(
    kind: prompts.Format,
    lines: list[str],
    rewrite: str,
    answer: str,
    stats: GenerationStats,
    rows: tuple[int, int] | None = None,
) -> list[float]:
    """The log-probabilities of the tokens of ``answer`` that wrote the change.

    ``lines``: the window as the model saw it; ``rewrite``: the model's rewrite
    of it (before reindenting); ``rows``: the window lines of the change (first,
    last). Empty when the backend reported none.
    """
    at = prompts.rewrite_offset(kind, answer)
    # Copies: the worker thread may still append the token after the last one.
    offsets, logprobs = list(stats.token_offsets), list(stats.token_logprobs)
    if at is None or not logprobs:
        return []
    mark = answer.find(prompts.ZETA_CURSOR, at) if kind == "zeta" else -1
    if mark >= 0:  # echoed by the model, not part of its rewrite
        n = len(prompts.ZETA_CURSOR)
        answer = answer[:mark] + answer[mark + n :]
        offsets = [o if o <= mark else max(mark, o - n) for o in offsets]
    return gate.change_logprobs(
        "".join(lines), rewrite, answer, at, offsets, logprobs, rows
    )


def model_name_of(backend: object) -> str:
    """A loaded model's GGUF name and file name (empty before it loads)."""
    info = getattr(backend, "info", None)
    if info is None:
        return ""
    path = str(getattr(info, "path", ""))
    return f"{getattr(info, 'name', '')} {path.rsplit('/', 1)[-1]}"
