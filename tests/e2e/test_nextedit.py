"""Next-edit suggestions through LSP with the real Qwen2.5-Coder 0.5B model.

The scenario of issue 20: rename a parameter at its definition, pause, ask
``textDocument/copilotInlineEdit`` (as Copilot's clients do) and get the edit at
the next use of the old name.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.helpers import edit, open_doc, status


async def next_edit_status(client: LanguageClient) -> Any:
    """The next-edit counters and the last prediction's details."""
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tandem.nextEditStatus")
    )


URI = "file:///work/project/pricing.py"
CODE = (
    "def total_price(items, discount):\n"
    "    subtotal = sum(item.price for item in items)\n"
    "    if discount:\n"
    "        subtotal = subtotal * (1 - discount)\n"
    "    return subtotal\n"
)


def delete(client: LanguageClient, version: int, start: types.Position, n: int) -> None:
    """Delete ``n`` characters from ``start`` (on one line)."""
    end = types.Position(line=start.line, character=start.character + n)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=URI, version=version
            ),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=start, end=end), text=""
                )
            ],
        )
    )


async def inline_edit(
    client: LanguageClient, version: int, position: types.Position
) -> list[dict[str, Any]]:
    """The edits of a ``textDocument/copilotInlineEdit`` answer."""
    answer = await client.protocol.send_request_async(
        "textDocument/copilotInlineEdit",
        {
            "textDocument": {"uri": URI, "version": version},
            "position": {"line": position.line, "character": position.character},
        },
    )
    edits = answer.edits if hasattr(answer, "edits") else answer["edits"]
    return [as_dict(e) for e in edits]


def as_dict(obj: Any) -> Any:
    """Named tuples (how pygls reads unknown results) as plain dicts."""
    if hasattr(obj, "_asdict"):
        obj = obj._asdict()
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_dict(v) for v in obj]
    return obj


def rename_items(client: LanguageClient) -> tuple[int, types.Position]:
    """Select ``items`` in the signature and type ``products`` over it."""
    open_doc(client, URI, CODE)
    at = types.Position(line=0, character=CODE.index("items"))
    delete(client, 2, at, len("items"))
    version = 2
    for i, ch in enumerate("products"):
        version += 1
        edit(
            client, URI, version, types.Position(line=0, character=at.character + i), ch
        )
    return version, types.Position(line=0, character=at.character + len("products"))


@pytest.mark.slow
async def test_renamed_parameter_gives_the_edit_at_its_next_use(
    client: LanguageClient,
) -> None:
    version, cursor = rename_items(client)
    edits = await inline_edit(client, version, cursor)
    state = await next_edit_status(client)
    assert len(edits) == 1, state
    [found] = edits
    line = CODE.splitlines()[1]
    rng = found["range"]
    assert rng["start"]["line"] == rng["end"]["line"] == 1
    start, end = rng["start"]["character"], rng["end"]["character"]
    assert line[:start] + found["text"] + line[end:] == (
        "    subtotal = sum(item.price for item in products)"
    )
    assert found["textDocument"] == {"uri": URI, "version": version}
    assert found["command"]["command"] == "tandem.nextEditAccepted"


@pytest.mark.slow
async def test_no_edit_without_recent_edits(client: LanguageClient) -> None:
    open_doc(client, URI, CODE)
    edits = await inline_edit(client, 1, types.Position(line=1, character=4))
    assert edits == []
    state = await next_edit_status(client)
    assert state["last"]["reason"] == "no recent edits"


@pytest.mark.slow
async def test_turned_off_by_the_setting(client: LanguageClient) -> None:
    client.set_configuration({"nextEdit": {"enabled": False}}, section="tandem")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings=None)
    )
    for _ in range(100):
        if not (await status(client))["settings"]["next_edit"]["enabled"]:
            break
        await asyncio.sleep(0.05)
    version, cursor = rename_items(client)
    assert await inline_edit(client, version, cursor) == []
    assert (await next_edit_status(client))["requests"] == 0
