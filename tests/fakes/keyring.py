"""A keyring backend kept in a JSON file, for tests (never a real user's keyring).

Select it in a server process with ``TANDEM_TEST_KEYRING=/path/keys.json`` and
``PYTHON_KEYRING_BACKEND=tests.fakes.keyring.FileKeyring``; in-process with
``keyring.set_keyring``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

ENV = "TANDEM_TEST_KEYRING"


class FileKeyring(KeyringBackend):
    """``{service: {user: password}}`` in the file named by ``$TANDEM_TEST_KEYRING``."""

    @property
    def priority(self) -> float:  # type: ignore[override]
        if not os.environ.get(ENV):
            raise RuntimeError(f"{ENV} is not set")
        return 0.1

    def _load(self) -> dict[str, dict[str, str]]:
        path = Path(os.environ[ENV])
        data = json.loads(path.read_text()) if path.is_file() else {}
        assert isinstance(data, dict)
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        Path(os.environ[ENV]).write_text(json.dumps(data))

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError("no such key")
        del data[service][username]
        self._save(data)
