"""Offline, seen at the system-call level: the server process (and every process it
starts) under ``strace -f -e trace=connect,sendto,sendmsg``.

A Python-level socket guard cannot see what C libraries or child processes do, nor
a name lookup made through glibc; strace sees every ``connect()`` of the process
tree. The LSP channel is the process's stdin and stdout (pipes), so an offline
session must show no ``connect()`` at all except to AF_UNIX sockets (glibc's nscd,
the session bus), and no ``sendto``/``sendmsg`` to an internet address (a DNS query
is one). A control run with offline off against a loopback stand-in hub shows that
the same check does catch a connection.

Needs ``strace`` (Debian package strace); the tests are skipped without it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.e2e.conftest import answer_client_requests, initialize_params
from tests.e2e.helpers import PALINDROME, open_doc, status, wait_for_state
from tests.fakes.apis import serving
from tests.fakes.hub import Hub, serve

STRACE = shutil.which("strace")
# CI installs strace (.ci/run): there a missing strace fails, it never skips.
pytestmark = pytest.mark.skipif(
    STRACE is None and not os.environ.get("CI"), reason="needs strace"
)

REPO, FILE = "tandem-test/tiny", "tiny-q4.gguf"
_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<call>connect|sendto|sendmsg)\((?P<args>.*)$")
_FAMILY = re.compile(r"sa_family=(AF_\w+)")


def network_calls(lines: list[str]) -> list[str]:
    """The traced calls that reach the network: a connect() to anything but an
    AF_UNIX socket, or a datagram sent to an internet address."""
    found = []
    for line in lines:
        m = _CALL.match(line)
        if m is None:
            continue
        families = _FAMILY.findall(m["args"])
        if m["call"] == "connect":
            if families != ["AF_UNIX"]:
                found.append(line)
        elif any(f in ("AF_INET", "AF_INET6") for f in families):
            found.append(line)
    return found


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition on another thread's state without blocking the loop
    (or leaving a worker thread behind when a test fails)."""
    while not condition():  # noqa: ASYNC110 (the state lives on another thread)
        await asyncio.sleep(0.01)


def traced(log: Path) -> list[str]:
    """The lines strace wrote so far."""
    return log.read_text(errors="replace").splitlines()


async def wait_until(client: LanguageClient, done: Any) -> Any:
    """The server's status once ``done(status)`` holds (it announces changes)."""
    waiting = asyncio.ensure_future(client.wait_for_notification("$/tandem/status"))
    while not done(state := await status(client)):
        await waiting
        waiting = asyncio.ensure_future(client.wait_for_notification("$/tandem/status"))
    waiting.cancel()
    return state


@asynccontextmanager
async def traced_session(
    log: Path, env: dict[str, str], options: dict[str, Any]
) -> AsyncIterator[LanguageClient]:
    """The server as an editor starts it, every process of it traced into ``log``."""
    assert STRACE is not None
    base = {k: v for k, v in os.environ.items() if k != "TANDEM_MODEL"}
    trace = [STRACE, "-f", "-qq", "-e", "signal=none", "-o", str(log)]
    config = ClientServerConfig(
        server_command=[
            *trace,
            "-e",
            "trace=connect,sendto,sendmsg",
            sys.executable,
            "-m",
            "tandem",
            "-v",
        ],
        server_env={**base, **env},
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    answer_client_requests(client)
    await client.initialize_session(initialize_params("vscode", options))
    try:
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


def model_file(tmp_path: Path, size: int) -> Path:
    """A file the stand-in hub serves as the default model (not a real GGUF)."""
    path = tmp_path / "served.gguf"
    path.write_bytes(os.urandom(size))
    return path


def hub_env(tmp_path: Path, hub: Hub) -> dict[str, str]:
    """No model anywhere: an empty Hugging Face home, the hub on loopback."""
    return {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": hub.url,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "ANTHROPIC_API_KEY": "sk-ant-api03-offline-test-key-never-sent-0123456789",
    }


def settings(offline: bool, cloud: str) -> dict[str, Any]:
    return {
        "offline": offline,
        "local": {"modelRepo": REPO, "modelFile": FILE, "allowDownload": True},
        "routing": {
            "completion": ["anthropic", "local"],
            "explain": ["anthropic", "local"],
            "escalateTo": "anthropic",
            "allowEscalation": True,
        },
        "anthropic": {"baseUrl": cloud},
        "privacy": {"trustLoopback": False},
    }


async def whole_session(client: LanguageClient) -> dict[str, Any]:
    """What a user does: open a file, ask for completions and an explanation."""
    state = await wait_for_state(client, "ready", "unavailable")
    uri = "file:///work/project/pal.py"
    open_doc(client, uri, PALINDROME)
    await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(2, 4),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    end = {"line": PALINDROME.count("\n"), "character": 0}
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="tandem.explain",
            arguments=[
                {
                    "uri": uri,
                    "range": {"start": {"line": 0, "character": 0}, "end": end},
                    "cloud": True,
                }
            ],
        )
    )
    return dict(state)


