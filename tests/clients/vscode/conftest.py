"""A real VS Code (code-server 4.139.1) with the packaged extension, via Playwright.

code-server serves the VS Code 1.139 workbench and runs the extension host on this
machine; Debian's Chromium renders it headless; the extension (the ``.vsix`` from
``make vscode``) starts the real server with the real test model. Every request from
the browser that is not for loopback is aborted. ``make vscode`` (part of ``make
test``) installs code-server, Node 24 and Chromium once and builds the ``.vsix``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.models import qwen_model

ROOT = Path(__file__).resolve().parents[3]
EXTENSION = ROOT / "clients" / "vscode"
VSIX = EXTENSION / "tandem-ls.vsix"
ARTIFACTS = ROOT / "test-artifacts" / "vscode"
TOOLS = Path(os.environ.get("TANDEM_CACHE", Path.home() / ".cache" / "tandem")) / (
    "vscode-tools"
)
CODE_SERVER = TOOLS / "code-server-4.139.1" / "node_modules" / ".bin" / "code-server"
NODE_BIN = TOOLS / "node24" / "bin"
CHROMIUM = Path("/usr/bin/chromium")

SAMPLE = (
    "def is_palindrome(s: str) -> bool:\n"
    '    """Return True if s reads the same forwards and backwards."""\n'
    "    \n"
    "\n"
    "\n"
    'if __name__ == "__main__":\n'
    '    print(is_palindrome("racecar"))\n'
)


def _missing() -> str | None:
    if not CODE_SERVER.exists() or not CHROMIUM.exists():
        return "code-server, Node 24 or Chromium is missing: run `make vscode`"
    if not VSIX.exists():
        return f"{VSIX} is missing: run `make vscode`"
    # package.json too: its settings' defaults are what the server is given.
    sources = [*(EXTENSION / "src").glob("*.ts"), EXTENSION / "package.json"]
    newest = max(p.stat().st_mtime for p in sources)
    if VSIX.stat().st_mtime < newest:
        return f"{VSIX} is older than the sources: run `make vscode`"
    return None


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    problem = _missing()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem)  # CI installs them: a missing tool is a broken setup
    pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class CodeServer:
    """One code-server with its own user data, extensions and workspace."""

    url: str
    run: Path
    workspace: Path
    settings_file: Path
    server_log: Path

    def settings(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.settings_file.read_text())
        return data

    def update_settings(self, **changes: Any) -> None:
        """Change user settings as the Settings editor would."""
        data = self.settings()
        data.update(changes)
        self.settings_file.write_text(json.dumps(data, indent=2))


def _environment(run: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{NODE_BIN}:{env.get('PATH', '')}",
        XDG_CONFIG_HOME=str(run / "xdg" / "config"),
        XDG_DATA_HOME=str(run / "xdg" / "data"),
        XDG_CACHE_HOME=str(run / "xdg" / "cache"),
        TMPDIR=str(run / "tmp"),
        EXTENSIONS_GALLERY="{}",  # no gallery: nothing fetched from open-vsx.org
    )
    env.pop("TANDEM_MODEL", None)  # the settings name the model
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "TMPDIR"):
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return env


@pytest.fixture(scope="module")
def code_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodeServer]:
    run = tmp_path_factory.mktemp("code-server")
    workspace = run / "ws"
    workspace.mkdir()
    (workspace / "sample.py").write_text(SAMPLE)
    server_log = run / "tandem-ls.log"
    settings_file = run / "ud" / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings = {
        "tandem.server.pythonPath": sys.executable,
        "tandem.server.args": ["-v", "--log-file", str(server_log)],
        "tandem.local.modelPath": str(qwen_model()),
        "tandem.actions.explainMaxTokens": 96,
        "workbench.startupEditor": "none",
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "extensions.ignoreRecommendations": True,
        "security.workspace.trust.enabled": False,
        "chat.disableAIFeatures": True,
        "git.enabled": False,
        "files.hotExit": "off",
        "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {
            "other": False,
            "comments": False,
            "strings": False,
        },
        "workbench.tips.enabled": False,
    }
    settings_file.write_text(json.dumps(settings, indent=2))
    # code-server is a remote window: `machine`-scoped settings (how the server
    # starts, routing, privacy) count from its Machine settings.
    machine_file = run / "ud" / "Machine" / "settings.json"
    machine_file.parent.mkdir(parents=True)
    starting = {k: v for k, v in settings.items() if k.startswith("tandem.server.")}
    machine_file.write_text(json.dumps(starting, indent=2))
    env = _environment(run)
    base = [
        str(CODE_SERVER),
        "--user-data-dir",
        str(run / "ud"),
        "--extensions-dir",
        str(run / "exts"),
    ]
    subprocess.run(
        [*base, "--install-extension", str(VSIX)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = (run / "code-server.log").open("wb")
    proc = subprocess.Popen(
        [
            *base,
            "--auth",
            "none",
            "--bind-addr",
            f"127.0.0.1:{port}",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            str(workspace),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: exthost and server go with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "code-server did not start: "
                        + (run / "code-server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)
        yield CodeServer(url, run, workspace, settings_file, server_log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(code_server: CodeServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A browser window on the workspace; on failure a screenshot and the logs."""
    from playwright.sync_api import Route, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        blocked: list[str] = []

        def only_loopback(route: Route) -> None:
            host = urllib.parse.urlsplit(route.request.url).hostname
            if host in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        page = context.new_page()
        page.goto(f"{code_server.url}/?folder={code_server.workspace}")
        page.locator(".monaco-workbench").wait_for(timeout=60_000)
        try:
            yield page
        finally:
            failed = getattr(request.node, "report_call", None)
            if failed is not None and failed.failed:
                _save_artifacts(request.node.name, page, code_server)
            context.close()
            browser.close()
        assert not [u for u in blocked if not u.startswith("data:")], blocked


def _save_artifacts(name: str, page: Any, code_server: CodeServer) -> None:
    out = ARTIFACTS / name
    out.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(out / "screen.png"))
    except Exception as e:  # the page may be gone; the logs still help
        (out / "screenshot-error.txt").write_text(repr(e))
    logs = [code_server.server_log, code_server.run / "code-server.log"]
    # The extension's output channel (the client's log and the server's stderr).
    channels = code_server.run / "ud" / "logs"
    logs += channels.glob("*/exthost*/tandem-ls.tandem-ls/*.log")
    for log in logs:
        if log.exists():
            shutil.copy(log, out / f"{log.parent.name}-{log.name}")
    print(f"\nVS Code artifacts: {out}")
