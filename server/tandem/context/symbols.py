"""Definitions and imports of one source file, read with tree-sitter. Pure functions.

For each supported language a small table says which syntax nodes define what; a
definition keeps its name, kind, enclosing class, signature (its text up to the
body) and the first line of its docstring or doc comment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from tree_sitter import Node, Parser

Kind = Literal["function", "method", "class", "type", "variable", "snippet"]
"""A ``snippet`` is a stretch of code (similar or recently edited), not a definition."""

# File suffix -> tree-sitter-language-pack grammar name.
LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
}

# LSP languageId -> grammar name, for open documents.
LANGUAGE_IDS: dict[str, str] = {
    "python": "python",
    "javascript": "javascript",
    "javascriptreact": "javascript",
    "typescript": "typescript",
    "typescriptreact": "tsx",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
}

_CLASSES = {
    "class_definition",
    "class_declaration",
    "class_specifier",
    "struct_specifier",
    "struct_item",
    "enum_item",
    "trait_item",
    "interface_declaration",
    "enum_declaration",
    "type_spec",
    "type_alias_declaration",
}
_FUNCTIONS = {
    "function_definition",
    "function_declaration",
    "function_item",
    "method_definition",
    "method_declaration",
    "generator_function_declaration",
    "function_signature_item",
}
_IMPORTS = {
    "import_statement",
    "import_from_statement",
    "import_declaration",
    "use_declaration",
    "preproc_include",
}
# Nodes whose children are still "top level" for definitions.
_TRANSPARENT = {
    "decorated_definition",
    "export_statement",
    "declaration_list",
    "class_body",
    "field_declaration_list",
    "block",
    "type_declaration",
    "template_declaration",
    "namespace_definition",
    "program",
    "module",
    "source_file",
    "translation_unit",
    "interface_body",
}
_COMMENTS = {"comment", "line_comment", "block_comment"}
_WORD = re.compile(r"[A-Za-z_]\w*")
_QUOTES = re.compile(r"""^[rRbBuUfF]*(\"\"\"|'''|"|')|(\"\"\"|'''|"|')$""")


@attrs.frozen
class Symbol:
    """One definition."""

    name: str
    kind: Kind
    path: str
    line: int
    """0-based line of the definition."""
    signature: str
    doc: str = ""
    container: str = ""
    """The enclosing class, for methods."""

    def render(self) -> str:
        """The definition as a model should see it: signature and doc line."""
        if not self.doc or self.kind == "snippet":
            return self.signature
        indent = " " * (len(self.signature) - len(self.signature.lstrip()))
        return f"{self.signature}\n{indent}    # {self.doc}"


@attrs.frozen
class FileSymbols:
    """What one file defines and imports."""

    path: str
    language: str
    symbols: tuple[Symbol, ...]
    imports: tuple[str, ...]
    """The text of each import statement."""

    @property
    def imported_names(self) -> frozenset[str]:
        """Every identifier that appears in an import statement."""
        return frozenset(w for imp in self.imports for w in _WORD.findall(imp))


@functools.cache
def parser(language: str) -> Parser:
    """A tree-sitter parser for ``language`` (grammars ship in the wheel)."""
    from tree_sitter_language_pack import get_parser

    return get_parser(language)  # type: ignore[arg-type]


def language_of(path: str, language_id: str = "") -> str | None:
    """The grammar for a file, from its languageId or its suffix."""
    if language_id in LANGUAGE_IDS:
        return LANGUAGE_IDS[language_id]
    dot = path.rfind(".")
    return LANGUAGES.get(path[dot:].lower()) if dot >= 0 else None


def extract(text: str, language: str, path: str) -> FileSymbols:
    """Parse ``text`` and list its definitions and imports."""
    source = text.encode("utf-8", errors="replace")
    tree = parser(language).parse(source)
    symbols: list[Symbol] = []
    imports: list[str] = []
    for node, container in _walk(tree.root_node, ""):
        if node.type in _IMPORTS:
            imports.append(_text(source, node).strip())
            continue
        symbol = _symbol(node, source, path, language, container)
        if symbol is not None:
            symbols.append(symbol)
    return FileSymbols(path, language, tuple(symbols), tuple(imports))


def _walk(node: Node, container: str, depth: int = 0) -> Iterator[tuple[Node, str]]:
    """Top-level nodes and class members (not function bodies)."""
    for child in node.named_children:
        yield child, container
        if depth > 6:
            continue
        if child.type in _TRANSPARENT:
            yield from _walk(child, container, depth + 1)
        elif child.type in _CLASSES:
            body = child.child_by_field_name("body")
            if body is not None:
                name = _name(child) or container
                yield from _walk(body, name, depth + 1)
        elif (child.type == "expression_statement" and depth == 0) or child.type in (
            "lexical_declaration",
            "variable_declaration",
        ):
            yield from _walk(child, container, depth + 1)
        if child.type == "impl_item":
            type_node = child.child_by_field_name("type")
            body = child.child_by_field_name("body")
            if type_node is not None and body is not None:
                yield from _walk(
                    body, type_node.text.decode() if type_node.text else ""
                )


