"""The VS Code extension in a real VS Code (code-server) with the real server and model.

Each test opens a browser window on the workspace (a fresh extension host, so a
fresh tandem-ls process), waits for the extension's status bar item to say the
model is ready, and works the editor with the keyboard as a user would.
"""

from __future__ import annotations

from typing import Any

from tests.clients.vscode.conftest import SAMPLE, CodeServer
from tests.models import qwen_model

READY_S = 120_000  # ms: a hang guard (server start + model load), not a speed bound
MODEL_S = 120_000


def quick_input(page: Any, key: str, text: str) -> None:
    """Open the quick input with ``key``, type ``text`` and pick the row showing it."""
    page.keyboard.press(key)
    page.locator(".quick-input-widget input").wait_for()
    page.keyboard.type(text)
    page.locator(".quick-input-list .monaco-list-row", has_text=text).first.wait_for()
    page.keyboard.press("Enter")


def open_file(page: Any, name: str) -> None:
    quick_input(page, "Control+P", name)
    page.locator(".tab.active", has_text=name).wait_for()


def wait_ready(page: Any) -> None:
    """The extension's readiness signal: typing earlier would lose the first request."""
    page.locator(".statusbar-item", has_text="tandem: local ready").wait_for(
        timeout=READY_S
    )


def run_command(page: Any, title: str) -> None:
    quick_input(page, "F1", title)


def editor_lines(page: Any, tab: str) -> list[str]:
    """The rendered lines of the editor whose active tab is ``tab``, top to bottom."""
    group = page.locator(
        ".editor-group-container", has=page.locator(".tab.active", has_text=tab)
    )
    lines = group.locator(".view-lines .view-line")
    found: list[tuple[float, str]] = []
    for i in range(lines.count()):
        line = lines.nth(i)
        top = line.evaluate("e => parseFloat(e.style.top) || 0")
        found.append((top, line.inner_text().replace("\u00a0", " ")))
    return [text for _, text in sorted(found)]


def go_to_line(page: Any, line: int) -> None:
    page.keyboard.press("Control+G")
    page.locator(".quick-input-widget input").wait_for()
    page.keyboard.type(str(line))
    page.keyboard.press("Enter")
    page.keyboard.press("End")


def test_ghost_text_from_the_model_is_accepted_with_tab(
    page: Any, code_server: CodeServer
) -> None:
    open_file(page, "sample.py")
    wait_ready(page)
    page.locator(".editor-instance .monaco-editor .view-lines").first.click()
    go_to_line(page, 3)
    page.keyboard.type("return", delay=60)

    ghost = page.locator(".monaco-editor [class*='ghost-text']")
    ghost.first.wait_for(timeout=MODEL_S)
    # The line as shown: what was typed, then the ghost text (in several spans).
    shown = editor_lines(page, "sample.py")[2].rstrip()
    suggestion = shown.removeprefix("    return")
    assert suggestion.strip(), f"no ghost text after 'return': {shown!r}"
    page.keyboard.press("Tab")
    ghost.first.wait_for(state="detached")
    # Accepted: the same line, now as text in the buffer, and the file saves it.
    assert editor_lines(page, "sample.py")[2].rstrip() == shown
    sample = code_server.workspace / "sample.py"

    def saved() -> str:
        lines = sample.read_text().splitlines()
        return lines[2] if len(lines) > 2 else ""

    try:
        page.keyboard.press("Control+S")
        for _ in range(100):  # the save lands on disk a moment later
            if saved() == shown:
                break
            page.wait_for_timeout(100)
        assert saved() == shown
    finally:
        # The fixture's file again, for the next test. (This used to write back
        # what the disk held after Tab: VS Code in a browser saves a second after
        # typing by default (files.autoSave "afterDelay"), so that was the typed
        # "    return", and the restart test typed a second "return":
        # "returnreturn".)
        sample.write_text(SAMPLE)
    # What the model wrote is code about the argument, not filler.
    assert "s" in suggestion


