"""Next-edit suggestions over LSP: ``textDocument/copilotInlineEdit``.

The request and answer have the shape GitHub Copilot's language server uses, so
editor plugins written for it work unchanged::

    {textDocument: {uri, version}, position}
      -> {edits: [{range, text, textDocument: {uri, version}, command}]}

The edit may be anywhere near the cursor. One that inserts at the cursor or
replaces on its line is also what ``inline_item`` serves as an inline completion.
The prediction itself is background work (see ``tandem.nextedit.pipeline``):
any completion request preempts it, and the answer is then no edit.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from tandem.assist.edits import TextChange
from tandem.backends import BackendError
from tandem.engine import BackendMissing
from tandem.server import TandemServer

logger = logging.getLogger(__name__)

INLINE_EDIT = "textDocument/copilotInlineEdit"
CMD_ACCEPTED = "tandem.nextEditAccepted"
CMD_STATUS = "tandem.nextEditStatus"
CAPABILITY = {"copilotInlineEdit": True, "tandemNextEdit": {"version": 1}}
"""Advertised under ``experimental`` in the server's capabilities."""


def _field(obj: Any, name: str) -> Any:
    """A field of a params object (pygls makes named tuples of unknown methods)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def read_params(params: Any) -> tuple[str, int | None, types.Position]:
    """(uri, version, position) of a copilotInlineEdit request."""
    doc = _field(params, "textDocument")
    position = _field(params, "position")
    uri = _field(doc, "uri")
    version = _field(doc, "version")
    line = _field(position, "line")
    character = _field(position, "character")
    ints = (line, character) + (() if version is None else (version,))
    if not isinstance(uri, str) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in ints
    ):
        raise JsonRpcInvalidParams(
            message="copilotInlineEdit needs textDocument {uri, version} and a position"
        )
    return uri, version, types.Position(line=line, character=character)


def position_at(doc: TextDocument, offset: int) -> dict[str, int]:
    """The client position (in its units) of a character offset."""
    text = doc.source
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    units = doc.position_codec.client_num_units(text[start:offset])
    return {"line": line, "character": units}


def edit_json(
    doc: TextDocument, uri: str, version: int | None, change: TextChange
) -> dict[str, Any]:
    """One edit of the answer, as Copilot's language server writes it."""
    return {
        "range": {
            "start": position_at(doc, change.start),
            "end": position_at(doc, change.end),
        },
        "text": change.new_text,
        "textDocument": {"uri": uri, "version": version},
        "command": {
            "title": "Accept next edit",
            "command": CMD_ACCEPTED,
            "arguments": [uri],
        },
    }


async def predict_at(
    ls: TandemServer, uri: str, position: types.Position
) -> tuple[TextDocument, int | None, tuple[TextChange, ...]] | None:
    """The next edit shown at ``position``; None when there is none to show."""
    settings = ls.settings.next_edit
    if not settings.enabled:
        return None
    await ls.wait_for_backend()
    doc, snapshot = ls.snapshot(uri)
    version = doc.version
    try:
        offset = doc.offset_at_position(position)
    except (IndexError, ValueError):
        return None
    try:
        prediction = await ls.next_edit.predict(snapshot, offset, settings)
    except (BackendMissing, BackendError) as e:
        logger.info("next edit failed: %s", e)
        ls.next_edit.stats.failed += 1
        return None
    if prediction is None or not prediction.shown:
        return None
    if uri not in ls.workspace.text_documents or doc.source != snapshot.text:
        return None  # typed on meanwhile: the edit's offsets are stale
    return doc, version, prediction.changes


def inline_item(
    doc: TextDocument, position: types.Position, changes: tuple[TextChange, ...]
) -> types.InlineCompletionItem | None:
    """The first change as an inline completion, if it is on the cursor's line.

    An insertion at the cursor is plain ghost text; another change on the same
    line replaces through the item's ``range`` (from the change's start to the
    cursor or its end, whichever is later).
    """
    if not changes:
        return None
    change = changes[0]
    offset = doc.offset_at_position(position)
    text = doc.source
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    if not (line_start <= change.start and change.end <= line_end):
        return None
    if change.start > offset:
        return None  # ahead of the cursor: an inline edit, not a completion
    start = change.start
    end = max(change.end, offset)
    insert = text[start : change.start] + change.new_text + text[change.end : end]
    return types.InlineCompletionItem(
        insert_text=insert,
        range=types.Range(
            start=types.Position(**position_at(doc, start)),
            end=types.Position(**position_at(doc, end)),
        ),
    )


def register(server: TandemServer) -> None:
    """Register the next-edit request and its accept command."""

    @server.feature(INLINE_EDIT)
    async def copilot_inline_edit(ls: TandemServer, params: Any) -> dict[str, Any]:
        uri, version, position = read_params(params)
        found = await predict_at(ls, uri, position)
        if found is None:
            return {"edits": []}
        doc, at_version, changes = found
        return {"edits": [edit_json(doc, uri, version or at_version, changes[0])]}

    @server.command(CMD_ACCEPTED)
    def next_edit_accepted(ls: TandemServer, *args: Any) -> None:
        ls.next_edit.stats.accepted += 1

    @server.command(CMD_STATUS)
    def next_edit_status(ls: TandemServer, *args: Any) -> dict[str, Any]:
        return attrs.asdict(ls.next_edit.stats)
