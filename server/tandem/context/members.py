"""What the code at the cursor depends on: imported modules, classes and members.

Pure functions of (file symbols, text, cursor, index). Two questions:

- ``imported_targets``: which modules and classes in other files does this file
  import (``import shop.pricing as p``, ``from shop import pricing``,
  ``from .models import Cart``, ``import * as api from './api'``, a Go import
  path)? Their members are the file's stable context: the same for every cursor
  position in the file, so the prompt prefix they make stays in the KV cache.
- ``cursor_target``: what is the expression before the dot (or the call being
  typed) on the cursor line — a module imported by name or alias, an instance
  assigned from a constructor (``cart = Cart(...)``), a parameter with a type
  hint, ``self``/``cls`` (the class and its bases) — and which definitions
  does it offer?
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import attrs

from tandem.context.index import WorkspaceIndex
from tandem.context.symbols import FileSymbols, Symbol

MAX_TARGET_MEMBERS = 40
"""Members listed for one module or class, at most."""

_PY_IMPORT = re.compile(r"^import\s+(.+)$", re.S)
_PY_FROM = re.compile(r"^from\s+(\.*)([\w.]*)\s+import\s+(.+)$", re.S)
_JS_IMPORT = re.compile(r"""^import\s+(.+?)\s+from\s+['"]([^'"]+)['"]""", re.S)
_GO_SPEC = re.compile(r"""(?:(\w+)\s+)?"([^"]+)\"""")
_DOTTED_TAIL = re.compile(
    r"([A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*)\s*\.\s*[\w$]*$"
)
_CALL_TAIL = re.compile(r"([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\s*\([^()]*$")
_CLASS_BASES = re.compile(r"class\s+\w+\s*\(([^)]*)\)")
_JS_EXTENDS = re.compile(r"\bextends\s+([\w$.]+)")


@attrs.frozen
class Target:
    """A module or class the cursor's code depends on, with what it offers."""

    label: str
    """How the code names it (``pricing``, ``self``, ``cart``)."""
    kind: str
    """``module`` or ``class``."""
    path: str
    members: tuple[Symbol, ...]


# -- imports -------------------------------------------------------------------


def bindings(current: FileSymbols) -> dict[str, tuple[str, ...]]:
    """Local names bound by the file's imports -> the dotted path they import.

    ``from shop import pricing`` binds ``pricing`` -> ``shop.pricing`` (module or
    member, resolved later); a relative import starts with dots resolved against
    the file's folder.
    """
    found: dict[str, tuple[str, ...]] = {}
    for statement in current.imports:
        if current.language == "python":
            _python_bindings(statement, current.path, found)
        elif current.language in ("javascript", "typescript", "tsx"):
            _js_bindings(statement, current.path, found)
        elif current.language == "go":
            for alias, path in _GO_SPEC.findall(statement):
                parts = tuple(p for p in path.split("/") if p)
                if parts and alias not in ("_", "."):
                    found[alias or parts[-1]] = parts
    return found


def _python_bindings(
    statement: str, path: str, found: dict[str, tuple[str, ...]]
) -> None:
    text = " ".join(statement.replace("\\\n", " ").split())
    if (m := _PY_FROM.match(text)) is not None:
        dots, module, names = m.groups()
        base = _relative_base(path, len(dots)) if dots else ()
        parts = base + tuple(p for p in module.split(".") if p)
        for item in names.strip("() ").split(","):
            words = item.split()
            if not words or words[0] == "*":
                continue
            local = words[2] if len(words) == 3 and words[1] == "as" else words[0]
            found[local] = (*parts, words[0])
    elif (m := _PY_IMPORT.match(text)) is not None:
        for item in m.group(1).split(","):
            words = item.split()
            if not words:
                continue
            dotted = tuple(words[0].split("."))
            if len(words) == 3 and words[1] == "as":
                found[words[2]] = dotted
            else:
                found.setdefault(dotted[0], dotted[:1])
                found[words[0]] = dotted  # ``os.path`` as written


