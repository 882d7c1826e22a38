"""A minimal editor for the benchmarks: starts the real server, speaks LSP to it.

It behaves as VS Code does for inline completions: every keystroke sends the
change, cancels the request still pending and asks again.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Editor:
    """One server process and the documents open in it."""

    def __init__(self, client: LanguageClient, settings: dict[str, Any]) -> None:
        self.client = client
        self.settings = settings
        self.versions: dict[str, int] = {}
        self._ids = itertools.count()
        self.changed = asyncio.Event()
        """Set when the server sends its status ($/tandem/status)."""
        self.pending: dict[str, str] = {}
        """uri -> id of the inline completion request not answered yet."""

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=text
                )
            )
        )

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=uri)
            )
        )

    def insert(self, uri: str, at: types.Position, text: str) -> None:
        self.versions[uri] += 1
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=at), text=text
        )
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[change],
            )
        )

    def cancel(self, uri: str) -> None:
        if (msg_id := self.pending.pop(uri, None)) is not None:
            self.client.protocol.notify(
                types.CANCEL_REQUEST, types.CancelParams(id=msg_id)
            )

    def request(self, uri: str, at: types.Position) -> asyncio.Future[Any]:
        """Cancel the pending request for ``uri`` and ask at ``at``."""
        self.cancel(uri)
        msg_id = f"inline-{next(self._ids)}"
        self.pending[uri] = msg_id
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=at,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        future = asyncio.wrap_future(
            self.client.protocol.send_request(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
            )
        )

        def done(fut: asyncio.Future[Any]) -> None:
            if self.pending.get(uri) == msg_id:
                del self.pending[uri]
            if not fut.cancelled():
                fut.exception()  # cancelled requests answer with an error: expected

        future.add_done_callback(done)
        return future

    async def status(self) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="tandem.status")
        )

    async def idle(self, limit_s: float = 60.0) -> None:
        """Wait until the server runs no model work (or ``limit_s`` passed).

        So that its background work (prefetch, warm-up) does not slow down what
        another server is measured doing meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            state = (await self.status())["latency"]
            scheduler = state["scheduler"]
            if not (scheduler["running"] or scheduler["waiting"] or state["inFlight"]):
                return
            await asyncio.sleep(0.05)
        print(f"warning: still busy after {limit_s:.0f} s", file=sys.stderr)

    async def wait_calibrated(self, limit_s: float = 120.0) -> None:
        """Wait until the model is loaded and its speed calibration is over.

        Servers of one benchmark are started one after another: a calibration
        measured while another server calibrates sizes prompts for a machine
        half as fast.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        await self.wait_ready()
        while loop.time() < deadline:
            if (await self.status())["model"].get("prompt_tps"):
                return
            await asyncio.sleep(0.2)
        print("warning: no speed calibration in the server's status", file=sys.stderr)

    async def wait_ready(self) -> Any:
        while True:
            self.changed.clear()
            state = await self.status()
            if state["model"]["state"] in ("ready", "unavailable"):
                return state
            await self.changed.wait()


def text_of(result: Any) -> str:
    """The inline completion's text ('' for none or an error)."""
    if isinstance(result, types.InlineCompletionList) and result.items:
        text = result.items[0].insert_text
        return text if isinstance(text, str) else ""
    return ""


@asynccontextmanager
async def editor(
    model: str, settings: dict[str, Any], root: Path | None = None
) -> AsyncIterator[Editor]:
    """The server on ``model`` with the ``tandem`` settings section ``settings``."""
    client = LanguageClient("tandem-bench", "1")
    ed = Editor(client, settings)

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def configuration(params: types.ConfigurationParams) -> list[Any]:
        return [
            ed.settings if item.section == "tandem" else None for item in params.items
        ]

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def progress(params: types.WorkDoneProgressCreateParams) -> None:
        return None

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:
        return None

    @client.feature("$/tandem/status")
    def status(params: Any) -> None:
        ed.changed.set()

    for method in (types.WINDOW_LOG_MESSAGE, types.WINDOW_SHOW_MESSAGE, types.PROGRESS):
        client.feature(method)(lambda params: None)

    env = {**os.environ, "TANDEM_MODEL": model}
    extra = shlex.split(os.environ.get("TANDEM_BENCH_SERVER_ARGS", ""))
    await client.start_io(sys.executable, "-m", "tandem", *extra, env=env)
    caps = types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(configuration=True),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities()
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )
    folder = (root or Path.cwd()).resolve()
    await client.initialize_async(
        types.InitializeParams(
            capabilities=caps,
            process_id=os.getpid(),
            root_uri=folder.as_uri(),
            workspace_folders=[
                types.WorkspaceFolder(uri=folder.as_uri(), name=folder.name)
            ],
        )
    )
    client.initialized(types.InitializedParams())
    try:
        yield ed
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def server_pid(state: dict[str, Any]) -> int | None:
    """The server's process id, as its status reports it."""
    pid = state.get("pid")
    return int(pid) if pid is not None else None
