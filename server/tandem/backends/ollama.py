"""An Ollama server through the ``ollama`` client: FIM via ``suffix``, and chat."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from tandem import fim
from tandem.backends.base import (
    BackendTimeout,
    BackendUnavailable,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)
from tandem.backends.remote import connection_error, status_error
from tandem.config import OllamaSettings

if TYPE_CHECKING:
    from ollama import AsyncClient


class OllamaBackend:
    """Completions and chat from ``ollama serve``."""

    name: ClassVar[str] = "ollama"
    price_in = 0.0
    price_out = 0.0

    def __init__(self, settings: OllamaSettings) -> None:
        self.host = settings.host.rstrip("/")
        self.model = settings.model
        self.chat_model = settings.chat_model or settings.model
        self.timeout_s = settings.timeout_s
        self._client: AsyncClient | None = None

    @property
    def url(self) -> str:
        """The server's address."""
        return self.host

    def _ollama(self) -> AsyncClient:
        if self._client is None:
            from ollama import AsyncClient

            self._client = AsyncClient(host=self.host, timeout=self.timeout_s)
        return self._client

    async def probe(self) -> str:
        """Whether the server answers and has the models: one line for doctor."""
        async with self._errors():
            listed = await self._ollama().list()
        names = {m.model for m in listed.models if m.model}
        missing = [
            m
            for m in dict.fromkeys((self.model, self.chat_model))
            if m not in names and f"{m}:latest" not in names
        ]
        if missing:
            return f"answers; run `ollama pull {missing[0]}` ({len(names)} models here)"
        return f"answers; has {self.model}"

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        import httpx
        import ollama

        try:
            yield
        except ollama.ResponseError as e:
            raise status_error("ollama", e.status_code, e.error) from e
        except httpx.TimeoutException as e:
            raise BackendTimeout(f"ollama: no answer from {self.host}") from e
        except (ConnectionError, httpx.ConnectError) as e:
            raise connection_error("ollama", self.host, e) from e
        except httpx.TransportError as e:  # dropped mid-stream
            raise BackendUnavailable(f"ollama: connection lost ({e})") from e

    async def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A completion; FIM models get the text after the cursor as ``suffix``."""
        stats = stats or GenerationStats()
        prompt = fim.comment_block(req.context, req.comment) + req.prompt
        options: dict[str, Any] = {
            "num_predict": req.max_tokens,
            "temperature": req.temperature,
        }
        if req.stop:
            options["stop"] = list(req.stop)
        async with self._errors():
            stream = await self._ollama().generate(
                model=self.model,
                prompt=prompt,
                suffix=req.suffix or "",
                options=options,
                stream=True,
            )
            async for part in stream:
                if part.prompt_eval_count:
                    stats.prompt_tokens = part.prompt_eval_count
                if part.response:
                    stats.generated_tokens += 1
                    yield part.response

    async def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream a chat answer."""
        stats = stats or GenerationStats()
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        options = {"num_predict": req.max_tokens, "temperature": req.temperature}
        async with self._errors():
            stream = await self._ollama().chat(
                model=self.chat_model, messages=messages, options=options, stream=True
            )
            async for part in stream:
                if part.prompt_eval_count:
                    stats.prompt_tokens = part.prompt_eval_count
                if part.message.content:
                    stats.generated_tokens += 1
                    yield part.message.content

    async def aclose(self) -> None:
        """Close the HTTP client."""
        client, self._client = self._client, None
        if client is not None:
            await client._client.aclose()
