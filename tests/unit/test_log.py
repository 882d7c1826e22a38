"""Logging: a client sending garbage gets one line per message, not a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem import log


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "server.log"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    log.setup(0, str(path))
    yield path
    for handler in root.handlers[len(handlers) :]:
        handler.close()
        root.removeHandler(handler)
    root.setLevel(level)
    for name in ("pygls.server", "pygls.io_"):
        for f in list(logging.getLogger(name).filters):
            logging.getLogger(name).removeFilter(f)


def test_an_undecodable_message_is_one_line(logged: Path) -> None:
    pygls = logging.getLogger("pygls.server")
    for _ in range(3):
        try:
            json.loads(b'{"jsonrpc": "2.0", "method": ')
        except ValueError:
            pygls.exception("Unable to handle message")
    lines = logged.read_text().splitlines()
    assert len(lines) == 3
    assert "ignored a message that could not be handled: JSONDecodeError" in lines[0]
    assert "Traceback" not in logged.read_text()
