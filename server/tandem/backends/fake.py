"""A scripted backend: replays queued answers. For tests; never leaves the process."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from typing import ClassVar

from tandem.backends.base import BackendError, GenerateRequest, GenerationStats


class FakeBackend:
    """Answers each request with the next queued script entry.

    An entry is a list of chunks, or an exception to raise. With nothing queued,
    the answer is empty. ``chunk_delay`` spaces the chunks out so tests can cancel
    in the middle of a stream.
    """

    name: ClassVar[str] = "fake"

    def __init__(self, chunk_delay: float = 0.0) -> None:
        self.script: deque[list[str] | BaseException] = deque()
        self.requests: list[GenerateRequest] = []
        self.chunk_delay = chunk_delay
        self.cancelled = 0
        self.closed = False

    def enqueue(self, *answers: list[str] | str | BaseException) -> None:
        """Queue answers; a plain string is one chunk."""
        for answer in answers:
            self.script.append([answer] if isinstance(answer, str) else answer)

    async def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Replay the next scripted answer chunk by chunk."""
        if self.closed:
            raise BackendError("fake backend is closed")
        self.requests.append(req)
        answer = self.script.popleft() if self.script else []
        if isinstance(answer, BaseException):
            raise answer
        if stats is not None:
            stats.prompt_tokens = len(req.prompt.split())
        try:
            for chunk in answer:
                await asyncio.sleep(self.chunk_delay)
                if stats is not None:
                    stats.generated_tokens += 1
                yield chunk
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        """Nothing to free."""
        self.closed = True
