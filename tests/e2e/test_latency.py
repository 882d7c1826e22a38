"""The latency engine end to end, on the real model: in-flight reuse, typed-ahead
cache, prefetch, and the context budget sized from the measured speed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.helpers import (
    PALINDROME,
    complete,
    edit,
    open_doc,
    session,
    status,
    wait_for_state,
)
from tests.models import qwen_model

CURSOR = types.Position(line=2, character=4)
URI = "file:///work/project/pal.py"


HELPERS = "".join(
    f"def helper_{i}(value: int) -> int:\n    return value * {i}\n\n\n"
    for i in range(120)  # longer than prefixChars: opening warms the top only
)


def focus(client: LanguageClient, text: str, line: int) -> None:
    """Open ``text`` and report the cursor at column 4 of ``line``."""
    open_doc(client, URI, text)
    client.protocol.notify(
        "tandem/didFocus",
        {"textDocument": {"uri": URI}, "position": {"line": line, "character": 4}},
    )


def env() -> dict[str, str]:
    return {"TANDEM_MODEL": str(qwen_model())}


def options(**completion: Any) -> dict[str, Any]:
    return {"completion": completion}


def started(state: dict[str, Any]) -> int:
    """Generations started for requests (prefetches not counted)."""
    stats = state["stats"]
    return int(stats["generations_started"] - stats["prefetches_started"])


async def inline(client: LanguageClient, uri: str, at: types.Position) -> Any:
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=at,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )


@pytest.mark.slow
async def test_typing_what_is_being_generated_reuses_the_generation() -> None:
    # Post-processing off and many tokens: the generation runs for seconds, so
    # the keystroke surely lands while it is under way.
    settings = options(postprocess=False, maxTokens=160, maxLines=99, prefetch=False)
    async with session(env(), settings) as client:
        open_doc(client, URI, PALINDROME)
        first = asyncio.ensure_future(inline(client, URI, CURSOR))
        partial = ""
        while len(partial.strip()) < 4:
            flights = (await status(client))["latency"]["inFlight"]
            assert not first.done(), "the generation ended before the keystroke"
            partial = flights[0]["partial"] if flights else ""
            await asyncio.sleep(0.02)
        typed = partial[: len(partial) - len(partial.lstrip()) + 4]
        edit(client, URI, 2, CURSOR, typed)
        after = types.Position(line=2, character=CURSOR.character + len(typed))
        second = await inline(client, URI, after)
        assert await first is None  # superseded by the newer request
        assert isinstance(second, types.InlineCompletionList)
        rest = second.items[0].insert_text
        assert isinstance(rest, str) and rest.startswith(partial[len(typed) :])

        state = await status(client)
        assert started(state) == 1  # no new generation for the second request
        assert state["stats"]["reused"] == 1
        shown = state["suggestions"][-1]
        assert shown["source"] == "reuse"
        assert shown["generatedTokens"] > 0 and shown["promptMs"] > 0


@pytest.mark.slow
async def test_typed_ahead_completion_comes_from_the_cache() -> None:
    async with session(env(), options(prefetch=False)) as client:
        open_doc(client, URI, PALINDROME)
        first = await complete(client, URI, CURSOR)
        edit(client, URI, 2, CURSOR, first[:3])
        rest = await complete(client, URI, types.Position(line=2, character=7))
        assert first[:3] + rest == first
        state = await status(client)
        assert started(state) == 1
        cached, generated = state["suggestions"][-1], state["suggestions"][-2]
        assert cached["source"] == "cache" and "generatedTokens" not in cached
        assert generated["source"] == "model"
        for key in ("cachedTokens", "newPromptTokens", "promptMs", "generationMs"):
            assert key in generated
        assert generated["backend"] == "local"


@pytest.mark.slow
async def test_accepting_a_completion_finds_the_next_one_prefetched() -> None:
    async with session(env(), options()) as client:  # all latency features on
        open_doc(client, URI, PALINDROME)
        first = await complete(client, URI, CURSOR)
        assert first.strip()
        for _ in range(600):  # the prefetch runs while the user reads
            state = await status(client)
            if (
                state["stats"]["prefetches_started"]
                and not state["latency"]["inFlight"]
            ):
                break
            await asyncio.sleep(0.05)
        edit(client, URI, 2, CURSOR, first)  # accepted
        lines = (PALINDROME[: PALINDROME.index("    \n") + 4] + first).split("\n")
        end = types.Position(line=len(lines) - 1, character=len(lines[-1]))
        result = await inline(client, URI, end)
        state = await status(client)
        assert started(state) == 1  # the next completion cost no new generation
        assert state["stats"]["prefetch_hits"] == 1
        assert state["suggestions"][-1]["source"] == "prefetch"
        assert result is None or isinstance(result, types.InlineCompletionList)


@pytest.mark.slow
async def test_context_budget_follows_the_speed() -> None:
    """The budget is sized from the speed (given here: no test depends on the
    speed of the machine it runs on)."""
    fast = {**env(), "TANDEM_SPEED": "4000/400"}
    async with session(fast, options(prefetch=False)) as client:
        open_doc(client, URI, PALINDROME)
        await complete(client, URI, CURSOR)
        latency = (await status(client))["latency"]
        assert latency["speed"]["promptTokensPerS"] == 4000
        assert latency["speed"]["pinned"] is True
        roomy = latency["contextBudget"]
        assert 0 < roomy <= 512  # never above context.budgetTokens
        assert "latencyTargetMs 800" in latency["contextBudgetWhy"]

        # A target this speed cannot meet: the context gives way.
        client.set_configuration(
            {"completion": {"prefetch": False, "latencyTargetMs": 1}},
            section="tandem",
        )
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None)
        )
        for _ in range(200):
            if (await status(client))["latency"]["targetMs"] == 1:
                break
            await asyncio.sleep(0.05)
        edit(client, URI, 2, CURSOR, "r")
        await complete(client, URI, types.Position(line=2, character=5))
        state = await status(client)
        assert state["latency"]["contextBudget"] == 0


@pytest.mark.slow
async def test_a_focused_document_is_warm_before_the_first_request() -> None:
    """``tandem/didFocus`` with the cursor line: the prompt a request there gets
    is in the KV cache before the user asks."""
    body = HELPERS
    text = body + "def is_even(n: int) -> bool:\n    \n"
    line = text.count("\n") - 1
    async with session(env(), options(prefetch=False)) as client:
        await wait_for_state(client, "ready")
        focus(client, text, line)
        for _ in range(3000):  # bounded: the warm-up runs when the model is free
            state = await status(client)
            scheduler = state["latency"]["scheduler"]
            if state["stats"]["warmups"] and not scheduler["running"]:
                break
            await asyncio.sleep(0.1)
        assert state["stats"]["warmups"] >= 1
        assert state["latency"]["scheduler"]["started"]["warm"] >= 1
        await complete(client, URI, types.Position(line=line, character=4))
        last = (await status(client))["suggestions"][-1]
        assert last["source"] == "model"
        # The whole prompt was warm: its last token is evaluated again (logits).
        assert last["newPromptTokens"] == 1 and last["cachedTokens"] > 100, last


@pytest.mark.slow
async def test_an_opened_document_is_warm_up_to_the_guessed_cursor() -> None:
    """A plain ``didOpen`` (no cursor reported) warms the prompt up to where
    editors put the cursor of a newly opened file, the end of its first window,
    but not the text after that guess: a request there finds the head cached and
    evaluates only the tail (the text after the cursor and the FIM markers)."""
    body = HELPERS
    prefix_chars = 4000
    guess = body.rfind("\n", 0, prefix_chars) + 1
    at = types.Position(line=body[:guess].count("\n"), character=0)
    settings = options(prefetch=False, prefixChars=prefix_chars)
    async with session(env(), settings) as client:
        await wait_for_state(client, "ready")
        open_doc(client, URI, body)
        for _ in range(3000):  # bounded: the warm-up runs when the model is free
            state = await status(client)
            running = state["latency"]["scheduler"]["running"]
            if state["stats"]["warmups"] and not running:
                break
            await asyncio.sleep(0.1)
        assert state["stats"]["warmups"] >= 1
        await complete(client, URI, at)
        last = (await status(client))["suggestions"][-1]
        assert last["source"] == "model"
        assert last["cachedTokens"] > 100, last  # the head was warm
        assert last["newPromptTokens"] > 1, last  # the tail after a guess was not


@pytest.mark.slow
async def test_a_pause_grows_the_window_and_the_request_after_it_takes_it() -> None:
    """On a slow machine (given: 85 prompt tokens/s, whatever this one does) a
    cold prompt has a short window before the cursor; idle time after the
    warm-up evaluates all of ``prefixChars``. A request while that runs finds
    its prompt cached all the same (the short one, saved before the growing
    began, or the long one where the growing was done first: this machine's
    speed decides); a request after it takes the long window, evaluating no
    more than with the short one."""
    body = HELPERS
    text = body + "def is_even(n: int) -> bool:\n    \n"
    line = text.count("\n") - 1
    slow = {**env(), "TANDEM_SPEED": "85/28"}
    async with session(slow, options(prefetch=False, growWindow=True)) as client:
        await wait_for_state(client, "ready")
        focus(client, text, line)
        for _ in range(3000):  # bounded: the warm-up runs when the model is free
            state = await status(client)
            if state["latency"]["scheduler"]["started"].get("grow"):
                break
            await asyncio.sleep(0.05)
        assert state["stats"]["warmups"] == 1
        assert state["latency"]["windowTokens"] == 256  # what 85 tokens/s afford
        await complete(client, URI, types.Position(line=line, character=4))
        asked = (await status(client))["suggestions"][-1]
        assert asked["source"] == "model"
        assert asked["newPromptTokens"] == 1, asked  # all cached (but the last)

        # A pause after the request grows its window (again, if it was cut short).
        for _ in range(6000):
            state = await status(client)
            if state["stats"]["windows_grown"] and not (
                state["latency"]["scheduler"]["running"]
                or state["latency"]["scheduler"]["waiting"]
            ):
                break
            await asyncio.sleep(0.05)
        assert state["stats"]["windows_grown"] >= 1
        grown_before = state["stats"]["grown_prompts"]
        # A new line typed (not what was shown: no answer from the cache).
        edit(client, URI, 2, types.Position(line=line, character=4), "m = n\n    ")
        await complete(client, URI, types.Position(line=line + 1, character=4))
        state = await status(client)
        typed = state["suggestions"][-1]
        assert typed["source"] == "model", typed
        assert state["stats"]["grown_prompts"] == grown_before + 1
        # The whole window (~1,300 tokens) cached, the short one 256 or so.
        assert typed["cachedTokens"] > 900, typed
        assert typed["newPromptTokens"] < 16, typed  # the tail, as with the short one
