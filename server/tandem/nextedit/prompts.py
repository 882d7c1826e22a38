"""Prompts for next-edit prediction, and reading the model's rewrite. Pure functions.

Three formats, each asking the model to rewrite an *editable window* of the
current file after seeing the user's recent edits:

- ``sweep``: Sweep's next-edit models (Qwen2.5-Coder based), trained on the
  repository layout Qwen2.5-Coder was pretrained on: ``<|file_sep|>`` blocks for
  context files, one ``{path}.diff`` block per recent edit (``original:`` /
  ``updated:``), then ``original/{path}`` (the window before the latest edit),
  ``current/{path}`` and an open ``updated/{path}`` the model fills in.
- ``zeta``: Zed's Zeta, an Alpaca-style instruction with a "User Edits" section of
  unified diffs and the excerpt between ``<|editable_region_start|>`` and
  ``<|editable_region_end|>`` markers with ``<|user_cursor_is_here|>``.
- ``chat``: any instruct code model (Qwen2.5-Coder-Instruct): the diffs and the
  window in a short chat; the answer is the window in a fenced block.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

import attrs

from tandem.assist import edits as textedits
from tandem.assist.edits import UnsafeEdit
from tandem.backends.base import ChatMessage
from tandem.context.builder import ContextFile
from tandem.nextedit.history import Edit, Latest

Format = Literal["sweep", "zeta", "chat"]

FILE_SEP = "<|file_sep|>"
SWEEP_STOP = (FILE_SEP, "<|endoftext|>", "<|im_end|>")
ZETA_START = "<|editable_region_start|>"
ZETA_END = "<|editable_region_end|>"
ZETA_CURSOR = "<|user_cursor_is_here|>"
ZETA_FILE_START = "<|start_of_file|>"
ZETA_INSTRUCTION = (
    "You are a code completion assistant and your task is to analyze user edits "
    "and then rewrite an excerpt that the user provides, suggesting the "
    "appropriate edits within the excerpt, taking into account the cursor location."
)
CHAT_SYSTEM = (
    "You predict a programmer's next edit. You see their recent edits as diffs "
    "and the code around the cursor. Rewrite that code with the one edit that "
    "should follow (for example the remaining uses of a renamed name, or a call "
    "that needs a new argument). Keep every other line exactly as it is. If "
    "nothing should change, repeat the code unchanged. Answer with the code only, "
    "in one fenced block."
)


def detect(model_name: str) -> Format:
    """The format a model was trained on, from its GGUF name or file name."""
    name = model_name.lower()
    if "sweep" in name or "next-edit" in name or "nextedit" in name:
        return "sweep"
    if "zeta" in name:
        return "zeta"
    return "chat"


@attrs.frozen
class Window:
    """The lines of the current file the model may rewrite."""

    start: int
    """Offset of its first character in the document (a line start)."""
    end: int
    """Offset just after its last line (line break included)."""
    text: str
    original: str
    """The same lines before the user's latest edit (``text`` if it lies outside)."""
    cursor: int
    """The cursor's offset inside ``text``."""
    at_file_start: bool = False

    @property
    def lines(self) -> list[str]:
        """The window's lines, line breaks kept."""
        return self.text.splitlines(keepends=True)


def editable_window(
    text: str, offset: int, latest: Latest | None, before: int, after: int
) -> Window:
    """Lines around the cursor, stretched to take in the latest edit if near."""
    cursor_line = textedits.line_of(text, offset)
    first, last = cursor_line - before, cursor_line + after
    if latest is not None:
        edit_line = textedits.line_of(text, latest.start)
        if abs(edit_line - cursor_line) <= before + after:
            first = min(first, edit_line - before)
            last = max(last, edit_line + after)
    total = text.count("\n") + (0 if text.endswith("\n") else 1)
    first, last = max(0, first), max(0, min(last, total - 1))
    start, end = textedits.lines_span(text, first, last)
    window = text[start:end]
    original = window
    if latest is not None and start <= latest.start and latest.end <= end:
        original = text[start : latest.start] + latest.removed + text[latest.end : end]
    return Window(start, end, window, original, offset - start, first == 0)


