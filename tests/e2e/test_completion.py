"""Completions end to end: the real server process, the real Qwen model."""

from __future__ import annotations

import asyncio

import llama_cpp
import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import LanguageClient

from tests.e2e.helpers import PALINDROME, complete, edit, open_doc, status

CURSOR = types.Position(line=2, character=4)


@pytest.mark.slow
async def test_completes_function_body(client: LanguageClient) -> None:
    uri = "file:///work/project/pal.py"
    open_doc(client, uri, PALINDROME)
    text = await complete(client, uri, CURSOR)
    assert "s[::-1]" in text
    assert text.startswith("return")
    assert "print(" not in text  # trimmed at the end of the function body

    state = await status(client)
    assert state["model"]["state"] == "ready"
    assert state["model"]["fim_family"] == "qwen"
    # Offloaded exactly when this llama.cpp build can (CPU-only or GPU build).
    offloads = bool(llama_cpp.llama_supports_gpu_offload())
    assert state["model"]["gpu_offload"] is offloads
    assert "ready" in state["summary"][1]
    assert "1 generated" in state["summary"][2]


@pytest.mark.slow
async def test_doctor_command(client: LanguageClient) -> None:
    found = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tandem.doctor")
    )
    assert found["llama_cpp"]["installed"] is True
    assert found["model"]["found"] is True and found["model"]["source"] == "env"
    assert "GPU offload" in found["text"]


@pytest.mark.slow
@pytest.mark.parametrize("client", ["vscode"], indirect=True)
async def test_inline_and_list_give_the_same_text(client: LanguageClient) -> None:
    caps = client.capabilities
    assert caps is not None and caps.text_document is not None
    assert caps.text_document.inline_completion is not None
    uri = "file:///work/project/pal.py"
    open_doc(client, uri, PALINDROME)
    inline = await complete(client, uri, CURSOR)
    listed = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=CURSOR
        )
    )
    assert isinstance(listed, types.CompletionList)
    item_edit = listed.items[0].text_edit
    assert isinstance(item_edit, types.TextEdit)
    assert item_edit.new_text == inline
    assert item_edit.range == types.Range(start=CURSOR, end=CURSOR)


@pytest.mark.slow
async def test_typing_the_completion_is_served_from_cache(
    client: LanguageClient,
) -> None:
    uri = "file:///work/project/pal.py"
    open_doc(client, uri, PALINDROME)
    first = await complete(client, uri, CURSOR)
    edit(client, uri, 2, CURSOR, first[:3])
    rest = await complete(client, uri, types.Position(line=2, character=7))
    assert first[:3] + rest == first
    state = await status(client)
    assert state["stats"]["cache_hits"] == 1
    assert state["stats"]["generations_started"] == 1


@pytest.mark.slow
async def test_utf16_positions(client: LanguageClient) -> None:
    # Astral characters are two UTF-16 units: the cursor column counts them so.
    uri = "file:///work/project/emoji.py"
    text = 'GREETING = "👋🌍"\nnames = ["a", "b"]\nfor name in names:\n    \n'
    open_doc(client, uri, text)
    completion = await complete(client, uri, types.Position(line=3, character=4))
    assert "name" in completion
    # On the emoji line, the end of the line is at UTF-16 column 16, not 14.
    listed = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=0, character=16),
        )
    )
    if isinstance(listed, types.CompletionList) and listed.items:
        item_edit = listed.items[0].text_edit
        assert isinstance(item_edit, types.TextEdit)
        assert item_edit.range.end == types.Position(line=0, character=16)


@pytest.mark.slow
async def test_cancel_during_prompt_eval(client: LanguageClient) -> None:
    # A long prompt takes seconds to evaluate on a CPU: cancel in the middle.
    # No warm-up of the opened files, no prefetch after the first completion:
    # the one evaluation under way is the request's own.
    client.set_configuration(
        {"completion": {"warmUp": False, "prefetch": False}}, section="tandem"
    )
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    # The server's state is polled: nothing here to wait on as an event.
    while (await status(client))["settings"]["completion"]["prefetch"]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    uri = "file:///work/project/long.py"
    body = "".join(
        f"def handler_{i}(request, value_{i}):\n"
        f"    return request.process(value_{i} * {i}, name='handler_{i}')\n\n"
        for i in range(60)
    )
    open_doc(client, uri, body + "def main():\n    ")
    warm = "file:///work/project/pal.py"
    open_doc(client, warm, PALINDROME)
    await complete(client, warm, CURSOR)  # the model is loaded
    before = (await status(client))["backendCounters"]

    end = types.Position(line=180, character=4)
    doc = types.TextDocumentIdentifier(uri=uri)
    request_id = "long-prompt"
    future = asyncio.wrap_future(
        client.protocol.send_request(
            types.TEXT_DOCUMENT_COMPLETION,
            types.CompletionParams(text_document=doc, position=end),
            msg_id=request_id,
        )
    )
    # Cancel once the prompt evaluation is under way (a chunk started).
    chunks = before["prompt_chunks"]
    while (await status(client))["backendCounters"]["prompt_chunks"] <= chunks:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=request_id))
    with pytest.raises(JsonRpcRequestCancelled):
        await future

    # The next request generates on the same worker thread, after the abort.
    walk = "file:///work/project/walk.py"
    open_doc(client, walk, "def square(x):\n    return ")
    assert "x" in await complete(client, walk, types.Position(line=1, character=11))
    state = await status(client)
    counters = state["backendCounters"]
    # On a CPU the abort callback stops it inside the chunk under way (the stop
    # flag, should the cancel land between two chunks); with GPU offload the
    # callback is off and the flag stops it at the next chunk boundary.
    aborts = counters["prompt_aborts"] - before["prompt_aborts"]
    chunk_stops = counters["prompt_chunk_stops"] - before["prompt_chunk_stops"]
    assert aborts + chunk_stops == 1
    if not state["model"]["abort_callback"]:
        assert chunk_stops == 1
    assert state["stats"]["generations_cancelled"] == 1
    assert state["stats"]["generations_completed"] == 2


