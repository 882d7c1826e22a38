"""Inline completions (LSP 3.18) and list completions for every other client."""

from __future__ import annotations

import logging
import re

from lsprotocol import types
from pygls.workspace import TextDocument

from tandem.backends import BackendError
from tandem.engine import BackendMissing, Completion
from tandem.server import TandemServer

logger = logging.getLogger(__name__)

_WORD_TAIL = re.compile(r"[\w$]*$")


async def complete_at(
    ls: TandemServer, uri: str, position: types.Position
) -> tuple[TextDocument, Completion] | None:
    """Run the engine at ``position``; None (and one message) when it cannot."""
    await ls.wait_for_backend()
    settings = ls.settings.completion  # as the client's settings say, once known
    if not settings.enabled:
        return None
    doc, snapshot = ls.snapshot(uri)
    try:
        offset = doc.offset_at_position(position)
    except (IndexError, ValueError):
        return None
    try:
        result = await ls.engine.complete(
            snapshot, offset, settings, ls.settings.context
        )
    except BackendMissing as e:
        ls.show_once(f"tandem: {e}")
        return None
    except BackendError as e:
        logger.warning("completion failed", exc_info=True)
        ls.show_once(f"tandem: {e}")
        return None
    if result is None or not result.text:
        return None
    return doc, result


def register_inline(server: TandemServer) -> None:
    """Register inline completion (only for clients that declare it)."""

    @server.feature(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions()
    )
    async def inline_completion(
        ls: TandemServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        found = await complete_at(ls, params.text_document.uri, params.position)
        if found is None:
            return None
        here = types.Range(start=params.position, end=params.position)
        item = types.InlineCompletionItem(insert_text=found[1].text, range=here)
        return types.InlineCompletionList(items=[item])


def completion_item(
    doc: TextDocument, position: types.Position, text: str, detail: str
) -> types.CompletionItem:
    """A list item whose edit inserts ``text`` at ``position``.

    The edit starts at the word before the cursor so that clients, which filter
    items against that word, keep showing it.
    """
    codec = doc.position_codec
    here = codec.position_from_client_units(doc.lines, position)
    before = (
        doc.lines[here.line][: here.character] if here.line < len(doc.lines) else ""
    )
    word = _WORD_TAIL.search(before)
    typed = word.group(0) if word else ""
    # Columns from the line's text (a position past the end or inside a surrogate
    # pair is where the document says, not where the client said).
    start = types.Position(
        line=here.line, character=codec.client_num_units(before[: -len(typed) or None])
    )
    position = types.Position(line=here.line, character=codec.client_num_units(before))
    first_line = text.strip().split("\n", 1)[0]
    label = typed + first_line if text[:1] not in (" ", "\t", "\n") else first_line
    return types.CompletionItem(
        label=label[:80] or text.strip()[:80],
        kind=types.CompletionItemKind.Text,
        detail=detail,
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown,
            value=f"```{doc.language_id or ''}\n{typed}{text}\n```",
        ),
        filter_text=typed + text,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(
            range=types.Range(start=start, end=position), new_text=typed + text
        ),
        sort_text="0",
        preselect=True,
    )


def register(server: TandemServer) -> None:
    """Register list completion (every client)."""

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: TandemServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        found = await complete_at(ls, params.text_document.uri, params.position)
        if found is None:
            return None
        doc, result = found
        item = completion_item(doc, params.position, result.text, "tandem")
        return types.CompletionList(is_incomplete=True, items=[item])