def _body(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def sweep_prompt(
    path: str,
    window: Window,
    recent: Sequence[Edit],
    context: Sequence[ContextFile] = (),
) -> str:
    """Sweep next-edit's prompt; the model writes the updated window after it."""
    parts: list[str] = []
    for f in context:
        parts += [f"{FILE_SEP}{f.path}", _body(f.text)]
    for e in recent:
        parts += [
            f"{FILE_SEP}{e.path}.diff",
            "original:",
            _body(e.old),
            "updated:",
            _body(e.new),
        ]
    parts += [
        f"{FILE_SEP}original/{path}",
        _body(window.original),
        f"{FILE_SEP}current/{path}",
        _body(window.text),
        f"{FILE_SEP}updated/{path}",
    ]
    return "\n".join(parts) + "\n"


def zeta_prompt(path: str, window: Window, recent: Sequence[Edit]) -> str:
    """Zeta's prompt: the user's edits as diffs, then the marked excerpt."""
    events = "\n\n".join(
        f'User edited "{e.path}":\n```diff\n{_body(e.diff)}\n```' for e in recent
    )
    marked = window.text[: window.cursor] + ZETA_CURSOR + window.text[window.cursor :]
    head = f"{ZETA_FILE_START}\n" if window.at_file_start else ""
    excerpt = f"```{path}\n{head}{ZETA_START}\n{_body(marked)}\n{ZETA_END}\n```"
    return (
        f"### Instruction:\n{ZETA_INSTRUCTION}\n\n"
        f"### User Edits:\n\n{events}\n\n"
        f"### User Excerpt:\n\n{excerpt}\n\n"
        "### Response:\n"
    )


def chat_messages(
    path: str,
    language: str,
    window: Window,
    recent: Sequence[Edit],
    rename: tuple[str, str] | None = None,
) -> tuple[ChatMessage, ...]:
    """The instruct-model prompt: recent diffs and the (dedented) window.

    Small models copy a diff's ``@@`` lines into their answer: the diffs are
    shown without them. ``rename`` (the latest edit renamed one name) is said in
    words too.
    """
    code, _ = textedits.dedent(window.text)
    diffs = "\n".join(
        line
        for e in recent
        for line in _body(e.diff).splitlines()
        if not line.startswith("@@")
    )
    said = (
        f"\nThe last edit renamed `{rename[0]}` to `{rename[1]}`.\n" if rename else ""
    )
    user = (
        f"Recent edits:\n```diff\n{diffs}\n```\n{said}\n"
        f"Code around the cursor in {path}:\n```{language}\n{_body(code)}\n```\n\n"
        "Rewrite this code with the next edit."
    )
    return (ChatMessage("system", CHAT_SYSTEM), ChatMessage("user", user))


def model_lines(kind: Format, window: Window) -> list[str]:
    """The window's lines as the model sees them (dedented for ``chat``)."""
    text = textedits.dedent(window.text)[0] if kind == "chat" else window.text
    return text.splitlines(keepends=True)


def extract(kind: Format, answer: str) -> str:
    """The rewrite in the model's answer, as the model wrote it.

    Raises UnsafeEdit when the answer is cut off or not in the expected shape.
    """
    if kind == "chat":
        return textedits.extract_code(answer)
    if kind == "zeta":
        at = answer.find(ZETA_START)
        if at < 0:
            raise UnsafeEdit("the answer has no editable region")
        body = answer[at + len(ZETA_START) :].lstrip("\n")
        stop = body.find(ZETA_END)
        if stop < 0:
            raise UnsafeEdit("the answer was cut off before its region ended")
        return body[:stop].replace(ZETA_CURSOR, "")
    return answer.split(FILE_SEP, 1)[0]


def shaped(kind: Format, body: str, window: Window) -> str:
    """The rewrite ``body`` made to replace ``window.text`` (indent, line ends)."""
    if kind == "chat":
        body = textedits.new_region(window.text, body)
    # Blank lines at the end of the window stay (answers tend to drop them).
    tail = len(window.text) - len(window.text.rstrip("\r\n"))
    return body.rstrip("\r\n") + window.text[len(window.text) - tail :]


def rewrite_offset(kind: Format, partial: str) -> int | None:
    """Where the rewrite starts in the model's answer (None: not yet)."""
    if kind == "chat":
        fence = partial.find("```")
        if fence < 0:
            return None
        start = partial.find("\n", fence)
        return None if start < 0 else start + 1
    if kind == "zeta":
        at = partial.find(ZETA_START)
        if at < 0:
            return None
        at += len(ZETA_START)
        return at + len(partial[at:]) - len(partial[at:].lstrip("\n"))
    return 0


def answer_lines(kind: Format, partial: str) -> list[str] | None:
    """The complete lines of the rewrite so far (None before it starts)."""
    at = rewrite_offset(kind, partial)
    if at is None:
        return None
    body = partial[at:]
    if kind == "chat":
        closing = body.find("```")
        body = body[:closing] if closing >= 0 else body
    elif kind == "zeta":
        body = body.replace(ZETA_CURSOR, "")  # the model echoes the cursor mark
    lines = body.splitlines(keepends=True)
    return [line for line in lines if line.endswith("\n")]


def settled(
    window_lines: Sequence[str], out: Sequence[str], after: int = 2
) -> int | None:
    """Where the rewrite is done, or None to keep generating.

    Done means: it changed something, then copied ``after`` lines as they were.
    The answer is the window line the copy has reached (the rest of the window
    follows unchanged).

    Lines are compared without their indentation: the chat format answers with
    the window dedented.
    """
    if len(out) < after:
        return None
    a = [line.strip() for line in window_lines]
    b = [line.strip() for line in out]
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    if ops and ops[-1][0] == "delete":
        ops = ops[:-1]  # window lines the rewrite has not reached yet
    if len(ops) < 2:
        return None
    tag, i1, i2, _, j2 = ops[-1]
    if tag != "equal" or j2 != len(b) or i2 - i1 < after:
        return None
    if not any(op[0] != "equal" for op in ops[:-1]):
        return None
    if any((o[2] - o[1]) - (o[4] - o[3]) > 1 for o in ops[:-1]):
        return None  # it skipped window lines: the alignment is not to be trusted
    return i2