def _relative_base(path: str, dots: int) -> tuple[str, ...]:
    folder = PurePosixPath(path).parent
    for _ in range(dots - 1):
        folder = folder.parent
    return tuple(p for p in folder.parts if p not in ("/", ""))


def _js_bindings(statement: str, path: str, found: dict[str, tuple[str, ...]]) -> None:
    m = _JS_IMPORT.match(" ".join(statement.split()))
    if m is None:
        return
    clause, source = m.groups()
    if source.startswith("."):
        joined = PurePosixPath(path).parent / source
        parts = tuple(p for p in _normalise(joined.as_posix()) if p)
    else:
        parts = tuple(p for p in source.split("/") if p and p != "@")
    if not parts:
        return
    named = re.search(r"\{([^}]*)\}", clause)
    if named:
        for item in named.group(1).split(","):
            words = item.split()
            if words:
                local = words[-1] if "as" in words else words[0]
                found[local] = (*parts, words[0])
        clause = clause.replace(named.group(0), "")
    for item in clause.split(","):
        words = item.split()
        if words[:2] == ["*", "as"] and len(words) == 3:
            found[words[2]] = parts
        elif len(words) == 1 and words[0] != "*":
            found[words[0]] = parts  # default import: the module


def _normalise(path: str) -> list[str]:
    out: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part not in (".", ""):
            out.append(part)
    return out


def _strip_ext(parts: tuple[str, ...]) -> tuple[str, ...]:
    if parts and "." in parts[-1]:
        return (*parts[:-1], parts[-1].rsplit(".", 1)[0])
    return parts


def resolve(dotted: tuple[str, ...], index: WorkspaceIndex, near: str) -> Target | None:
    """The module or class that ``dotted`` names in the workspace, if indexed."""
    dotted = _strip_ext(dotted)
    for cut in range(len(dotted), 0, -1):
        files = index.module_files(dotted[:cut])
        if not files:
            continue
        path = _nearest(files, near)
        rest = dotted[cut:]
        if not rest:
            return module_target(".".join(dotted), path, index)
        symbol = _top_level(index, path, rest[0])
        if symbol is None:
            return None
        if symbol.kind in ("class", "type"):
            return class_target(rest[0], symbol, index)
        return Target(rest[0], "function", path, (symbol,))
    return None


def _nearest(files: list[str], near: str) -> str:
    """Of several files with one module path, the one sharing most folders."""
    here = PurePosixPath(near).parts
    return max(
        files,
        key=lambda p: (
            sum(a == b for a, b in zip(PurePosixPath(p).parts, here, strict=False)),
            p,
        ),
    )


def _top_level(index: WorkspaceIndex, path: str, name: str) -> Symbol | None:
    entry = index.file(path)
    if entry is None:
        return None
    for symbol in entry.symbols:
        if symbol.name == name and not symbol.container:
            return symbol
    return None


def _class_in(index: WorkspaceIndex, path: str, name: str) -> Symbol | None:
    symbol = _top_level(index, path, name)
    return symbol if symbol is not None and symbol.kind in ("class", "type") else None


def module_target(label: str, path: str, index: WorkspaceIndex) -> Target | None:
    """A module's public top-level definitions, then its classes' methods."""
    entry = index.file(path)
    if entry is None:
        return None
    public = [s for s in entry.symbols if not s.name.startswith("_")]
    top = [s for s in public if not s.container]
    classes = {s.name for s in top if s.kind in ("class", "type")}
    methods = [s for s in public if s.container in classes]
    members = tuple((top + methods)[:MAX_TARGET_MEMBERS])
    return Target(label, "module", path, members) if top else None


