"""A scripted backend: replays queued answers. For tests; never leaves the process.

A server started with ``backend: "fake"`` reads its script from the JSON file named
by ``TANDEM_FAKE_SCRIPT`` (a list of answers: a string, or a list of chunks; or an
object with ``answers``, a ``default`` answer for when they run out,
``chunkDelay`` in seconds, and ``warm``: true for a ``warm`` method), so end-to-end
tests can inject model output, broken output included, and load tests can run many
requests.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from tandem.backends.base import (
    BackendError,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)

SCRIPT_ENV = "TANDEM_FAKE_SCRIPT"


class FakeBackend:
    """Answers each request with the next queued script entry.

    An entry is a list of chunks, or an exception to raise (in the list: raised
    after the chunks before it, as a connection lost mid-stream). With nothing queued,
    the answer is empty. ``chunk_delay`` spaces the chunks out so tests can cancel
    in the middle of a stream.
    """

    name: ClassVar[str] = "fake"

    def __init__(self, chunk_delay: float = 0.0, warm: bool = False) -> None:
        self.script: deque[list[str | BaseException] | BaseException] = deque()
        self.requests: list[GenerateRequest | ChatRequest] = []
        """The latest requests (100 at most), for tests to look at."""
        self.asked = asyncio.Event()
        """Set when a request is taken (tests clear it to wait for the next)."""
        self.chunk_delay = chunk_delay
        self.cancelled = 0
        self.closed = False
        self.default: list[str | BaseException] = []
        """The answer when nothing is queued."""
        self.warmed: list[GenerateRequest] = []
        """Requests given to ``warm`` (100 at most)."""
        self.warm: Callable[..., Awaitable[int]] | None = None
        """Like the llama.cpp backend's ``warm``, when made with ``warm=True``."""
        self.warmed_tails: list[bool] = []
        """Their ``tail`` arguments."""
        self.kept_live: list[bool] = []
        """Their ``keep_live`` arguments."""
        self.warm_started = asyncio.Event()
        """Set when a warm-up starts."""
        self.warm_hold: asyncio.Event | None = None
        """When not None, a warm-up waits until it is set (tests preempt it)."""
        self.kept_chunks = 0
        """Calls of ``keep_chunk``."""
        self.kept_whole = 0
        """Of those, with ``whole`` (the request's prompt was all of the warm-up's)."""
        if warm:
            self.warm = self._warm
        if path := os.environ.get(SCRIPT_ENV):
            script = json.loads(Path(path).read_text(encoding="utf-8"))
            if isinstance(script, dict):
                if script.get("warm"):
                    self.warm = self._warm
                default = script.get("default", [])
                self.default = [default] if isinstance(default, str) else default
                self.chunk_delay = float(script.get("chunkDelay", chunk_delay))
                script = script.get("answers", [])
            self.enqueue(*script)

    def enqueue(
        self, *answers: list[str | BaseException] | str | BaseException
    ) -> None:
        """Queue answers; a plain string is one chunk."""
        for answer in answers:
            self.script.append([answer] if isinstance(answer, str) else answer)

    def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Replay the next scripted answer chunk by chunk."""
        return self._replay(req, len(req.prompt.split()), stats)

    def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Replay the next scripted answer as the assistant's reply."""
        words = sum(len(m.content.split()) for m in req.messages)
        return self._replay(req, words, stats)

    async def _replay(
        self,
        req: GenerateRequest | ChatRequest,
        prompt_tokens: int,
        stats: GenerationStats | None,
    ) -> AsyncGenerator[str, None]:
        if self.closed:
            raise BackendError("fake backend is closed")
        self.requests.append(req)
        del self.requests[:-100]
        self.asked.set()
        answer = self.script.popleft() if self.script else self.default
        if isinstance(answer, BaseException):
            raise answer
        if stats is not None:
            stats.prompt_tokens = prompt_tokens
        try:
            for chunk in answer:
                if isinstance(chunk, BaseException):
                    raise chunk
                await asyncio.sleep(self.chunk_delay)
                if stats is not None:
                    stats.generated_tokens += 1
                yield chunk
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def _warm(
        self, req: GenerateRequest, tail: bool = True, keep_live: bool = False
    ) -> int:
        """Record ``req`` as warmed; its prompt's words stand for the tokens.

        ``tail``: recorded in ``warmed_tails``; ``keep_live``: in ``kept_live``.

        With ``warm_hold`` set, it then waits on it (a long prompt under way).
        """
        if self.closed:
            raise BackendError("fake backend is closed")
        self.warmed.append(req)
        del self.warmed[:-100]
        self.warmed_tails.append(tail)
        del self.warmed_tails[:-100]
        self.kept_live.append(keep_live)
        del self.kept_live[:-100]
        self.warm_started.set()
        if self.warm_hold is not None:
            await self.warm_hold.wait()
        await asyncio.sleep(0)
        return len(req.prompt.split())

    def keep_chunk(self, whole: bool = False) -> None:
        """Count the requests that would let a warm-up's chunk finish."""
        self.kept_chunks += 1
        self.kept_whole += whole

    async def aclose(self) -> None:
        """Nothing to free."""
        self.closed = True
