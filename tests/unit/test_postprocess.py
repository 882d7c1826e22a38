"""Post-processing of raw model output: block trimming, no repeats, balance."""

from __future__ import annotations

import pytest

from tandem.postprocess import (
    finished,
    fix_indent,
    postprocess,
    scan,
    whole_lines,
)

FUNC = "def is_palindrome(s: str) -> bool:\n    "
AFTER_FUNC = "\n\nprint(is_palindrome('abba'))\n"


@pytest.mark.parametrize(
    ("raw", "prefix", "suffix", "expected"),
    [
        pytest.param(
            "return s == s[::-1]\n\nprint(is_palindrome('x'))\n",
            FUNC,
            AFTER_FUNC,
            "return s == s[::-1]",
            id="stops-at-dedent",
        ),
        pytest.param(
            "for f in files:\n        if f.endswith('.py'):\n"
            "            out.append(f)\n    return out\n",
            "def py(files):\n    out = []\n    ",
            "\n    return out\n",
            "for f in files:\n        if f.endswith('.py'):\n            out.append(f)",
            id="drops-lines-that-follow-the-cursor",
        ),
        pytest.param(
            "n - 1) + fib(n - 2)\nprint(fib(3))",
            "def fib(n):\n    return fib(",
            ")\n",
            "n - 1) + fib(n - 2",
            id="mid-line-one-line-without-the-closer-already-there",
        ),
        pytest.param(
            "x, y)",
            "total = add(",
            ")",
            "x, y",
            id="suffix-overlap-on-the-line",
        ),
        pytest.param(
            "compute(a, b",
            "result = ",
            "\n",
            "compute",
            id="cut-back-to-balanced",
        ),
        pytest.param(
            "    a = 1\n    b = 2\n",
            "def f():\n",
            "",
            "    a = 1\n    b = 2",
            id="block-at-line-start",
        ),
        pytest.param(
            "\n    return 1\n",
            "def f():\n    ",
            "",
            "return 1",
            id="leading-newline-on-empty-line",
        ),
        pytest.param(
            "    return x\n}\nfunction g() {}\n",
            "function f(x) {\n",
            "\n}\n",
            "    return x",
            id="closer-already-in-suffix",
        ),
        pytest.param(
            "    return x\n}\n\nfunction g() {}\n",
            "function f(x) {\n",
            "",
            "    return x\n}",
            id="closer-kept-when-missing",
        ),
        pytest.param(
            "import os\n\ndef main():\n    pass\n",
            "",
            "",
            "import os",
            id="top-level-stops-at-next-definition",
        ),
        pytest.param(
            "   \n\n",
            FUNC,
            AFTER_FUNC,
            "",
            id="whitespace-only",
        ),
        pytest.param(
            "print(is_palindrome('abba'))",
            "\n",
            "print(is_palindrome('abba'))\n",
            "",
            id="repeats-the-suffix",
        ),
        pytest.param(
            "s = '(' + x",
            "def f(x):\n    ",
            "",
            "s = '(' + x",
            id="brackets-in-strings-are-not-brackets",
        ),
    ],
)
def test_postprocess(raw: str, prefix: str, suffix: str, expected: str) -> None:
    language = "javascript" if "function" in prefix else "python"
    assert postprocess(raw, prefix, suffix, language) == expected


def test_max_lines_and_multiline_off() -> None:
    raw = "".join(f"    x{i} = {i}\n" for i in range(30))
    out = postprocess(raw, "def f():\n", "", "python", max_lines=5)
    assert out.count("\n") == 4
    out = postprocess(raw, "def f():\n", "", "python", multiline=False)
    assert out == "    x0 = 0"


@pytest.mark.parametrize(
    ("partial", "done"),
    [
        pytest.param("return s", False, id="first-line-open"),
        pytest.param("return s == s[::-1]\n", False, id="one-line-may-go-on"),
        pytest.param("return s == s[::-1]\n\nprint(", True, id="dedent-seen"),
    ],
)
def test_finished_stops_generation_once_output_cannot_change(
    partial: str, done: bool
) -> None:
    assert finished(partial, FUNC, AFTER_FUNC, "python") is done


