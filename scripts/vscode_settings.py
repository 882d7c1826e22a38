"""Write the VS Code extension's settings (package.json) from the server's settings.

The server's attrs tree (``tandem.config``) is the one source of every setting's
name, type, default, allowed values and documentation; the extension's
package.json is generated from it so the two cannot drift (a unit test checks)::

    python scripts/vscode_settings.py          # rewrite clients/vscode/package.json
    python scripts/vscode_settings.py --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from tandem import config

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_JSON = ROOT / "clients" / "vscode" / "package.json"

SECTIONS: dict[str, tuple[str, type[Any] | None]] = {
    "": ("General", None),
    "local": ("Local model", config.LocalSettings),
    "completion": ("Completion", config.CompletionSettings),
    "context": ("Workspace context", config.ContextSettings),
    "actions": ("Explain and refactor", config.ActionSettings),
    "nextEdit": ("Next edit", config.NextEditSettings),
    "routing": ("Routing and cloud escalation", config.RoutingSettings),
    "privacy": ("Privacy", config.PrivacySettings),
    "ollama": ("Ollama", config.OllamaSettings),
    "openai": ("OpenAI-compatible servers", config.OpenAISettings),
    "anthropic": ("Anthropic", config.AnthropicSettings),
}

# Where a setting may be set (VS Code's configuration scopes). Settings that decide
# where code and keys go are ``machine`` (user or remote settings only): a
# repository's .vscode/settings.json cannot change them, so opening a repository
# cannot redirect a key or turn escalation on. The key variables and the hosts
# confirmed to receive keys are ``application`` (user settings only). The rest keep
# VS Code's default (``window``).
SECTION_SCOPES: dict[str, str] = {
    "routing": "machine",
    "privacy": "machine",
    "ollama": "machine",
    "openai": "machine",
    "anthropic": "machine",
}
SETTING_SCOPES: dict[str, str] = {
    "tandem.offline": "machine",
    "tandem.local.modelRepo": "machine",
    "tandem.local.modelFile": "machine",
    "tandem.local.allowDownload": "machine",
    "tandem.openai.apiKeyEnv": "application",
    "tandem.anthropic.apiKeyEnv": "application",
    "tandem.privacy.confirmedHosts": "application",
}


def scope(key: str) -> str | None:
    """The VS Code scope of setting ``key`` (None: VS Code's default)."""
    if key in SETTING_SCOPES:
        return SETTING_SCOPES[key]
    return SECTION_SCOPES.get(key.split(".")[1])


# Settings of the extension itself: how it starts the server. They never reach
# the server's settings tree (``server`` and ``trace`` are client keys there).
# ``machine``: what runs, with which environment (proxies, certificates, the
# model), is the user's choice, never a repository's.
CLIENT_SETTINGS: dict[str, dict[str, Any]] = {
    "tandem.server.path": {
        "type": "string",
        "default": "tandem-ls",
        "scope": "machine",
        "markdownDescription": "The `tandem-ls` executable (`pip install tandem-ls`"
        " puts it on `PATH`). Ignored when `#tandem.server.pythonPath#` is set.",
    },
    "tandem.server.pythonPath": {
        "type": "string",
        "default": "",
        "scope": "machine",
        "markdownDescription": "A Python interpreter that has tandem-ls installed;"
        " the server is started as `python -m tandem`. Empty: use"
        " `#tandem.server.path#`.",
    },
    "tandem.server.args": {
        "type": "array",
        "items": {"type": "string"},
        "default": [],
        "scope": "machine",
        "markdownDescription": "Extra command-line arguments for the server, e.g."
        ' `["-v"]` for a more detailed log in the output channel.',
    },
    "tandem.server.env": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": {},
        "scope": "machine",
        "markdownDescription": "Extra environment variables for the server, e.g."
        " `TANDEM_MODEL` or the variable named by `#tandem.openai.apiKeyEnv#`"
        " (keys are never read from settings).",
    },
    "tandem.trace.server": {
        "type": "string",
        "enum": ["off", "messages", "verbose"],
        "default": "off",
        "scope": "window",
        "description": "Log the LSP messages between VS Code and the server.",
    },
}


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Attribute docstrings: the string literal under each field of ``cls``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body.body, body.body[1:], strict=False):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
            and stmt.target.id not in docs
        ):
            text = " ".join(nxt.value.value.split())
            docs[stmt.target.id] = text.replace("``", "`")
    return docs


