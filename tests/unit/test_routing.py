"""The routing table: chains, each fallback, each escalation, spend cap, offline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import pytest

from tandem.backends.base import (
    BackendAuthError,
    BackendRateLimited,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    ContextTooLarge,
    GenerateRequest,
    NetworkDown,
)
from tandem.backends.fake import FakeBackend
from tandem.config import OpenAISettings, RoutingSettings, Settings
from tandem.routing import Router

CHAT = ChatRequest((ChatMessage("user", "Explain x"),), path="src/x.py")
FILL = GenerateRequest("def f():\n    ", "\n", path="src/x.py")


class Priced(FakeBackend):
    """A fake remote backend with a price, as the cloud ones have."""

    price_in = 3.0
    price_out = 15.0


def make(
    tmp_path: Path, *, local: bool = True, **routing: object
) -> tuple[Router, FakeBackend, FakeBackend, Priced, list[str]]:
    router = Router(tmp_path / "spend.json")
    router.settings = attrs.evolve(
        Settings(), routing=attrs.evolve(RoutingSettings(), **routing)
    )
    here, ollama, cloud = FakeBackend(), FakeBackend(), Priced()
    router.local = here if local else None
    router.remote = {"ollama": ollama, "anthropic": cloud}
    messages: list[str] = []
    router.notify = messages.append
    return router, here, ollama, cloud, messages


async def run(stream: object) -> str:
    return "".join([c async for c in stream])  # type: ignore[attr-defined]


async def test_the_first_backend_of_the_chain_answers(tmp_path: Path) -> None:
    router, here, ollama, _, messages = make(tmp_path, completion=("ollama", "local"))
    ollama.enqueue("from ollama")
    assert await run(router.view("completion").generate(FILL)) == "from ollama"
    assert here.requests == [] and messages == []
    decision = router.decisions[0]
    assert (decision.backend, decision.reason, decision.outcome) == (
        "ollama",
        "routing.completion[0]",
        "ok",
    )


@pytest.mark.parametrize(
    ("error", "cooldown"),
    [
        (BackendUnavailable("ollama: HTTP 500"), "HTTP 500"),
        (BackendAuthError("ollama: HTTP 401: check the API key"), "401"),
        (
            BackendRateLimited("ollama: HTTP 429", retry_after=42),
            "rate limited for 42 s",
        ),
    ],
)
async def test_a_failing_backend_falls_back_once_with_one_message(
    tmp_path: Path, error: Exception, cooldown: str
) -> None:
    router, here, ollama, _, messages = make(tmp_path, completion=("ollama", "local"))
    ollama.enqueue(error)
    here.enqueue("local answer", "again local")
    view = router.view("completion")
    assert await run(view.generate(FILL)) == "local answer"
    assert len(messages) == 1 and "answered by local" in messages[0]
    # While it cools down the failing backend is not even tried.
    assert await run(view.generate(FILL)) == "again local"
    assert len(ollama.requests) == 1
    assert cooldown in router.decisions[1].outcome
    assert router.status()["cooldown"]["ollama"]


async def test_network_down_means_offline_for_cloud_backends(tmp_path: Path) -> None:
    router, _, ollama, cloud, _ = make(
        tmp_path, explain=("anthropic", "ollama", "local")
    )
    cloud.enqueue(NetworkDown("anthropic: cannot reach api.anthropic.com"))
    ollama.enqueue("ollama on loopback still works")
    view = router.view("explain")
    assert await run(view.chat(CHAT)) == "ollama on loopback still works"
    assert router.offline == "auto"
    await run(view.chat(CHAT))
    assert len(cloud.requests) == 1  # not tried again while offline
    assert "unreachable" in router.decisions[1].outcome


async def test_offline_setting_keeps_every_network_backend_out(tmp_path: Path) -> None:
    router, here, ollama, cloud, _ = make(
        tmp_path,
        completion=("anthropic", "ollama", "local"),
        escalate_to="anthropic",
        allow_escalation=True,
    )
    router.settings = attrs.evolve(router.settings, offline=True)
    here.enqueue("local")
    assert await run(router.view("completion").generate(FILL)) == "local"
    assert ollama.requests == [] and cloud.requests == []
    assert router.view("explain").escalated("asked for the cloud") is None
    assert router.status()["escalationRefusal"] == "offline"


async def test_context_too_large_escalates_when_allowed(tmp_path: Path) -> None:
    router, here, _, cloud, _ = make(
        tmp_path, escalate_to="anthropic", allow_escalation=True
    )
    here.enqueue(ContextTooLarge(9100, 4000))
    cloud.enqueue("the cloud's answer")
    view = router.view("explain")
    assert await run(view.chat(CHAT)) == "the cloud's answer"
    assert view.last_backend == "anthropic"
    assert router.decisions[0].reason == "escalated: context 9100 > local 4000 tokens"
    assert router.decisions[0].cost_usd > 0


async def test_context_too_large_without_permission_is_one_clear_error(
    tmp_path: Path,
) -> None:
    router, here, _, cloud, _ = make(tmp_path, escalate_to="anthropic")
    here.enqueue(ContextTooLarge(9100, 4000))
    with pytest.raises(BackendUnavailable, match="9100 tokens"):
        await run(router.view("explain").chat(CHAT))
    assert cloud.requests == []


async def test_an_escalated_view_goes_to_the_cloud_first(tmp_path: Path) -> None:
    router, here, _, cloud, _ = make(
        tmp_path, escalate_to="anthropic", allow_escalation=True
    )
    assert router.view("refactor").escalated("x") is not None
    cloud.enqueue("cloud")
    view = router.view("refactor").escalated("escalated: 300 lines > 120")
    assert view is not None
    assert await run(view.chat(CHAT)) == "cloud"
    assert router.decisions[0].reason == "escalated: 300 lines > 120"
    assert here.requests == []


async def test_cloud_failure_falls_back_to_the_local_answer(tmp_path: Path) -> None:
    router, here, _, cloud, messages = make(
        tmp_path, escalate_to="anthropic", allow_escalation=True
    )
    cloud.enqueue(BackendRateLimited("anthropic: HTTP 429: rate limited", 30))
    here.enqueue("local")
    view = router.view("explain").escalated("asked for the cloud")
    assert view is not None
    assert await run(view.chat(CHAT)) == "local"
    assert messages == ["anthropic: HTTP 429: rate limited; answered by local"]


async def test_a_request_that_could_pass_the_cap_is_not_sent(tmp_path: Path) -> None:
    router, here, _, cloud, messages = make(
        tmp_path,
        explain=("anthropic", "local"),
        escalate_to="anthropic",
        allow_escalation=True,
        daily_spend_cap_usd=0.01,
    )
    # Its worst case (512 tokens at $15/M and the prompt) fits under the cap once.
    cloud.enqueue(["x"] * 200)  # 2 prompt and 200 output tokens: $0.003006
    await run(router.view("explain").chat(CHAT))
    assert router.spend.nano_today() == (2 * 3 + 200 * 15) * 1000
    assert router.decisions[0].cost_usd == 0.003006
    # A second one could cost up to the worst case: it would pass $0.01.
    here.enqueue("local")
    assert await run(router.view("explain").chat(CHAT)) == "local"
    assert len(cloud.requests) == 1
    assert "spend cap of $0.01 could be passed" in router.decisions[1].outcome
    assert router.spend.nano_today() == 3_006_000  # the refusal held nothing
    assert messages == []  # a skip by the rules, not a failure
    # Spend is kept on disk: a restarted server knows it.
    assert Router(tmp_path / "spend.json").spend.nano_today() == 3_006_000


async def test_the_daily_spend_cap_stops_escalation(tmp_path: Path) -> None:
    router, _, _, _, _ = make(
        tmp_path,
        escalate_to="anthropic",
        allow_escalation=True,
        daily_spend_cap_usd=0.001,
    )
    router.spend.add(0.001)
    assert router.escalation_target() is None
    assert "spend cap" in router.escalation_refusal()


async def test_a_request_given_up_at_the_deadline_costs_its_worst_case(
    tmp_path: Path,
) -> None:
    router, here, _, cloud, _ = make(
        tmp_path, completion=("anthropic", "local"), completion_deadline_s=0.05
    )
    cloud.chunk_delay = 3600.0  # takes the request (and its prompt), never answers
    cloud.enqueue("too late")
    here.enqueue("local")
    assert await run(router.view("completion").generate(FILL)) == "local"
    given_up = router.decisions[1]
    assert given_up.backend == "anthropic" and "no answer" in given_up.outcome
    prompt = len(FILL.prompt.split())  # what the fake reports having taken
    assert given_up.cost_usd == (prompt * 3.0 + FILL.max_tokens * 15.0) / 1e6
    assert router.spend.nano_today() == round(given_up.cost_usd * 1e9) > 0


async def test_a_cancelled_or_stopped_request_costs_what_it_could_have(
    tmp_path: Path,
) -> None:
    router, _, _, cloud, _ = make(tmp_path, completion=("anthropic",))
    cloud.chunk_delay = 0.01
    cloud.enqueue(["a", "b", "c"], ["a", "b", "c"])
    view = router.view("completion")
    stream = view.generate(FILL)
    assert await anext(stream) == "a"
    await stream.aclose()  # the engine had enough after the first chunk

    async def read_all() -> str:
        return await run(view.generate(FILL))

    cloud.asked.clear()
    task = asyncio.ensure_future(read_all())
    await cloud.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    each = (len(FILL.prompt.split()) * 3.0 + FILL.max_tokens * 15.0) / 1e6
    assert [(d.outcome, d.cost_usd) for d in router.decisions] == [
        ("cancelled", each),
        ("ok", each),
    ]
    assert router.spend.nano_today() == 2 * round(each * 1e9)


async def test_a_request_failing_mid_answer_costs_what_was_reported(
    tmp_path: Path,
) -> None:
    router, here, _, cloud, _ = make(tmp_path, explain=("anthropic", "local"))
    cloud.enqueue(
        BackendUnavailable("anthropic: HTTP 500"),  # refused: nothing to pay
        ["partial ", BackendUnavailable("anthropic: connection lost")],
    )
    here.enqueue("local")
    assert await run(router.view("explain").chat(CHAT)) == "local"
    assert router.decisions[1].cost_usd == 0.0
    router.cooldown.clear()  # the HTTP 500 made it rest
    with pytest.raises(BackendUnavailable, match="connection lost"):
        await run(router.view("explain").chat(CHAT))
    # 2 prompt tokens (the fake's count) and the one chunk it sent.
    assert router.decisions[0].cost_usd == (2 * 3.0 + 1 * 15.0) / 1e6
    assert router.spend.nano_today() == 21_000


async def test_two_servers_sharing_a_ledger_cannot_both_pass_the_cap(
    tmp_path: Path,
) -> None:
    first, _, _, cloud1, _ = make(
        tmp_path, explain=("anthropic",), daily_spend_cap_usd=0.01
    )
    second, _, _, cloud2, _ = make(
        tmp_path, explain=("anthropic",), daily_spend_cap_usd=0.01
    )
    assert first.spend.path == second.spend.path  # one file, two connections
    cloud1.chunk_delay = 3600.0  # the first request is still under way...
    cloud1.enqueue("slow")
    task = asyncio.ensure_future(run(first.view("explain").chat(CHAT)))
    await cloud1.asked.wait()
    # ...and holds its worst case, so the other server may not send one.
    with pytest.raises(BackendUnavailable, match="spend cap"):
        await run(second.view("explain").chat(CHAT))
    assert cloud2.requests == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_unpriced_remote_server_is_refused_with_one_message(
    tmp_path: Path,
) -> None:
    router, here, *_, messages = make(tmp_path, completion=("openai", "local"))
    openai = Priced()
    openai.price_in = openai.price_out = 0.0
    router.remote["openai"] = openai
    remote = OpenAISettings(preset="custom", base_url="https://llm.example.com/v1")
    router.settings = attrs.evolve(router.settings, openai=remote)
    here.enqueue("local", "local")
    view = router.view("completion")
    assert await run(view.generate(FILL)) == "local"
    assert openai.requests == []
    assert messages == [
        "openai: llm.example.com has no price; set tandem.openai.priceInPerMtok "
        "and priceOutPerMtok (0 if it is free); answered by local"
    ]
    assert router.escalation_refusal() != "escalation is possible"
    # Prices set by the user (0: it is free), or a server on this machine: used.
    for settings in (
        attrs.evolve(remote, price_in_per_mtok=0.0, price_out_per_mtok=0.0),
        OpenAISettings(preset="custom", base_url="http://127.0.0.1:8000/v1"),
    ):
        router.settings = attrs.evolve(router.settings, openai=settings)
        openai.enqueue("served")
        assert await run(view.generate(FILL)) == "served"


async def test_an_unexpected_exception_ends_in_the_next_backends_answer(
    tmp_path: Path,
) -> None:
    router, here, ollama, _, messages = make(tmp_path, explain=("ollama", "local"))
    ollama.enqueue(ValueError("Expecting value: line 1 column 6 (char 5)"))
    here.enqueue("local")
    assert await run(router.view("explain").chat(CHAT)) == "local"
    assert messages == [
        "ollama: unexpected ValueError (details in the log); answered by local"
    ]


async def test_a_completion_failing_mid_answer_is_continued_by_the_next(
    tmp_path: Path,
) -> None:
    router, here, ollama, _, messages = make(tmp_path, completion=("ollama", "local"))
    ollama.enqueue(["return ", BackendUnavailable("ollama: connection lost")])
    here.enqueue("a + b")
    assert await run(router.view("completion").generate(FILL)) == "return a + b"
    (continued,) = here.requests
    assert isinstance(continued, GenerateRequest)
    assert continued.prompt == FILL.prompt + "return "
    assert continued.suffix == FILL.suffix
    assert messages == ["ollama: connection lost; answered by local"]


async def test_warm_goes_to_the_loaded_local_model_only(tmp_path: Path) -> None:
    router, _, ollama, *_ = make(tmp_path, completion=("local", "ollama"))
    here = FakeBackend(warm=True)
    router.local = here
    view = router.view("completion")
    assert await view.warm(FILL) == len(FILL.prompt.split())
    assert here.warmed == [FILL] and here.requests == []
    assert list(router.decisions) == []  # no routing, no deadline, no spend
    # Not when the chain starts elsewhere, nor for an escalated view.
    router.settings = attrs.evolve(
        router.settings,
        routing=attrs.evolve(
            router.settings.routing,
            completion=("ollama", "local"),
            escalate_to="anthropic",
            allow_escalation=True,
        ),
    )
    ollama.warm = ollama._warm  # a remote backend able to warm is still not warmed
    assert await view.warm(FILL) == 0
    router.settings = attrs.evolve(
        router.settings,
        routing=attrs.evolve(router.settings.routing, completion=("local",)),
    )
    escalated = view.escalated("asked for the cloud")
    assert escalated is not None and await escalated.warm(FILL) == 0
    assert here.warmed == [FILL] and ollama.warmed == []
    # A local backend that cannot warm, or none loaded: nothing, 0.
    router.local = FakeBackend()
    assert await view.warm(FILL) == 0
    router.local = None
    assert await view.warm(FILL) == 0
    assert ollama.requests == [] and list(router.decisions) == []


async def test_calibrated_waits_for_the_local_model_it_goes_to_first(
    tmp_path: Path,
) -> None:
    router, here, *_ = make(tmp_path, completion=("local", "ollama"))
    release = asyncio.Event()
    waited: list[str] = []

    async def calibrated() -> None:
        waited.append("local")
        await release.wait()

    here.calibrated = calibrated  # type: ignore[attr-defined]
    view = router.view("completion")
    waiting = asyncio.ensure_future(view.calibrated())
    await asyncio.sleep(0)
    assert waited == ["local"] and not waiting.done()
    release.set()
    await waiting
    # The chain starts elsewhere, or no local model: nothing to wait for.
    router.settings = attrs.evolve(
        router.settings,
        routing=attrs.evolve(router.settings.routing, completion=("ollama", "local")),
    )
    await asyncio.wait_for(router.view("completion").calibrated(), 1)
    router.local = None
    await asyncio.wait_for(router.view("completion").calibrated(), 1)
    assert waited == ["local"]


async def test_never_send_files_stay_local(tmp_path: Path) -> None:
    router, here, _, cloud, _ = make(
        tmp_path,
        explain=("anthropic", "local"),
        escalate_to="anthropic",
        allow_escalation=True,
    )
    here.enqueue("local")
    secret = attrs.evolve(CHAT, path="config/.env.production")
    assert await run(router.view("explain").chat(secret)) == "local"
    assert cloud.requests == []
    assert "neverSend" in router.decisions[1].outcome


async def test_cloud_payloads_are_redacted_and_local_ones_untouched(
    tmp_path: Path,
) -> None:
    router, here, _, cloud, _ = make(tmp_path, explain=("anthropic",))
    cloud.enqueue("ok")
    leaky = ChatRequest(
        (ChatMessage("user", 'api_key = "sk-abcdefghijklmnopqrstuvwx"'),)
    )
    await run(router.view("explain").chat(leaky))
    sent = cloud.requests[0]
    assert isinstance(sent, ChatRequest)
    assert "sk-abcdefghijklmnopqrstuvwx" not in sent.messages[0].content

    router, here, *_ = make(tmp_path, explain=("local",))
    here.enqueue("ok")
    await run(router.view("explain").chat(leaky))
    local = here.requests[0]
    assert isinstance(local, ChatRequest)
    assert local.messages == leaky.messages  # nothing leaves: nothing to redact


async def test_a_failure_after_the_first_chunk_is_not_retried(tmp_path: Path) -> None:
    router, here, ollama, _, _ = make(tmp_path, explain=("ollama", "local"))
    ollama.enqueue(["partial ", BackendUnavailable("ollama: connection lost")])
    chunks: list[str] = []
    with pytest.raises(BackendUnavailable, match="connection lost"):
        async for chunk in router.view("explain").chat(CHAT):
            chunks.append(chunk)
    assert chunks == ["partial "]  # the user saw it: no silent switch
    assert here.requests == []


async def test_no_backend_at_all_is_one_clear_error(tmp_path: Path) -> None:
    router, *_ = make(tmp_path, local=False)
    router.local_problem = "model file not found: /x.gguf"
    with pytest.raises(BackendUnavailable, match=r"^model file not found: /x\.gguf$"):
        await run(router.view("completion").generate(FILL))


async def test_a_hung_server_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    router, here, ollama, _, messages = make(
        tmp_path, completion=("ollama", "local"), completion_deadline_s=0.05
    )
    ollama.chunk_delay = 3600.0  # accepts the request, never answers
    ollama.enqueue("too late")
    here.enqueue("local")
    assert await run(router.view("completion").generate(FILL)) == "local"
    assert ollama.cancelled == 1  # its stream was closed, not left waiting
    assert messages == ["ollama: no answer within 0.05 s; answered by local"]
    assert "no answer" in router.status()["cooldown"]["ollama"]
    # While it rests, completions go straight to the local model.
    here.enqueue("again")
    assert await run(router.view("completion").generate(FILL)) == "again"
    assert len(ollama.requests) == 1


async def test_the_deadline_waits_when_no_backend_could_take_over(
    tmp_path: Path,
) -> None:
    router, _, ollama, _, messages = make(
        tmp_path,
        local=False,
        completion=("ollama", "local"),
        completion_deadline_s=0.01,
    )
    ollama.chunk_delay = 0.1  # slower than the deadline, but nobody else can answer
    ollama.enqueue(["slow ", "answer"])
    assert await run(router.view("completion").generate(FILL)) == "slow answer"
    assert messages == []


async def test_a_request_through_the_router_keeps_its_warm_up_chunk(
    tmp_path: Path,
) -> None:
    """The server's engine talks to the router's view: keep_chunk reaches the
    in-process model there, and only when the task goes to it first."""
    from tandem.config import CompletionSettings
    from tandem.engine import CompletionEngine, Document

    router, *_ = make(tmp_path, completion=("local",))
    here = FakeBackend(warm=True)
    here.warm_hold = asyncio.Event()  # never set: a long prompt
    here.enqueue(["return 1\n"])
    router.local = here
    engine = CompletionEngine(router.view("completion"))
    doc = Document("file:///x.py", "def f():\n    \n", "python", "x.py")
    settings = CompletionSettings(
        debounce_ms=0, adaptive_debounce=False, prefetch=False
    )
    warming = asyncio.ensure_future(engine.warm(doc, 13, settings, None))
    await here.warm_started.wait()
    assert await engine.complete(doc, 13, settings) is not None
    assert await warming is None
    assert (here.kept_chunks, here.kept_whole) == (1, 1)  # asked at its cursor
    # A view whose chain starts elsewhere does not reach it.
    view = router.view("completion")
    view.escalation = "asked for the cloud"
    view.keep_chunk()
    assert here.kept_chunks == 1
