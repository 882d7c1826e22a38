"""The privacy gate for backends that are not on this machine. Pure functions.

Three rules, applied to every request before it reaches such a backend:

- files matching ``privacy.neverSend`` are never sent: a request on one is refused
  (it stays local) and they are dropped from another file's context. Patterns are
  matched against the absolute path and the path relative to every workspace
  folder; files outside all workspace folders are never sent either, unless
  ``privacy.sendOutsideWorkspace`` allows it;
- workspace context is sent only when ``privacy.cloudContext`` is ``workspace``;
- secrets are replaced with ``[REDACTED]``, as found by gitleaks' maintained rule
  set (``data/gitleaks.toml``: provider key formats, private keys, generic
  assignments with an entropy threshold), tandem's few additions
  (``data/tandem-secrets.toml``), values assigned to names like ``password``,
  ``api_key``, ``secret`` or ``token``, credentials in URLs, and the values of the
  API-key environment variables the settings name.

High-confidence secrets (a provider's format, a high-entropy value, a private key's
lines) are remembered for the process and redacted wherever they turn up again:
``learn`` a whole document so that a window cut from it loses them too.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import threading
import tomllib
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, overload

import attrs
import pathspec
import re2  # type: ignore[import-untyped]

from tandem.backends.base import (
    BackendRefused,
    ChatMessage,
    ChatRequest,
    GenerateRequest,
)
from tandem.config import PrivacySettings
from tandem.context.builder import ContextFile

REDACTED = "[REDACTED]"
RULE_FILES = ("gitleaks.toml", "tandem-secrets.toml")
"""Rule sets in gitleaks' format, in ``tandem/data``."""
WEAK_RULES = frozenset({"generic-api-key", "secret-in-call", "kubernetes-secret-yaml"})
"""Rules whose findings are remembered only when the value itself looks random."""


@attrs.frozen
class _Allowlist:
    """One of a rule's (or the global) allowlists, as gitleaks applies them."""

    target: str
    """secret, match or line: what ``regexes`` are matched against."""
    regexes: Any
    """One compiled alternation of the list's regexes, or None."""
    stopwords: tuple[str, ...]
    all_of: bool
    """condition AND: every check present must hold (paths are not known here,
    so an AND list that needs a path never applies)."""
    needs_path: bool

    def allows(self, secret: str, match: str, line: str) -> bool:
        """Whether this list says the finding is not a secret."""
        if self.all_of and self.needs_path:
            return False
        target = {"match": match, "line": line}.get(self.target, secret)
        checks: list[bool] = []
        if self.regexes is not None:
            checks.append(self.regexes.search(target) is not None)
        if self.stopwords:
            lower = secret.lower()
            checks.append(any(word in lower for word in self.stopwords))
        return all(checks) if self.all_of else any(checks)


@attrs.frozen
class Rule:
    """A secret-finding rule in gitleaks' format."""

    id: str
    regex: Any
    secret_group: int
    entropy: float
    keywords: tuple[str, ...]
    allowlists: tuple[_Allowlist, ...]


@attrs.frozen
class Finding:
    """A secret in a text: where it is, what it is, and which rule found it."""

    start: int
    end: int
    value: str
    rule: str
    confident: bool
    """Worth remembering: redacted wherever the value turns up again."""


def _alternation(patterns: Sequence[str]) -> Any:
    if not patterns:
        return None
    return re2.compile("|".join(f"(?:{p})" for p in patterns))


def _allowlist(data: dict[str, Any]) -> _Allowlist:
    return _Allowlist(
        target=str(data.get("regexTarget", "secret")),
        regexes=_alternation(data.get("regexes", [])),
        stopwords=tuple(str(w).lower() for w in data.get("stopwords", [])),
        all_of=str(data.get("condition", "OR")).upper() == "AND",
        needs_path=bool(data.get("paths")) or bool(data.get("commits")),
    )


