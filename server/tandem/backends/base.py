"""The backend protocol: a request, a streaming generate, errors. No pygls here."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Protocol

import attrs

from tandem.context.builder import ContextFile


@attrs.frozen
class GenerateRequest:
    """One generation: prompt text, and the suffix after the cursor for FIM."""

    prompt: str
    suffix: str | None = None
    """Text after the cursor. Backends with a FIM format put it in the prompt."""
    max_tokens: int = 128
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    path: str | None = None
    """Workspace-relative path of the file, for formats laid out in file blocks."""
    fs_path: str | None = None
    """The file's absolute path, for the privacy rules (never sent)."""
    context: tuple[ContextFile, ...] = ()
    """Definitions from other files, laid out before the current file."""
    repo: str | None = None
    """The workspace's name, for models with a repository marker."""
    comment: str = "#"
    """Line comment of the language, for context given as a comment block."""
    logprobs: bool = False
    """Record each generated token's log-probability in the stats (the backends
    that can: in-process llama.cpp); off, it costs nothing."""


@attrs.frozen
class ChatMessage:
    """One turn of a chat: role is system, user or assistant."""

    role: str
    content: str


@attrs.frozen
class ChatRequest:
    """An instruction-following generation with the model's chat template."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int = 512
    temperature: float = 0.0
    path: str | None = None
    """Workspace-relative path of the file the code comes from (privacy rules)."""
    fs_path: str | None = None
    """The file's absolute path, for the privacy rules (never sent)."""
    context: tuple[ContextFile, ...] = ()
    """Definitions from other files; the router puts them into the first user
    message (or leaves them out for a cloud backend, as the settings say)."""
    language: str = ""
    logprobs: bool = False
    """Record each generated token's log-probability, as ``GenerateRequest``."""


@attrs.define
class GenerationStats:
    """What one generation cost; filled in by the backend as it runs."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens reused from the KV cache (not evaluated again)."""
    generated_tokens: int = 0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0
    token_logprobs: list[float] = attrs.field(factory=list)
    """Natural log-probability (<= 0) of each generated token under the model's
    distribution at its step, when the request asked (``logprobs``) and the
    backend can tell; empty otherwise."""
    token_offsets: list[int] = attrs.field(factory=list)
    """Where each token of ``token_logprobs`` starts in the generated text
    (characters; a token inside a multi-byte character starts where it does)."""

    def summary(self) -> dict[str, Any]:
        """The counts and times, without the per-token lists (for the status)."""
        per_token = ("token_logprobs", "token_offsets")
        return attrs.asdict(self, filter=lambda a, _: a.name not in per_token)


class Backend(Protocol):
    """A source of completions. Implementations are async generators."""

    name: ClassVar[str]

    def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the completion text for ``req`` in chunks.

        Cancelling the consuming task (or closing the iterator) stops the work
        promptly, during prompt evaluation as well as between tokens.
        """
        ...

    def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the assistant's answer to ``req.messages``; cancellable likewise."""
        ...

    async def aclose(self) -> None:
        """Free the model or the HTTP client."""
        ...


NOT_KEPT = -1
"""What ``warm`` with ``keep_live`` returns when the prompt cached before could not
be kept (no prefix cache, or one too small for it): nothing was evaluated."""


class WarmableBackend(Protocol):
    """A backend that can evaluate a prompt's stable part ahead of a request.

    Optional: only the in-process llama.cpp backend has it. Callers look it up
    with ``getattr(backend, "warm", None)`` and skip warm-ups without it.
    """

    async def warm(
        self, req: GenerateRequest, tail: bool = True, keep_live: bool = False
    ) -> int:
        """Evaluate ``req``'s prompt into the KV cache.

        ``tail`` false: up to the FIM suffix marker; ``keep_live``: save the
        prompt cached now first. No sampling. Returns the tokens newly
        evaluated (0: all cached). Runs after the backend's other work, one job
        at a time; cancelling the calling task stops it at the next prompt
        chunk (CancelledError).
        """
        ...

    def new_tokens(self, req: GenerateRequest) -> int | None:
        """Tokens of ``req``'s prompt not in the KV cache (None: cannot say)."""
        ...


class BackendError(Exception):
    """A backend failed; the message says what the user can do about it."""


class BackendUnavailable(BackendError):
    """The backend cannot serve requests (no model, server down, no network)."""


class BackendAuthError(BackendError):
    """The backend refused our credentials."""


class BackendTimeout(BackendUnavailable):
    """The backend did not answer in time."""


class BackendRateLimited(BackendUnavailable):
    """429: too many requests; ``retry_after`` seconds, when the server said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NetworkDown(BackendUnavailable):
    """A remote host cannot be reached at all (no network, DNS failure)."""


class BackendRefused(BackendError):
    """The privacy rules keep this request from this backend."""


class BackendConfigError(BackendError):
    """The backend's settings are wrong (bad path, bad option)."""


class ContextTooLarge(BackendError):
    """The prompt does not fit the model's context window."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"the request needs {needed} tokens; the model's context window "
            f"leaves {available}"
        )
        self.needed = needed
        self.available = available


class UnknownBackendError(KeyError):
    """No backend of that name is registered."""
