"""OpenAI-compatible servers through the ``openai`` SDK.

OpenAI itself and what people run locally or for a team: LM Studio, vLLM,
llama-server, llama-cpp-python's server, and OpenRouter, Groq and Gemini's
OpenAI endpoint. Presets hold each one's URL, key variable and completion mode.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import attrs

from tandem import fim
from tandem.backends.base import (
    BackendConfigError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)
from tandem.backends.remote import (
    connection_error,
    fill_by_chat,
    is_loopback,
    status_error,
)
from tandem.config import OpenAISettings
from tandem.keys import api_key

if TYPE_CHECKING:
    from openai import AsyncOpenAI


@attrs.frozen
class Preset:
    """Where a kind of server listens and how to complete code with it."""

    base_url: str
    key_env: str = ""
    mode: str = "chat"
    """How completions are asked for without ``fimFormat``: chat or suffix."""
    model: str = ""
    price_in: float = 0.0
    """USD per million tokens, for the spend estimate."""
    price_out: float = 0.0


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "https://api.openai.com/v1", "OPENAI_API_KEY", "chat", "gpt-4.1-mini", 0.4, 1.6
    ),
    "lmstudio": Preset("http://127.0.0.1:1234/v1"),
    "vllm": Preset("http://127.0.0.1:8000/v1"),
    "llama-server": Preset("http://127.0.0.1:8080/v1"),
    "llama-cpp-python": Preset("http://127.0.0.1:8000/v1"),
    "openrouter": Preset(
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        price_in=1.0,
        price_out=4.0,
    ),
    "groq": Preset(
        "https://api.groq.com/openai/v1", "GROQ_API_KEY", price_in=0.6, price_out=0.8
    ),
    "gemini": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
        model="gemini-2.5-flash",
        price_in=0.3,
        price_out=2.5,
    ),
    "custom": Preset(""),
}


def unpriced(settings: OpenAISettings) -> str | None:
    """Why this server may not be used for want of a price (None: it may).

    A preset with no price (custom, and the local-server ones) pointed at a host
    that is not this machine could be a paid API with no cap at all; the user says
    what it costs (0 if it is free).
    """
    preset = PRESETS[settings.preset]
    url = settings.base_url or preset.base_url
    priced = min(settings.price_in_per_mtok, settings.price_out_per_mtok) >= 0 or (
        preset.price_in or preset.price_out
    )
    if priced or not url or is_loopback(url):
        return None
    return (
        f"openai: {urlsplit(url).hostname} has no price; set "
        "tandem.openai.priceInPerMtok and priceOutPerMtok (0 if it is free)"
    )


def key_env(settings: OpenAISettings) -> str:
    """The variable with the API key: the setting, else the preset's ("": none)."""
    return settings.api_key_env or PRESETS[settings.preset].key_env


