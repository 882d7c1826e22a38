"""Next-edit suggestions in a real VS Code (code-server) with the real server and model.

Rename a parameter at its definition, pause: the edit at its next use is drawn
there (the old name struck through, the line as it would become after it); Tab
jumps to it, Tab applies it, Escape dismisses it.
"""

from __future__ import annotations

from typing import Any

from tests.clients.vscode.conftest import CodeServer
from tests.clients.vscode.test_vscode import (
    MODEL_S,
    editor_lines,
    open_file,
    wait_ready,
)

PRICING = (
    "def total_price(items, discount):\n"
    "    subtotal = sum(item.price for item in items)\n"
    "    if discount:\n"
    "        subtotal = subtotal * (1 - discount)\n"
    "    return subtotal\n"
)
NEXT_USE = "    subtotal = sum(item.price for item in products)"

DECORATIONS = """() => {
  const spans = [...document.querySelectorAll('.monaco-editor .view-lines span')];
  const after = spans.map((e) => getComputedStyle(e, '::after').content)
    .filter((c) => c && c !== 'none' && c !== 'normal');
  const injected = spans.filter((e) => e.className.includes('ced-'))
    .map((e) => e.textContent);
  return {
    after: [...after, ...injected].join('\\n'),
    struck: spans
      .filter((e) => getComputedStyle(e).textDecorationLine.includes('line-through'))
      .map((e) => e.textContent),
  };
}"""


def rename_items(page: Any, code_server: CodeServer) -> None:
    """Open pricing.py and rename the parameter ``items`` to ``products``."""
    (code_server.workspace / "pricing.py").write_text(PRICING)
    open_file(page, "pricing.py")
    wait_ready(page)
    page.locator(".editor-instance .monaco-editor .view-lines").first.click()
    page.keyboard.press("Control+Home")
    for _ in range(PRICING.index("items")):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Control+Shift+ArrowRight")  # select "items"
    page.keyboard.type("products", delay=40)


def wait_for_suggestion(page: Any) -> dict[str, Any]:
    """The decorations once the suggestion shows."""
    for _ in range(MODEL_S // 250):
        found: dict[str, Any] = page.evaluate(DECORATIONS)
        if "products)" in found["after"]:
            return found
        page.wait_for_timeout(250)
    raise AssertionError(f"no next-edit suggestion: {page.evaluate(DECORATIONS)}")


def quiet_settings(code_server: CodeServer) -> None:
    """No ghost text: the model's time goes to the next edit, Tab is ours."""
    code_server.update_settings(
        **{"editor.inlineSuggest.enabled": False, "tandem.completion.enabled": False}
    )


def test_next_edit_is_shown_and_tab_tab_applies_it(
    page: Any, code_server: CodeServer
) -> None:
    quiet_settings(code_server)
    rename_items(page, code_server)
    found = wait_for_suggestion(page)
    assert NEXT_USE.strip() in found["after"]
    assert [s for s in found["struck"] if s.strip()] == ["item"]
    assert editor_lines(page, "pricing.py")[1] == PRICING.splitlines()[1]

    page.keyboard.press("Tab")  # jump
    page.locator(".statusbar-item", has_text="Ln 2, Col 43").wait_for()
    assert editor_lines(page, "pricing.py")[1] == PRICING.splitlines()[1]
    page.keyboard.press("Tab")  # apply
    for _ in range(100):
        if editor_lines(page, "pricing.py")[1] == NEXT_USE:
            break
        page.wait_for_timeout(100)
    assert editor_lines(page, "pricing.py")[1] == NEXT_USE
    assert editor_lines(page, "pricing.py")[0] == "def total_price(products, discount):"


def test_escape_dismisses_the_next_edit(page: Any, code_server: CodeServer) -> None:
    quiet_settings(code_server)
    rename_items(page, code_server)
    wait_for_suggestion(page)
    page.keyboard.press("Escape")
    for _ in range(50):
        if "products)" not in page.evaluate(DECORATIONS)["after"]:
            break
        page.wait_for_timeout(100)
    found = page.evaluate(DECORATIONS)
    assert "products)" not in found["after"]
    assert not [s for s in found["struck"] if s.strip()]
    assert editor_lines(page, "pricing.py")[1] == PRICING.splitlines()[1]
