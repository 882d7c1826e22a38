"""``tandem/didFocus`` params as pygls hands them over (camelCase objects)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tandem.features.documents import focus_params


def test_uri_line_and_character_of_the_cursor() -> None:
    params = SimpleNamespace(
        textDocument=SimpleNamespace(uri="file:///a.py"),
        position=SimpleNamespace(line=7, character=2),
    )
    assert focus_params(params) == ("file:///a.py", 7, 2)


def test_the_position_is_optional() -> None:
    params = SimpleNamespace(textDocument=SimpleNamespace(uri="file:///a.py"))
    assert focus_params(params) == ("file:///a.py", None, 0)


def test_a_line_without_a_character_is_its_start() -> None:
    params = SimpleNamespace(
        textDocument=SimpleNamespace(uri="file:///a.py"),
        position=SimpleNamespace(line=3, character="x"),
    )
    assert focus_params(params) == ("file:///a.py", 3, 0)


@pytest.mark.parametrize(
    "params",
    [
        None,
        SimpleNamespace(),
        SimpleNamespace(textDocument=SimpleNamespace(uri=3)),
        SimpleNamespace(text_document=SimpleNamespace(uri="file:///a.py")),
    ],
)
def test_malformed_params_are_ignored(params: object) -> None:
    assert focus_params(params) is None


def test_a_negative_line_is_no_line() -> None:
    params = SimpleNamespace(
        textDocument=SimpleNamespace(uri="file:///a.py"),
        position=SimpleNamespace(line=-1),
    )
    assert focus_params(params) == ("file:///a.py", None, 0)


def test_the_focus_offset_is_the_cursor_clamped_to_its_line() -> None:
    from lsprotocol.types import PositionEncodingKind
    from pygls.workspace import PositionCodec, TextDocument

    from tandem.server import focus_offset

    text = "def f():\n    s = 'héllo😀' + x\nend\n"
    doc = TextDocument(
        "file:///a.py", text, position_codec=PositionCodec(PositionEncodingKind.Utf16)
    )
    line1 = text.index("    s")
    assert focus_offset(doc, 1, 0) == line1
    assert focus_offset(doc, 1, 4) == line1 + 4  # mid-line
    # After the emoji (2 UTF-16 units, 1 character): before " + x".
    utf16 = len("    s = 'héllo😀".encode("utf-16-le")) // 2
    assert focus_offset(doc, 1, utf16) == text.index("' + x")
    assert focus_offset(doc, 1, 999) == text.index("\nend")  # past the end: the end
    assert focus_offset(doc, 9, 3) == len(text)  # past the last line
    utf8 = TextDocument(
        "file:///a.py", text, position_codec=PositionCodec(PositionEncodingKind.Utf8)
    )
    after = len("    s = 'héllo😀".encode())
    assert focus_offset(utf8, 1, after) == text.index("' + x")
