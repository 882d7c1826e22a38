"""Ollama and Anthropic backends against loopback servers speaking their formats."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.backends.anthropic import AnthropicBackend
from tandem.backends.base import (
    BackendAuthError,
    BackendRateLimited,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    GenerationStats,
)
from tandem.backends.ollama import OllamaBackend
from tandem.config import AnthropicSettings, OllamaSettings
from tests.fakes.apis import FakeApi, Reply, serving

CHAT = ChatRequest(
    (ChatMessage("system", "Be brief."), ChatMessage("user", "Explain x = 1")),
    max_tokens=50,
)
FILL = GenerateRequest("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n", max_tokens=20)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with serving() as server:
        yield server


@pytest.fixture
def anthropic(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> AnthropicBackend:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test-0123456789abcdefghij")
    return AnthropicBackend(
        AnthropicSettings(
            base_url=api.url, api_key_env="TEST_ANTHROPIC_KEY", model="claude-test"
        )
    )


async def collect(stream: object) -> str:
    return "".join([chunk async for chunk in stream])  # type: ignore[attr-defined]


async def test_anthropic_streams_text_deltas_and_usage(
    api: FakeApi, anthropic: AnthropicBackend
) -> None:
    api.reply(Reply(texts=["It sets ", "x to 1."]))
    stats = GenerationStats()
    assert await collect(anthropic.chat(CHAT, stats)) == "It sets x to 1."
    assert (stats.prompt_tokens, stats.generated_tokens) == (25, 2)
    (seen,) = api.seen
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-test-0123456789abcdefghij"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["system"] == "Be brief."
    assert seen.body["messages"] == [{"role": "user", "content": "Explain x = 1"}]
    assert seen.body["stream"] is True and seen.body["model"] == "claude-test"
    await anthropic.aclose()


async def test_anthropic_completion_is_a_fill_in_chat_without_fences(
    api: FakeApi, anthropic: AnthropicBackend
) -> None:
    api.reply(Reply(texts=["```python\n", "return a + b", "\n```"]))
    assert await collect(anthropic.generate(FILL)) == "return a + b"
    prompt = api.seen[0].body["messages"][0]["content"]
    assert "def add(a, b):\n    <CURSOR>\n\nprint(add(1, 2))" in prompt
    await anthropic.aclose()


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (
            Reply(status=401, error={"type": "authentication_error"}),
            BackendAuthError,
            "401",
        ),
        (Reply(status=403), BackendAuthError, "403"),
        (
            Reply(status=429, headers={"retry-after": "17"}),
            BackendRateLimited,
            "rate limited",
        ),
        (
            Reply(status=529, error={"type": "overloaded_error"}),
            BackendUnavailable,
            "529",
        ),
        (Reply(status=500), BackendUnavailable, "500"),
        (
            Reply(texts=["a", "b", "c"], drop_after=1),
            BackendUnavailable,
            "dropped|ended",
        ),
    ],
)
async def test_anthropic_errors_map_to_what_the_router_acts_on(
    api: FakeApi,
    anthropic: AnthropicBackend,
    reply: Reply,
    error: type[Exception],
    match: str,
) -> None:
    api.reply(reply)
    with pytest.raises(error, match=match) as caught:
        await collect(anthropic.chat(CHAT))
    if isinstance(caught.value, BackendRateLimited):
        assert caught.value.retry_after == 17.0
    await anthropic.aclose()


async def test_anthropic_without_a_key_names_the_variable() -> None:
    backend = AnthropicBackend(
        AnthropicSettings(base_url="http://127.0.0.1:9", api_key_env="NO_SUCH_KEY_VAR")
    )
    with pytest.raises(BackendAuthError, match="NO_SUCH_KEY_VAR"):
        await collect(backend.chat(CHAT))


async def test_ollama_fim_sends_the_suffix_and_streams_ndjson(api: FakeApi) -> None:
    backend = OllamaBackend(OllamaSettings(host=api.url, model="qwen2.5-coder:0.5b"))
    api.reply(Reply(texts=["return ", "a + b"]))
    stats = GenerationStats()
    assert await collect(backend.generate(FILL, stats)) == "return a + b"
    assert stats.prompt_tokens == 30
    body = api.seen[0].body
    assert api.seen[0].path == "/api/generate"
    assert body["prompt"] == FILL.prompt and body["suffix"] == FILL.suffix
    assert body["options"]["num_predict"] == 20 and body["stream"] is True

    api.reply(Reply(texts=["x ", "is one."]))
    assert await collect(backend.chat(CHAT)) == "x is one."
    assert api.seen[1].path == "/api/chat"
    assert api.seen[1].body["messages"][1] == {
        "role": "user",
        "content": "Explain x = 1",
    }
    await backend.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=500, error={"message": "model crashed"}), BackendUnavailable),
        (Reply(status=404, error={"message": "model not found"}), Exception),
        (Reply(texts=["a", "b", "c"], drop_after=1), BackendUnavailable),
    ],
)
async def test_ollama_errors(
    api: FakeApi, reply: Reply, error: type[Exception]
) -> None:
    backend = OllamaBackend(OllamaSettings(host=api.url))
    api.reply(reply)
    with pytest.raises(error):
        await collect(backend.chat(CHAT))
    await backend.aclose()


async def test_ollama_not_running_is_unavailable_not_network_down() -> None:
    backend = OllamaBackend(OllamaSettings(host="http://127.0.0.1:9"))
    with pytest.raises(
        BackendUnavailable, match=r"not running at http://127\.0\.0\.1:9"
    ):
        await collect(backend.generate(FILL))
    await backend.aclose()
