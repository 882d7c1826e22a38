"""Edit history: keystrokes grouped into edits by time and place, as diffs."""

from __future__ import annotations

import pytest

from tandem.nextedit.history import EditHistory, changed_span, line_diff

CODE = """def area(width, height):
    return width * height


def main():
    print(area(2, 3))
"""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def typed(history: EditHistory, uri: str, text: str, at: int, chars: str) -> str:
    """Type ``chars`` one by one at ``at``; the text after."""
    for i, ch in enumerate(chars):
        text = text[: at + i] + ch + text[at + i :]
        history.changed(uri, text)
    return text


def deleted(history: EditHistory, uri: str, text: str, at: int, n: int) -> str:
    """Delete ``n`` characters before ``at`` with backspace; the text after."""
    for i in range(n):
        text = text[: at - i - 1] + text[at - i :]
        history.changed(uri, text)
    return text


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        pytest.param("abc", "abc", (3, 3, 3), id="same"),
        pytest.param("width", "w", (1, 5, 1), id="shorter"),
        pytest.param("a(x)", "a(x, y)", (3, 3, 6), id="insert"),
        pytest.param("aaaa", "aa", (2, 4, 2), id="repeats"),
    ],
)
def test_changed_span(old: str, new: str, span: tuple[int, int, int]) -> None:
    assert changed_span(old, new) == span


def test_line_diff_numbers_its_hunk_in_the_file() -> None:
    new = CODE.replace("print(area(2, 3))", "print(area(2, 4))")
    line, old_lines, new_lines, diff = line_diff(CODE, new)
    assert line == 5
    assert old_lines == "    print(area(2, 3))\n"
    assert new_lines == "    print(area(2, 4))\n"
    assert diff.splitlines() == [
        "@@ -4,3 +4,3 @@",
        " ",
        " def main():",
        "-    print(area(2, 3))",
        "+    print(area(2, 4))",
    ]


def test_keystrokes_in_one_place_make_one_edit() -> None:
    clock = Clock()
    history = EditHistory(clock=clock)
    history.opened("a.py", CODE, "a.py")
    at = CODE.index("width")
    text = deleted(history, "a.py", CODE, at + 5, 4)  # "width" -> "w"
    assert history.latest("a.py") is not None
    [edit] = history.edits("a.py")
    assert edit.old == "def area(width, height):\n"
    assert edit.new == "def area(w, height):\n"
    assert "-def area(width, height):\n+def area(w, height):" in edit.diff
    latest = history.latest("a.py")
    assert latest is not None
    assert (latest.start, latest.end, latest.removed) == (at + 1, at + 1, "idth")
    assert text.startswith("def area(w, height)")


def test_a_pause_or_another_place_starts_a_new_edit() -> None:
    clock = Clock()
    history = EditHistory(clock=clock, group_s=1.0)
    history.opened("a.py", CODE)
    at = CODE.index("width")
    text = deleted(history, "a.py", CODE, at + 5, 4)
    clock.now += 0.5
    body = text.index("width")  # far enough? same function, next line
    text = deleted(history, "a.py", text, body + 5, 4)
    assert len(history.edits("a.py")) == 1, "next line, no pause: one edit"
    clock.now += 5  # a pause
    call = text.index("2, 3")
    text = typed(history, "a.py", text, call + 4, "0")
    edits = history.edits("a.py")
    assert [e.line for e in edits] == [0, 5]
    assert edits[1].new == "    print(area(2, 30))\n"
    far = Clock()
    far.now = clock.now
    history2 = EditHistory(clock=far, near_lines=1)
    history2.opened("b.py", CODE)
    t2 = typed(history2, "b.py", CODE, CODE.index("def main"), "#")
    typed(history2, "b.py", t2, 0, "#")  # 4 lines up, no pause
    assert len(history2.edits("b.py")) == 2


def test_typing_and_erasing_leaves_no_edit() -> None:
    history = EditHistory(clock=Clock())
    history.opened("a.py", CODE)
    at = CODE.index("height")
    text = typed(history, "a.py", CODE, at, "xyz")
    deleted(history, "a.py", text, at + 3, 3)
    assert history.edits("a.py") == []
    assert history.latest("a.py") is None


def test_bounded_edits_and_large_diffs_dropped() -> None:
    clock = Clock()
    history = EditHistory(clock=clock, max_edits=3, max_diff_chars=200)
    history.opened("a.py", CODE)
    text = CODE
    for i in range(6):
        clock.now += 10
        text = typed(history, "a.py", text, len(text), f"v{i} = {i}\n")
    assert [e.new for e in history.edits("a.py")] == [
        "v2 = 2\n",
        "v3 = 3\n",
        "v4 = 4\n",
        "v5 = 5\n",  # the one being typed
    ]
    clock.now += 10
    pasted = text + "y = 1\n" * 100
    history.changed("a.py", pasted)
    clock.now += 10
    history.changed("a.py", "z" + pasted)  # closes the paste: too large to keep
    assert [e.new for e in history.edits("a.py")] == [
        "v3 = 3\n",
        "v4 = 4\n",
        "v5 = 5\n",
        "z" + CODE.splitlines(keepends=True)[0],
    ]


def test_recent_mixes_documents_by_time_and_forgets_closed_ones() -> None:
    clock = Clock()
    history = EditHistory(clock=clock)
    history.opened("a.py", CODE, "a.py")
    history.opened("b.py", "x = 1\n", "b.py")
    typed(history, "b.py", "x = 1\n", 5, "0")
    clock.now += 5
    typed(history, "a.py", CODE, 0, "#")
    recent = history.recent("a.py", 5)
    assert [e.path for e in recent] == ["b.py", "a.py"]
    assert history.recent("a.py", 1)[0].path == "a.py"
    history.closed("b.py")
    assert [e.path for e in history.recent("a.py", 5)] == ["a.py"]


def test_a_document_never_seen_opened_is_followed_from_its_first_change() -> None:
    history = EditHistory(clock=Clock())
    history.changed("c.py", CODE)
    assert history.edits("c.py") == []
    history.changed("c.py", CODE + "x\n")
    assert [e.new for e in history.edits("c.py")] == ["x\n"]
