"""Clean up a raw model completion before it is shown.

Pure functions of (completion, text before the cursor, text after it). The rules:

- Mid-line (the rest of the line holds code): one line at most.
- Otherwise stop at the end of the current block: the first line that dedents below
  the cursor's indentation, a closing bracket that closes a block opened before the
  cursor (when the text after the cursor already closes it), or, at top level, the
  next definition after a blank line.
- Never repeat what already follows the cursor (the rest of the line, or the next
  lines).
- Brackets balanced: an opener the completion leaves open must be closed by the
  rest of the line, or the completion is cut back to where it was balanced.
"""

from __future__ import annotations

import attrs

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}

_HASH_COMMENT_LANGS = frozenset(
    {"python", "ruby", "shellscript", "bash", "sh", "perl", "r", "yaml", "toml"}
)


@attrs.frozen
class Scan:
    """Bracket state after scanning some text."""

    stack: tuple[str, ...]
    """Openers not yet closed, innermost last."""
    extra_closers: int
    """Closers that had no opener in the scanned text."""
    open_quote: bool = False
    """The text ends inside a string or a block comment."""


def scan(text: str, language: str = "") -> Scan:
    """Track brackets outside strings and line comments (a light lexer)."""
    stack: list[str] = []
    extra = 0
    quote: str | None = None
    i = 0
    hash_comments = language in _HASH_COMMENT_LANGS
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if ch == "\n" and len(quote) == 1 and quote != "`":
                quote = None  # unterminated single-line string: recover
            i += 1
            continue
        if ch in "\"'`":
            triple = text[i : i + 3]
            quote = triple if triple in ('"""', "'''") else ch
            i += len(quote)
            continue
        if (ch == "#" and hash_comments) or text.startswith("//", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        if text.startswith("/*", i) and not hash_comments:
            quote = "*/"  # a block comment: skipped like a string
            i += 2
            continue
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
            else:
                extra += 1
        i += 1
    return Scan(tuple(stack), extra, quote is not None)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _trim_block(
    completion: str, line_prefix: str, suffix: str, language: str
) -> tuple[str, bool]:
    """Cut a multi-line completion at the end of the block being written.

    Returns the kept text and whether a line was cut off.
    """
    lines = completion.split("\n")
    base = len(line_prefix) if not line_prefix.strip() else _indent(line_prefix)
    at_top_level = base == 0 and not line_prefix.strip()
    next_code = next((ln.strip() for ln in suffix.split("\n") if ln.strip()), "")
    depth = len(scan(line_prefix + lines[0], language).stack)
    kept = [lines[0]]
    seen_blank = False
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            seen_blank = True
            kept.append(line)
            continue
        if stripped.startswith("```") and language != "markdown":
            break  # a chat model closing its markdown code block
        indent = _indent(line)
        if indent < base and depth == 0:
            break  # dedent: the block at the cursor is over
        if stripped[0] in CLOSERS and depth == 0:
            # Closes a block opened before the cursor: keep it only if the text
            # after the cursor does not close it already.
            if not next_code.startswith(stripped[0]):
                kept.append(line)
            break
        if at_top_level and seen_blank and indent == 0 and "".join(kept).strip():
            break  # the next top-level definition
        kept.append(line)
        state = scan(line, language)
        depth = max(0, depth + len(state.stack) - state.extra_closers)
    return "\n".join(kept), len(kept) < len(lines)


def _drop_suffix_overlap(
    completion: str, line_prefix: str, suffix: str, language: str
) -> str:
    """Remove the tail of the completion that the text after the cursor repeats."""
    line_suffix = suffix.split("\n", 1)[0]
    if "\n" not in completion and line_suffix:

        def cost(middle: str) -> int:
            state = scan(line_prefix + middle + line_suffix, language)
            return len(state.stack) + state.extra_closers

        whole = len(line_suffix.rstrip())
        for k in range(min(len(completion), len(line_suffix)), 0, -1):
            if completion.endswith(line_suffix[:k]):
                trimmed = completion[:-k]
                # Trim a repeated closer (it unbalances the line) or a repeat of
                # the whole rest of the line; never a coincidental overlap.
                if cost(trimmed) < cost(completion) or (
                    k >= whole and cost(trimmed) <= cost(completion)
                ):
                    return trimmed
        return completion
    comp_lines = completion.rstrip().split("\n")
    next_lines = [ln.strip() for ln in suffix.split("\n") if ln.strip()]
    for n in range(min(len(comp_lines) - 1, len(next_lines)), 0, -1):
        tail = [ln.strip() for ln in comp_lines[-n:]]
        if tail == next_lines[:n]:
            return "\n".join(comp_lines[:-n])
    return completion


def _balance(completion: str, line_suffix: str, language: str) -> str:
    """Cut back a completion that leaves brackets open which nothing closes."""
    stack = scan(completion, language).stack
    if not stack:
        return completion
    closers_after = [c for c in line_suffix if c in CLOSERS]
    needed = [OPENERS[o] for o in reversed(stack)]
    if closers_after[: len(needed)] == needed:
        return completion  # the rest of the line closes them
    # Keep the longest prefix that is balanced, preferring whole lines.
    best_line = ""
    for end in range(len(completion), 0, -1):
        if completion[end - 1] == "\n" or end == len(completion):
            head = completion[:end]
            if not scan(head, language).stack:
                best_line = head
                break
    if best_line.strip():
        return best_line
    if "\n" in completion:
        return ""
    for end in range(len(completion) - 1, 0, -1):
        head = completion[:end]
        if not scan(head, language).stack:
            return head.rstrip()
    return ""


def fix_indent(raw: str, line_prefix: str) -> str:
    """Undo the indentation a model repeats after a cursor that ends indentation.

    With the cursor after whitespace only, FIM models often emit the indentation
    again (the prompt's whitespace token does not end where training text would).
    The extra indentation of the first line is removed from every line.
    """
    if line_prefix.strip():
        # Mid-line after a space: a model whose tokens carry their leading space
        # (" blend") repeats the one already typed.
        if line_prefix.endswith(" ") and raw.startswith(" "):
            return raw[1:]
        return raw
    if not line_prefix:
        return raw
    first, sep, rest = raw.partition("\n")
    extra = len(first) - len(first.lstrip(" \t"))
    if not extra:
        return raw
    lines = rest.split("\n") if sep else []
    fixed = [first[extra:]]
    for line in lines:
        surplus = _indent(line) - len(line_prefix)
        fixed.append(line[min(extra, surplus) :] if surplus > 0 else line)
    return "\n".join(fixed)


def single_line(suffix: str, multiline: bool = True) -> bool:
    """One line only: mid-line (code after the cursor), or multi-line is off."""
    return not multiline or bool(suffix.split("\n", 1)[0].strip())


def _shape(
    completion: str,
    line_prefix: str,
    suffix: str,
    language: str,
    max_lines: int,
    multiline: bool,
) -> tuple[str, bool]:
    """Apply the single-line or block rule and the line limit; say if it cut."""
    if single_line(suffix, multiline):
        first, sep, _ = completion.partition("\n")
        return first, bool(sep)
    if not line_prefix.strip() and completion.startswith("\n"):
        # The model ended the (empty) current line first: start on it.
        completion = completion.lstrip("\n")
        if completion.startswith(line_prefix):
            completion = completion[len(line_prefix) :]
        else:
            completion = completion.lstrip(" \t")
    completion, cut = _trim_block(completion, line_prefix, suffix, language)
    lines = completion.split("\n")
    return "\n".join(lines[:max_lines]), cut or len(lines) > max_lines


def finished(
    partial: str,
    prefix: str,
    suffix: str,
    language: str = "",
    *,
    max_lines: int = 16,
    multiline: bool = True,
) -> bool:
    """Whether more output can no longer change what :func:`postprocess` shows."""
    if single_line(suffix, multiline):
        return "\n" in partial
    head, sep, last = partial.rpartition("\n")
    if not sep:
        return False
    # A partial last line counts once it shows its indentation and first char.
    text = partial if last.strip() else head
    if not text.strip():
        return False
    line_prefix = prefix.rsplit("\n", 1)[-1]
    shaped, cut = _shape(text, line_prefix, suffix, language, max_lines, multiline)
    if cut or (text is head and shaped.count("\n") + 1 >= max_lines):
        return True
    # The model has started writing out the code that follows the cursor: the
    # rest would only repeat it (post-processing drops the repeat).
    complete = head.split("\n")[1:] if "\n" in head else []
    next_code = next((ln.strip() for ln in suffix.split("\n") if ln.strip()), "")
    return (
        text is head
        and len(next_code) > 3
        and bool(complete)
        and complete[-1].strip() == next_code
    )


def whole_lines(partial: str, language: str = "") -> str | None:
    """``partial`` up to its last line end, if that holds a line with code.

    None where that would cut a statement or a block open: a bracket, string
    or block comment the completion opened is still open there, or the last
    line opens a block (ends with ``:``, as a Python header does).
    """
    head, sep, _ = partial.rpartition("\n")
    if not sep or not head.strip():
        return None
    state = scan(head, language)
    if state.stack or state.open_quote or head.rstrip().endswith(":"):
        return None
    return head


def postprocess(
    completion: str,
    prefix: str,
    suffix: str,
    language: str = "",
    *,
    max_lines: int = 16,
    multiline: bool = True,
) -> str:
    """Return the completion as it should be shown (possibly empty)."""
    if not completion.strip():
        return ""
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix = suffix.split("\n", 1)[0]
    completion, _ = _shape(
        completion, line_prefix, suffix, language, max_lines, multiline
    )
    completion = completion.rstrip()
    completion = _drop_suffix_overlap(completion, line_prefix, suffix, language)
    completion = _balance(completion, line_suffix, language).rstrip()
    if not completion.strip() or suffix.startswith(completion):
        return ""
    return completion
