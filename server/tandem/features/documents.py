"""Document sync: pygls keeps the text (incremental); we drop state on close."""

from __future__ import annotations

from lsprotocol import types

from tandem.server import TandemServer


def register(server: TandemServer) -> None:
    """Register the document handlers."""

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: TandemServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.engine.forget(params.text_document.uri)
