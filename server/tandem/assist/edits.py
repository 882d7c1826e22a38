"""Turn a model's rewrite of a region into small, checked text changes. Pure functions.

A region is always whole lines of the document. The model sees it dedented and
answers in a fenced block; the answer is re-indented, given the document's line
endings, diffed line by line against the region (so an added docstring is one
insertion, not a replaced function), and checked: it must parse no worse than
before and every change must lie inside the region.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Sequence

import attrs

from tandem.context.symbols import syntax_errors


@attrs.frozen
class TextChange:
    """Replace ``text[start:end]`` (character offsets) with ``new_text``."""

    start: int
    end: int
    new_text: str


class UnsafeEdit(Exception):
    """The model's answer cannot be offered; the message says why."""


def line_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines, trailing line break included.

    A selection that ends at the start of a line (as line-wise selections do)
    does not take that line in.
    """
    first = text.rfind("\n", 0, start) + 1
    if end > start and text[end - 1] == "\n":
        end -= 1
    stop = text.find("\n", max(end, first))
    return first, len(text) if stop < 0 else stop + 1


def lines_span(text: str, first_line: int, last_line: int) -> tuple[int, int]:
    """Character offsets of lines ``first_line``..``last_line`` (inclusive)."""
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:first_line])
    end = start + sum(len(line) for line in lines[first_line : last_line + 1])
    return start, end


def line_of(text: str, offset: int) -> int:
    """0-based line number of ``offset``."""
    return text.count("\n", 0, offset)


def dedent(region: str) -> tuple[str, str]:
    """The region without its common indentation (LF line ends), and that indent."""
    code = region.replace("\r\n", "\n")
    lines = [line for line in code.split("\n") if line.strip()]
    leading = [line[: len(line) - len(line.lstrip(" \t"))] for line in lines]
    indent = _common_prefix(leading) if leading else ""
    return textwrap.dedent(code) if indent else code, indent


def _common_prefix(items: Sequence[str]) -> str:
    first, last = min(items), max(items)
    for i, ch in enumerate(first):
        if ch != last[i]:
            return first[:i]
    return first


_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[^\n`]*$", re.MULTILINE)


def extract_code(answer: str) -> str:
    """The code of the first fenced block of ``answer``, or the whole answer.

    Raises UnsafeEdit when a fence is opened and never closed (the answer was
    cut off by the token limit).
    """
    opening = _FENCE.search(answer)
    if opening is None:
        return answer.strip("\n")
    closing = _FENCE.search(answer, opening.end() + 1)
    if closing is None:
        raise UnsafeEdit("the model's answer was cut off before its code ended")
    return answer[opening.end() + 1 : closing.start()].rstrip("\n")


def reindent(code: str, indent: str, unit: str) -> str:
    """Indent ``code`` by ``indent``, with tabs when the region's ``unit`` is one."""
    code = textwrap.dedent(code.replace("\r\n", "\n"))
    if unit == "\t":
        code = re.sub(
            r"^(?:    )+", lambda m: "\t" * (len(m[0]) // 4), code, flags=re.MULTILINE
        )
    else:
        code = re.sub(r"^\t+", lambda m: "    " * len(m[0]), code, flags=re.MULTILINE)
    return "\n".join(indent + ln if ln.strip() else "" for ln in code.split("\n"))


def indent_unit(region: str) -> str:
    """Tab or space: what the region indents with."""
    tabs = len(re.findall(r"^\t", region, re.MULTILINE))
    spaces = len(re.findall(r"^ ", region, re.MULTILINE))
    return "\t" if tabs > spaces else " "


def new_region(old_region: str, code: str) -> str:
    """The model's dedented ``code``, shaped to replace ``old_region``.

    Same indentation, same line endings, trailing line break kept as it was.
    """
    _, indent = dedent(old_region)
    text = reindent(code, indent, indent_unit(old_region)).rstrip("\n")
    if old_region.endswith("\n"):
        text += "\n"
    eol = "\r\n" if "\r\n" in old_region else "\n"
    return text.replace("\n", eol) if eol != "\n" else text


def minimal_changes(
    text: str, start: int, end: int, replacement: str
) -> list[TextChange]:
    """Line-level changes that turn ``text[start:end]`` into ``replacement``."""
    old_lines = text[start:end].splitlines(keepends=True)
    new_lines = replacement.splitlines(keepends=True)
    offsets = [start]
    for line in old_lines:
        offsets.append(offsets[-1] + len(line))
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    return [
        TextChange(offsets[i1], offsets[i2], "".join(new_lines[j1:j2]))
        for op, i1, i2, j1, j2 in matcher.get_opcodes()
        if op != "equal"
    ]


def apply(text: str, changes: Sequence[TextChange]) -> str:
    """``text`` with non-overlapping ``changes`` applied."""
    out = []
    at = 0
    for change in sorted(changes, key=lambda c: c.start):
        out.append(text[at : change.start])
        out.append(change.new_text)
        at = change.end
    out.append(text[at:])
    return "".join(out)


def check(
    text: str,
    start: int,
    end: int,
    changes: Sequence[TextChange],
    language: str | None,
    *,
    inserts_only: bool = False,
) -> str:
    """The document after ``changes``, or UnsafeEdit with the reason.

    Every change must lie in ``[start, end]``; the result must not have more
    syntax errors than the original (tree-sitter); with ``inserts_only`` (adding
    a docstring) no existing line may change.
    """
    if not changes:
        raise UnsafeEdit("the model suggested no change")
    for change in changes:
        if not (start <= change.start <= change.end <= end):
            raise UnsafeEdit("the edit reaches outside the selected code")
        if inserts_only and change.start != change.end:
            raise UnsafeEdit(
                "the model changed existing code instead of only adding to it"
            )
    result = apply(text, changes)
    if language is not None:
        before = syntax_errors(text, language)
        after = syntax_errors(result, language)
        if after > before:
            raise UnsafeEdit(
                f"the edited code does not parse ({after - before} new syntax "
                f"error{'s' if after - before > 1 else ''})"
            )
    return result
