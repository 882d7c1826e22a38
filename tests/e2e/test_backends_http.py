"""Ollama, Anthropic and OpenAI backends against loopback stand-ins of their APIs.

Through the router as well: chat fills streamed with the deadline on the first chunk,
malformed event streams ending in the next backend's answer, and what each costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tandem.backends.fake import FakeBackend
from tandem.backends.ollama import OllamaBackend
from tandem.backends.openai_compat import OpenAIBackend
from tandem.config import (
    AnthropicSettings,
    OllamaSettings,
    OpenAISettings,
    RoutingSettings,
    Settings,
)
from tandem.routing import Router
from tests.fakes.apis import FakeApi, Reply, anthropic_events, serving, sse

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


# -- through the router: streamed fills, the deadline, malformed events, spend --------


def routed(
    api: FakeApi, tmp_path: Path, **routing: Any
) -> tuple[Router, FakeBackend, list[str]]:
    """A router with the stand-in as Anthropic and OpenAI, and a fake local model."""
    router = Router(tmp_path / "spend.sqlite3")
    router.settings = Settings(
        routing=RoutingSettings(**routing),
        anthropic=AnthropicSettings(
            base_url=api.url, api_key_env="TEST_ANTHROPIC_KEY", model="claude-test"
        ),
        openai=OpenAISettings(
            preset="custom",
            base_url=f"{api.url}/v1",
            model="gpt-test",
            completion_mode="chat",
            price_in_per_mtok=1.0,
            price_out_per_mtok=4.0,
        ),
    )
    local = FakeBackend()
    router.local = local
    messages: list[str] = []
    router.notify = messages.append
    return router, local, messages


@pytest.mark.parametrize(
    ("name", "prices", "usage"),
    [("anthropic", (3.0, 15.0), (25, 4)), ("openai", (1.0, 4.0), (30, 4))],
)
async def test_a_slow_chat_fill_is_served_once_its_first_chunk_came(
    api: FakeApi,
    anthropic: AnthropicBackend,
    tmp_path: Path,
    name: str,
    prices: tuple[float, float],
    usage: tuple[int, int],
) -> None:
    deadline = 1.0
    router, local, messages = routed(
        api, tmp_path, completion=(name, "local"), completion_deadline_s=deadline
    )
    api.reply(Reply(texts=["warm-up"]))  # modules imported, connection made
    assert await collect(router.backend(name).generate(FILL)) == "warm-up"
    local.enqueue("the local answer")
    # The first text comes at once; the rest only after the test lets it go.
    api.reply(Reply(texts=["```python\n", "return a", " + b", "\n```"], pause_after=2))
    stream = router.view("completion").generate(FILL)
    assert await anext(stream) == "return a"
    await asyncio.to_thread(api.paused.wait)
    await asyncio.sleep(deadline * 2)  # well past the deadline: still waited for
    api.resume.set()
    assert [chunk async for chunk in stream] == [" + b"]
    assert local.requests == [] and messages == []
    decision = router.decisions[0]
    assert (decision.backend, decision.outcome) == (name, "ok")
    assert (decision.prompt_tokens, decision.generated_tokens) == usage
    cost = (usage[0] * prices[0] + usage[1] * prices[1]) / 1e6
    assert decision.cost_usd == cost  # counted, at the usage the API reported
    assert router.spend.nano_today() == round(cost * 1e9)
    await router.aclose()


async def test_openai_streams_ask_for_usage(api: FakeApi, tmp_path: Path) -> None:
    router, *_ = routed(api, tmp_path)
    backend = router.backend("openai")
    api.reply(Reply(texts=["It is ", "one."]), Reply(texts=["return ", "a + b"]))
    stats = GenerationStats()
    assert await collect(backend.chat(CHAT, stats)) == "It is one."
    assert (stats.prompt_tokens, stats.generated_tokens) == (30, 2)
    suffixed = OpenAISettings(
        preset="custom", base_url=f"{api.url}/v1", model="m", completion_mode="suffix"
    )
    fim = OpenAIBackend(suffixed)
    stats = GenerationStats()
    assert await collect(fim.generate(FILL, stats)) == "return a + b"
    assert (stats.prompt_tokens, stats.generated_tokens) == (30, 2)
    assert [seen.path for seen in api.seen] == [
        "/v1/chat/completions",
        "/v1/completions",
    ]
    for seen in api.seen:
        assert seen.body["stream_options"] == {"include_usage": True}
    await fim.aclose()
    await router.aclose()


def spliced(at: int, *bad: str, texts: tuple[str, ...] = ()) -> list[str]:
    """A streamed message of ``texts`` with ``bad`` events after event ``at``."""
    events = anthropic_events(list(texts))
    return [*events[:at], *bad, *events[at:]]


NOT_JSON = 'event: content_block_delta\ndata: {"type": "content_block_delta", "de\n\n'
MALFORMED = [
    (spliced(3, NOT_JSON), "malformed content_block_delta event (not a JSON object)"),
    (spliced(3, sse("content_block_delta", ["x"])), "(not a JSON object)"),
    (
        spliced(3, sse("content_block_delta", {"type": "content_block_delta"})),
        "a malformed content_block_delta event",
    ),
    (
        spliced(3, sse("content_block_delta", {"delta": {"type": "text_delta"}})),
        "a malformed content_block_delta event",
    ),
    (
        spliced(
            3,
            sse(
                "error",
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "O"},
                },
            ),
        ),
        "anthropic: overloaded_error: O",
    ),
    (spliced(3, sse("error", {"type": "error", "error": "x"})), "malformed error"),
    (anthropic_events(["never finished"])[:3], "ended before message_stop"),
    (["event: message_start\ndata: {"], "ended before message_stop"),  # cut off
]


@pytest.mark.parametrize(("raw", "said"), MALFORMED)
async def test_a_malformed_stream_ends_in_the_next_backends_answer(
    api: FakeApi,
    anthropic: AnthropicBackend,
    tmp_path: Path,
    raw: list[str],
    said: str,
) -> None:
    router, local, messages = routed(api, tmp_path, explain=("anthropic", "local"))
    local.enqueue("the local answer")
    api.reply(Reply(raw=raw))
    assert await collect(router.view("explain").chat(CHAT)) == "the local answer"
    assert len(messages) == 1 and said in messages[0], messages
    assert messages[0].endswith("answered by local")
    assert router.decisions[1].outcome.startswith("failed: anthropic")
    await router.aclose()


async def test_a_completion_broken_mid_stream_is_continued_by_the_next(
    api: FakeApi, anthropic: AnthropicBackend, tmp_path: Path
) -> None:
    router, local, messages = routed(api, tmp_path, completion=("anthropic", "local"))
    local.enqueue(["a + b"])
    bad = sse("content_block_delta", {"type": "content_block_delta", "delta": 3})
    api.reply(Reply(raw=spliced(4, bad, texts=("return ", "never sent"))))
    assert await collect(router.view("completion").generate(FILL)) == "return a + b"
    (continued,) = local.requests
    assert isinstance(continued, GenerateRequest)
    assert continued.prompt == FILL.prompt + "return "
    assert messages == [
        "anthropic: a malformed content_block_delta event in the answer; "
        "answered by local"
    ]
    # It reported 25 prompt tokens and sent one text: that much is counted.
    assert router.decisions[1].cost_usd == (25 * 3.0 + 1 * 15.0) / 1e6
    await router.aclose()


async def test_unknown_event_types_are_skipped_as_the_api_asks(
    api: FakeApi, anthropic: AnthropicBackend
) -> None:
    later = sse("content_block_citation", {"type": "content_block_citation", "n": 1})
    api.reply(Reply(raw=spliced(4, later, texts=("It sets ", "x to 1."))))
    assert await collect(anthropic.chat(CHAT)) == "It sets x to 1."
    await anthropic.aclose()
