"""pygls' protocol with cancellation that reaches command handlers.

pygls runs ``workspace/executeCommand`` as a generator that starts the command's
coroutine as a second task, and (pygls 2.1) loses the link between the two:

- ``$/cancelRequest`` cancels the request's future but not the running command, so
  an explanation would go on generating for nobody;
- a command task that is cancelled (the progress "Cancel" button) raises
  ``CancelledError`` out of a callback and the request is never answered;
- the command task's future stays in ``_request_futures`` for good, and at
  shutdown pygls cancels futures while iterating over that dict.

Here the request's cancellation is passed on to the command task, a cancelled
command task answers ``RequestCancelled``, and finished tasks are forgotten.

Bad input gets an answer too: pygls drops a request whose parameters do not
validate (a negative position, a range of the wrong shape) after logging it, and the
client waits for ever; here it is answered with ``InvalidParams`` naming what is wrong.
Changes to and closes of documents that are not open are logged and ignored, where
pygls raises ``KeyError`` from its own handler. And a notification's future is
forgotten once its handler is done (pygls keeps one per notification: a leak of a
few kilobytes per keystroke).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from concurrent.futures import Future
from typing import Any

from cattrs import transform_error
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

logger = logging.getLogger(__name__)

ANSWERED = object()
"""A request that could not be read and was answered with an error already."""


class TandemProtocol(LanguageServerProtocol):
    """LanguageServerProtocol with end-to-end cancellation of commands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steps: dict[object, Future[Any]] = {}
        """A generator handler's running step -> the request's future."""

    def _execute_handler(  # type: ignore[no-untyped-def]
        self, msg_id, handler, callback, args=None, kwargs=None
    ) -> None:
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        inner = self._request_futures.get(msg_id)
        if inner is not None and callback == self._check_handler_result:
            # A notification's future: pygls keeps it for good (one per keystroke).
            inner.add_done_callback(lambda _: self._request_futures.pop(msg_id, None))
            return
        outer: Future[Any] | None = getattr(callback, "keywords", {}).get(
            "result_future"
        )
        if outer is None or inner is None or inner is outer:
            return  # not a step of a generator handler
        # The inner step is keyed by a random id nobody cancels by: link it to
        # the request, and forget it once it is done.
        self._steps[inner] = outer
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)

        def forget(_: object) -> None:
            self._request_futures.pop(msg_id, None)
            self._steps.pop(inner, None)

        inner.add_done_callback(forget)

    def _run_generator(  # type: ignore[no-untyped-def]
        self, future, *, gen, result_future
    ) -> None:
        if future is not None and future.cancelled():
            if not result_future.done():
                result_future.cancel()  # answered as RequestCancelled
            return
        super()._run_generator(future, gen=gen, result_future=result_future)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Read a message; a request that does not validate is answered here."""
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if "id" not in data or "method" not in data:
                raise  # a notification or response: logged, nothing to answer
            cause = e.__cause__
            detail = (
                "; ".join(transform_error(cause))
                if isinstance(cause, ClassValidationError)
                else str(cause or e)
            )
            self._send_data(
                types.ResponseErrorMessage(
                    id=data["id"],
                    error=types.ResponseError(
                        code=e.code,
                        message=f"invalid {data['method']} request: {detail}",
                    ),
                )
            )
            return ANSWERED

    def handle_message(self, message: Any) -> None:
        """Hand on every message but those answered while reading them."""
        if message is not ANSWERED:
            super().handle_message(message)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        """Initialize, advertising the server's ``experimental`` capabilities."""
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        experimental = getattr(self._server, "experimental", None)
        if experimental:
            result.capabilities.experimental = experimental
        return result

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        """Apply the change, unless the document is not open (then say so)."""
        uri = params.text_document.uri
        if uri not in self.workspace.text_documents:
            logger.warning("ignored a change to %s: the document is not open", uri)
            return
        yield from super().lsp_text_document__did_change(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(
        self, params: types.DidCloseTextDocumentParams
    ) -> Generator[Any, Any, None]:
        """Forget the document, unless it was not open (then say so)."""
        uri = params.text_document.uri
        if uri not in self.workspace.text_documents:
            logger.warning("ignored closing %s: the document is not open", uri)
            return
        yield from super().lsp_text_document__did_close(params)

    def cancel_pending(self) -> None:
        """Cancel every request still running but the caller's own (at shutdown).

        pygls' shutdown does this too, but mutates the dict it iterates over when
        a command is still running; afterwards it finds nothing left to do.
        """
        mine = asyncio.current_task()
        own = {mine, self._steps.get(mine)} if mine is not None else set()
        for future in list(self._request_futures.values()):
            if future not in own and not future.done():
                future.cancel()
