"""Anthropic's Messages API, streamed (server-sent events) over httpx."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

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

if TYPE_CHECKING:
    import httpx

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
            import httpx

            self._client = httpx.AsyncClient(
                base_url=self.base_url, timeout=httpx.Timeout(self.timeout_s)
            )
        return self._client

    async def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A completion, asked as a fill-in chat (the API has no FIM)."""
        yield await fill_by_chat(self.chat, req, stats)

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
        import httpx

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
    """Text from the server-sent events of a streamed message."""
    event = ""
    finished = False
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
            continue
        if not line.startswith("data:"):
            continue
        data = json.loads(line[5:])
        kind = data.get("type", event)
        if kind == "message_start":
            usage = data.get("message", {}).get("usage", {})
            stats.prompt_tokens = usage.get("input_tokens", 0)
        elif kind == "content_block_delta":
            delta = data.get("delta", {})
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield delta["text"]
        elif kind == "message_delta":
            stats.generated_tokens = data.get("usage", {}).get(
                "output_tokens", stats.generated_tokens
            )
        elif kind == "message_stop":
            finished = True
            break
        elif kind == "error":
            error = data.get("error", {})
            message = (
                f"anthropic: {error.get('type', 'error')}: {error.get('message', '')}"
            )
            if error.get("type") == "rate_limit_error":
                raise BackendRateLimited(message)
            raise BackendUnavailable(message)
    if not finished:
        raise BackendUnavailable("anthropic: the stream ended before message_stop")


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    error = data.get("error", {}) if isinstance(data, dict) else {}
    return str(error.get("message", "")) if isinstance(error, dict) else ""


__all__ = ["AnthropicBackend", "BackendError"]
