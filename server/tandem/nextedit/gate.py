"""From a model's rewrite to the edit worth showing, or a reason to stay quiet. Pure.

The rewrite of the window is reduced to minimal changes (line diff, then each
changed block trimmed to the characters that differ). Nothing is shown when there
is no change, when the changes only touch what the user just typed, when they
undo the user's latest edit, or when they make the file parse worse
(tree-sitter). A confidence decides the rest: how well the change follows the
user's latest edit (the same rename elsewhere is likely; an unrelated rewrite is
not), combined (geometric mean) with the model's certainty: the geometric mean of
the probabilities of the tokens that wrote the change when the backend reports
them (``change_logprobs``), a neutral ``UNMAPPED_CERTAINTY`` when it reported
some but none of them wrote the change.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence

import attrs

from tandem.assist import edits as textedits
from tandem.assist.edits import TextChange
from tandem.context.symbols import syntax_errors
from tandem.nextedit.history import Latest, changed_span

_WORD = re.compile(r"\w+")
UNMAPPED_CERTAINTY = 0.5
"""The model's certainty when it reported log-probabilities but none of its
tokens can be tied to the change (no evidence either way): never more than the
heuristic alone would give."""


@attrs.frozen
class Verdict:
    """The changes to offer (best first) and how sure we are, or why not."""

    changes: tuple[TextChange, ...] = ()
    confidence: float = 0.0
    reason: str = ""
    """Why nothing is offered (empty when something is)."""
    logprobs: tuple[float, ...] = ()
    """The log-probabilities of the first change's tokens that went into the
    confidence (empty: none were tied to it)."""
    source: str = "heuristic"
    """Where the confidence came from: ``logprobs`` (the change's tokens and
    the heuristic), ``unmapped`` (log-probabilities reported, none tied to the
    change: the heuristic and ``UNMAPPED_CERTAINTY``) or ``heuristic`` alone
    (none reported)."""


def char_changes(text: str, start: int, end: int, replacement: str) -> list[TextChange]:
    """Minimal changes turning ``text[start:end]`` into ``replacement``."""
    found = []
    for change in textedits.minimal_changes(text, start, end, replacement):
        old = text[change.start : change.end]
        head, old_end, new_end = changed_span(old, change.new_text)
        found.append(
            TextChange(
                change.start + head,
                change.start + old_end,
                change.new_text[head:new_end],
            )
        )
    return found


def _word_at(text: str, start: int, end: int) -> str:
    """The identifier around ``text[start:end]`` (empty if that is not one)."""
    left = start
    while left > 0 and (text[left - 1].isalnum() or text[left - 1] == "_"):
        left -= 1
    right = end
    while right < len(text) and (text[right].isalnum() or text[right] == "_"):
        right += 1
    word = text[left:right]
    return word if _WORD.fullmatch(word) else ""


def rename_of(text: str, latest: Latest) -> tuple[str, str] | None:
    """(old name, new name) when the latest edit renamed one identifier."""
    old = _word_at(latest.before, latest.start, latest.start + len(latest.removed))
    new = _word_at(text, latest.start, latest.end)
    if old and new and old != new and not old[0].isdigit():
        return old, new
    return None


def heuristic_confidence(
    text: str, changes: Sequence[TextChange], latest: Latest | None
) -> float:
    """How likely the changes are the user's next edit, without log-probabilities.

    0.9: they apply the user's rename elsewhere; 0.6: a one-line change that
    uses a name the user just typed; 0.3: anything else.
    """
    if latest is None or not changes:
        return 0.3
    rename = rename_of(text, latest)
    if rename is not None:
        old, new = rename
        pattern = re.compile(rf"\b{re.escape(old)}\b")
        if all(
            pattern.sub(new, _line_around(text, c)) == _line_after(text, c)
            and pattern.search(_line_around(text, c))
            for c in changes
        ):
            return 0.9
    typed = set(_WORD.findall(text[latest.start : latest.end]))
    if len(changes) == 1 and changes[0].new_text.count("\n") == 0:
        words = set(_WORD.findall(changes[0].new_text))
        if typed & words:
            return 0.6
    return 0.3


def _line_around(text: str, change: TextChange) -> str:
    first = text.rfind("\n", 0, change.start) + 1
    last = text.find("\n", change.end)
    return text[first : len(text) if last < 0 else last]


def _line_after(text: str, change: TextChange) -> str:
    first = text.rfind("\n", 0, change.start) + 1
    last = text.find("\n", change.end)
    stop = len(text) if last < 0 else last
    return text[first : change.start] + change.new_text + text[change.end : stop]


def logprob_confidence(logprobs: Sequence[float]) -> float:
    """The geometric mean of the given tokens' probabilities."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0