@pytest.mark.slow
async def test_an_offline_session_without_a_model_makes_no_network_call(
    tmp_path: Path,
) -> None:
    """No model cached, no TANDEM_MODEL: the server looks in the cache, finds
    nothing, and says so, without a connect() (DNS and the hub included)."""
    log = tmp_path / "strace.log"
    hub = serve(model_file(tmp_path, 4096), REPO, FILE)
    try:
        with serving() as cloud:
            env = hub_env(tmp_path, hub)
            async with traced_session(log, env, settings(True, cloud.url)) as client:
                state = await whole_session(client)
                assert state["model"]["state"] == "unavailable"
                assert "offline is on" in state["model"]["message"]
            assert cloud.seen == []
        assert hub.paths == [] and hub.connections == 0
        assert traced(log)  # strace did trace the server
        assert network_calls(traced(log)) == []
    finally:
        hub.shutdown()


@pytest.mark.slow
async def test_control_online_the_same_check_sees_the_hub(tmp_path: Path) -> None:
    """The check can fail: offline off, the model is downloaded from the loopback
    hub, and strace shows the connect() to it."""
    log = tmp_path / "strace.log"
    hub = serve(model_file(tmp_path, 4096), REPO, FILE)
    try:
        with serving() as cloud:
            env = hub_env(tmp_path, hub)
            async with traced_session(log, env, settings(False, cloud.url)) as client:
                await wait_for_state(client, "ready", "unavailable")
        port = hub.server_address[1]
        calls = network_calls(traced(log))
        assert any(f"htons({port})" in c for c in calls), calls
        assert hub.gets == 1
    finally:
        hub.shutdown()


@pytest.mark.slow
async def test_going_offline_stops_a_download_in_flight(tmp_path: Path) -> None:
    """A download trickling mid-way: going offline kills it (the hub sees the
    connection close, no further byte is sent, no socket is opened after); going
    online again starts it over, one download at a time."""
    log = tmp_path / "strace.log"
    size, half = 1 << 21, 1 << 19
    hub = serve(model_file(tmp_path, size), REPO, FILE, hold_after=half)
    try:
        with serving() as cloud:
            env = hub_env(tmp_path, hub)
            options = settings(False, cloud.url)
            async with traced_session(log, env, options) as client:
                client.set_configuration(options, section="tandem")
                await until(hub.holding.is_set)
                assert (await status(client))["model"]["state"] == "downloading"

                client.set_configuration({**options, "offline": True}, section="tandem")
                client.workspace_did_change_configuration(
                    types.DidChangeConfigurationParams(settings=None)
                )
                state = await wait_for_state(client, "unavailable")
                assert "offline is on" in state["model"]["message"]
                # The download is over once the server says so: the hub sees the
                # connection closed before it trickles much more.
                sent = hub.served
                await until(lambda: hub.hung_up.is_set() or hub.served > sent + 50)
                assert hub.hung_up.is_set(), "the download still runs"
                served, connections = hub.served, hub.connections
                mark = len(traced(log))
                await whole_session(client)  # offline: nothing may go out
                hub.release()
                assert hub.served == served  # not one byte after the hang-up
                assert hub.connections == connections
                assert network_calls(traced(log)[mark:]) == []

                client.set_configuration(options, section="tandem")  # online again
                client.workspace_did_change_configuration(
                    types.DidChangeConfigurationParams(settings=None)
                )
                await wait_until(
                    client,
                    lambda s: (
                        s["model"]["state"] in ("unavailable", "ready")
                        and "offline is on" not in s["model"]["message"]
                    ),
                )
            assert hub.gets == 2 and hub.max_active == 1
    finally:
        hub.shutdown()
