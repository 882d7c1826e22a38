"""Logging: stderr or a file, and forwarding to the client's ``window/logMessage``.

stdout is the protocol channel: nothing here writes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.server import TandemServer

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """A formatter that removes secrets from every line it writes.

    Logs may hold code (protocol traffic at ``-vvv``, model output at ``-vv``):
    keys, tokens and passwords in it, and the values of the environment's key
    variables, are written as ``[REDACTED]``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record's text, redacted."""
        from tandem.privacy import env_secrets, redact

        return redact(super().format(record), env_secrets())


class OneLineBadMessages(logging.Filter):
    """One line, not a traceback, for each message pygls cannot decode or handle.

    A misbehaving client would flood the log otherwise; ``-vv`` keeps tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Shorten the record in place; never drop it."""
        if record.exc_info and record.msg == "Unable to handle message":
            error = record.exc_info[1]
            record.msg = "ignored a message that could not be handled: %s: %s"
            record.args = (type(error).__name__, str(error)[:200])
            record.exc_info = None
        return True


def setup(verbosity: int = 0, log_file: str | None = None) -> None:
    """Log to ``log_file`` or stderr.

    ``-v``: INFO; ``-vv``: DEBUG for tandem (completions, stats); ``-vvv``: DEBUG
    for the pygls protocol traffic too.
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(RedactingFormatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("tandem").setLevel(level)
    if verbosity < 2:
        for name in ("pygls.server", "pygls.io_"):  # the loop logs with either
            logging.getLogger(name).addFilter(OneLineBadMessages())
    if verbosity < 3:
        logging.getLogger("pygls").setLevel(logging.WARNING)
        logging.getLogger("asyncio").setLevel(logging.WARNING)


class LspLogHandler(logging.Handler):
    """Forward tandem's own records to the client as ``window/logMessage``."""

    def __init__(self, server: TandemServer, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.server = server
        self.setFormatter(RedactingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record (never pygls' own, which would loop)."""
        if not record.name.startswith("tandem"):
            return
        from lsprotocol import types

        kind = (
            types.MessageType.Error
            if record.levelno >= logging.ERROR
            else types.MessageType.Warning
            if record.levelno >= logging.WARNING
            else types.MessageType.Info
            if record.levelno >= logging.INFO
            else types.MessageType.Log
        )
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        params = types.LogMessageParams(type=kind, message=message)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: transports are not thread-safe
            loop = self.server.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._send, params)
            return
        self._send(params)

    def _send(self, params: object) -> None:
        # No transport yet, or it is closing: the stderr/file handler has it.
        with contextlib.suppress(Exception):
            self.server.window_log_message(params)  # type: ignore[arg-type]