def change_logprobs(
    old: str,
    rewrite: str,
    answer: str,
    at: int,
    offsets: Sequence[int],
    logprobs: Sequence[float],
    rows: tuple[int, int] | None = None,
) -> list[float]:
    """The log-probabilities of the tokens that wrote the change, not the copy.

    ``rewrite`` is the model's rewrite of ``old`` (the window as the model saw
    it), found in its ``answer`` at offset ``at``; token ``i`` of the answer
    starts at ``offsets[i]`` and has log-probability ``logprobs[i]``. Most of a
    rewrite is text copied with near-certain tokens: what says whether the
    model means its edit are the tokens that differ. Those are the tokens that
    overlap the characters that differ (lines aligned by difflib, then the
    characters of the lines that differ; indentation is left out, as the
    rewrite is reindented to fit the document); for a deletion, the tokens on
    both sides of it (one of them chose to leave the text out: ``w`` rather
    than ``width``). Only the part of ``rewrite`` that is the answer's own text
    counts (the pipeline appends the window's last lines once the model is back
    to copying), and lines it wrote on past the window's end do not (``judge``
    drops them). ``rows``: only the changes of those lines of ``old`` (first,
    last; the change offered first). Empty when no change maps to a token.
    """
    count = min(len(offsets), len(logprobs))
    if not count:
        return []
    # Both end with one line end, so that lines written on past the window's
    # end come out as insertions after its last line (left out below).
    old = old.rstrip("\r\n") + "\n"
    rewrite = rewrite.rstrip("\r\n") + "\n"
    written = 0  # the rewrite's characters that are the answer's text
    limit = min(len(rewrite), len(answer) - at)
    while written < limit and rewrite[written] == answer[at + written]:
        written += 1
    ends = [*offsets[1:count], len(answer)]
    picked: set[int] = set()
    for start, end, first, last in _differing(old, rewrite):
        if rows is not None and (last < rows[0] or first > rows[1]):
            continue
        if start > written or (start == written and end > start):
            continue  # past what the model wrote: copied from the window
        lo, hi = (start, min(end, written)) if end > start else (start - 1, start + 1)
        picked.update(
            i for i in range(count) if offsets[i] < at + hi and ends[i] > at + lo
        )
    return [logprobs[i] for i in sorted(picked)]


