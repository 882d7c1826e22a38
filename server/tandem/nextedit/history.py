"""The user's recent edits per document, as unified diffs. Pure: no LSP, no I/O.

Every change of a document is compared with the text before it. Keystrokes that
come close in time (``group_s``) and in place (``near_lines``) make one edit, as
a person would describe them ("renamed ``width`` to ``w``"), not one per key.
The edit being typed stays open until a change comes later or elsewhere; then it
is closed into a diff and a new one starts. Each document keeps its last
``max_edits`` closed edits, each at most ``max_diff_chars`` long (larger ones
are dropped: a pasted file says nothing about the next keystroke).
"""

from __future__ import annotations

import difflib
import re
import time
from collections import deque
from collections.abc import Callable, Iterable

import attrs

CONTEXT_LINES = 2
"""Unchanged lines shown around each change in a diff."""


@attrs.frozen
class Edit:
    """One edit the user made: whole lines ``old`` became ``new``."""

    uri: str
    path: str
    """The document's path (workspace-relative when known), for prompts."""
    line: int
    """0-based first changed line, in the text before the edit."""
    old: str
    """The changed lines before the edit (whole lines, line breaks kept)."""
    new: str
    """The same lines after the edit."""
    diff: str
    """A unified diff of the edit with a little context (no file header)."""
    at: float
    """When its last keystroke came (the clock's seconds)."""


@attrs.frozen
class Latest:
    """The edit being typed, character-exact, in the current text's offsets."""

    start: int
    """Where the edit starts (same offset before and after it)."""
    end: int
    """Where what the user typed ends, in the current text."""
    removed: str
    """The text the edit replaced."""
    before: str
    """The whole document before the edit."""

    @property
    def typed_span(self) -> tuple[int, int]:
        """Offsets of what the user typed (or the point of a deletion)."""
        return self.start, self.end


