"""Logging: stderr or a file, and forwarding to the client's ``window/logMessage``.

stdout is the protocol channel: nothing here writes to it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tandem.server import TandemServer

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(verbosity: int = 0, log_file: str | None = None) -> None:
    """Log to ``log_file`` or stderr; ``-v`` is INFO, ``-vv`` DEBUG (prompts too)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("tandem").setLevel(level)
    if level > logging.DEBUG:
        logging.getLogger("pygls").setLevel(logging.WARNING)


class LspLogHandler(logging.Handler):
    """Forward tandem's own records to the client as ``window/logMessage``."""

    def __init__(self, server: TandemServer, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.server = server

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
            self.server.window_log_message(
                types.LogMessageParams(type=kind, message=message)
            )
        except Exception:  # no transport yet, or it is closing
            self.handleError(record)
