"""The cursor window: budgets, line boundaries, a start that moves rarely."""

from __future__ import annotations

from tandem.context.window import ANCHOR_LINES, cursor_window


def _doc(lines: int) -> str:
    return "".join(f"line {i:04d}\n" for i in range(lines))  # 10 chars a line


def test_small_document_is_whole() -> None:
    text = "a = 1\nb = "
    w = cursor_window(text, len(text), 6000, 1000)
    assert (w.prefix, w.suffix, w.start) == (text, "", 0)


def test_prefix_within_budget_and_starts_on_anchor_line() -> None:
    text = _doc(1000)
    offset = 700 * 10 + 4
    w = cursor_window(text, offset, 2000, 100)
    assert len(w.prefix) <= 2000
    assert w.start % 10 == 0
    assert (w.start // 10) % ANCHOR_LINES == 0
    assert text[w.start : offset] == w.prefix


def test_start_stays_put_while_typing() -> None:
    text = _doc(1000)
    starts = {
        cursor_window(text, 700 * 10 + i, 2000, 100).start for i in range(0, 200, 3)
    }
    assert len(starts) <= 2  # moves at most once over 20 lines of typing


def test_suffix_ends_at_line_end() -> None:
    text = _doc(100)
    w = cursor_window(text, 15, 100, 33)
    assert w.suffix == text[15:40]
    assert w.suffix.endswith("\n")


def test_one_huge_line_keeps_its_end() -> None:
    text = "x" * 10_000
    w = cursor_window(text, 10_000, 500, 0)
    assert w.prefix == "x" * 500


def test_offset_is_clamped() -> None:
    w = cursor_window("abc", 99, 10, 10)
    assert (w.prefix, w.suffix) == ("abc", "")
