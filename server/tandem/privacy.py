"""The privacy gate for backends that are not on this machine. Pure functions.

Three rules, applied to every request before it reaches such a backend:

- files matching ``privacy.neverSend`` are never sent: a request on one is refused
  (it stays local) and they are dropped from another file's context;
- workspace context is sent only when ``privacy.cloudContext`` is ``workspace``;
- secrets are replaced with ``[REDACTED]``: private key blocks, well-known key and
  token formats, credentials in URLs, values assigned to names like ``password``,
  ``api_key``, ``secret`` or ``token``, and the values of the API-key environment
  variables the settings name.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from typing import overload

import attrs
import pathspec

from tandem.backends.base import (
    BackendRefused,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
)
from tandem.config import PrivacySettings
from tandem.context.builder import ContextFile

REDACTED = "[REDACTED]"

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        # PEM private keys, whole block.
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?"
        r"(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
        r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
        r"\bsk-ant-[A-Za-z0-9_\-]{20,}",  # Anthropic
        r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}",  # OpenAI
        r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
        r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API key
        r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}\b",  # Stripe
        r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
        r"\bglpat-[A-Za-z0-9_\-]{20,}\b",  # GitLab
        r"\bnpm_[A-Za-z0-9]{36}\b",
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
    )
)
_URL_CREDENTIALS = re.compile(
    r"(?P<keep>\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)(?P<value>[^\s@/]+)(?P<tail>@)"
)
_SECRET_NAME = (
    r"[A-Za-z0-9_.\-]*(?:passw(?:or)?d|pwd|secret|token|api[_\-]?key|apikey|"
    r"access[_\-]?key|private[_\-]?key|client[_\-]?secret|auth[_\-]?key|"
    r"credentials?)[A-Za-z0-9_.\-]*"
)
# name = "value" / name: 'value' / "name": "value" (code, JSON, YAML)
_QUOTED_ASSIGNMENT = re.compile(
    rf"(?P<keep>[\"']?{_SECRET_NAME}[\"']?\s*(?::=|=>|[:=])\s*[rbuf]?)"
    r"(?P<q>[\"'`])(?P<value>[^\"'`\n]{3,})(?P=q)",
    re.IGNORECASE,
)
# NAME=value (.env files, shell): no spaces around "=", anything up to the end.
_ENV_ASSIGNMENT = re.compile(
    rf"^(?P<keep>\s*(?:export\s+)?{_SECRET_NAME}=)(?P<value>[^\s\"'#][^\s#]{{2,}})",
    re.IGNORECASE | re.MULTILINE,
)
# NAME=value inside a line (shell commands, prose, JSON-escaped logs): no
# spaces around "=", a value that is not a call.
_INLINE_ASSIGNMENT = re.compile(
    rf"(?P<keep>\b{_SECRET_NAME}=)"
    r"(?P<value>(?![\w.]*\()[^\s\"'`\\,;()\[\]{}<>]{3,})",
    re.IGNORECASE,
)
# name: value (YAML, .ini) with a plain value that looks like a secret, not a type.
_PLAIN_ASSIGNMENT = re.compile(
    rf"^(?P<keep>\s*{_SECRET_NAME}\s*[:=]\s*)"
    r"(?P<value>(?=[^\s\"'#]*(?:\d|[^\w\s]))[^\s\"'#()\[\]{}<>,]{6,}|[^\s\"'#()\[\]{}<>,.]{12,})\s*$",
    re.IGNORECASE | re.MULTILINE,
)


_SEEN: dict[str, None] = {}
"""Secret values found so far (in memory only): redacted wherever they turn up
again, e.g. quoted in a model's answer or assigned to an innocent name."""
_SEEN_MAX = 2000


def _remember(value: str) -> None:
    if len(value) >= 6 and value != REDACTED and REDACTED not in value:
        _SEEN[value] = None
        if len(_SEEN) > _SEEN_MAX:
            del _SEEN[next(iter(_SEEN))]


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every secret found replaced by ``[REDACTED]``.

    ``known`` are secret values to remove wherever they appear (the API keys in
    the environment variables the settings name); so are the values found by
    earlier calls.
    """
    for secret in sorted({*known, *_SEEN}, key=len, reverse=True):
        if len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)

    def whole(m: re.Match[str]) -> str:
        _remember(m[0])
        return REDACTED

    def value(m: re.Match[str]) -> str:
        if m["value"] == REDACTED:
            return m[0]
        _remember(m["value"])
        groups = m.groupdict()
        quote = groups.get("q") or ""
        return f"{m['keep']}{quote}{REDACTED}{quote}{groups.get('tail') or ''}"

    for pattern in _PATTERNS:
        text = pattern.sub(whole, text)
    text = _URL_CREDENTIALS.sub(value, text)
    for pattern in (
        _QUOTED_ASSIGNMENT,
        _ENV_ASSIGNMENT,
        _INLINE_ASSIGNMENT,
        _PLAIN_ASSIGNMENT,
    ):
        text = pattern.sub(value, text)
    return text


@functools.lru_cache(maxsize=16)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def never_send(path: str | None, patterns: tuple[str, ...]) -> bool:
    """Whether ``path`` (workspace-relative) matches a neverSend pattern."""
    if not path or not patterns:
        return False
    path = path.replace("\\", "/").lstrip("/")
    return _spec(patterns).match_file(path)


def known_secrets(env_names: Iterable[str]) -> tuple[str, ...]:
    """The values of the named environment variables that are set."""
    return tuple(v for name in env_names if name and (v := os.environ.get(name)))


_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def env_secrets() -> tuple[str, ...]:
    """Values of environment variables whose names say they hold a secret."""
    return tuple(
        value
        for name, value in os.environ.items()
        if _SECRET_ENV.search(name) and len(value) >= 12
    )


@overload
def gate(
    req: GenerateRequest, settings: PrivacySettings, known: tuple[str, ...] = ()
) -> GenerateRequest: ...


@overload
def gate(
    req: ChatRequest, settings: PrivacySettings, known: tuple[str, ...] = ()
) -> ChatRequest: ...


def gate(
    req: GenerateRequest | ChatRequest,
    settings: PrivacySettings,
    known: tuple[str, ...] = (),
) -> GenerateRequest | ChatRequest:
    """A request as it may leave this machine; BackendRefused if it may not."""
    if never_send(req.path, settings.never_send):
        raise BackendRefused(f"{req.path} matches privacy.neverSend")
    context = _allowed_context(req.context, settings)
    if not settings.redact_secrets:
        return attrs.evolve(req, context=context)
    context = tuple(attrs.evolve(f, text=redact(f.text, known)) for f in context)
    if isinstance(req, ChatRequest):
        messages = tuple(
            ChatMessage(m.role, redact(m.content, known)) for m in req.messages
        )
        return attrs.evolve(req, messages=messages, context=context)
    suffix = redact(req.suffix, known) if req.suffix is not None else None
    prompt = redact(req.prompt, known)
    return attrs.evolve(req, prompt=prompt, suffix=suffix, context=context)


def _allowed_context(
    context: tuple[ContextFile, ...], settings: PrivacySettings
) -> tuple[ContextFile, ...]:
    if settings.cloud_context != "workspace":
        return ()
    return tuple(f for f in context if not never_send(f.path, settings.never_send))
