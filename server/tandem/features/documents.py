"""Document sync: pygls keeps the text (incremental); we drop state on close."""

from __future__ import annotations

from typing import Any

from lsprotocol import types

from tandem.server import TandemServer

DID_FOCUS = "tandem/didFocus"
"""Notification: the editor shows a document (and where its cursor rests)."""


def focus_params(params: Any) -> tuple[str, int | None, int] | None:
    """(uri, cursor line or None, character) of ``tandem/didFocus`` params.

    None if malformed. pygls hands a custom notification's params over as plain
    objects with the wire's camelCase names; the character is in the negotiated
    position encoding, as LSP positions are (0 where missing).
    """
    document = getattr(params, "textDocument", None)
    uri = getattr(document, "uri", None)
    if not isinstance(uri, str):
        return None
    position = getattr(params, "position", None)
    line = getattr(position, "line", None)
    character = getattr(position, "character", None)
    if not isinstance(line, int) or line < 0:
        return uri, None, 0
    return uri, line, character if isinstance(character, int) and character > 0 else 0


def register(server: TandemServer) -> None:
    """Register the document handlers."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: TandemServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = ls.workspace.get_text_document(params.text_document.uri)
        ls.index_document(doc.path, doc.source, doc.language_id or "")
        ls.run_task(ls.warm_document(params.text_document.uri))
        ls.next_edit.history.opened(params.text_document.uri, doc.source, doc.path)

    @server.feature(DID_FOCUS)
    def did_focus(ls: TandemServer, params: Any) -> None:
        """The editor shows this document, the cursor on ``position`` (optional)."""
        found = focus_params(params)
        if found is not None:
            ls.run_task(ls.warm_document(*found))

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: TandemServer, params: types.DidChangeTextDocumentParams) -> None:
        lines = [
            c.range.start.line
            for c in params.content_changes
            if isinstance(c, types.TextDocumentContentChangePartial)
        ]
        ls.note_edit(params.text_document.uri, lines)
        doc = ls.workspace.get_text_document(params.text_document.uri)
        ls.next_edit.history.changed(params.text_document.uri, doc.source)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: TandemServer, params: types.DidSaveTextDocumentParams) -> None:
        doc = ls.workspace.get_text_document(params.text_document.uri)
        ls.index_document(doc.path, doc.source, doc.language_id or "")

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: TandemServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        ls.run_task(ls.files_changed(params.changes))

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: TandemServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.engine.forget(params.text_document.uri)
        ls.recent_edits.pop(params.text_document.uri, None)
        ls.next_edit.forget(params.text_document.uri)