def test_explain_opens_the_explanation_beside_the_code(page: Any) -> None:
    open_file(page, "sample.py")
    wait_ready(page)
    page.locator(".editor-instance .monaco-editor .view-lines").first.click()
    page.keyboard.press("Control+A")
    run_command(page, "tandem-ls: Explain")
    page.locator(".tab.active", has_text="Explanation.md").wait_for(timeout=MODEL_S)
    text = "\n".join(editor_lines(page, "Explanation.md")).strip()
    assert len(text) > 20, text


def test_status_bar_shows_the_model_and_opens_the_server_status(
    page: Any,
) -> None:
    open_file(page, "sample.py")
    wait_ready(page)
    page.locator(".statusbar-item", has_text="tandem: local ready").click()
    rows = page.locator(".quick-input-list .monaco-list-row")
    model_row = rows.filter(has_text="model:").first
    model_row.wait_for()
    assert qwen_model().name in model_row.inner_text()
    assert rows.filter(has_text="Run Doctor").count() == 1
    page.keyboard.press("Escape")


def test_toggle_offline_reaches_the_server_and_back(page: Any) -> None:
    open_file(page, "sample.py")
    wait_ready(page)
    run_command(page, "tandem-ls: Toggle Offline")
    page.locator(".statusbar-item", has_text="tandem: local, offline ready").wait_for(
        timeout=30_000
    )
    run_command(page, "tandem-ls: Toggle Offline")
    wait_ready(page)


def test_a_missing_model_gets_one_message_with_the_fix(
    page: Any, code_server: CodeServer
) -> None:
    good = code_server.settings()["tandem.local.modelPath"]
    missing = str(code_server.run / "no-such-model.gguf")
    code_server.update_settings(**{"tandem.local.modelPath": missing})
    try:
        page.reload()  # a new window reads the settings (and starts a new server)
        page.locator(".monaco-workbench").wait_for()
        open_file(page, "sample.py")
        toast = page.locator(".notification-toast", has_text="no-such-model.gguf")
        toast.wait_for(timeout=60_000)
        buttons = toast.locator("a.monaco-button")
        assert buttons.filter(has_text="Choose a Model File").count() == 1
        assert buttons.filter(has_text="Open Settings").count() == 1
        page.locator(".statusbar-item", has_text="tandem: local unavailable").wait_for()
    finally:
        code_server.update_settings(**{"tandem.local.modelPath": good})


def test_restart_mid_request_loses_nothing(page: Any, code_server: CodeServer) -> None:
    # Start from the fixture's file whatever the tests before this one did.
    (code_server.workspace / "sample.py").write_text(SAMPLE)
    open_file(page, "sample.py")
    run_command(page, "File: Revert File")
    wait_ready(page)
    page.locator(".editor-instance .monaco-editor .view-lines").first.click()
    go_to_line(page, 3)
    # The buffer as the module's fixture wrote it: an earlier test's typing left
    # behind would show up below as a doubled word.
    assert editor_lines(page, "sample.py")[2].rstrip() == "", editor_lines(
        page, "sample.py"
    )
    page.keyboard.type("return", delay=30)  # a completion request goes out...
    run_command(page, "tandem-ls: Restart Server")  # ...and the server goes away
    page.locator(".statusbar-item", has_text="tandem: starting").wait_for()
    wait_ready(page)
    # The new server has the unsaved buffer (the client opens it again) and
    # completes from it.
    assert editor_lines(page, "sample.py")[2].rstrip() == "    return"
    page.keyboard.type(" ", delay=30)
    ghost = page.locator(".monaco-editor [class*='ghost-text']")
    ghost.first.wait_for(timeout=MODEL_S)
    shown = editor_lines(page, "sample.py")[2].rstrip()
    assert shown.startswith("    return ") and len(shown) > len("    return ")
