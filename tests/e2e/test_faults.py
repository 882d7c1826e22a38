"""Backend faults through LSP: every cloud failure ends in the local answer.

The completion chain is ``["anthropic", "local"]``: a stand-in Anthropic API on
127.0.0.1 fails in each way a real one does (malformed event streams included), and
the real local model (Qwen2.5-Coder 0.5B) answers instead, with one message naming
the failure; an answer dropped half-way is continued by the local model. A hung
server is given up at ``routing.completionDeadlineS`` (2 s by default), far below
its 600 s ``timeoutS`` here: the answer arrives while the stand-in still holds the
request. A slow but healthy answer, whose first text comes in time, is served by the
cloud and its cost counted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.helpers import PALINDROME, complete, open_doc, session, status
from tests.fakes.apis import FakeApi, Reply, anthropic_events, serving
from tests.models import qwen_model

KEY = "sk-ant-api03-TestKeyForFaults0123456789"
NOT_JSON = 'event: content_block_delta\ndata: {"type": "content_block_delta", "de\n\n'
CURSOR = types.Position(line=2, character=4)

FAULTS = [
    (Reply(status=429, headers={"Retry-After": "20"}), "HTTP 429"),
    (Reply(status=500, error={"message": "internal"}), "HTTP 500"),
    (Reply(status=529, error={"message": "Overloaded"}), "HTTP 529"),
    (Reply(status=504), "HTTP 504"),
    # Dropped after "return ": the local model continues from there.
    (Reply(texts=["return ", "x"], drop_after=1), "dropped mid-answer"),
    (Reply(hold=True), "no answer within 2 s"),
    (Reply(raw=[*anthropic_events([])[:3], NOT_JSON]), "not a JSON object"),
    (Reply(raw=anthropic_events(["return "])[:4]), "ended before message_stop"),
    # Last: its rest (300 s) outlasts the local answer on the slowest machine.
    (Reply(status=401, error={"message": "invalid x-api-key"}), "HTTP 401"),
]


def settings(url: str, model: str) -> dict[str, Any]:
    return {
        "completion": {"debounceMs": 20, "adaptiveDebounce": False, "prefetch": False},
        # The deadline is set each time: initializationOptions (the warm-up's 0)
        # stay under what the configuration leaves out.
        "routing": {"completion": ["anthropic", "local"], "completionDeadlineS": 2.0},
        "anthropic": {
            "baseUrl": url,
            "apiKeyEnv": "TEST_CLOUD_KEY",
            "model": model,
            "timeoutS": 600,
        },
    }


async def reconfigure(client: LanguageClient, options: dict[str, Any]) -> None:
    """New settings (which also end any rest the router gave the backend)."""
    client.set_configuration(options, section="tandem")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    model = options["anthropic"]["model"]
    for _ in range(200):
        if (await status(client))["settings"]["anthropic"]["model"] == model:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not take the new settings")


@pytest.mark.slow
async def test_every_cloud_fault_ends_in_the_local_answer(tmp_path: Path) -> None:
    env = {
        "TEST_CLOUD_KEY": KEY,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TANDEM_MODEL": str(qwen_model()),
    }
    with serving() as cloud:
        warming = settings(cloud.url, "claude-test")
        warming["routing"]["completionDeadlineS"] = 0  # the first request: no deadline
        async with session(env, warming) as client:
            await warm_up(client, cloud)
            for n, (reply, said) in enumerate(FAULTS):
                await reconfigure(client, settings(cloud.url, f"claude-test-{n}"))
                cloud.reply(reply)
                asked = len(cloud.seen)
                uri = f"file:///work/project/pal{n}.py"
                open_doc(client, uri, PALINDROME)
                shown = asyncio.ensure_future(
                    client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
                )
                text = await complete(client, uri, CURSOR)
                held = cloud.holding
                assert text.startswith("return") and "s[::-1]" in text, said
                message = (await asyncio.wait_for(shown, 30)).message
                assert said in message and "answered by local" in message, message
                assert len(cloud.seen) == asked + 1  # the cloud was asked first
                if reply.hold:
                    assert held == 1  # the answer came while the request hung
                client.text_document_did_close(  # out of the next one's context
                    types.DidCloseTextDocumentParams(
                        text_document=types.TextDocumentIdentifier(uri=uri)
                    )
                )
            state = await status(client)
            assert "anthropic" in state["routing"]["cooldown"]
            assert KEY not in str(state)
            assert len(client.messages) == len(FAULTS)  # one message per fault


async def warm_up(client: LanguageClient, cloud: FakeApi) -> None:
    """One answer from the cloud (its connection made), with no deadline."""
    uri = "file:///work/project/warm.py"
    open_doc(client, uri, PALINDROME)
    cloud.reply(Reply(texts=["return s == s[::-1]  # cloud"]))
    assert (await complete(client, uri, CURSOR)).endswith("# cloud")
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)
        )
    )


@pytest.mark.slow
async def test_a_slow_healthy_cloud_answer_is_served_and_counted(
    tmp_path: Path,
) -> None:
    env = {
        "TEST_CLOUD_KEY": KEY,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TANDEM_MODEL": str(qwen_model()),
    }
    with serving() as cloud:
        options = settings(cloud.url, "claude-test")
        options["routing"]["completionDeadlineS"] = 0  # no deadline: warming up
        async with session(env, options) as client:
            uri = "file:///work/project/slow.py"
            await warm_up(client, cloud)
            open_doc(client, uri, PALINDROME)
            deadline = 2.0
            options = settings(cloud.url, "claude-test-2")
            options["routing"]["completionDeadlineS"] = deadline
            await reconfigure(client, options)
            cloud.reply(Reply(texts=["return s", " == s[::-1]  # slow"], pause_after=1))
            edit(client, uri, PALINDROME.replace("-> bool:", "-> bool:  # v2"))
            asking = asyncio.ensure_future(complete(client, uri, CURSOR))
            # The first text is out (a hang guard, not a speed bound)...
            assert await asyncio.to_thread(cloud.paused.wait, 240)
            await asyncio.sleep(deadline * 2)  # ...and the deadline long past
            cloud.resume.set()
            assert (await asking).endswith("# slow")
            state = await status(client)
            decision = state["routing"]["decisions"][0]
            assert (decision["backend"], decision["outcome"]) == ("anthropic", "ok")
            assert decision["cost_usd"] == (25 * 3.0 + 2 * 15.0) / 1e6
            assert state["routing"]["spendTodayUsd"] > 0
            assert client.messages == []  # nothing was given up


def edit(client: LanguageClient, uri: str, text: str) -> None:
    """Replace the document's text (version 2)."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
