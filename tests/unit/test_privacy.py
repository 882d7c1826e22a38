"""The privacy gate: planted secrets, neverSend, what context may leave."""

from __future__ import annotations

import secrets
import sysconfig
from pathlib import Path

import attrs
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
from tests.fixtures.secrets.corpus import samples

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


@pytest.mark.parametrize(
    "sample", samples(), ids=lambda s: f"{s.provider}: {s.text[:40]}"
)
def test_the_corpus_leaks_nothing(sample: object) -> None:
    """Real-format secrets of every provider, where code keeps them (the review's
    misses among them: ASIA key named key, Slack webhook, Azure AccountKey,
    SendGrid, Groq, set_password, a key body without its BEGIN line)."""
    assert sample.secret not in privacy.redact(sample.text)  # type: ignore[attr-defined]


def _fresh(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y") + "7q"


def test_code_taken_for_a_secret_is_not_remembered() -> None:
    line = 'password=os.environ["DB_PASSWORD"]'
    assert privacy.redact(line) == line
    privacy.redact('conn(password=os.environ["X"]); cfg_token=settings.TOKEN')
    later = 'home = os.environ["HOME"]; t = settings.TOKEN'
    assert privacy.redact(later) == later


def test_low_confidence_values_are_redacted_but_not_remembered() -> None:
    assert "[REDACTED]" in privacy.redact('password = "letmein"')
    assert privacy.redact('print("letmein")') == 'print("letmein")'
    value = _fresh()
    assert value not in privacy.redact(f'password = "{value}"')
    assert value not in privacy.redact(f"print({value!r})")  # random: remembered


def test_a_learned_document_redacts_a_window_cut_from_it() -> None:
    value = _fresh()
    document = f'aws_secret_access_key = "{value}"\n' + "x = 1\n" * 50
    document += f"assert sign(body, {value!r})\n"
    window = document[-60:]
    assert value in privacy.redact(window)  # the window alone does not say
    privacy.learn(document)
    assert value not in privacy.redact(window)


STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize(
    "name", ["zipfile.py", "functools.py", "inspect.py", "shlex.py", "nntplib.py"]
)
def test_the_standard_library_is_left_alone(name: str) -> None:
    """Code that mentions passwords and tokens is code (pwd=pwd, password=None,
    token_type = token.type, TokenError("EOF in ...")), not secrets."""
    text = (STDLIB / name).read_text(encoding="utf-8")
    assert privacy.redact(text) == text


ROOTS = ("/home/u/app", "/home/u/lib")


@pytest.mark.parametrize(
    ("path", "never"),
    [
        ("/home/u/app/src/main.py", False),
        ("/home/u/lib/src/util.py", False),  # a second workspace folder
        ("/home/u/lib/secrets/prod.py", True),  # secrets/ in the second folder
        ("/home/u/app/deploy/secrets/prod.py", True),
        ("/home/u/.ssh/config", True),  # outside every folder
        ("/tmp/scratch.py", True),
        ("/home/u/application/x.py", True),  # a sibling that shares the prefix
    ],
)
def test_never_send_matches_absolute_paths_in_every_folder(
    path: str, never: bool
) -> None:
    assert privacy.never_send(path, DEFAULT_NEVER_SEND, ROOTS, outside=False) is never


def test_outside_files_may_be_sent_when_allowed_but_not_their_secrets() -> None:
    allowed = PrivacySettings(send_outside_workspace=True)
    assert privacy.refusal("/tmp/scratch.py", allowed, ROOTS) is None
    assert "neverSend" in (privacy.refusal("/home/u/.ssh/config", allowed, ROOTS) or "")
    why = privacy.refusal("/tmp/scratch.py", PrivacySettings(), ROOTS)
    assert why is not None and "sendOutsideWorkspace" in why


def test_anchored_patterns_match_relative_to_each_folder() -> None:
    settings = PrivacySettings(never_send=("/config/prod.py",))
    assert privacy.refusal("/home/u/lib/config/prod.py", settings, ROOTS)
    assert privacy.refusal("/home/u/lib/src/config/prod.py", settings, ROOTS) is None


def test_windows_paths() -> None:
    roots = ("C:\\Users\\u\\app",)
    settings = PrivacySettings()
    assert privacy.refusal("C:\\Users\\u\\app\\main.py", settings, roots) is None
    assert privacy.refusal("c:/users/u/app/.env", settings, roots)
    assert privacy.refusal("C:\\Users\\u\\.ssh\\config", settings, roots)


def test_gate_checks_the_absolute_path_of_requests_and_context() -> None:
    settings = PrivacySettings(cloud_context="workspace")
    req = GenerateRequest("x", path="prod.py")
    req = attrs.evolve(req, path="/home/u/lib/secrets/prod.py")
    with pytest.raises(BackendRefused, match="neverSend"):
        privacy.gate(req, settings, roots=ROOTS)
    with pytest.raises(BackendRefused, match="outside"):
        privacy.gate(GenerateRequest("x", path="/tmp/a.py"), settings, roots=ROOTS)
    context = (
        ContextFile("/home/u/lib/secrets/db.py", "DB = 1"),
        ContextFile("/home/u/app/util.py", "def f(): ..."),
        ContextFile("/elsewhere/notes.py", "n = 2"),
    )
    gated = privacy.gate(
        GenerateRequest("x", path="/home/u/app/main.py", context=context),
        settings,
        roots=ROOTS,
    )
    assert [f.path for f in gated.context] == ["/home/u/app/util.py"]