def class_target(
    label: str, cls: Symbol, index: WorkspaceIndex, depth: int = 0
) -> Target:
    """A class's definition and its members, then its bases' (other files too)."""
    entry = index.file(cls.path)
    own = [
        s
        for s in (entry.symbols if entry is not None else ())
        if s.container == cls.name and s.path == cls.path
    ]
    members: list[Symbol] = [cls, *own]
    if depth < 3:
        for base in _bases(cls):
            found = _lookup_class(base, cls.path, index)
            if found is not None and (found.path, found.name) != (
                cls.path,
                cls.name,
            ):
                inherited = class_target(label, found, index, depth + 1)
                names = {m.name for m in members}
                members += [m for m in inherited.members if m.name not in names]
    return Target(label, "class", cls.path, tuple(members[:MAX_TARGET_MEMBERS]))


def _bases(cls: Symbol) -> list[str]:
    m = _CLASS_BASES.search(cls.signature) or _JS_EXTENDS.search(cls.signature)
    if m is None:
        return []
    names = []
    for item in m.group(1).split(","):
        item = item.strip()
        if item and "=" not in item and item not in ("object", "ABC"):
            names.append(item.split("[", 1)[0])
    return names


def _lookup_class(name: str, near: str, index: WorkspaceIndex) -> Symbol | None:
    """A class by (possibly dotted) name: through the file's imports, then by name."""
    entry = index.file(near)
    if entry is not None:
        bound = bindings(entry)
        head, _, tail = name.partition(".")
        if head in bound:
            dotted = bound[head] + tuple(p for p in tail.split(".") if p)
            target = resolve(dotted, index, near)
            if target is not None and target.kind == "class":
                return target.members[0]
        local = _class_in(index, near, name)
        if local is not None:
            return local
    found = [s for s in index.definitions(name.rsplit(".", 1)[-1]) if s.kind == "class"]
    return min(found, key=lambda s: s.path) if len(found) == 1 else None


def imported_targets(
    current: FileSymbols, text: str, index: WorkspaceIndex
) -> list[tuple[int, Target]]:
    """Modules and classes this file imports from the workspace, most used first.

    The count is how often the file uses the local name: the ranking depends on
    the whole file, not the cursor.
    """
    found: list[tuple[int, Target]] = []
    seen: set[str] = set()
    for local, dotted in bindings(current).items():
        if "." in local:
            continue
        target = resolve(dotted, index, current.path)
        if target is None or target.path == current.path:
            continue
        key = f"{target.path}:{target.members[0].name}:{target.kind}"
        if key in seen:
            continue
        seen.add(key)
        uses = len(re.findall(rf"(?<![\w$.]){re.escape(local)}\b", text)) - 1
        found.append((max(uses, 0), attrs.evolve(target, label=local)))
    found.sort(key=lambda t: (-t[0], t[1].label))
    return found


# -- the cursor ----------------------------------------------------------------


def cursor_expression(text: str, offset: int) -> tuple[str, str] | None:
    """(expression, "member" or "call") being typed at the cursor, if any.

    ``return pricing.app|`` -> ("pricing", "member"); ``total(cart, |`` ->
    ("total", "call").
    """
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    if (m := _DOTTED_TAIL.search(line)) is not None:
        return re.sub(r"\s+", "", m.group(1)), "member"
    if (m := _CALL_TAIL.search(line)) is not None:
        return m.group(1), "call"
    return None


def cursor_target(
    current: FileSymbols, text: str, offset: int, index: WorkspaceIndex
) -> Target | None:
    """What the expression at the cursor refers to, from this file's point of view."""
    found = cursor_expression(text, offset)
    if found is None:
        return None
    expression, kind = found
    chain = expression.split(".")
    if kind == "call":
        return _callee(current, text, offset, chain, index)
    target = _member_target(current, text, offset, chain, index)
    return attrs.evolve(target, label=expression) if target is not None else None


