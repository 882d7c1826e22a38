"""What the HTTP backends share: error mapping, chat-style completion, keys.

No backend here logs a request body, a header or a key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import AsyncGenerator, Callable
from urllib.parse import urlsplit

from tandem import fim
from tandem.backends.base import (
    BackendAuthError,
    BackendConfigError,
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
    NetworkDown,
)

FILL_SYSTEM = (
    "You are a code completion engine. The user shows a file with the marker "
    "<CURSOR>. Reply with only the code to insert at <CURSOR>: no explanation, no "
    "code fences, nothing that is already before or after the marker."
)
_FENCE_OPEN = re.compile(r"^\s*```[^\n]*\n")
_FENCE_CLOSE = re.compile(r"\n?```\s*$")
_CLOSE_START = re.compile(r"(?:\n?```\s*|\n?`{1,2}|\n)\Z")
"""The earliest end of a text that may grow into ``_FENCE_CLOSE``."""


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fill_messages(req: GenerateRequest) -> tuple[ChatMessage, ...]:
    """A completion asked of a chat model: the file with a cursor marker."""
    context = fim.comment_block(req.context, req.comment) if req.context else ""
    where = f"File: {req.path}\n" if req.path else ""
    body = f"{context}{req.prompt}<CURSOR>{req.suffix or ''}"
    return (
        ChatMessage("system", FILL_SYSTEM),
        ChatMessage("user", f"{where}```\n{body}\n```"),
    )


async def fill_by_chat(
    chat: Callable[[ChatRequest, GenerationStats | None], AsyncGenerator[str, None]],
    req: GenerateRequest,
    stats: GenerationStats | None,
) -> AsyncGenerator[str, None]:
    """A completion from a chat model, streamed, without the code fences it adds.

    Text is passed on as it comes, less what may still turn out to be a fence:
    the first line while it could be an opening one, and a trailing ````` ``` `````
    (with the newline before it) until more text follows or the answer ends.
    """
    ask = ChatRequest(
        fill_messages(req), max_tokens=req.max_tokens, temperature=req.temperature
    )
    fences = FenceStripper()
    async with contextlib.aclosing(chat(ask, stats)) as chunks:
        async for chunk in chunks:
            if text := fences.feed(chunk):
                yield text
    if text := fences.end():
        yield text


class FenceStripper:
    """``strip_fences`` applied to a stream, piece by piece (same result)."""

    def __init__(self) -> None:
        self.head: str | None = ""
        """Text while it may still be an opening fence (None: decided)."""
        self.tail = ""
        """Text held back: it may be the start of a closing fence."""

    def feed(self, chunk: str) -> str:
        """What of the answer so far can be passed on now."""
        if self.head is not None:
            self.head += chunk
            if _undecided(self.head):
                return ""
            chunk, self.head = _FENCE_OPEN.sub("", self.head, count=1), None
        text = self.tail + chunk
        hold = _CLOSE_START.search(text)
        cut = hold.start() if hold else len(text)
        self.tail = text[cut:]
        return text[:cut]

    def end(self) -> str:
        """The rest, once the answer is complete."""
        if self.head is not None:
            return strip_fences(self.head)
        return _FENCE_CLOSE.sub("", self.tail)


def _undecided(head: str) -> bool:
    """Whether ``head`` may still become an opening fence line."""
    start = head.lstrip()
    if start.startswith("```"):
        return "\n" not in start
    return "```".startswith(start)  # blank, or "`" / "``" so far


def strip_fences(text: str) -> str:
    """A chat model's completion without the code fences it may add anyway."""
    text = _FENCE_OPEN.sub("", text, count=1)
    return _FENCE_CLOSE.sub("", text)


def connection_error(backend: str, url: str, error: Exception) -> BackendError:
    """A failure to connect: the server is down, or the network is."""
    if is_loopback(url):
        return BackendUnavailable(f"{backend} is not running at {url}")
    return NetworkDown(f"{backend}: cannot reach {urlsplit(url).hostname} ({error})")


def status_error(
    backend: str, status: int, message: object = "", retry_after: str | None = None
) -> BackendError:
    """An HTTP error status as the backend error the router acts on."""
    message = str(message or "")
    detail = f"{backend}: HTTP {status}" + (f" ({message[:200]})" if message else "")
    if status in (401, 403):
        return BackendAuthError(f"{detail}: check the API key")
    if status == 429:
        return BackendRateLimited(f"{detail}: rate limited", _seconds(retry_after))
    if status == 404:
        return BackendConfigError(f"{detail}: check the model name and base URL")
    if status in (408, 504):
        return BackendTimeout(detail)
    if status >= 500:
        return BackendUnavailable(detail)
    return BackendError(detail)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
