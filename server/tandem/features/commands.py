"""``workspace/executeCommand`` handlers; ids are constants here."""

from __future__ import annotations

import asyncio
import gc
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
        if args and isinstance(args[0], dict) and args[0].get("collect") is True:
            gc.collect()  # for leak checks: count only what is still reachable
        return ls.status()

    @server.command(CMD_DOCTOR)
    async def doctor(ls: TandemServer, *args: Any) -> dict[str, Any]:
        found = await asyncio.to_thread(doctor_report, ls.settings)
        return {**found, "text": doctor_text(found)}