@attrs.define
class _Doc:
    path: str
    text: str
    """The text as of the last change."""
    base: str
    """The text before the edit being typed (equal to ``text`` when none)."""
    last_change: float = 0.0
    edits: deque[Edit] = attrs.field(factory=deque)


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix (slice comparisons run at C speed)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most ``limit``."""
    lo, hi = 0, min(len(a), len(b), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def changed_span(old: str, new: str) -> tuple[int, int, int]:
    """(start, old_end, new_end): the one span where ``old`` and ``new`` differ."""
    start = common_prefix(old, new)
    tail = common_suffix(old, new, min(len(old), len(new)) - start)
    return start, len(old) - tail, len(new) - tail


_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@", re.MULTILINE)


def line_diff(
    old: str, new: str, context: int = CONTEXT_LINES
) -> tuple[int, str, str, str]:
    """(first line, old lines, new lines, unified diff) of the change old -> new.

    Only the changed lines and ``context`` lines around them are diffed, so the
    cost does not grow with the file.
    """
    start, old_end, new_end = changed_span(old, new)
    first = old.count("\n", 0, start)
    line_start = old.rfind("\n", 0, start) + 1
    old_stop = _line_end(old, max(old_end, start))
    new_stop = _line_end(new, max(new_end, start))
    old_lines = old[line_start:old_stop]
    new_lines = new[line_start:new_stop]
    before = old[:line_start].splitlines(keepends=True)[-context:] if context else []
    after = old[old_stop:].splitlines(keepends=True)[:context]
    a = [*before, *old_lines.splitlines(keepends=True), *after]
    b = [*before, *new_lines.splitlines(keepends=True), *after]
    a = [line if line.endswith("\n") else line + "\n" for line in a]
    b = [line if line.endswith("\n") else line + "\n" for line in b]
    offset = first - len(before)
    body = "".join(difflib.unified_diff(a, b, n=context))
    body = body.split("\n", 2)[2] if body.startswith("---") else body

    def shift(m: re.Match[str]) -> str:
        return (
            f"@@ -{int(m[1]) + offset}{m[2] or ''} +{int(m[3]) + offset}{m[4] or ''} @@"
        )

    return first, old_lines, new_lines, _HUNK.sub(shift, body)


def _line_end(text: str, offset: int) -> int:
    """The offset just after the line break ending the line of ``offset``."""
    if offset > 0 and text[offset - 1 : offset] == "\n":
        return offset
    stop = text.find("\n", offset)
    return len(text) if stop < 0 else stop + 1


class EditHistory:
    """Recent edits of every open document."""

    def __init__(
        self,
        *,
        group_s: float = 1.5,
        near_lines: int = 2,
        max_edits: int = 16,
        max_diff_chars: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group_s = group_s
        self.near_lines = near_lines
        self.max_edits = max_edits
        self.max_diff_chars = max_diff_chars
        self.clock = clock
        self._docs: dict[str, _Doc] = {}

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def opened(self, uri: str, text: str, path: str = "") -> None:
        """Start following a document (its text as opened: no edit yet)."""
        self._docs[uri] = _Doc(path or uri, text, text)

    def closed(self, uri: str) -> None:
        """Forget a closed document and its edits."""
        self._docs.pop(uri, None)

    def changed(self, uri: str, text: str) -> None:
        """The document's text after a change."""
        doc = self._docs.get(uri)
        if doc is None:  # never saw it opened: follow it from here
            self.opened(uri, text)
            return
        if text == doc.text:
            return
        now = self.clock()
        if doc.text != doc.base and not self._same_edit(doc, text, now):
            self._close(uri, doc)
        doc.text = text
        doc.last_change = now

    def _same_edit(self, doc: _Doc, text: str, now: float) -> bool:
        """Whether the change to ``text`` goes on with the edit being typed."""
        if now - doc.last_change > self.group_s:
            return False
        start, _, end = changed_span(doc.base, doc.text)
        change, _, change_end = changed_span(doc.text, text)
        lines = doc.text.count("\n", 0, start), doc.text.count("\n", 0, end)
        here = doc.text.count("\n", 0, change), doc.text.count("\n", 0, change_end)
        near = self.near_lines
        return here[0] <= lines[1] + near and here[1] >= lines[0] - near

    def _close(self, uri: str, doc: _Doc) -> None:
        edit = self._edit(uri, doc)
        doc.base = doc.text
        if edit is None or len(edit.diff) > self.max_diff_chars:
            return
        doc.edits.append(edit)
        while len(doc.edits) > self.max_edits:
            doc.edits.popleft()

    def _edit(self, uri: str, doc: _Doc) -> Edit | None:
        if doc.base == doc.text:
            return None
        line, old, new, diff = line_diff(doc.base, doc.text)
        return Edit(uri, doc.path, line, old, new, diff, doc.last_change)

    def text(self, uri: str) -> str | None:
        """The document's text as of its last change."""
        doc = self._docs.get(uri)
        return doc.text if doc is not None else None

    def edits(self, uri: str) -> list[Edit]:
        """The document's recent edits, oldest first, the one being typed last."""
        doc = self._docs.get(uri)
        if doc is None:
            return []
        found = list(doc.edits)
        current = self._edit(uri, doc)
        if current is not None and len(current.diff) <= self.max_diff_chars:
            found.append(current)
        return found

    def recent(self, uri: str, limit: int) -> list[Edit]:
        """The last ``limit`` edits of this and the other documents, oldest first."""
        found: list[Edit] = []
        for other in self._docs:
            found.extend(self.edits(other))
        found.sort(key=lambda e: (e.at, e.uri == uri))
        return found[-limit:] if limit else []

    def latest(self, uri: str) -> Latest | None:
        """The document's edit being typed, or its last closed one.

        None when the document was not edited since it was opened.
        """
        doc = self._docs.get(uri)
        if doc is None:
            return None
        if doc.base != doc.text:
            start, old_end, new_end = changed_span(doc.base, doc.text)
            return Latest(start, new_end, doc.base[start:old_end], doc.base)
        return None

    def set_path(self, uri: str, path: str) -> None:
        """Name the document by its workspace-relative path in prompts."""
        doc = self._docs.get(uri)
        if doc is not None:
            doc.path = path

    def documents(self) -> Iterable[str]:
        """The documents followed."""
        return tuple(self._docs)
