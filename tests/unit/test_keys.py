"""API keys: the environment first, then the system keyring; never printed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends.fail import Keyring as NoKeyring

from tandem import cli, keys
from tandem.backends.base import BackendAuthError
from tests.fakes.keyring import ENV, FileKeyring

KEY = "sk-ant-api03-FromTheKeyring0123456789abcdef"


@pytest.fixture(autouse=True)
def test_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(ENV, str(tmp_path / "keys.json"))
    monkeypatch.delenv("TEST_KEY", raising=False)
    before = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    keys._found.clear()
    yield
    keys._found.clear()
    keyring.set_keyring(before)


async def test_the_environment_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    keys.store("anthropic", KEY)
    monkeypatch.setenv("TEST_KEY", "from-env")
    assert await keys.api_key("TEST_KEY", "anthropic") == "from-env"
    assert keys.found() == ()  # the keyring was not asked


async def test_the_keyring_when_the_variable_is_unset() -> None:
    keys.store("anthropic", f"  {KEY}\n")
    assert await keys.api_key("TEST_KEY", "anthropic") == KEY
    assert keys.found() == (KEY,)  # offered to the privacy gate for redaction
    assert await keys.api_key("", "openai") is None  # a local server: no key


class Broken(keyring.backend.KeyringBackend):
    """A keyring that fails its own way (a D-Bus error, a locked wallet)."""

    priority = -1  # type: ignore[assignment]  # never chosen by detection

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")

    def delete_password(self, service: str, username: str) -> None:
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown")


@pytest.mark.parametrize("system", [FileKeyring, NoKeyring, Broken])
async def test_no_key_anywhere_says_where_to_put_one(
    system: type[keyring.backend.KeyringBackend],
) -> None:
    keyring.set_keyring(system())
    with pytest.raises(BackendAuthError) as raised:
        await keys.api_key("TEST_KEY", "anthropic")
    assert "TEST_KEY" in str(raised.value)
    assert "tandem-ls key set anthropic" in str(raised.value)


def test_cli_stores_checks_and_deletes_without_printing_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert cli.main(["key", "set", "anthropic"]) == 0
    assert keys.from_keyring("anthropic") == KEY
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert cli.main(["key", "where", "anthropic"]) == 0
    assert cli.main(["key", "delete", "anthropic"]) == 0
    assert cli.main(["key", "delete", "anthropic"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out
    assert out.splitlines() == [
        "anthropic: key stored in the system keyring",
        "anthropic: from the system keyring (tandem-ls/anthropic)",
        "anthropic: key removed",
        "anthropic: no key was stored",
    ]
    assert keys.from_keyring("anthropic") is None


def test_cli_without_a_usable_keyring_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring.set_keyring(NoKeyring())
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert cli.main(["key", "set", "openai"]) == 1
    err = capsys.readouterr().err
    assert "keyring is not usable" in err and "environment variable" in err
    assert KEY not in err
