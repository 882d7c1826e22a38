"""``workspace/executeCommand`` handlers; ids are constants here."""

from __future__ import annotations

from typing import Any

from tandem.server import TandemServer

CMD_STATUS = "tandem.status"


def register(server: TandemServer) -> None:
    """Register the commands."""

    @server.command(CMD_STATUS)
    def status(ls: TandemServer, *args: Any) -> dict[str, Any]:
        return ls.status()