class OpenAIBackend:
    """Completions and chat from an OpenAI-compatible HTTP server."""

    name: ClassVar[str] = "openai"

    def __init__(self, settings: OpenAISettings) -> None:
        importlib.import_module("openai")  # now, not within a first chunk's deadline
        preset = PRESETS[settings.preset]
        self.base_url = (settings.base_url or preset.base_url).rstrip("/")
        if not self.base_url:
            raise BackendConfigError("openai: set tandem.openai.baseUrl")
        self.key_env = key_env(settings)
        self.fim = fim.by_name(settings.fim_format) if settings.fim_format else None
        mode = settings.completion_mode
        if mode == "auto":
            mode = "template" if self.fim is not None else preset.mode
        if mode == "template" and self.fim is None:
            raise BackendConfigError("openai: completionMode template needs fimFormat")
        self.mode = mode
        self.model = settings.model or preset.model
        self.timeout_s = settings.timeout_s
        self.price_in = (
            preset.price_in
            if settings.price_in_per_mtok < 0
            else settings.price_in_per_mtok
        )
        self.price_out = (
            preset.price_out
            if settings.price_out_per_mtok < 0
            else settings.price_out_per_mtok
        )
        self._client: AsyncOpenAI | None = None

    @property
    def url(self) -> str:
        """The server's base URL (for status and privacy decisions)."""
        return self.base_url

    async def _openai(self) -> AsyncOpenAI:
        if self._client is None:
            key = await api_key(self.key_env, "openai")
            if self._client is None:  # not made by another request meanwhile
                from openai import AsyncOpenAI

                self._client = AsyncOpenAI(
                    api_key=key or "not-needed",  # local servers ignore it
                    base_url=self.base_url,
                    timeout=self.timeout_s,
                    max_retries=0,  # the router decides what happens next
                )
        return self._client

    async def probe(self) -> str:
        """Whether the server answers and serves the model: one line for doctor."""
        client = await self._openai()
        async with self._errors():
            models = [m.id for m in (await client.models.list()).data]
        if self.model and models and self.model not in models:
            return f"answers; {self.model} is not among its models ({len(models)})"
        return f"answers; serves {', '.join(models[:3]) or 'no model listed'}"

    async def _model_name(self) -> str:
        if not self.model:
            client = await self._openai()
            async with self._errors():
                models = await client.models.list()
            if not models.data:
                raise BackendConfigError(f"openai: {self.base_url} serves no model")
            self.model = models.data[0].id
        return self.model

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        import openai

        try:
            yield
        except openai.APITimeoutError as e:
            raise BackendTimeout(f"openai: no answer from {self.base_url}") from e
        except openai.APIConnectionError as e:
            raise connection_error("openai", self.base_url, e) from e
        except openai.APIStatusError as e:
            retry = e.response.headers.get("retry-after")
            raise status_error("openai", e.status_code, _message(e.body), retry) from e
        except openai.APIError as e:  # a broken or cut-off stream
            raise BackendUnavailable(f"openai: {e.message}") from e

    async def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A completion: FIM through ``suffix``, or a fill-in chat."""
        stats = stats or GenerationStats()
        if self.mode == "chat" or req.suffix is None:
            async with contextlib.aclosing(fill_by_chat(self.chat, req, stats)) as fill:
                async for text in fill:
                    yield text
            return
        model = await self._model_name()
        stop = list(req.stop)
        suffix: str | None = req.suffix
        if self.fim is not None and self.mode == "template":
            parts = self.fim.render(
                req.prompt, req.suffix, req.path, req.context, req.repo, req.comment
            )
            prompt = "".join(p.text if isinstance(p, fim.Special) else p for p in parts)
            stop += [
                *self.fim.stop,
                *([self.fim.file_sep] if self.fim.file_sep else []),
            ]
            suffix = None
        else:
            prompt = fim.comment_block(req.context, req.comment) + req.prompt
        client = await self._openai()
        async with self._errors():
            stream = await client.completions.create(
                model=model,
                prompt=prompt,
                suffix=suffix,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                stop=stop[:4] or None,  # OpenAI accepts at most four
                stream=True,
                stream_options={"include_usage": True},
            )
            async with contextlib.aclosing(_aiter(stream)) as chunks:
                async for chunk in chunks:
                    _usage(chunk, stats)
                    if chunk.choices and (text := chunk.choices[0].text):
                        stats.generated_tokens += 1
                        yield text

    async def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream a chat answer."""
        stats = stats or GenerationStats()
        model = await self._model_name()
        messages: Any = [_message_dict(m) for m in req.messages]
        client = await self._openai()
        async with self._errors():
            stream = await client.chat.completions.create(
                model=model,
                messages=messages,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                stream=True,
                stream_options={"include_usage": True},  # tokens, for the spend
            )
            async with contextlib.aclosing(_aiter(stream)) as chunks:
                async for chunk in chunks:
                    _usage(chunk, stats)
                    if chunk.choices and (text := chunk.choices[0].delta.content):
                        stats.generated_tokens += 1
                        yield text

    async def aclose(self) -> None:
        """Close the HTTP client."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


async def _aiter(stream: Any) -> AsyncGenerator[Any, None]:
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.close()  # a cancelled request closes its connection


def _usage(chunk: Any, stats: GenerationStats) -> None:
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        stats.prompt_tokens = usage.prompt_tokens or stats.prompt_tokens
        stats.generated_tokens = usage.completion_tokens or stats.generated_tokens


def _message_dict(message: ChatMessage) -> dict[str, str]:
    return {"role": message.role, "content": message.content}


def _message(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", ""))
        return str(error)
    return str(body or "")


__all__ = ["PRESETS", "BackendError", "OpenAIBackend"]
