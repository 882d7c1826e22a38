"""Cross-file context: pure functions of (document, cursor, index, token budget).

The names used near the cursor and the names the file imports are looked up in the
workspace index; their definitions elsewhere (signature and doc line, and for a
class the signatures of its methods) are ranked and packed into a token budget
measured with the model's own tokenizer.

The result is laid out for the llama.cpp KV cache: files sorted by path, each
definition in file order, and the names are read from the lines *before* the
cursor line only, so typing on a line never changes the context (and so the long
shared prompt prefix stays cached).
"""

from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

import attrs

from tandem.context import members
from tandem.context.index import WorkspaceIndex, module_parts
from tandem.context.symbols import FileSymbols, Symbol

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALLED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*[(.]")
_COMMON = frozenset(
    {
        "self",
        "cls",
        "this",
        "None",
        "True",
        "False",
        "null",
        "true",
        "false",
        "undefined",
        "print",
        "len",
        "str",
        "int",
        "float",
        "bool",
        "list",
        "dict",
        "set",
        "tuple",
        "range",
        "const",
        "let",
        "var",
        "func",
        "function",
        "return",
        "string",
        "void",
        "main",
        "init",
        "new",
    }
)
MAX_PER_NAME = 2
"""Definitions kept for one name (names like ``run`` are defined everywhere)."""
MAX_AMBIGUOUS = 12
"""A name not imported and defined more often than this says nothing."""
MAX_CANDIDATES = 80
"""Ranked definitions considered for packing."""
MAX_MEMBERS = 12
"""Method signatures shown for a referenced class."""


@attrs.frozen
class ContextFile:
    """Definitions from one other file, as the model will read them."""

    path: str
    text: str
    fs_path: str = ""
    """The file's absolute path, for the privacy rules (never sent)."""


@attrs.frozen
class Context:
    """What goes into the prompt before the current file."""

    files: tuple[ContextFile, ...] = ()
    symbols: tuple[str, ...] = ()
    """Names of the definitions included, for stats and tests."""
    tokens: int = 0
    keys: tuple[tuple[str, str, int], ...] = ()
    """(path, name, line) of each definition included."""


def referenced_names(
    text: str, offset: int, lines_before: int = 120, lines_after: int = 20
) -> list[str]:
    """Identifiers around the cursor, nearest first, excluding the cursor line."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    before = text[:line_start].split("\n")[-lines_before - 1 :]
    after = text[line_end:].split("\n")[: lines_after + 1]
    seen: dict[str, int] = {}
    # On the cursor line, only finished call or attribute targets (``scale(``,
    # ``box.``): what the user is calling right now, and stable while typing.
    for word in _CALLED.findall(text[line_start:offset]):
        seen.setdefault(word, -1)
    for distance, line in enumerate(reversed(before)):
        for word in _IDENT.findall(line):
            seen.setdefault(word, distance)
    for distance, line in enumerate(after):
        for word in _IDENT.findall(line):
            seen.setdefault(word, distance + 5)
    names = [
        w for w in seen if w not in _COMMON and not keyword.iskeyword(w) and len(w) > 2
    ]
    return sorted(names, key=lambda w: seen[w])


def _import_bonus(symbol: Symbol, imports: tuple[str, ...]) -> float:
    """How strongly the current file's imports point at the symbol's file."""
    parts = module_parts(symbol.path)
    module = parts[-1] if parts else ""
    package = parts[-2] if len(parts) > 1 else ""
    best = 0.0
    for statement in imports:
        if package and any(
            f"{package}{sep}{module}" in statement for sep in (".", "/", "::")
        ):
            return 6.0
        if module != symbol.name and module in _IDENT.findall(statement):
            best = 4.0
    return best


def rank(
    current: FileSymbols,
    names: list[str],
    index: WorkspaceIndex,
) -> list[tuple[float, Symbol]]:
    """Candidate definitions from other files, most relevant first."""
    imported = current.imported_names
    defined_here = {s.name for s in current.symbols}
    scored: dict[tuple[str, str, int], tuple[float, Symbol]] = {}
    order = {name: i for i, name in enumerate(names)}
    for name in list(order) + sorted(imported - order.keys()):
        if name in defined_here:
            continue
        found = [s for s in index.definitions(name) if s.path != current.path]
        if not found or (len(found) > MAX_AMBIGUOUS and name not in imported):
            continue  # nothing, or a name defined everywhere (``name``, ``data``)
        nearness = 4.0 / (1 + order[name]) if name in order else 0.0
        candidates = []
        for symbol in found:
            score = nearness + _import_bonus(symbol, current.imports)
            score += 2.0 if name in imported else 0.0
            score += 1.0 if symbol.kind in ("function", "class", "type") else 0.0
            score -= 1.0 if symbol.kind == "variable" else 0.0
            if "test" in symbol.path.rsplit("/", 1)[-1]:
                score -= 1.5
            candidates.append((score, symbol))
        candidates.sort(key=lambda c: -c[0])
        for score, symbol in candidates[:MAX_PER_NAME]:
            scored[(symbol.path, symbol.name, symbol.line)] = (score, symbol)
            if symbol.kind == "class":
                members = _members(index, symbol)
                for member in members:
                    key = (member.path, member.name, member.line)
                    scored.setdefault(key, (score - 0.5, member))
    return sorted(scored.values(), key=lambda c: (-c[0], c[1].path, c[1].line))


def _members(index: WorkspaceIndex, cls: Symbol) -> list[Symbol]:
    entry = index.file(cls.path)
    if entry is None:
        return []
    return [s for s in entry.symbols if s.container == cls.name][:MAX_MEMBERS]


def pack(
    ranked: list[tuple[float, Symbol]],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> Context:
    """Take definitions in rank order while they fit; lay them out stably."""
    chosen: list[Symbol] = []
    used = 0
    headers: set[str] = set()
    for _, symbol in ranked[:MAX_CANDIDATES]:
        if budget_tokens - used < 8:
            break  # full: nothing useful fits any more
        cost = count_tokens(symbol.render() + "\n")
        if symbol.path not in headers:
            cost += count_tokens(symbol.path + "\n") + 2
        if used + cost > budget_tokens:
            continue  # a smaller one further down may still fit
        chosen.append(symbol)
        headers.add(symbol.path)
        used += cost
    by_file: dict[str, list[Symbol]] = {}
    for symbol in chosen:
        by_file.setdefault(symbol.path, []).append(symbol)
    files = tuple(
        ContextFile(path, "\n".join(s.render() for s in sorted(syms, key=_line)))
        for path, syms in sorted(by_file.items())
    )
    names = tuple(s.name for s in chosen)
    keys = tuple(_key(s) for s in chosen)
    return Context(files=files, symbols=names, tokens=used, keys=keys)


def _line(symbol: Symbol) -> int:
    return symbol.line


@attrs.frozen
class OpenDocument:
    """Another document open in the editor."""

    path: str
    text: str
    edited_lines: tuple[int, ...] = ()
    """Lines changed recently, most recent first."""


SIMILAR_WINDOW = 12
"""Lines in a snippet of similar code."""
SIMILAR_MIN = 0.25
"""Least Jaccard similarity (of identifier sets) worth a place in the prompt."""


MAX_SIMILAR_DOCUMENTS = 8
"""Other open documents searched for similar code, at most."""


@functools.lru_cache(maxsize=2 * MAX_SIMILAR_DOCUMENTS)
def _windows(text: str) -> tuple[tuple[int, frozenset[str]], ...]:
    """Identifier sets of a document's overlapping windows (cached per text)."""
    lines = text.split("\n")
    last = max(0, len(lines) - SIMILAR_WINDOW)
    starts = sorted({*range(0, last + 1, SIMILAR_WINDOW // 2), last})
    return tuple((s, _identifiers(lines[s : s + SIMILAR_WINDOW])) for s in starts)


def _identifiers(lines: list[str]) -> frozenset[str]:
    return frozenset(w for line in lines for w in _IDENT.findall(line) if len(w) > 1)


def similar_code(
    text: str, offset: int, others: Sequence[OpenDocument]
) -> list[tuple[float, Symbol]]:
    """The stretch of each other open document most like the code before the cursor.

    Similarity is the Jaccard index of identifier sets (as in Copilot's
    "neighbouring tabs"); only lines before the cursor line are compared, so the
    result holds still while typing on a line.
    """
    line_start = text.rfind("\n", 0, offset) + 1
    query = _identifiers(text[:line_start].split("\n")[-SIMILAR_WINDOW - 1 :])
    if not query:
        return []
    found: list[tuple[float, Symbol]] = []
    for doc in others[:MAX_SIMILAR_DOCUMENTS]:
        best, best_at = 0.0, 0
        for start, window in _windows(doc.text):
            if window and not query.isdisjoint(window):
                score = len(query & window) / len(query | window)
                if score > best:
                    best, best_at = score, start
        if best >= SIMILAR_MIN:
            lines = doc.text.split("\n")[best_at : best_at + SIMILAR_WINDOW]
            snippet = "\n".join(lines).rstrip()
            symbol = Symbol(
                f"similar:{doc.path}", "snippet", doc.path, best_at, snippet
            )
            found.append((3.0 + 6.0 * best, symbol))
    return found


def recent_edits(others: Sequence[OpenDocument]) -> list[tuple[float, Symbol]]:
    """The code around the latest edit of each other open document."""
    found: list[tuple[float, Symbol]] = []
    for doc in others:
        if not doc.edited_lines:
            continue
        lines = doc.text.split("\n")
        line = min(doc.edited_lines[0], max(0, len(lines) - 1))
        start = max(0, line - 4)
        snippet = "\n".join(lines[start : line + 5]).rstrip()
        if snippet.strip():
            symbol = Symbol(f"edited:{doc.path}", "snippet", doc.path, start, snippet)
            found.append((4.0, symbol))
    return found


CURSOR_TOKENS = 160
"""Tokens kept (of the direct budget) for the module or class the cursor line
uses when the file's imports did not already bring its members in."""


def stable_budget(direct_tokens: int) -> int:
    """The part of the direct budget for the imports.

    The rest is kept for what the cursor line's expression refers to.
    """
    return direct_tokens - min(CURSOR_TOKENS, direct_tokens // 2)


def stable_context(
    current: FileSymbols,
    text: str,
    index: WorkspaceIndex,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> Context:
    """The members of the modules and classes the file imports, most used first.

    It depends on the file, not the cursor, so it stays the same (and cached in
    the KV cache) wherever the user types in the file.
    """
    if budget_tokens <= 0:
        return Context()
    ranked: list[tuple[float, Symbol]] = []
    for rank_no, (_, target) in enumerate(
        members.imported_targets(current, text, index)
    ):
        score = 100.0 - rank_no
        for i, symbol in enumerate(target.members):
            ranked.append((score - i * 0.01, symbol))
    return pack(ranked, budget_tokens, count_tokens)


def cursor_context(
    current: FileSymbols,
    text: str,
    offset: int,
    index: WorkspaceIndex,
    have: Context,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> Context:
    """What the cursor line's ``expr.`` or ``call(`` offers, beyond ``have``."""
    target = members.cursor_target(current, text, offset, index)
    if target is None or budget_tokens <= 0:
        return Context()
    known = set(have.keys)
    ranked = [
        (100.0 - i * 0.01, s)
        for i, s in enumerate(target.members)
        if _key(s) not in known
    ]
    return pack(ranked, budget_tokens, count_tokens)


def build(
    current: FileSymbols,
    text: str,
    offset: int,
    index: WorkspaceIndex,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    others: Sequence[OpenDocument] = (),
    *,
    floor_tokens: int = 0,
    stable: Context | None = None,
) -> Context:
    """The context for a completion at ``offset`` in ``text`` (the current file).

    In prompt order: the file's imported modules and classes (``stable``, at
    least ``floor_tokens``), what the cursor line's expression refers to, then
    definitions of names used near the cursor, similar code and recent edits
    of other open documents (``others``) while ``budget_tokens`` lasts.
    """
    direct = max(floor_tokens, budget_tokens)
    if direct <= 0:
        return Context()
    if stable is None:
        stable = stable_context(
            current, text, index, stable_budget(direct), count_tokens
        )
    at_cursor = cursor_context(
        current, text, offset, index, stable, direct - stable.tokens, count_tokens
    )
    found = join(stable, at_cursor)
    left = budget_tokens - found.tokens
    if left < 16:
        return found
    names = referenced_names(text, offset)
    others = [d for d in others if d.path != current.path]
    known = set(found.keys)
    ranked = [c for c in rank(current, names, index) if _key(c[1]) not in known]
    suffix = PurePosixPath(current.path).suffix
    same_language = [d for d in others if PurePosixPath(d.path).suffix == suffix]
    ranked += similar_code(text, offset, same_language) + recent_edits(others)
    ranked.sort(key=lambda c: (-c[0], c[1].path, c[1].line))
    return join(found, pack(ranked, left, count_tokens))


def join(first: Context, second: Context) -> Context:
    """Two contexts one after the other (the first stays a prompt prefix)."""
    if not second.files:
        return first
    return Context(
        files=first.files + second.files,
        symbols=first.symbols + second.symbols,
        tokens=first.tokens + second.tokens,
        keys=first.keys + second.keys,
    )


def _key(symbol: Symbol) -> tuple[str, str, int]:
    return (symbol.path, symbol.name, symbol.line)


def for_code(
    current: FileSymbols,
    code: str,
    index: WorkspaceIndex,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
) -> Context:
    """Definitions from other files of the names ``code`` uses (explain, refactor)."""
    if budget_tokens <= 0:
        return Context()
    words = dict.fromkeys(_IDENT.findall(code))
    names = [
        w for w in words if w not in _COMMON and not keyword.iskeyword(w) and len(w) > 2
    ]
    return pack(rank(current, names, index), budget_tokens, count_tokens)


def relative(path: str, roots: list[str]) -> str:
    """``path`` relative to the workspace folder holding it (for file markers)."""
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix):
            return path[len(prefix) :]
    return PurePosixPath(path).name