@functools.cache
def rules() -> tuple[tuple[Rule, ...], tuple[_Allowlist, ...]]:
    """The content rules of every rule set, and the global allowlists."""
    loaded: list[Rule] = []
    global_lists: list[_Allowlist] = []
    for name in RULE_FILES:
        data = tomllib.loads(
            resources.files("tandem.data").joinpath(name).read_text("utf-8")
        )
        for key in ("allowlist", "allowlists"):
            lists = data.get(key, [])
            for item in [lists] if isinstance(lists, dict) else lists:
                if item.get("regexes") or item.get("stopwords"):
                    global_lists.append(_allowlist(item))
        for rule in data.get("rules", []):
            if "regex" not in rule:
                continue  # a rule on file names only
            loaded.append(
                Rule(
                    id=rule["id"],
                    regex=re2.compile(rule["regex"]),
                    secret_group=int(rule.get("secretGroup", 0)),
                    entropy=float(rule.get("entropy", 0.0)),
                    keywords=tuple(k.lower() for k in rule.get("keywords", [])),
                    allowlists=tuple(_allowlist(a) for a in rule.get("allowlists", [])),
                )
            )
    return tuple(loaded), tuple(global_lists)


def entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    if not value:
        return 0.0
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_CODE = re.compile(r"[\s()\[\]{}<>,;]|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")


def strong(value: str) -> bool:
    """Whether ``value`` looks random enough to be a secret wherever it appears.

    At least 12 characters, letters and digits, 3.5 bits of entropy per character,
    and nothing that makes it code (spaces, brackets, a dotted name).
    """
    return (
        len(value) >= 12
        and entropy(value) >= 3.5
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and REDACTED not in value
        and _CODE.search(value) is None
    )


def _line(text: str, start: int, end: int) -> str:
    return text[text.rfind("\n", 0, start) + 1 : (text.find("\n", end) + 1 or None)]


@functools.cache
def _keywords() -> tuple[Any, tuple[str, ...]]:
    """Every rule keyword in one RE2 set: one pass says which occur in a text."""
    words = tuple(sorted({k for rule in rules()[0] for k in rule.keywords}))
    keyword_set = re2.Set.SearchSet(re2.Options())
    for word in words:
        keyword_set.Add(re2.escape(word))
    keyword_set.Compile()
    return keyword_set, words


def _rule_findings(text: str) -> list[Finding]:
    keyword_set, words = _keywords()
    present = {words[i] for i in keyword_set.Match(text.lower()) or ()}
    found: list[Finding] = []
    all_rules, global_lists = rules()
    for rule in all_rules:
        if rule.keywords and present.isdisjoint(rule.keywords):
            continue
        for m in rule.regex.finditer(text):
            group = rule.secret_group
            if not group and m.re.groups:
                group = next((g for g in range(1, m.re.groups + 1) if m.group(g)), 0)
            start, end = m.span(group)
            secret = text[start:end]
            if not secret.strip() or REDACTED in secret:
                continue
            if rule.entropy and entropy(secret) <= rule.entropy:
                continue
            line = _line(text, m.start(), m.end())
            if any(a.allows(secret, m.group(0), line) for a in global_lists):
                continue
            if any(a.allows(secret, m.group(0), line) for a in rule.allowlists):
                continue
            confident = strong(secret) if rule.id in WEAK_RULES else len(secret) >= 8
            found.append(Finding(start, end, secret, rule.id, confident))
    return found


_URL_CREDENTIALS = re.compile(
    r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<value>[^\s@/]+)@", re.IGNORECASE
)
_SECRET_NAME = (  # starts a name (a run of name characters is scanned once)
    r"(?<![A-Za-z0-9_.\-])[A-Za-z0-9_.\-]*?(?:passw(?:or)?d|pwd|secret|token|api[_\-]?key|apikey|"
    r"(?:access|private|auth|account|storage|master|signing|encryption|shared)"
    r"[_\-]?key|client[_\-]?secret|"
    r"credentials?)[A-Za-z0-9_.\-]*"
)
# The value of an assignment to a secret-like name. Each pattern has a group
# "value"; a value that is code (a call, an index, a dotted name) is not matched.
_ASSIGNMENTS: tuple[re.Pattern[str], ...] = (
    # name = "value" / name: 'value' / "name": "value" (code, JSON, YAML)
    re.compile(
        rf"[\"']?{_SECRET_NAME}[\"']?\s*(?::=|=>|[:=])\s*[rbuf]?"
        r"(?P<q>[\"'`])(?P<value>[^\"'`\n]{3,})(?P=q)",
        re.IGNORECASE,
    ),
    # NAME=value (.env files, shell): no spaces around "=", anything to the end.
    re.compile(
        rf"^\s*(?:export\s+)?{_SECRET_NAME}=(?P<value>[^\s\"'#][^\s#]{{2,}})",
        re.IGNORECASE | re.MULTILINE,
    ),
    # NAME=value inside a line (shell, prose, logs): not a call or an index.
    re.compile(
        rf"\b{_SECRET_NAME}="
        r"(?P<value>(?![\w.]*\()(?![A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?![\w.]))"
        r"[^\s\"'`\\,;()\[\]{}<>]{3,}+)(?![\[(])",
        re.IGNORECASE,
    ),
    # name: value (YAML, .ini): a plain value that looks like a secret, not a type.
    re.compile(
        rf"^\s*{_SECRET_NAME}\s*[:=]\s*"
        r"(?P<value>(?=[^\s\"'#]*(?:\d|[^\w\s]))[^\s\"'#()\[\]{}<>,]{6,}"
        r"|[^\s\"'#()\[\]{}<>,.]{12,})\s*$",
        re.IGNORECASE | re.MULTILINE,
    ),
)