def _json_type(tp: Any) -> dict[str, Any]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        kinds = [_json_type(a)["type"] for a in typing.get_args(tp)]
        return {"type": kinds}
    if typing.get_origin(tp) is tuple:
        return {"type": "array", "items": {"type": "string"}}
    if tp is type(None):
        return {"type": "null"}
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": names[tp]}


def _enum(field: attrs.Attribute[Any]) -> list[Any] | None:
    validator = field.validator
    options = getattr(validator, "options", None)
    return list(options) if options is not None else None


def _bounds(field: attrs.Attribute[Any]) -> dict[str, Any]:
    validator = field.validator
    if validator is config._positive:
        return {"exclusiveMinimum": 0} if field.type is float else {"minimum": 1}
    if validator is config._non_negative:
        return {"minimum": 0}
    return {}


def _property(key: str, field: attrs.Attribute[Any], doc: str) -> dict[str, Any]:
    prop: dict[str, Any] = _json_type(field.type)
    enum = _enum(field)
    if enum is not None:
        prop["enum"] = enum
    if field.type == tuple[str, ...] and key.startswith("tandem.routing."):
        prop["items"] = {"type": "string", "enum": list(config.ROUTE_NAMES)}
    prop.update(_bounds(field))
    default = field.default
    prop["default"] = list(default) if isinstance(default, tuple) else default
    if not doc:
        raise ValueError(f"{key} has no docstring in tandem/config.py")
    prop["markdownDescription"] = doc
    if (where := scope(key)) is not None:
        prop["scope"] = where
    return prop


def sections() -> dict[str, tuple[str, type[Any] | None]]:
    """SECTIONS, then the settings tree's sections it does not name yet.

    Those are titled by their class docstring, so a new section is never left out.
    """
    out = dict(SECTIONS)
    for field in attrs.fields(config.Settings):
        key = config.camel_case(field.name)
        if attrs.has(field.type) and key not in out:
            doc = (field.type.__doc__ or key).strip().splitlines()[0].split(":")[0]
            out[key] = (doc.rstrip("."), field.type)
    return out


def configuration() -> list[dict[str, Any]]:
    """contributes.configuration: one titled group per settings section."""
    top = config.Settings
    attrs.resolve_types(top)
    groups: list[dict[str, Any]] = []
    top_docs = field_docs(top)
    for section, (title, cls) in sections().items():
        props: dict[str, Any] = {}
        if cls is None:
            for field in attrs.fields(top):
                if attrs.has(field.type):
                    continue
                key = f"tandem.{config.camel_case(field.name)}"
                props[key] = _property(key, field, top_docs.get(field.name, ""))
        else:
            attrs.resolve_types(cls)
            docs = field_docs(cls)
            for field in attrs.fields(cls):
                key = f"tandem.{section}.{config.camel_case(field.name)}"
                props[key] = _property(key, field, docs.get(field.name, ""))
        groups.append(
            {
                "id": f"tandem{('.' + section) if section else ''}",
                "title": f"tandem-ls: {title}",
                "properties": props,
            }
        )
    groups.append(
        {
            "id": "tandem.server",
            "title": "tandem-ls: Server",
            "properties": CLIENT_SETTINGS,
        }
    )
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check")
    args = parser.parse_args(argv)
    package = json.loads(PACKAGE_JSON.read_text())
    wanted = configuration()
    if args.check:
        if package["contributes"]["configuration"] != wanted:
            print(f"{PACKAGE_JSON} is out of date: run scripts/vscode_settings.py")
            return 1
        return 0
    package["contributes"]["configuration"] = wanted
    PACKAGE_JSON.write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
