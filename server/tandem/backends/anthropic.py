"""Anthropic's Messages API, streamed (server-sent events, framed by httpx-sse)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

# Imported with this module (when a routing chain names the backend), so that a
# first request's time to its first chunk is not spent importing. No sockets.
import httpx
from httpx_sse import EventSource, SSEError

from tandem.backends.base import (
    BackendError,
    BackendRateLimited,
    BackendTimeout,
    BackendUnavailable,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)
from tandem.backends.remote import (
    connection_error,
    fill_by_chat,
    status_error,
)
from tandem.config import AnthropicSettings
from tandem.keys import api_key

API_VERSION = "2023-06-01"


class AnthropicBackend:
    """Claude models through ``POST /v1/messages`` with ``stream: true``."""

    name: ClassVar[str] = "anthropic"

    def __init__(self, settings: AnthropicSettings) -> None:
        self.base_url = settings.base_url.rstrip("/")
        self.model = settings.model
        self.key_env = settings.api_key_env
        self.timeout_s = settings.timeout_s
        self.price_in = settings.price_in_per_mtok
        self.price_out = settings.price_out_per_mtok
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.base_url

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url, timeout=httpx.Timeout(self.timeout_s)
            )
        return self._client

    async def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A completion, asked as a fill-in chat (the API has no FIM)."""
        async with contextlib.aclosing(fill_by_chat(self.chat, req, stats)) as fill:
            async for text in fill:
                yield text

    async def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the answer's text deltas."""
        stats = stats or GenerationStats()
        system = "\n\n".join(m.content for m in req.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": True,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in req.messages
                if m.role != "system"
            ],
        }
        if system:
            body["system"] = system
        headers = {
            "x-api-key": await api_key(self.key_env, "anthropic") or "",
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }
        async with (
            self._errors(),
            self._http().stream(
                "POST", "/v1/messages", json=body, headers=headers
            ) as response,
        ):
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")
                raise status_error(
                    "anthropic",
                    response.status_code,
                    _error_message(detail),
                    response.headers.get("retry-after"),
                )
            async for text in _events(response, stats):
                yield text

    async def probe(self) -> str:
        """Whether the API accepts the key (lists models; generates nothing)."""
        headers = {
            "x-api-key": await api_key(self.key_env, "anthropic") or "",
            "anthropic-version": API_VERSION,
        }
        async with self._errors():
            response = await self._http().get("/v1/models", headers=headers)
        if response.status_code != 200:
            raise status_error(
                "anthropic",
                response.status_code,
                _error_message(response.text),
                response.headers.get("retry-after"),
            )
        return "answers; the key is accepted"

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except httpx.TimeoutException as e:
            raise BackendTimeout(f"anthropic: no answer from {self.base_url}") from e
        except httpx.ConnectError as e:
            raise connection_error("anthropic", self.base_url, e) from e
        except httpx.TransportError as e:
            raise BackendUnavailable(
                f"anthropic: the connection dropped mid-answer ({type(e).__name__})"
            ) from e

    async def aclose(self) -> None:
        """Close the HTTP client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def _events(
    response: httpx.Response, stats: GenerationStats
) -> AsyncGenerator[str, None]:
    """Text from the server-sent events of a streamed message.

    The events are framed by httpx-sse. Event types this client does not know are
    skipped, as the API's versioning policy asks (it may add new ones); an event
    that is not a JSON object, a known event of the wrong shape, an ``error``
    event, or a stream that ends before ``message_stop`` is a ``BackendError``.
    """
    try:
        async for event in EventSource(response).aiter_sse():
            data = _data(event.event, event.data)
            kind = str(data.get("type", event.event))
            try:
                text = _interpret(kind, data, stats)
            except (AttributeError, KeyError, TypeError, ValueError):
                raise BackendUnavailable(
                    f"anthropic: a malformed {kind} event in the answer"
                ) from None
            if text is None:
                return
            if text:
                stats.generated_tokens += 1  # until message_delta says how many
                yield text
    except SSEError as e:
        raise BackendUnavailable(f"anthropic: not an event stream ({e})") from None
    raise BackendUnavailable("anthropic: the stream ended before message_stop")


def _data(event: str, raw: str) -> dict[str, Any]:
    """An event's JSON object."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BackendUnavailable(
            f"anthropic: a malformed {event or 'unnamed'} event (not a JSON object)"
        )
    return data


def _interpret(kind: str, data: dict[str, Any], stats: GenerationStats) -> str | None:
    """The text one event adds ("" for none, None at the end); fills ``stats``."""
    if kind == "message_start":
        usage = data["message"].get("usage") or {}
        stats.prompt_tokens = int(usage.get("input_tokens", 0))
    elif kind == "content_block_delta":
        delta = data["delta"]
        if delta["type"] == "text_delta":
            text = delta["text"]
            if not isinstance(text, str):
                raise TypeError("text")
            return text
    elif kind == "message_delta":
        usage = data.get("usage") or {}
        if "output_tokens" in usage:
            stats.generated_tokens = int(usage["output_tokens"])
    elif kind == "message_stop":
        return None
    elif kind == "error":
        error = data.get("error") or {}
        what = str(error.get("type", "error"))
        message = f"anthropic: {what}: {str(error.get('message', ''))[:200]}"
        if what == "rate_limit_error":
            raise BackendRateLimited(message)
        raise BackendUnavailable(message)
    return ""  # ping, content_block_start/stop, and types added later


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    error = data.get("error", {}) if isinstance(data, dict) else {}
    return str(error.get("message", "")) if isinstance(error, dict) else ""


__all__ = ["AnthropicBackend", "BackendError"]