@pytest.mark.slow
async def test_burst_runs_at_most_two_generations(client: LanguageClient) -> None:
    uri = "file:///work/project/burst.py"
    text = "import math\n\n\ndef circle_area(radius):\n    "
    open_doc(client, uri, text)
    doc = types.TextDocumentIdentifier(uri=uri)
    typed = "return "
    requests = []
    for i, ch in enumerate(typed):
        edit(client, uri, i + 2, types.Position(line=4, character=4 + i), ch)
        requests.append(
            client.text_document_completion_async(
                types.CompletionParams(
                    text_document=doc, position=types.Position(line=4, character=5 + i)
                )
            )
        )
    results = await asyncio.gather(*requests)
    final = results[-1]
    assert isinstance(final, types.CompletionList)
    assert "math.pi" in final.items[0].label or "radius" in final.items[0].label
    state = await status(client)
    assert state["stats"]["generations_started"] <= 2
    assert state["stats"]["requests"] == len(typed)


@pytest.mark.slow
async def test_invalid_settings_one_message_defaults_used(
    client: LanguageClient,
) -> None:
    client.set_configuration(
        {"completion": {"maxTokens": "many", "debounceMs": 20}}, section="tandem"
    )
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    await client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
    # Another change with the same problem: no second message.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    uri = "file:///work/project/pal.py"
    open_doc(client, uri, PALINDROME)
    assert "s[::-1]" in await complete(client, uri, CURSOR)
    state = await status(client)
    assert state["settings"]["completion"]["max_tokens"] == 96
    warnings = [m.message for m in client.messages]
    assert len(warnings) == 1
    assert "completion.maxTokens" in warnings[0]


@pytest.mark.slow
async def test_settings_change_applies(client: LanguageClient) -> None:
    client.set_configuration(
        {"completion": {"multiline": False, "debounceMs": 20}}, section="tandem"
    )
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    for _ in range(100):
        state = await status(client)
        if state["settings"]["completion"]["multiline"] is False:
            break
        await asyncio.sleep(0.05)
    uri = "file:///work/project/walk.py"
    text = (
        "import os\n\n\ndef python_files(root):\n    found = []\n"
        "    for dirpath, _, filenames in os.walk(root):\n        \n    return found\n"
    )
    open_doc(client, uri, text)
    completion = await complete(client, uri, types.Position(line=6, character=8))
    assert completion.strip()
    assert "\n" not in completion


@pytest.mark.slow
async def test_non_fim_model_completes_from_prefix(smol_client: LanguageClient) -> None:
    uri = "file:///work/project/add.py"
    text = "def add(a, b):\n    return "
    open_doc(smol_client, uri, text)
    listed = await smol_client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=11),
        )
    )
    assert isinstance(listed, types.CompletionList) and listed.items
    item_edit = listed.items[0].text_edit
    assert isinstance(item_edit, types.TextEdit)
    assert "a" in item_edit.new_text and "\n" not in item_edit.new_text.strip()
    state = await status(smol_client)
    assert state["model"]["fim_family"] is None
    assert state["model"]["architecture"] == "llama"


@pytest.mark.slow
async def test_messages_during_model_load_all_arrive(client: LanguageClient) -> None:
    # Regression: llama-cpp-python's verbose=False redirects fd 1 to /dev/null
    # while it loads, which swallowed responses the event loop wrote meanwhile.
    replies = await asyncio.gather(*(status(client) for _ in range(30)))
    assert len(replies) == 30
    states = {r["model"]["state"] for r in replies}
    assert states <= {"not loaded", "loading", "ready"}
