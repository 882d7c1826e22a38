"""Edit minimisation, indentation, line endings, the parse check (Python, TS)."""

from __future__ import annotations

import pytest

from tandem.assist import edits
from tandem.assist.edits import TextChange, UnsafeEdit

PY = (
    "import math\n"
    "\n"
    "class Mixer:\n"
    "    def blend(self, weight, first, second):\n"
    "        r = first[0] * weight + second[0] * (1 - weight)\n"
    "        return r\n"
    "\n"
    "print(Mixer())\n"
)
TS = (
    "export function area(width: number, height: number): number {\n"
    "  const a = width * height;\n"
    "  return a;\n"
    "}\n"
    "console.log(area(2, 3));\n"
)


def test_line_span_widens_to_whole_lines_and_skips_a_line_wise_end() -> None:
    start = PY.index("r = first") + 3
    assert edits.line_span(PY, start, start) == (
        PY.index("        r = "),
        PY.index("        return"),
    )
    # A selection ending at column 0 of the next line leaves that line out.
    first = PY.index("    def blend")
    end = PY.index("        r = ")
    assert edits.line_span(PY, first, end) == (first, end)
    # The last line without a line break ends at the end of the text.
    assert edits.line_span("a\nb", 3, 3) == (2, 3)


def test_a_docstring_is_one_insertion_at_the_right_indent() -> None:
    start, end = edits.lines_span(PY, 3, 5)
    old = PY[start:end]
    code, indent = edits.dedent(old)
    assert indent == "    " and code.startswith("def blend(")
    answer = (
        "Here you go:\n```python\n"
        "def blend(self, weight, first, second):\n"
        '    """Mix two colours by weight."""\n'
        "    r = first[0] * weight + second[0] * (1 - weight)\n"
        "    return r\n"
        "```\nDone."
    )
    replacement = edits.new_region(old, edits.extract_code(answer))
    changes = edits.minimal_changes(PY, start, end, replacement)
    insert_at = PY.index("        r = ")
    assert changes == [
        TextChange(insert_at, insert_at, '        """Mix two colours by weight."""\n')
    ]
    result = edits.check(PY, start, end, changes, "python", inserts_only=True)
    assert '    def blend(self, weight, first, second):\n        """Mix' in result


def test_crlf_and_tabs_are_kept() -> None:
    text = "def f(x):\r\n\tif x:\r\n\t\treturn 1\r\n\treturn 2\r\n"
    start, end = 0, len(text)
    code, indent = edits.dedent(text)
    assert "\r" not in code and indent == ""
    answer = "def f(x):\n    if x:\n        return 1\n    return 0\n"
    replacement = edits.new_region(text, answer)
    assert replacement == "def f(x):\r\n\tif x:\r\n\t\treturn 1\r\n\treturn 0\r\n"
    changes = edits.minimal_changes(text, start, end, replacement)
    assert changes == [
        TextChange(text.index("\treturn 2"), len(text), "\treturn 0\r\n")
    ]


def test_a_missing_final_line_break_stays_missing() -> None:
    text = "x = 1\ny = 2"
    replacement = edits.new_region(text[6:], "y = 3\n")
    assert replacement == "y = 3"
    changes = edits.minimal_changes(text, 6, len(text), replacement)
    assert edits.apply(text, changes) == "x = 1\ny = 3"


def test_an_unterminated_fence_is_refused() -> None:
    with pytest.raises(UnsafeEdit, match="cut off"):
        edits.extract_code("```python\ndef f():\n    return 1\n")
    assert edits.extract_code("def f():\n    return 1\n\n") == "def f():\n    return 1"
    assert edits.extract_code("~~~ts\nlet a = 1;\n~~~") == "let a = 1;"


@pytest.mark.parametrize(
    ("text", "language", "old", "broken"),
    [
        (PY, "python", "        return r\n", "        return (r\n"),
        (TS, "typescript", "  return a;\n", "  return (a;\n"),
    ],
)
def test_code_that_no_longer_parses_is_refused(
    text: str, language: str, old: str, broken: str
) -> None:
    at = text.index(old)
    change = TextChange(at, at + len(old), broken)
    with pytest.raises(UnsafeEdit, match="does not parse"):
        edits.check(text, 0, len(text), [change], language)
    fine = TextChange(at, at + len(old), old.replace("return", "return  "))
    assert edits.check(text, 0, len(text), [fine], language)


def test_code_that_was_broken_before_may_stay_broken() -> None:
    text = "def f(:\n    return 1\n"
    at = text.index("1")
    result = edits.check(text, 0, len(text), [TextChange(at, at + 1, "2")], "python")
    assert result == "def f(:\n    return 2\n"


def test_changes_outside_the_region_or_edits_to_existing_lines_are_refused() -> None:
    start, end = edits.lines_span(TS, 1, 2)
    outside = TextChange(0, 6, "")
    with pytest.raises(UnsafeEdit, match="outside"):
        edits.check(TS, start, end, [outside], "typescript")
    changed = TextChange(start, start + 10, "  let")
    with pytest.raises(UnsafeEdit, match="only adding"):
        edits.check(TS, start, end, [changed], "typescript", inserts_only=True)
    with pytest.raises(UnsafeEdit, match="no change"):
        edits.check(TS, start, end, [], "typescript")


def test_typescript_jsdoc_above_an_exported_function() -> None:
    start, end = edits.lines_span(TS, 0, 3)
    answer = (
        "```typescript\n/** The area of a rectangle. */\n" + TS[start:end] + "```\n"
    )
    replacement = edits.new_region(TS[start:end], edits.extract_code(answer))
    changes = edits.minimal_changes(TS, start, end, replacement)
    assert changes == [TextChange(0, 0, "/** The area of a rectangle. */\n")]
    edits.check(TS, start, end, changes, "typescript", inserts_only=True)
