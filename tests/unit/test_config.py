"""Settings from client JSON: precedence, both key spellings, strict validation."""

from __future__ import annotations

from typing import Any

import pytest

from tandem.config import Settings, build


def test_defaults() -> None:
    settings, errors = build()
    assert settings == Settings()
    assert errors == []
    assert settings.backend == "llama_cpp"
    assert settings.local.n_gpu_layers is None  # all layers when the build can


def test_camel_and_snake_case_and_precedence() -> None:
    init = {"completion": {"debounce_ms": 10, "maxTokens": 20}, "offline": True}
    workspace = {"completion": {"debounceMs": 30}}
    settings, errors = build(init, workspace)
    assert errors == []
    assert settings.completion.debounce_ms == 30  # workspace/configuration wins
    assert settings.completion.max_tokens == 20  # kept from initializationOptions
    assert settings.offline is True


def test_none_layers_are_skipped() -> None:
    assert build(None, {"offline": True}, None)[0].offline is True


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(
            {"offline": "false"}, "offline: expected bool, got str", id="string-bool"
        ),
        pytest.param(
            {"completion": {"maxTokens": True}},
            "completion.maxTokens: expected int, got bool",
            id="bool-int",
        ),
        pytest.param(
            {"completion": {"maxTokens": 0}},
            "completion.maxTokens: must be positive, got 0",
            id="zero",
        ),
        pytest.param(
            {"completion": {"debounceMs": -5}},
            "completion.debounceMs: must be zero or more, got -5",
            id="negative",
        ),
        pytest.param(
            {"local": {"fimFormat": "gpt"}}, "local.fimFormat: ", id="bad-choice"
        ),
        pytest.param({"local": "big"}, "local: expected an object", id="not-object"),
        pytest.param({"backend": "cloud9"}, "backend: ", id="unknown-backend"),
        pytest.param(
            {"completion": {"debounceMS": 5}},
            "completion.debounceMS: unknown setting",
            id="typo",
        ),
        pytest.param([1, 2], "settings: expected an object", id="list"),
    ],
)
def test_invalid_values_are_reported_and_defaulted(data: Any, error: str) -> None:
    settings, errors = build(data)
    assert len(errors) == 1
    assert errors[0].startswith(error)
    assert settings == Settings()


def test_one_bad_field_keeps_the_rest() -> None:
    settings, errors = build(
        {"completion": {"maxTokens": "lots", "maxLines": 3}, "offline": True}
    )
    assert [e.split(":")[0] for e in errors] == ["completion.maxTokens"]
    assert settings.completion.max_lines == 3
    assert settings.completion.max_tokens == Settings().completion.max_tokens
    assert settings.offline is True


def test_float_accepts_int_and_null_unions() -> None:
    settings, errors = build(
        {"completion": {"temperature": 1}, "local": {"nGpuLayers": None}}
    )
    assert errors == []
    assert settings.completion.temperature == 1.0
    settings, errors = build({"local": {"nGpuLayers": 12}})
    assert settings.local.n_gpu_layers == 12


def test_client_owned_keys_are_not_errors() -> None:
    _, errors = build({"trace": {"server": "verbose"}, "server": {"path": "x"}})
    assert errors == []


def test_an_invalid_value_falls_back_to_the_lower_layer_not_the_default() -> None:
    # initializationOptions chose a backend; a bad value pulled later must not
    # silently switch to the default one.
    init = {"backend": "fake", "completion": {"maxTokens": 40, "debounceMs": 5}}
    pulled = {"backend": None, "completion": {"maxTokens": "many", "debounceMs": 7}}
    settings, errors = build(init, pulled)
    assert settings.backend == "fake"
    assert settings.completion.max_tokens == 40
    assert settings.completion.debounce_ms == 7  # the valid part still applies
    assert any(e.startswith("backend:") for e in errors)
    assert any(e.startswith("completion.maxTokens:") for e in errors)
    # A whole section of the wrong type keeps the lower layer's section.
    settings, errors = build(init, {"completion": 3})
    assert settings.completion.max_tokens == 40
    assert errors == ["completion: expected an object"]


def test_each_error_is_reported_once_across_layers() -> None:
    _, errors = build({"nope": 1}, {"completion": {"enabled": True}}, {})
    assert errors == ["nope: unknown setting"]
