"""Document sync: pygls keeps the text (incremental); we drop state on close."""

from __future__ import annotations

from lsprotocol import types

from tandem.server import TandemServer


def register(server: TandemServer) -> None:
    """Register the document handlers."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: TandemServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = ls.workspace.get_text_document(params.text_document.uri)
        ls.index_document(doc.path, doc.source, doc.language_id or "")

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: TandemServer, params: types.DidChangeTextDocumentParams) -> None:
        lines = [
            c.range.start.line
            for c in params.content_changes
            if isinstance(c, types.TextDocumentContentChangePartial)
        ]
        ls.note_edit(params.text_document.uri, lines)

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