_WORDS = re.compile(r"[A-Za-z_.\-]+|\$\{?\w+\}?")
"""Unquoted values that are names, not secrets (gitleaks allows these too)."""
_CALL = re.compile(r"[A-Za-z_][\w.]*[\[(]")
"""An unquoted value that is code: a call or an index (``os.environ["X"]``)."""
_CONSTANTS = frozenset({"yes", "no", "true", "false", "none", "null", "nil"})


_ASSIGNMENT_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "cred")


def _assignment_findings(text: str) -> list[Finding]:
    """Values assigned to secret-like names, line by line.

    Lines that name none are skipped.
    """
    found = []
    offset = 0
    for line in text.splitlines(keepends=True):
        lower = line.lower()
        patterns = [_URL_CREDENTIALS] if "://" in line else []
        if any(k in lower for k in _ASSIGNMENT_KEYWORDS):
            patterns += _ASSIGNMENTS
        for pattern in patterns:
            quoted = "q" in pattern.groupindex
            for m in pattern.finditer(line):
                value = m["value"]
                if REDACTED in value or value.lower() in _CONSTANTS:
                    continue
                if not quoted and (_WORDS.fullmatch(value) or _CALL.match(value)):
                    continue
                start, end = m.span("value")
                found.append(
                    Finding(
                        offset + start, offset + end, value, "assignment", strong(value)
                    )
                )
        offset += len(line)
    return found


_PRIVATE_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]{16,}")


def find(text: str) -> list[Finding]:
    """Every secret the rules find in ``text``, in order (overlaps possible)."""
    found = _rule_findings(text) + _assignment_findings(text)
    return sorted(found, key=lambda f: (f.start, -f.end))


_SEEN: dict[str, None] = {}
"""Secret values found so far (in memory only): redacted wherever they turn up
again, e.g. quoted in a model's answer or in a window cut from a document."""
_SEEN_MAX = 4000


_SEEN_LOCK = threading.Lock()
"""``learn`` may run on a worker thread."""


def _remember(value: str) -> None:
    if len(value) >= 8 and REDACTED not in value:
        with _SEEN_LOCK:
            _SEEN[value] = None
            if len(_SEEN) > _SEEN_MAX:
                del _SEEN[next(iter(_SEEN))]


def _remember_finding(finding: Finding) -> None:
    if not finding.confident:
        return
    if finding.rule in ("private-key", "private-key-body"):
        # A window may hold a few of its lines without the BEGIN line.
        for line in _PRIVATE_KEY_LINE.findall(finding.value):
            _remember(line)
        if "\n" in finding.value:
            return
    _remember(finding.value)