def test_finished_mid_line_at_first_newline() -> None:
    assert not finished("a, b", "f(", ")\n")
    assert finished("a, b)\n", "f(", ")\n")


@pytest.mark.parametrize(
    ("raw", "line_prefix", "expected"),
    [
        pytest.param("return 1", "    ", "return 1", id="no-extra"),
        pytest.param("    return 1", "    ", "return 1", id="doubled"),
        pytest.param(
            "    if x:\n            y()\n        z()",
            "    ",
            "if x:\n        y()\n    z()",
            id="doubled-block",
        ),
        pytest.param("    return 1", "x =", "    return 1", id="mid-line-untouched"),
        pytest.param(" f(x)", "return ", "f(x)", id="space-typed-already"),
    ],
)
def test_fix_indent(raw: str, line_prefix: str, expected: str) -> None:
    assert fix_indent(raw, line_prefix) == expected


def test_scan_ignores_comments_and_strings() -> None:
    assert scan("f(a, '(', \"[\")  # (", "python").stack == ()
    assert scan("g(x // (", "javascript").stack == ("(",)
    assert scan("a)", "").extra_closers == 1


def test_coincidental_overlap_with_the_line_is_kept() -> None:
    assert postprocess("a + b", "x = ", " + c", "python") == "a + b"
    assert postprocess("a + c", "x = ", " + c", "python") == "a"


def test_finished_never_cuts_the_last_allowed_line_short() -> None:
    prefix = "def f():\n"
    two = "    a = 1\n    b = fo"
    assert not finished(two, prefix, "", "python", max_lines=2)
    assert finished(two + "o()\n", prefix, "", "python", max_lines=2)
    assert finished(two + "o()\n    c", prefix, "", "python", max_lines=2)


def test_finished_when_the_model_starts_repeating_the_code_after_the_cursor() -> None:
    prefix = "def area(w, h):\n    "
    suffix = "\n    return result\n"
    partial = "result = w * h\n    return result\n"
    assert finished(partial, prefix, suffix, "python")
    assert postprocess(partial, prefix, suffix, "python") == "result = w * h"
    assert not finished("result = w * h\n    x = 1\n", prefix, suffix, "python")


def test_a_markdown_fence_ends_the_completion() -> None:
    prefix = "def area(w, h):\n    "
    partial = "return w * h\n```\n\nThis function"
    assert finished(partial, prefix, "\n", "python")
    assert postprocess(partial, prefix, "\n", "python") == "return w * h"


def test_whole_lines_never_ends_inside_an_open_bracket() -> None:
    assert whole_lines("x = 1\n    y = f(") == "x = 1"
    assert whole_lines("f(\n        a,\n", "python") is None
    assert (
        whole_lines("f(\n        a,\n    )\n    z", "python") == "f(\n        a,\n    )"
    )
    assert whole_lines("\n    ") is None  # no line with code yet
    assert whole_lines("x = '('\n", "python") == "x = '('"  # in a string


def test_whole_lines_never_ends_inside_a_string_a_comment_or_before_a_body() -> None:
    assert whole_lines('"""Return the sum\n    of a and b.\n', "python") is None
    assert (
        whole_lines("const s = `a\nb`;\nconst t", "javascript") == "const s = `a\nb`;"
    )
    assert whole_lines("const s = `a\n", "javascript") is None
    assert whole_lines("/**\n * Sum.\n", "typescript") is None
    assert whole_lines("/** Sum. */\nfunction f", "typescript") == "/** Sum. */"
    assert whole_lines("if x:\n        y", "python") is None
    assert (
        whole_lines("if x:\n        y = 1\n    z", "python") == "if x:\n        y = 1"
    )
