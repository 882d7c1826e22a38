"""Symbols, ranking and packing of workspace context (no model, no subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem import fim
from tandem.context import builder
from tandem.context.builder import ContextFile
from tandem.context.index import WorkspaceIndex, source_files
from tandem.context.symbols import extract


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        pytest.param(
            "python",
            'import os\nclass Box:\n    """A box."""\n'
            "    def open(self, force: bool) -> None:\n"
            "        pass\ndef pack(items, box):\n    return box\nLIMIT = 3\n",
            {
                ("Box", "class"),
                ("open", "method"),
                ("pack", "function"),
                ("LIMIT", "variable"),
            },
            id="python",
        ),
        pytest.param(
            "typescript",
            "import { x } from './x';\n"
            "export function pack(items: Item[], box: Box): Box { return box; }\n"
            "export const open = (b: Box) => b;\ninterface Box { id: number }\n",
            {("pack", "function"), ("open", "function"), ("Box", "type")},
            id="typescript",
        ),
        pytest.param(
            "go",
            'package m\nimport "fmt"\nfunc Pack(items []Item) Box { return Box{} }\n'
            "func (b *Box) Open() {}\ntype Box struct{}\n",
            {("Pack", "function"), ("Open", "method"), ("Box", "type")},
            id="go",
        ),
        pytest.param(
            "rust",
            "use std::io;\npub fn pack(items: Vec<Item>) -> Box { todo!() }\n"
            "struct Crate;\n"
            "impl Crate { fn open(&self) {} }\n",
            {("pack", "function"), ("Crate", "type"), ("open", "method")},
            id="rust",
        ),
        pytest.param(
            "java",
            "import java.util.List;\nclass Box { public void open(int force) {} }\n",
            {("Box", "class"), ("open", "method")},
            id="java",
        ),
        pytest.param(
            "c",
            "#include <stdio.h>\nint pack(int a, int b) { return a; }\n"
            "struct box { int id; };\n",
            {("pack", "function"), ("box", "type")},
            id="c",
        ),
        pytest.param(
            "cpp",
            "#include <vector>\nclass Box { };\nint pack(int n) { return n; }\n",
            {("Box", "class"), ("pack", "function")},
            id="cpp",
        ),
    ],
)
def test_extract_definitions_per_language(
    language: str, source: str, expected: set[tuple[str, str]]
) -> None:
    found = extract(source, language, "f")
    assert {(s.name, s.kind) for s in found.symbols} == expected
    assert len(found.imports) == 1


def test_python_signature_and_docstring() -> None:
    found = extract(
        'def pack(items: list[int], box: "Box") -> Box:\n    """Put items in."""\n',
        "python",
        "m.py",
    )
    (symbol,) = found.symbols
    assert symbol.signature == 'def pack(items: list[int], box: "Box") -> Box:'
    assert symbol.doc == "Put items in."


def _index(tmp_path: Path, files: dict[str, str]) -> WorkspaceIndex:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    index = WorkspaceIndex()
    index.build([tmp_path])
    return index


def test_source_files_respect_gitignore_vendored_and_binaries(tmp_path: Path) -> None:
    index = _index(
        tmp_path,
        {
            ".gitignore": "ignored/\n*.gen.py\n",
            "a.py": "def a(): pass\n",
            "ignored/b.py": "def b(): pass\n",
            "x.gen.py": "def x(): pass\n",
            "node_modules/m/index.js": "function m() {}\n",
            "pkg/c.py": "def c(): pass\n",
            "pkg/data.txt": "def not_code(): pass\n",
        },
    )
    (tmp_path / "bin.py").write_bytes(b"def z():\0 pass\n")
    (tmp_path / "big.py").write_text("def big(): pass\n" + "#" * 2_000_000)
    names = sorted(p.name for p in source_files(tmp_path))
    assert names == ["a.py", "big.py", "bin.py", "c.py"]
    index = WorkspaceIndex(max_file_bytes=1_000_000)
    index.build([tmp_path])
    assert sorted(Path(p).name for p in index.paths()) == ["a.py", "c.py"]
    assert index.skipped == 2  # the binary and the big one


def test_update_and_remove_keep_names_current(tmp_path: Path) -> None:
    index = _index(tmp_path, {"m.py": "def old(): pass\n"})
    path = str(tmp_path / "m.py")
    index.update(path, "def new(): pass\n")
    assert index.definitions("old") == []
    assert [s.name for s in index.definitions("new")] == ["new"]
    index.remove(path)
    assert index.definitions("new") == []


def test_updating_with_the_same_text_keeps_the_entry(tmp_path: Path) -> None:
    index = _index(tmp_path, {"m.py": "def old(): pass\n"})
    path = str(tmp_path / "m.py")
    first = index.update(path, "def one(): pass\n")
    assert index.update(path, "def one(): pass\n") is first  # not parsed again
    assert index.reused == 1
    second = index.update(path, "def two(): pass\n")
    assert second is not first and [s.name for s in second.symbols] == ["two"]
    assert index.definitions("one") == []
    index.remove(path)
    third = index.update(path, "def two(): pass\n")  # removed: parsed again
    assert third is not second and index.reused == 1


APP = (
    "from shapes.geometry import Polygon, scale\n\n"
    "def grow(points):\n"
    "    poly = Polygon(points)\n"
    "    return scale(\n"
)


def _workspace(tmp_path: Path) -> WorkspaceIndex:
    return _index(
        tmp_path,
        {
            "shapes/geometry.py": (
                "class Polygon:\n    def area(self) -> float: ...\n"
                "    def rotate(self, degrees: float) -> 'Polygon': ...\n"
                "def scale(factor: float, shape: Polygon) -> Polygon:\n"
                '    """Scale around the centre."""\n'
                "def unrelated_helper(x): ...\n"
            ),
            "tests/test_scale.py": "def scale(a, b): ...\n",
            "other/scale.py": "def scale(x, y, z): ...\n",
        },
    )


def test_rank_prefers_the_imported_definition(tmp_path: Path) -> None:
    index = _workspace(tmp_path)
    current = extract(APP, "python", str(tmp_path / "app.py"))
    ranked = builder.rank(current, builder.referenced_names(APP, len(APP) - 1), index)
    top = ranked[0][1]
    assert (top.name, Path(top.path).name) == ("scale", "geometry.py")
    names = [s.name for _, s in ranked]
    assert "rotate" in names  # a referenced class brings its methods
    assert "unrelated_helper" not in names
    assert names.count("scale") <= builder.MAX_PER_NAME


@pytest.mark.parametrize("budget", [0, 5, 20, 40, 80, 400])
def test_pack_never_exceeds_the_budget(tmp_path: Path, budget: int) -> None:
    index = _workspace(tmp_path)
    current = extract(APP, "python", str(tmp_path / "app.py"))
    found = builder.build(current, APP, len(APP) - 1, index, budget, words)
    assert found.tokens <= budget
    rendered = sum(words(f.text) + words(f.path) + 2 for f in found.files)
    assert rendered <= budget + len(found.files) * 2
    if budget >= 20:  # room for the most relevant definition: it is there
        assert "scale" in found.symbols
        assert any(
            "def scale(factor: float, shape: Polygon)" in f.text for f in found.files
        )


def test_context_is_stable_while_typing_on_a_line(tmp_path: Path) -> None:
    index = _workspace(tmp_path)
    current = extract(APP, "python", str(tmp_path / "app.py"))
    first = builder.build(current, APP, len(APP) - 1, index, 200, words)
    typed = APP[:-1] + "2.0, poly_other_name"
    again = builder.build(current, typed, len(typed), index, 200, words)
    assert first == again


def test_layout_with_file_markers_and_as_comments() -> None:
    context = [ContextFile("shapes/geometry.py", "def scale(factor, shape): ...")]
    parts = fim.STARCODER.render("x = ", "", "app.py", context, "repo")
    assert parts[:4] == [
        fim.Special("<repo_name>"),
        "repo\n",
        fim.Special("<file_sep>"),
        "shapes/geometry.py\ndef scale(factor, shape): ...\n",
    ]
    assert parts[4:6] == [fim.Special("<file_sep>"), "app.py\n"]
    commented = "# From shapes/geometry.py:\n# def scale(factor, shape): ...\n\nx = "
    parts = fim.CODELLAMA.render("x = ", "", "app.py", context, "repo", "#")
    assert parts[1] == commented
    # Qwen has the markers but takes the context as comments, unmarked.
    parts = fim.QWEN.render("x = ", "", "app.py", context, "repo", "#")
    assert parts == [
        fim.Special("<|fim_prefix|>"),
        commented,
        fim.Special("<|fim_suffix|>"),
        "",
        fim.Special("<|fim_middle|>"),
    ]


def test_similar_code_and_recent_edits_from_open_documents(tmp_path: Path) -> None:
    index = _workspace(tmp_path)
    text = (
        "def load_users(db):\n"
        "    rows = db.query('select * from users')\n"
        "    return [User(id=r.id, name=r.name) for r in rows]\n\n"
        "def load_orders(db):\n"
        "    rows = db.query('select * from orders')\n"
        "    "
    )
    current = extract(text, "python", str(tmp_path / "users.py"))
    similar = builder.OpenDocument(
        str(tmp_path / "other.py"),
        "import os\n\n\n# unrelated\n\n\n\n\n\n\n\n\n\n"
        "def load_items(db):\n"
        "    rows = db.query('select * from items')\n"
        "    return [Item(id=r.id, name=r.name) for r in rows]\n",
    )
    edited = builder.OpenDocument(
        str(tmp_path / "edited.py"),
        "\n".join(f"line_{i} = {i}" for i in range(40)),
        edited_lines=(20,),
    )
    found = builder.build(
        current, text, len(text), index, 400, words, [similar, edited]
    )
    by_path = {Path(f.path).name: f.text for f in found.files}
    assert "def load_items(db):" in by_path["other.py"]
    assert "import os" not in by_path["other.py"]  # only the similar stretch
    assert "line_20 = 20" in by_path["edited.py"]
    assert "line_0 = 0" not in by_path["edited.py"]
    # Without the other documents the context has neither.
    alone = builder.build(current, text, len(text), index, 400, words)
    assert not {"other.py", "edited.py"} & {Path(f.path).name for f in alone.files}
