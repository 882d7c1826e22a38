"""Next-edit LSP mapping: request params, edit ranges in client units, inline items."""

from __future__ import annotations

from collections import namedtuple

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from tandem.assist.edits import TextChange
from tandem.features.nextedit import edit_json, inline_item, read_params

TEXT = "s = '😀'; x = items\nreturn items\n"
URI = "file:///a.py"


def doc() -> TextDocument:
    return TextDocument(URI, TEXT, version=7)


def test_params_from_named_tuples_or_dicts() -> None:
    Pos = namedtuple("Pos", "line character")
    Doc = namedtuple("Doc", "uri version")
    Params = namedtuple("Params", "textDocument position")
    params = Params(Doc(URI, 3), Pos(1, 2))
    assert read_params(params) == (URI, 3, types.Position(line=1, character=2))
    as_dict = {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}
    assert read_params(as_dict) == (URI, None, types.Position(line=0, character=0))


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="empty"),
        pytest.param({"textDocument": {"uri": URI}}, id="no-position"),
        pytest.param(
            {"textDocument": {"uri": URI}, "position": {"line": -1, "character": 0}},
            id="negative",
        ),
        pytest.param(
            {"textDocument": {"uri": 3}, "position": {"line": 0, "character": 0}},
            id="uri-not-str",
        ),
    ],
)
def test_bad_params_are_invalid(params: object) -> None:
    with pytest.raises(JsonRpcInvalidParams):
        read_params(params)


def test_edit_ranges_count_utf16_units() -> None:
    at = TEXT.index("items")
    change = TextChange(at, at + 4, "product")
    found = edit_json(doc(), URI, 7, change)
    # the emoji is two UTF-16 units: one more than its one character
    assert found["range"] == {
        "start": {"line": 0, "character": at + 1},
        "end": {"line": 0, "character": at + 5},
    }
    assert found["text"] == "product"
    assert found["textDocument"] == {"uri": URI, "version": 7}


def test_an_insertion_at_the_cursor_is_an_inline_item() -> None:
    at = TEXT.index("return items") + len("return items")
    position = types.Position(line=1, character=12)
    item = inline_item(doc(), position, (TextChange(at, at, "[0]"),))
    assert item is not None
    assert item.insert_text == "[0]"
    assert item.range == types.Range(start=position, end=position)


def test_a_change_before_the_cursor_on_its_line_replaces_through_the_range() -> None:
    at = TEXT.index("return items") + len("return ")
    position = types.Position(line=1, character=12)
    item = inline_item(doc(), position, (TextChange(at, at + 4, "product"),))
    assert item is not None
    assert item.insert_text == "products"
    assert item.range == types.Range(
        start=types.Position(line=1, character=7), end=position
    )


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(TEXT.index("items"), id="other-line"),
        pytest.param(TEXT.index("return") + 1, id="ahead-of-cursor"),
    ],
)
def test_other_changes_are_not_inline_items(offset: int) -> None:
    position = types.Position(line=1, character=0)
    assert inline_item(doc(), position, (TextChange(offset, offset + 1, "z"),)) is None
