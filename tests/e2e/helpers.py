"""Helpers for the end-to-end tests: documents, requests, sessions."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.e2e.conftest import answer_client_requests, initialize_params

PALINDROME = (  # a half-written function: the cursor is on the empty body line
    "def is_palindrome(s: str) -> bool:\n"
    '    """Return True if s reads the same forwards and backwards."""\n'
    "    \n"
    "\n"
    "\n"
    'print(is_palindrome("racecar"))\n'
)


def open_doc(client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=text
            )
        )
    )


def edit(
    client: LanguageClient, uri: str, version: int, at: types.Position, text: str
) -> None:
    """Insert ``text`` at ``at`` with an incremental change."""
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=at, end=at), text=text
    )
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=version
            ),
            content_changes=[change],
        )
    )


async def status(client: LanguageClient) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="tandem.status")
    )


async def complete(client: LanguageClient, uri: str, position: types.Position) -> str:
    """What the user is shown: inline if the client declared it, else the item."""
    caps = client.capabilities
    assert caps is not None and caps.text_document is not None
    doc = types.TextDocumentIdentifier(uri=uri)
    if caps.text_document.inline_completion is not None:
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=doc,
                position=position,
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        assert result is not None
        items = (
            result.items if isinstance(result, types.InlineCompletionList) else result
        )
        assert isinstance(items[0].insert_text, str)
        return items[0].insert_text
    listed = await client.text_document_completion_async(
        types.CompletionParams(text_document=doc, position=position)
    )
    assert isinstance(listed, types.CompletionList) and listed.items
    item_edit = listed.items[0].text_edit
    assert isinstance(item_edit, types.TextEdit)
    # The item replaces the word before the cursor: return what follows the cursor.
    assert item_edit.range.end == position
    typed = position.character - item_edit.range.start.character
    return item_edit.new_text[typed:]


@asynccontextmanager
async def session(
    env: dict[str, str],
    options: Any,
    client_kind: str = "vscode",
    root: str | None = None,
    args: tuple[str, ...] = ("-v",),
) -> AsyncIterator[LanguageClient]:
    """A server with ``env`` on top of ours (TANDEM_MODEL only if ``env`` has it)."""
    base = {k: v for k, v in os.environ.items() if k != "TANDEM_MODEL"}
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "tandem", *args],
        server_env={**base, **env},
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    answer_client_requests(client)
    await client.initialize_session(initialize_params(client_kind, options, root))
    try:
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


async def wait_for_state(client: LanguageClient, *states: str) -> Any:
    waiting = asyncio.ensure_future(client.wait_for_notification("$/tandem/status"))
    while (state := await status(client))["model"]["state"] not in states:
        await waiting  # the server announces every state change
        waiting = asyncio.ensure_future(client.wait_for_notification("$/tandem/status"))
    waiting.cancel()
    return state
