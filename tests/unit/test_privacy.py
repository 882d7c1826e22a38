"""The privacy gate: planted secrets, neverSend, what context may leave."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem import privacy
from tandem.backends.base import (
    BackendRefused,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
)
from tandem.config import DEFAULT_NEVER_SEND, PrivacySettings
from tandem.context.builder import ContextFile

SECRETS = Path(__file__).parents[1] / "fixtures" / "secrets"
PLANTED = (SECRETS / "values.txt").read_text().split()


def planted_in(text: str) -> list[str]:
    return [value for value in PLANTED if value in text]


def test_every_planted_secret_is_redacted_and_the_code_kept() -> None:
    for name in ("planted.txt", "planted.env"):
        source = (SECRETS / name).read_text()
        assert planted_in(source)  # the corpus does hold them
        redacted = privacy.redact(source)
        assert planted_in(redacted) == [], name
    code = privacy.redact((SECRETS / "planted.txt").read_text())
    assert "client = OpenAI(api_key=" in code and "import boto3" in code


@pytest.mark.parametrize(
    "line",
    [
        'token = os.environ["TOKEN"]',
        "password: str",
        "token: Optional[str] = None",
        "def check_password(password, hashed):",
        "x = compute_token(a)",
        "secret_santa = assign(people)",
    ],
)
def test_ordinary_code_is_not_redacted(line: str) -> None:
    assert privacy.redact(line) == line


def test_known_key_values_are_redacted_anywhere() -> None:
    text = "key = load()  # it was abcdefgh12345678 last time"
    assert "abcdefgh12345678" not in privacy.redact(text, ["abcdefgh12345678"])


@pytest.mark.parametrize(
    ("path", "never"),
    [
        (".env", True),
        ("config/.env.production", True),
        ("deploy/server.pem", True),
        ("home/.ssh/id_ed25519", True),
        ("app/secrets/db.py", True),
        ("src/credentials.json", True),
        ("src/main.py", False),
        ("src/secretary.py", False),
        ("docs/environment.md", False),
    ],
)
def test_never_send_patterns(path: str, never: bool) -> None:
    assert privacy.never_send(path, DEFAULT_NEVER_SEND) is never


def test_gate_refuses_never_send_files_and_drops_context_by_default() -> None:
    settings = PrivacySettings()
    with pytest.raises(BackendRefused, match="neverSend"):
        privacy.gate(GenerateRequest("x", path=".env"), settings)
    context = (
        ContextFile("src/util.py", "def scale(x): ..."),
        ContextFile("config/.env.local", "API_TOKEN=abc"),
    )
    req = ChatRequest(
        (ChatMessage("user", 'password = "hunter2hunter2"'),),
        path="src/main.py",
        context=context,
    )
    gated = privacy.gate(req, settings)
    assert gated.context == ()  # cloudContext "file": this file only
    assert "hunter2hunter2" not in gated.messages[0].content
    wider = privacy.gate(req, PrivacySettings(cloud_context="workspace"))
    assert [f.path for f in wider.context] == ["src/util.py"]  # never the .env