def _differing(old: str, new: str) -> list[tuple[int, int, int, int]]:
    """Spans of ``new`` that differ from ``old``, indentation aside.

    Each with the first and last line of ``old`` it replaces (or is inserted
    at). An empty span is a deletion at that place.
    """
    old_lines = [line.lstrip(" \t") for line in old.splitlines(keepends=True)]
    lines = new.splitlines(keepends=True)
    starts = [0]  # where each line of ``new`` starts, and its end
    for line in lines:
        starts.append(starts[-1] + len(line))
    keys = [line.lstrip(" \t") for line in lines]
    spans: list[tuple[int, int, int, int]] = []
    matcher = difflib.SequenceMatcher(None, old_lines, keys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "insert" and i1 == len(old_lines)):
            continue  # (lines written past the window's end: no edit, see judge)
        if j1 == j2:  # lines left out
            spans.append((starts[j1], starts[j1], i1, i2 - 1))
            continue
        # The line of ``old`` each character of the block's joined lines is on.
        row = [i for i in range(i1, i2) for _ in old_lines[i]] + [max(i2 - 1, i1)]
        # Where each character of the block's joined keys is in ``new``.
        where = [
            starts[j + 1] - len(keys[j]) + k
            for j in range(j1, j2)
            for k in range(len(keys[j]))
        ]
        where.append(starts[j2])
        was, now = "".join(old_lines[i1:i2]), "".join(keys[j1:j2])
        chars = difflib.SequenceMatcher(None, was, now, autojunk=False)
        spans += [
            (
                where[b1],
                where[b2 - 1] + 1 if b2 > b1 else where[b1],
                row[a1],
                row[max(a2 - 1, a1)],
            )
            for op, a1, a2, b1, b2 in chars.get_opcodes()
            if op != "equal"
            # Whole lines written on past the window's end: see above.
            and not (
                op == "insert"
                and i2 == len(old_lines)
                and a1 == len(was)
                and was.endswith("\n")
                and now[b1:b2].endswith("\n")
            )
        ]
    return spans


def judge(
    text: str,
    window: tuple[int, int],
    replacement: str,
    latest: Latest | None,
    language: str | None,
    cursor: int,
    logprobs: Sequence[float] | Callable[[TextChange], Sequence[float]] | None = None,
    reported: bool = False,
) -> Verdict:
    """Whether to offer the rewrite of ``text[window]``, and which change first.

    The confidence is that of the change offered first (the others come one at
    a time): the heuristic's (``heuristic_confidence``), and, when ``logprobs``
    gives the log-probabilities of that change's tokens (a function of the
    change, or the sequence itself), the geometric mean of the heuristic's and
    of the tokens' mean probability. Both count: the model can be sure of text
    that has nothing to do with the user's edit (a docstring copied from the
    function above), and unsure of the right rename. ``reported``: the backend
    reported log-probabilities; when none are the change's, the model's
    certainty counts as ``UNMAPPED_CERTAINTY``.
    """
    changes = [
        c
        for c in char_changes(text, *window, replacement)
        # Lines added after the window's end: the model writing on past the
        # region it was given, not an edit of it.
        if not (c.start == c.end == window[1] and c.new_text.endswith("\n"))
    ]
    if not changes:
        return Verdict(reason="no change")
    if latest is not None:
        start, end = latest.typed_span
        if all(_inside(c, start, end) for c in changes):
            return Verdict(reason="only changes what was just typed")
        result = textedits.apply(text, changes)
        if result == latest.before or any(_undoes(text, c, latest) for c in changes):
            return Verdict(reason="reverts the latest edit")
    if language is not None:
        before = syntax_errors(text, language)
        after = syntax_errors(textedits.apply(text, changes), language)
        if after > before:
            return Verdict(reason="breaks the parse")
    ahead = [c for c in changes if c.start >= cursor]
    order = ahead + [c for c in changes if c.start < cursor]
    confidence = heuristic_confidence(text, order[:1], latest)
    scores = tuple(logprobs(order[0]) if callable(logprobs) else logprobs or ())
    source = "heuristic"
    if scores:
        confidence = math.sqrt(confidence * logprob_confidence(scores))
        source = "logprobs"
    elif reported:
        confidence = min(confidence, math.sqrt(confidence * UNMAPPED_CERTAINTY))
        source = "unmapped"
    return Verdict(tuple(order), confidence, logprobs=scores, source=source)


def _inside(change: TextChange, start: int, end: int) -> bool:
    """Whether ``change`` rewrites text inside ``[start, end]``.

    An insertion right at either edge extends the typing and does not count.
    """
    if change.start == change.end:
        return start < change.start < end
    return start <= change.start and change.end <= end


def _undoes(text: str, change: TextChange, latest: Latest) -> bool:
    """Whether ``change`` puts back what the latest edit replaced."""
    start, end = latest.typed_span
    if not (change.start <= start and end <= change.end):
        return False
    restored = text[change.start : start] + latest.removed + text[end : change.end]
    return change.new_text == restored
