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
