"""The offline guarantee and the privacy gate, end to end through LSP."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.helpers import PALINDROME, complete, open_doc, session, status
from tests.fakes.apis import serving
from tests.models import qwen_model

ROOT = Path(__file__).parents[1]
GUARD = ROOT / "fakes" / "socketguard"
SECRETS = ROOT / "fixtures" / "secrets"
PLANTED = (SECRETS / "values.txt").read_text().split()
KEY = "sk-ant-api03-TestKeyThatMustNeverBeLogged0123456789"


async def command(client: LanguageClient, name: str, argument: dict[str, Any]) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=[argument])
    )


def whole(uri: str, text: str) -> dict[str, Any]:
    end = {"line": text.count("\n"), "character": 0}
    return {"uri": uri, "range": {"start": {"line": 0, "character": 0}, "end": end}}


@pytest.mark.slow
async def test_offline_session_opens_no_socket(tmp_path: Path) -> None:
    log = tmp_path / "sockets.jsonl"
    log.touch()
    with serving() as cloud:
        env = {
            "TANDEM_MODEL": str(qwen_model()),
            "PYTHONPATH": str(GUARD),
            "TANDEM_SOCKET_LOG": str(log),
            "ANTHROPIC_API_KEY": KEY,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        options = {
            "offline": True,
            "routing": {
                "completion": ["anthropic", "ollama", "local"],
                "explain": ["anthropic", "local"],
                "refactor": ["openai", "local"],
                "escalateTo": "anthropic",
                "allowEscalation": True,
            },
            "anthropic": {"baseUrl": cloud.url},
            "ollama": {"host": cloud.url},
            "openai": {"preset": "custom", "baseUrl": cloud.url + "/v1"},
            "privacy": {"trustLoopback": False},
        }
        async with session(env, options) as client:
            uri = "file:///work/project/pal.py"
            open_doc(client, uri, PALINDROME)
            assert "s[::-1]" in await complete(client, uri, types.Position(2, 4))
            explained = await command(client, "tandem.explain", whole(uri, PALINDROME))
            assert explained["markdown"] and explained["backend"] == "local"
            asked = await command(
                client, "tandem.explain", {**whole(uri, PALINDROME), "cloud": True}
            )
            assert "offline" in asked["error"]
            refactored = await command(
                client,
                "tandem.refactor",
                {
                    **whole(uri, PALINDROME),
                    "task": "rewrite",
                    "instruction": "Add a comment.",
                },
            )
            assert "applied" in refactored
            state = await status(client)
            assert state["offline"] is True
            skipped = {
                d["backend"]
                for d in state["routing"]["decisions"]
                if "offline" in d["outcome"]
            }
            assert skipped == {"anthropic", "ollama", "openai"}
        assert cloud.seen == []
    assert log.read_text() == ""  # not one connect, not one name lookup


@pytest.mark.slow
@pytest.mark.parametrize("key_from", ["env", "keyring"])
async def test_planted_secrets_never_reach_the_cloud_or_the_log(
    tmp_path: Path, key_from: str
) -> None:
    server_log = tmp_path / "server.log"
    with serving() as cloud:
        env = {
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "TANDEM_MODEL": str(qwen_model()),
        }
        if key_from == "env":
            env["TEST_CLOUD_KEY"] = KEY
        else:  # the variable is unset: the key is in the system keyring
            keyring = tmp_path / "keyring.json"
            keyring.write_text(json.dumps({"tandem-ls": {"anthropic": KEY}}))
            env["TANDEM_TEST_KEYRING"] = str(keyring)
            env["PYTHON_KEYRING_BACKEND"] = "tests.fakes.keyring.FileKeyring"
        options = {
            "routing": {"explain": ["anthropic", "local"], "completion": ["anthropic"]},
            "anthropic": {"baseUrl": cloud.url, "apiKeyEnv": "TEST_CLOUD_KEY"},
            "privacy": {"trustLoopback": False, "cloudContext": "workspace"},
            "actions": {"maxLines": 400},
        }
        args = ("-vvv", "--log-file", str(server_log))
        async with session(env, options, args=args) as client:
            code = (SECRETS / "planted.txt").read_text()
            dotenv = (SECRETS / "planted.env").read_text()
            settings_uri = "file:///work/project/app/settings.py"
            env_uri = "file:///work/project/.env"
            open_doc(client, settings_uri, code)
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=env_uri, language_id="dotenv", version=1, text=dotenv
                    )
                )
            )
            explained = await command(
                client, "tandem.explain", whole(settings_uri, code)
            )
            assert explained["backend"] == "anthropic"
            # A completion in the settings file goes to the cloud, redacted too.
            await complete(client, settings_uri, types.Position(5, 0))
            # The .env file is never sent: its explanation is made locally.
            local = await command(client, "tandem.explain", whole(env_uri, dotenv))
            assert local["backend"] == "local"
            state = await status(client)
            reasons = [d["outcome"] for d in state["routing"]["decisions"]]
            assert any("neverSend" in r for r in reasons)
        payloads = [json.dumps(seen.body) for seen in cloud.seen]
        assert len(payloads) == 2
        assert "REDACTED" in payloads[0]
        leaked = [v for v in PLANTED if any(v in p for p in payloads)]
        assert leaked == []
        assert all(seen.headers["x-api-key"] == KEY for seen in cloud.seen)
    text = server_log.read_text()
    assert "anthropic" in text  # the log was written, at the most verbose level
    assert KEY not in text
    assert [v for v in PLANTED if v in text] == []


@pytest.mark.slow
async def test_cloud_errors_fall_back_to_the_local_model(tmp_path: Path) -> None:
    from tests.fakes.apis import Reply

    with serving() as cloud:
        cloud.reply(
            Reply(
                status=529, error={"type": "overloaded_error", "message": "Overloaded"}
            )
        )
        env = {
            "TEST_CLOUD_KEY": KEY,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "TANDEM_MODEL": str(qwen_model()),
        }
        options = {
            "routing": {"explain": ["anthropic", "local"]},
            "anthropic": {"baseUrl": cloud.url, "apiKeyEnv": "TEST_CLOUD_KEY"},
        }
        async with session(env, options) as client:
            uri = "file:///work/project/pal.py"
            open_doc(client, uri, PALINDROME)
            shown = asyncio.ensure_future(
                client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
            )
            explained = await command(client, "tandem.explain", whole(uri, PALINDROME))
            assert explained["backend"] == "local" and explained["markdown"]
            message = await asyncio.wait_for(shown, 30)
            assert "529" in message.message and "answered by local" in message.message
            state = await status(client)
            # The failure is on record (its cooldown may be over by now: the local
            # answer takes as long as this machine needs).
            failed = [
                d
                for d in state["routing"]["decisions"]
                if d["backend"] == "anthropic" and d["task"] == "explain"
            ]
            assert failed and "529" in failed[0]["outcome"], failed


@pytest.mark.slow
async def test_never_send_holds_in_every_folder_and_outside_them(
    tmp_path: Path,
) -> None:
    """A file under secrets/ in a second workspace folder, and a file outside
    every folder, never reach a recording stand-in API: not as the request's
    file, not as another file's context. A file of the first folder does."""
    from pytest_lsp import ClientServerConfig

    from tests.e2e.conftest import answer_client_requests, capabilities

    app, lib, elsewhere = tmp_path / "app", tmp_path / "lib", tmp_path / "elsewhere"
    main = app / "main.py"
    prod = lib / "secrets" / "prod.py"
    notes = elsewhere / "notes.py"
    main.parent.mkdir(parents=True)
    prod.parent.mkdir(parents=True)
    notes.parent.mkdir(parents=True)
    main.write_text(
        "from prod import load_config\n\n\ndef start():\n    return load_config()\n"
    )
    prod.write_text('def load_config():\n    return "LIBMARKER-7f3a"\n')
    notes.write_text('def load_notes():\n    return "OUTSIDEMARKER-91c"\n')
    with serving() as cloud:
        env = {
            "TEST_CLOUD_KEY": KEY,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "TANDEM_MODEL": str(qwen_model()),
        }
        options = {
            "routing": {"explain": ["anthropic", "local"]},
            "anthropic": {"baseUrl": cloud.url, "apiKeyEnv": "TEST_CLOUD_KEY"},
            "privacy": {"trustLoopback": False, "cloudContext": "workspace"},
            "actions": {"explainMaxTokens": 8},  # the local answers: short
        }
        config = ClientServerConfig(
            server_command=[sys.executable, "-m", "tandem", "-v"],
            server_env={**os.environ, **env},
        )
        client = await config.start()
        assert isinstance(client, LanguageClient)
        answer_client_requests(client)
        folders = [
            types.WorkspaceFolder(uri=root.as_uri(), name=root.name)
            for root in (app, lib)
        ]
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities("vscode"),
                initialization_options=options,
                process_id=os.getpid(),
                root_uri=app.as_uri(),
                workspace_folders=folders,
            )
        )
        try:
            for path in (main, prod, notes):
                open_doc(client, path.as_uri(), path.read_text())
            answers = {}
            for path in (main, prod, notes):
                text = path.read_text()
                answers[path.name] = await command(
                    client, "tandem.explain", whole(path.as_uri(), text)
                )
        finally:
            await client.shutdown_session()
            await client.stop()
        assert answers["main.py"]["backend"] == "anthropic"  # the control
        assert answers["prod.py"]["backend"] == "local"
        assert answers["notes.py"]["backend"] == "local"
        payloads = [json.dumps(seen.body) for seen in cloud.seen]
        assert len(payloads) == 1 and "load_config" in payloads[0]
        assert not any("LIBMARKER" in p or "OUTSIDEMARKER" in p for p in payloads)
