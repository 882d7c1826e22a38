"""The VS Code extension's settings are generated from the server's settings tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from tandem import config

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vscode_settings", ROOT / "scripts" / "vscode_settings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contributed() -> dict[str, Any]:
    package = json.loads((ROOT / "clients" / "vscode" / "package.json").read_text())
    return {
        key: prop
        for group in package["contributes"]["configuration"]
        for key, prop in group["properties"].items()
    }


def _server_keys(cls: type[Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        key = prefix + config.camel_case(field.name)
        if attrs.has(field.type):
            out |= _server_keys(field.type, key + ".")
        else:
            out[key] = field.default
    return out


def test_package_json_is_generated_from_the_current_settings() -> None:
    assert _generator().main(["--check"]) == 0, "run scripts/vscode_settings.py"


def test_every_server_setting_is_a_vscode_setting_with_the_same_default() -> None:
    contributed = _contributed()
    server = _server_keys(config.Settings, "tandem.")
    for key, default in server.items():
        assert key in contributed, key
        expected = list(default) if isinstance(default, tuple) else default
        assert contributed[key]["default"] == expected, key
    # The rest are the client's own launch settings, which the server ignores.
    extra = set(contributed) - set(server)
    assert extra and all(k.split(".")[1] in config.CLIENT_KEYS for k in extra), extra


def test_the_contributed_defaults_build_the_default_settings() -> None:
    # What VS Code sends when the user changed nothing is exactly the defaults.
    section: dict[str, Any] = {}
    for key, prop in _contributed().items():
        parts = key.split(".")[1:]
        if parts[0] in config.CLIENT_KEYS:
            continue
        node = section
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = prop["default"]
    settings, errors = config.build(section)
    assert errors == []
    assert settings == config.Settings()


def test_enums_and_bounds_follow_the_validators() -> None:
    contributed = _contributed()
    assert contributed["tandem.local.fimFormat"]["enum"][0] == "auto"
    assert contributed["tandem.completion.maxTokens"]["minimum"] == 1
    assert contributed["tandem.completion.debounceMs"]["minimum"] == 0
    assert contributed["tandem.routing.completion"]["items"]["enum"] == list(
        config.ROUTE_NAMES
    )
    assert contributed["tandem.local.nGpuLayers"]["type"] == ["integer", "null"]


def test_settings_that_send_code_or_keys_cannot_come_from_a_repository() -> None:
    """A repository's .vscode/settings.json (resource/window scope) must not
    redirect keys, change routing or privacy, or turn escalation on."""
    contributed = _contributed()
    for key, prop in contributed.items():
        section = key.split(".")[1]
        if section in ("routing", "privacy", "openai", "anthropic", "ollama"):
            assert prop.get("scope") in ("machine", "application"), key
    for key in (
        "tandem.openai.apiKeyEnv",
        "tandem.anthropic.apiKeyEnv",
        "tandem.privacy.confirmedHosts",
    ):
        assert contributed[key]["scope"] == "application", key
    for key in (
        "tandem.openai.baseUrl",
        "tandem.anthropic.baseUrl",
        "tandem.ollama.host",
        "tandem.routing.allowEscalation",
        "tandem.routing.escalateTo",
        "tandem.privacy.neverSend",
        "tandem.offline",
    ):
        assert contributed[key]["scope"] in ("machine", "application"), key
    # Editing comfort stays per folder.
    assert "scope" not in contributed["tandem.completion.debounceMs"]