def _text(source: bytes, node: Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _name(node: Node) -> str | None:
    name = node.child_by_field_name("name")
    if name is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.type not in (
            "identifier",
            "field_identifier",
            "qualified_identifier",
        ):
            declarator = declarator.child_by_field_name("declarator")
        name = declarator
    if name is None or name.text is None:
        return None
    text = name.text.decode("utf-8", errors="replace")
    return text.rsplit("::", 1)[-1]


def _symbol(
    node: Node, source: bytes, path: str, language: str, container: str
) -> Symbol | None:
    kind: Kind
    if node.type in _FUNCTIONS:
        kind = "method" if container or node.type.startswith("method") else "function"
    elif node.type in _CLASSES:
        kind = "class" if "class" in node.type else "type"
    elif node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        is_fn = value is not None and value.type in ("arrow_function", "function")
        kind = "function" if is_fn else "variable"
    elif node.type == "assignment" and language == "python" and not container:
        left = node.child_by_field_name("left")
        if left is None or left.type != "identifier" or left.text is None:
            return None
        return Symbol(
            left.text.decode(),
            "variable",
            path,
            node.start_point[0],
            _text(source, node).split("\n", 1)[0][:200],
        )
    else:
        return None
    name = _name(node)
    if not name:
        return None
    return Symbol(
        name=name,
        kind=kind,
        path=path,
        line=node.start_point[0],
        signature=_signature(node, source),
        doc=_doc(node, source, language),
        container=container,
    )


def _signature(node: Node, source: bytes) -> str:
    """The definition's text up to its body (the whole text for short ones)."""
    body = node.child_by_field_name("body")
    if body is None and node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        body = value.child_by_field_name("body") if value is not None else None
    end = body.start_byte if body is not None else node.end_byte
    start = node.start_byte
    line_start = source.rfind(b"\n", 0, start) + 1
    indent = source[line_start:start]
    text = source[start:end].decode("utf-8", errors="replace").rstrip(" {\n\t")
    if not indent.strip():
        text = indent.decode() + text
    lines = text.split("\n")
    return "\n".join(lines[:6]).rstrip()


def _doc(node: Node, source: bytes, language: str) -> str:
    """The first line of the docstring (Python) or of the comment above."""
    if language == "python":
        body = node.child_by_field_name("body")
        first = (
            body.named_children[0] if body is not None and body.named_children else None
        )
        if first is not None and first.type == "expression_statement":
            first = first.named_children[0] if first.named_children else None
        if first is not None:
            string = first
            if string.type == "string":
                doc = _QUOTES.sub("", _text(source, string)).strip()
                return doc.split("\n", 1)[0][:160]
        return ""
    prev = node.prev_named_sibling
    if (
        prev is not None
        and prev.type in _COMMENTS
        and prev.end_point[0] >= node.start_point[0] - 1
    ):
        text = _text(source, prev)
        lines = [ln.strip(" /*!\t") for ln in text.split("\n")]
        return next((ln for ln in lines if ln), "")[:160]
    return ""


_WRAPPERS = {"decorated_definition", "export_statement", "template_declaration"}
"""Nodes that belong to the definition they wrap (decorators, ``export``)."""


def enclosing_definition(
    text: str, language: str, first_line: int, last_line: int
) -> tuple[int, int] | None:
    """The lines of the innermost function or class around the given lines.

    Returns (first, last), 0-based and inclusive, decorators included; None when
    the lines are not inside a definition.
    """
    tree = parser(language).parse(text.encode("utf-8", errors="replace"))
    node: Node | None = tree.root_node.named_descendant_for_point_range(
        (first_line, 0), (last_line, 0)
    )
    while node is not None:
        if node.type in _FUNCTIONS or node.type in _CLASSES:
            while node.parent is not None and node.parent.type in _WRAPPERS:
                node = node.parent
            return node.start_point[0], node.end_point[0]
        node = node.parent
    return None


def syntax_errors(text: str, language: str) -> int:
    """How many ERROR and MISSING nodes tree-sitter finds in ``text``."""
    tree = parser(language).parse(text.encode("utf-8", errors="replace"))
    count = 0
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        # Only subtrees that hold an error are worth visiting.
        stack.extend(c for c in node.children if c.has_error or c.is_missing)
    return count
