"""API keys: from the environment variable the settings name, else the system keyring.

Keys are never read from settings, never logged and never written anywhere but the
keyring (``tandem-ls key set BACKEND``). The keyring (Secret Service, KWallet, macOS
Keychain, Windows Credential Locker, through the ``keyring`` library) is asked only
when a backend that needs a key is about to be used, on a worker thread: unlocking
it may wait for the user. What it returned is kept for the process, and offered to
the privacy gate so a key pasted into code is redacted like one from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import urlsplit

from tandem.backends.base import BackendAuthError
from tandem.config import Settings

logger = logging.getLogger(__name__)

SERVICE = "tandem-ls"
"""The keyring service name; the backend's name (``anthropic``, ``openai``) is the
user name."""

_found: dict[str, str] = {}
"""Keys read from the keyring in this process, by backend."""


class KeyringUnavailable(Exception):
    """No usable keyring on this system; the message says why."""


def from_keyring(backend: str) -> str | None:
    """The key stored for ``backend`` (None: none stored, or no keyring). Blocking."""
    import keyring

    try:
        key = keyring.get_password(SERVICE, backend)
    except Exception as e:  # any keyring backend may fail in its own way
        logger.debug("no key for %s from the keyring: %s", backend, type(e).__name__)
        return None
    return key.strip() if key and key.strip() else None


async def api_key(env_name: str, backend: str) -> str | None:
    """The key for ``backend``: ``$env_name``, else the keyring.

    None when ``env_name`` is empty (no key needed: a local server). Raises
    ``BackendAuthError`` saying where to put the key when there is none.
    """
    if not env_name:
        return None
    if key := os.environ.get(env_name, "").strip():
        return key
    if backend not in _found:
        stored = await asyncio.to_thread(from_keyring, backend)
        if stored is None:
            raise BackendAuthError(
                f"{backend}: set the environment variable {env_name} to your API "
                f"key, or store it in the system keyring: tandem-ls key set {backend}"
            )
        _found[backend] = stored
    return _found[backend]


OWN_HOSTS = {"anthropic": "https://api.anthropic.com"}
"""Where each backend's key belongs (the OpenAI-compatible presets say theirs)."""


def host_of(url: str) -> str:
    """``host`` or ``host:port`` (when the port is given) of ``url``, lower case."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def key_route(settings: Settings, backend: str) -> tuple[str, str, str] | None:
    """(key variable, URL the key would go to, the key's own URL) for ``backend``.

    None when it sends no key. A ``custom`` preset has no own URL.
    """
    if backend == "anthropic":
        cfg = settings.anthropic
        if not cfg.api_key_env:
            return None
        return cfg.api_key_env, cfg.base_url, OWN_HOSTS["anthropic"]
    if backend == "openai":
        from tandem.backends.openai_compat import PRESETS, key_env

        openai = settings.openai
        preset = PRESETS[openai.preset]
        env = key_env(openai)
        if not env:
            return None
        own = preset.base_url if preset.key_env else ""
        return env, openai.base_url or preset.base_url, own
    return None


def unconfirmed_host(settings: Settings, backend: str) -> str | None:
    """Why ``backend``'s key may not go where the settings point (None: it may).

    A key is sent only to its own service's host (the preset's), to this machine,
    or to a host the user confirmed once in ``privacy.confirmedHosts`` (a user
    setting a repository cannot set). The message names the host and the setting.
    """
    from tandem.backends.remote import is_loopback

    route = key_route(settings, backend)
    if route is None:
        return None
    env, url, own = route
    host = host_of(url)
    if is_loopback(url):
        return None
    if not url.lower().startswith("https://"):
        return (
            f"{backend}: not sending the key in ${env} to {url} in clear text: "
            "use an https:// address."
        )
    if own and host == host_of(own):
        return None
    confirmed = {host_of(h) for h in settings.privacy.confirmed_hosts}
    if host in confirmed:
        return None
    where = f"its service ({host_of(own)})" if own else "the service it is for"
    return (
        f"{backend}: not sending the key in ${env} to {host}, which is not "
        f'{where}. If you trust {host} with it, add "{host}" to '
        "tandem.privacy.confirmedHosts in your user settings."
    )


def found() -> tuple[str, ...]:
    """The keys read from the keyring so far (for redaction)."""
    return tuple(_found.values())


def where(env_name: str, backend: str) -> str:
    """Where ``backend``'s key comes from, in words, without the key. Blocking."""
    if not env_name:
        return "no key needed"
    if os.environ.get(env_name, "").strip():
        return f"from ${env_name}"
    if from_keyring(backend) is not None:
        return f"from the system keyring ({SERVICE}/{backend})"
    return f"missing: set ${env_name} or run `tandem-ls key set {backend}`"


def store(backend: str, key: str) -> None:
    """Save ``key`` for ``backend`` in the keyring."""
    import keyring

    try:
        keyring.set_password(SERVICE, backend, key.strip())
    except Exception as e:  # NoKeyringError, D-Bus errors, ...
        raise KeyringUnavailable(_why(e)) from None
    _found.pop(backend, None)


def delete(backend: str) -> bool:
    """Remove ``backend``'s key from the keyring; False if none was stored."""
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(SERVICE, backend)
    except keyring.errors.PasswordDeleteError:
        return False
    except Exception as e:  # NoKeyringError, D-Bus errors, ...
        raise KeyringUnavailable(_why(e)) from None
    finally:
        _found.pop(backend, None)
    return True


def _why(error: Exception) -> str:
    return (
        f"the system keyring is not usable ({type(error).__name__}: {error}); "
        "set the key in an environment variable instead"
    )
