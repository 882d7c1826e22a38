"""``workspace/executeCommand`` handlers; ids are constants here."""

from __future__ import annotations

import asyncio
from typing import Any

from tandem.doctor import report as doctor_report
from tandem.doctor import text as doctor_text
from tandem.server import TandemServer

CMD_STATUS = "tandem.status"
CMD_DOCTOR = "tandem.doctor"


def register(server: TandemServer) -> None:
    """Register the commands."""

    @server.command(CMD_STATUS)
    def status(ls: TandemServer, *args: Any) -> dict[str, Any]:
        return ls.status()

    @server.command(CMD_DOCTOR)
    async def doctor(ls: TandemServer, *args: Any) -> dict[str, Any]:
        found = await asyncio.to_thread(doctor_report, ls.settings)
        return {**found, "text": doctor_text(found)}
