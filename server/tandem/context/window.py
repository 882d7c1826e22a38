"""The text around the cursor, cut so consecutive prompts share a long prefix.

The prefix window starts at a line boundary and only moves in steps of
``ANCHOR_LINES`` lines, so while the user types, the text at the start of the
prompt (and so the llama.cpp KV cache for it) stays the same.
"""

from __future__ import annotations

import attrs

ANCHOR_LINES = 32


@attrs.frozen
class Window:
    """Text before and after the cursor, as given to the model."""

    prefix: str
    suffix: str
    start: int
    """Offset in the document where ``prefix`` starts."""


def cursor_window(
    text: str, offset: int, prefix_chars: int, suffix_chars: int
) -> Window:
    """Cut ``text`` around ``offset`` to at most the given budgets.

    The prefix starts at the beginning of a line whose number is a multiple of
    ``ANCHOR_LINES`` when the document is longer than the budget (a partial first
    line only when one line alone is over budget). The suffix ends at a line end
    where possible.
    """
    offset = max(0, min(offset, len(text)))
    earliest = offset - prefix_chars
    if earliest <= 0:
        start = 0
    else:
        line = text.count("\n", 0, earliest)  # the line holding the earliest char
        line_start = text.rfind("\n", 0, earliest) + 1
        first = line if line_start == earliest else line + 1  # first whole line
        anchored = -(-first // ANCHOR_LINES) * ANCHOR_LINES  # round up
        start = _line_offset(text, line_start, anchored - line)
        if start > offset:  # budget under ANCHOR_LINES lines: no anchoring
            start = _line_offset(text, line_start, first - line)
        if start > offset:  # one huge line: keep its end
            start = earliest
    end = min(len(text), offset + suffix_chars)
    if end < len(text):
        nl = text.rfind("\n", offset, end)
        if nl >= 0:
            end = nl + 1
    return Window(prefix=text[start:offset], suffix=text[offset:end], start=start)


def _line_offset(text: str, line_start: int, lines_down: int) -> int:
    """Offset of the line ``lines_down`` lines below the one at ``line_start``."""
    pos = line_start
    for _ in range(lines_down):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text) + 1
        pos = nl + 1
    return pos
