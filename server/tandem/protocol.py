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
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from pygls.protocol import LanguageServerProtocol


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
        outer: Future[Any] | None = getattr(callback, "keywords", {}).get(
            "result_future"
        )
        inner = self._request_futures.get(msg_id)
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