def _member_target(
    current: FileSymbols,
    text: str,
    offset: int,
    chain: list[str],
    index: WorkspaceIndex,
) -> Target | None:
    """The module or class whose members ``a.b.`` offers."""
    head = chain[0]
    if head in ("self", "cls", "this"):
        cls = _enclosing_class(current, text, offset)
        if cls is None:
            return None
        target = class_target(head, cls, index)
        if len(chain) == 1:
            return target
        type_name = _attribute_type(text, cls, chain[1])
        found = _lookup_class(type_name, current.path, index) if type_name else None
        return class_target(chain[1], found, index) if found is not None else None
    bound = bindings(current)
    if head in bound:
        return resolve(bound[head] + tuple(chain[1:]), index, current.path)
    if len(chain) == 1:
        type_name = _declared_type(text, offset, head)
        cls = _lookup_class(type_name or head, current.path, index)
        if cls is not None:
            return class_target(head, cls, index)
    return None


def _attribute_type(text: str, cls: Symbol, name: str) -> str | None:
    """The class ``self.name`` holds, from ``self.name = Foo(`` or a hint."""
    lines = text.split("\n")[cls.line :]
    body = "\n".join(lines[:400])
    word = re.escape(name)
    m = re.search(
        rf"self\.{word}\s*(?::\s*([A-Za-z_][\w.]*))?\s*=\s*"
        rf"(?:await\s+)?((?:[A-Za-z_]\w*\.)*[A-Z]\w*)\s*\(",
        body,
    ) or re.search(rf"^\s+{word}\s*:\s*([A-Z][\w.]*)", body, re.M)
    if m is None:
        return None
    return next((g for g in m.groups() if g), None)


def _callee(
    current: FileSymbols,
    text: str,
    offset: int,
    chain: list[str],
    index: WorkspaceIndex,
) -> Target | None:
    """The signature of a function or class being called."""
    name = chain[-1]
    if len(chain) == 1:
        bound = bindings(current)
        if name in bound:
            return resolve(bound[name], index, current.path)
        found = [s for s in index.definitions(name) if s.path != current.path]
        found = [s for s in found if not s.container]
        if len(found) != 1:
            return None  # not defined elsewhere, or ambiguous
        symbol = found[0]
        if symbol.kind in ("class", "type"):
            return class_target(name, symbol, index)
        return Target(name, "function", symbol.path, (symbol,))
    owner = _member_target(current, text, offset, chain[:-1], index)
    if owner is None:
        return None
    for symbol in owner.members:
        if symbol.name == name and symbol is not owner.members[0]:
            return Target(".".join(chain), "function", symbol.path, (symbol,))
    return None


def _enclosing_class(current: FileSymbols, text: str, offset: int) -> Symbol | None:
    """The class whose body holds the cursor (by indentation), in this file."""
    line_no = text.count("\n", 0, offset)
    best: Symbol | None = None
    for symbol in current.symbols:
        if symbol.kind == "class" and symbol.line <= line_no:
            best = symbol if best is None or symbol.line > best.line else best
    if best is None:
        return None
    if current.language == "python":
        lines = text.split("\n")
        indent = len(best.signature) - len(best.signature.lstrip())
        for line in lines[best.line + 1 : line_no]:
            stripped = line.strip()
            code = stripped and not stripped.startswith("#")
            if code and len(line) - len(line.lstrip()) <= indent:
                return None  # the class ended before the cursor
    return best


def _declared_type(text: str, offset: int, name: str) -> str | None:
    """The class an earlier line gives ``name``: ``x = Foo(``, ``x: Foo``."""
    start = max(0, offset - 8000)
    before = text[start : text.rfind("\n", 0, offset) + 1]
    word = re.escape(name)
    pattern = re.compile(
        rf"(?<![\w.]){word}\s*(?::\s*([A-Za-z_][\w.]*)[^=\n,)]*)?"
        rf"(?:=\s*(?:await\s+)?((?:[A-Za-z_]\w*\.)*[A-Z]\w*)\s*\()?"
    )
    found: str | None = None
    for m in pattern.finditer(before):
        hint, constructor = m.groups()
        if hint and hint not in ("str", "int", "float", "bool", "list", "dict"):
            found = hint
        elif constructor:
            found = constructor
    return found