def redact(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every secret found replaced by ``[REDACTED]``.

    ``known`` are secret values to remove wherever they appear (the API keys in
    the environment variables the settings name); so are the high-confidence
    values found by earlier calls.
    """
    with _SEEN_LOCK:
        seen = list(_SEEN)
    for secret in sorted({*known, *seen}, key=len, reverse=True):
        if len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    spans: list[tuple[int, int]] = []
    for finding in find(text):
        _remember_finding(finding)
        if spans and finding.start < spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], finding.end))
        else:
            spans.append((finding.start, finding.end))
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


_LEARNED: dict[bytes, None] = {}


def learn(text: str) -> None:
    """Remember the high-confidence secrets of a whole document.

    Call it with a document's whole text before a window is cut from it (and
    with every context file): a private key whose BEGIN line lies outside the
    window, or a key assigned far above the cursor, is then redacted from the
    window too. The same text is scanned once. Thread-safe (about 1 s per MB:
    call it on a worker thread).
    """
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()
    with _SEEN_LOCK:
        if digest in _LEARNED:
            return
        _LEARNED[digest] = None
        if len(_LEARNED) > 256:
            del _LEARNED[next(iter(_LEARNED))]
    for finding in find(text):
        _remember_finding(finding)


def redact_document(text: str, known: Iterable[str] = ()) -> str:
    """A whole document, redacted, after learning its secrets (see ``learn``)."""
    learn(text)
    return redact(text, known)


# -- never-send -------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


_DRIVE = re.compile(r"^[A-Za-z]:/")


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or _DRIVE.match(path) is not None


def _inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (both with "/"), or None when outside it."""
    root = root.replace("\\", "/").rstrip("/")
    if not root:
        return None
    fold = _DRIVE.match(root) is not None  # Windows: case-insensitive
    head, tail = (path[: len(root)], path[len(root) :])
    same = head.lower() == root.lower() if fold else head == root
    if same and tail.startswith("/"):
        return tail.lstrip("/")
    return None


def refusal(
    path: str | None,
    settings: PrivacySettings,
    roots: Sequence[str] = (),
) -> str | None:
    """Why the file at ``path`` may not be sent (None: it may).

    ``path`` is best absolute: the patterns are then matched against it and against
    its path relative to every workspace folder in ``roots`` that holds it, and a
    file in none of them is refused unless ``sendOutsideWorkspace`` is on. A
    relative path is matched as it is.
    """
    if not path:
        return None
    path = path.replace("\\", "/")
    candidates = [path.lstrip("/")]
    if _is_absolute(path):
        inside = [rel for root in roots if (rel := _inside(path, root)) is not None]
        candidates += inside
        if not inside and not settings.send_outside_workspace:
            return (
                f"{path} is outside the workspace folders "
                "(privacy.sendOutsideWorkspace is off)"
            )
    patterns = settings.never_send
    if patterns and any(_spec(patterns).match_file(c) for c in candidates if c):
        return f"{path} matches privacy.neverSend"
    return None


def never_send(
    path: str | None,
    patterns: tuple[str, ...],
    roots: Sequence[str] = (),
    *,
    outside: bool = True,
) -> bool:
    """Whether ``path`` may never be sent (see ``refusal``).

    ``outside``: whether files outside every folder in ``roots`` may be sent.
    """
    settings = PrivacySettings(never_send=patterns, send_outside_workspace=outside)
    return refusal(path, settings, roots) is not None


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


# -- the gate -----------------------------------------------------------------------


@overload
def gate(
    req: GenerateRequest,
    settings: PrivacySettings,
    known: tuple[str, ...] = (),
    roots: Sequence[str] = (),
) -> GenerateRequest: ...


@overload
def gate(
    req: ChatRequest,
    settings: PrivacySettings,
    known: tuple[str, ...] = (),
    roots: Sequence[str] = (),
) -> ChatRequest: ...


def gate(
    req: GenerateRequest | ChatRequest,
    settings: PrivacySettings,
    known: tuple[str, ...] = (),
    roots: Sequence[str] = (),
) -> GenerateRequest | ChatRequest:
    """A request as it may leave this machine; BackendRefused if it may not.

    Paths are checked as ``refusal`` does, with the request's and each context
    file's ``fs_path`` (absolute) when it has one, else its ``path``.
    """
    why = refusal(_where(req), settings, roots)
    if why is not None:
        raise BackendRefused(why)
    context = _allowed_context(req.context, settings, roots)
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


def _where(item: GenerateRequest | ChatRequest | ContextFile) -> str | None:
    """The absolute path when the item carries one, else its path."""
    fs_path: str | None = getattr(item, "fs_path", None)
    return fs_path or item.path


def _allowed_context(
    context: tuple[ContextFile, ...],
    settings: PrivacySettings,
    roots: Sequence[str],
) -> tuple[ContextFile, ...]:
    if settings.cloud_context != "workspace":
        return ()
    return tuple(f for f in context if refusal(_where(f), settings, roots) is None)
