"""The backend selector: per-task chains, escalation, fallback, privacy, spend.

Each task (completion, explain, refactor) has a chain of backends tried in order
(``routing.<task>``); when one fails before its first chunk (down, timeout, 401,
429, 5xx, no network) the next one serves and the user gets one message. Hard
requests may be *escalated* to ``routing.escalateTo`` when the user allows it:
a prompt larger than the local context window, a large selection, a local rewrite
that fails its checks, or an explicit "ask the cloud". Every attempt is recorded
as a ``Decision`` (backend, reason, tokens, estimated cost) for the status.

In front of every backend that is not in this process stands the privacy gate:
with ``offline`` (or while the network is found to be down) no socket is opened;
``neverSend`` files stay local; secrets are redacted (see ``privacy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from tandem import keys, privacy
from tandem.assist.prompts import with_context
from tandem.backends.base import (
    Backend,
    BackendAuthError,
    BackendConfigError,
    BackendError,
    BackendRateLimited,
    BackendRefused,
    BackendTimeout,
    BackendUnavailable,
    ChatRequest,
    ContextTooLarge,
    GenerateRequest,
    GenerationStats,
    NetworkDown,
)
from tandem.backends.remote import is_loopback
from tandem.config import NETWORK_BACKENDS, Settings

logger = logging.getLogger(__name__)

Task = Literal["completion", "explain", "refactor"]
LOCAL = "local"
NETWORK_DOWN_S = 30.0
"""After a remote host proved unreachable, stay offline this long."""
COOLDOWN_S = {"auth": 300.0, "config": 3600.0, "rate": 30.0, "down": 15.0}


@attrs.frozen
class Decision:
    """One attempt to serve a request, for the status and the log."""

    task: str
    backend: str
    reason: str
    outcome: str
    """ok, cancelled, skipped: why, failed: why."""
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cost_usd: float = 0.0
    at: str = attrs.field(
        factory=lambda: datetime.datetime.now().isoformat(timespec="seconds")
    )


class SpendLedger:
    """Estimated spend per day, kept in a small JSON file (no keys, no code)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.days: dict[str, float] = {}
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.days = {str(k): float(v) for k, v in loaded.items()}

    @staticmethod
    def today() -> str:
        """The local date, ISO."""
        return datetime.date.today().isoformat()

    def spent_today(self) -> float:
        """USD estimated for today."""
        return self.days.get(self.today(), 0.0)

    def add(self, usd: float) -> None:
        """Count ``usd`` for today and save (last 31 days kept)."""
        if usd <= 0:
            return
        day = self.today()
        self.days[day] = self.days.get(day, 0.0) + usd
        self.days = dict(sorted(self.days.items())[-31:])
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.days), encoding="utf-8")


def default_spend_path() -> Path:
    """``$XDG_CACHE_HOME/tandem/spend.json``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tandem" / "spend.json"


class Router:
    """Chooses a backend per request and records why."""

    def __init__(self, spend_path: Path | None = None) -> None:
        self.settings = Settings()
        self.local: Backend | None = None
        self.local_problem = "the model is not loaded yet"
        self.remote: dict[str, Backend] = {}
        self.decisions: deque[Decision] = deque(maxlen=50)
        self.cooldown: dict[str, tuple[float, str]] = {}
        self.network_down_until = 0.0
        self.spend = SpendLedger(spend_path)
        self.notify: Callable[[str], None] = lambda message: None
        """One user-visible message (a fallback happened)."""
        self.changed: Callable[[], None] = lambda: None
        """The status changed (offline state, spend)."""

    # -- configuration -------------------------------------------------------------

    async def configure(self, settings: Settings) -> None:
        """Apply new settings; remote backends whose part changed are rebuilt."""
        old, self.settings = self.settings, settings
        for name in list(self.remote):
            if getattr(old, name) != getattr(settings, name):
                await self.remote.pop(name).aclose()
        if old != settings:
            self.cooldown.clear()

    def backend(self, name: str) -> Backend:
        """The backend called ``name`` (remote ones are made on first use)."""
        if name == LOCAL:
            if self.local is None:
                raise BackendUnavailable(self.local_problem)
            return self.local
        if name not in self.remote:
            from tandem.backends import backend_class

            cls: Any = backend_class(name)
            self.remote[name] = cls(getattr(self.settings, name))
        return self.remote[name]

    def url(self, name: str) -> str:
        """Where a remote backend is, from settings (without making it)."""
        if name == "ollama":
            return self.settings.ollama.host
        if name == "openai":
            from tandem.backends.openai_compat import PRESETS

            cfg = self.settings.openai
            return cfg.base_url or PRESETS[cfg.preset].base_url
        if name == "anthropic":
            return self.settings.anthropic.base_url
        return ""

    def is_cloud(self, name: str) -> bool:
        """Whether a backend's requests leave this machine."""
        if name not in NETWORK_BACKENDS:
            return False
        return not (
            self.settings.privacy.trust_loopback and is_loopback(self.url(name))
        )

    def price(self, name: str) -> tuple[float, float]:
        """USD per million tokens in and out, for the estimate."""
        if name == LOCAL or name not in NETWORK_BACKENDS:
            return 0.0, 0.0
        try:
            backend = self.backend(name)
        except BackendError:
            return 0.0, 0.0
        return float(getattr(backend, "price_in", 0.0)), float(
            getattr(backend, "price_out", 0.0)
        )

    # -- decisions ----------------------------------------------------------------

    @property
    def offline(self) -> bool | Literal["auto"]:
        """True (setting), "auto" (network found down), or False."""
        if self.settings.offline:
            return True
        if time.monotonic() < self.network_down_until:
            return "auto"
        return False

    def escalation_target(self) -> str | None:
        """Where hard requests may go now, or None (with the reason logged)."""
        routing = self.settings.routing
        if not (routing.allow_escalation and routing.escalate_to):
            return None
        if self.unusable(routing.escalate_to) is not None:
            return None
        return routing.escalate_to

    def escalation_refusal(self) -> str:
        """Why escalation is not possible now, in words for the user."""
        routing = self.settings.routing
        if not routing.escalate_to:
            return "no cloud backend is set (tandem.routing.escalateTo)"
        if not routing.allow_escalation:
            return "escalation is off (tandem.routing.allowEscalation)"
        return self.unusable(routing.escalate_to) or "escalation is possible"

    def unusable(self, name: str, path: str | None = None) -> str | None:
        """Why ``name`` may not serve a request now (None: it may)."""
        if name == LOCAL:
            return None if self.local is not None else self.local_problem
        if self.settings.offline:
            return "offline"
        cloud = self.is_cloud(name)
        if cloud and time.monotonic() < self.network_down_until:
            return "the network is unreachable (offline for now)"
        if (until := self.cooldown.get(name)) and time.monotonic() < until[0]:
            return until[1]
        cap = self.settings.routing.daily_spend_cap_usd
        if sum(self.price(name)) > 0 and self.spend.spent_today() >= cap:
            return f"today's spend cap of ${cap:.2f} is reached"
        if cloud and privacy.never_send(path, self.settings.privacy.never_send):
            return f"{path} matches privacy.neverSend"
        return None

    def penalise(self, name: str, error: BackendError) -> None:
        """Keep a failing remote backend out of the way for a while."""
        if name == LOCAL:
            return
        now = time.monotonic()
        if isinstance(error, NetworkDown):
            self.network_down_until = now + NETWORK_DOWN_S
            self.changed()
            return
        if isinstance(error, BackendRateLimited):
            wait = error.retry_after or COOLDOWN_S["rate"]
            self.cooldown[name] = (now + wait, f"rate limited for {wait:.0f} s")
        elif isinstance(error, BackendAuthError):
            self.cooldown[name] = (now + COOLDOWN_S["auth"], str(error))
        elif isinstance(error, BackendConfigError):
            self.cooldown[name] = (now + COOLDOWN_S["config"], str(error))
        elif isinstance(error, BackendUnavailable):
            self.cooldown[name] = (now + COOLDOWN_S["down"], str(error))

    def prepare(self, name: str, req: Any) -> Any:
        """The request as backend ``name`` may see it (privacy gate, context)."""
        if self.is_cloud(name):
            known = privacy.known_secrets(
                (
                    self.settings.anthropic.api_key_env,
                    self.settings.openai.api_key_env,
                    *(getattr(b, "key_env", "") for b in self.remote.values()),
                )
            )
            req = privacy.gate(req, self.settings.privacy, known + keys.found())
        return with_context(req) if isinstance(req, ChatRequest) else req

    def record(self, decision: Decision) -> None:
        """Remember a decision; spend counts toward today's cap."""
        self.decisions.appendleft(decision)
        log = (
            logger.info
            if decision.outcome != "ok" or decision.cost_usd
            else logger.debug
        )
        log(
            "%s -> %s (%s): %s",
            decision.task,
            decision.backend,
            decision.reason,
            decision.outcome,
        )
        if decision.cost_usd:
            self.spend.add(decision.cost_usd)
            self.changed()

    def view(self, task: Task) -> RoutedBackend:
        """A Backend that routes ``task`` requests."""
        return RoutedBackend(self, task)

    def status(self) -> dict[str, Any]:
        """Routing state for ``tandem.status``."""
        routing = self.settings.routing
        return {
            "chains": {
                "completion": list(routing.completion),
                "explain": list(routing.explain),
                "refactor": list(routing.refactor),
            },
            "escalateTo": routing.escalate_to or None,
            "escalation": self.escalation_target() is not None,
            "escalationRefusal": None
            if self.escalation_target()
            else self.escalation_refusal(),
            "offline": self.offline,
            "spendTodayUsd": round(self.spend.spent_today(), 4),
            "dailySpendCapUsd": routing.daily_spend_cap_usd,
            "cooldown": {
                name: why
                for name, (until, why) in self.cooldown.items()
                if time.monotonic() < until
            },
            "decisions": [attrs.asdict(d) for d in list(self.decisions)[:20]],
        }

    async def aclose(self) -> None:
        """Close the remote backends (the local one belongs to the server)."""
        for backend in self.remote.values():
            await backend.aclose()
        self.remote.clear()


class RoutedBackend:
    """The Backend the engine and the assistant use: one task's chain."""

    name: ClassVar[str] = "router"

    def __init__(self, router: Router, task: Task, escalation: str = "") -> None:
        self.router = router
        self.task = task
        self.escalation = escalation
        """Why this view goes to the cloud first (empty: it does not)."""
        self.last_backend = ""

    @property
    def loaded(self) -> bool:
        """Whether the local model is loaded (its tokenizer counts context)."""
        return bool(getattr(self.router.local, "loaded", False))

    @property
    def local_first(self) -> bool:
        """Whether this task goes to the in-process model first."""
        chain = getattr(self.router.settings.routing, self.task)
        return bool(chain) and chain[0] == "local" and not self.escalation

    @property
    def calibration(self) -> tuple[float, float] | None:
        """The local model's measured speed, when this task goes to it first."""
        if not self.local_first:
            return None
        return getattr(self.router.local, "calibration", None)

    def count_tokens(self, text: str) -> int:
        """Tokens in the local model's vocabulary (an estimate without it)."""
        count = getattr(self.router.local, "count_tokens", None)
        return int(count(text)) if count is not None else len(text) // 4 + 1

    def escalated(self, reason: str) -> RoutedBackend | None:
        """This task sent to the escalation backend first; None if not allowed."""
        if self.router.escalation_target() is None:
            return None
        return RoutedBackend(self.router, self.task, reason)

    def _plan(self) -> list[tuple[str, str]]:
        chain = getattr(self.router.settings.routing, self.task)
        plan = [(name, f"routing.{self.task}[{i}]") for i, name in enumerate(chain)]
        if self.escalation and (target := self.router.escalation_target()):
            plan = [(target, self.escalation)] + [p for p in plan if p[0] != target]
        return plan

    def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A completion from the first backend in the chain that can serve it."""
        return self._route(req, stats)

    def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """A chat answer from the first backend in the chain that can serve it."""
        return self._route(req, stats)

    async def _route(
        self, req: GenerateRequest | ChatRequest, stats: GenerationStats | None
    ) -> AsyncGenerator[str, None]:
        router = self.router
        plan = self._plan()
        failures: list[tuple[str, str]] = []
        failed: list[tuple[str, str]] = []
        """Attempts that failed with an error (skips by the rules are not news)."""
        i = 0
        while i < len(plan):
            name, reason = plan[i]
            i += 1
            if (why := router.unusable(name, req.path)) is not None:
                router.record(Decision(self.task, name, reason, f"skipped: {why}"))
                failures.append((name, why))
                continue
            attempt = GenerationStats()
            started = False
            try:
                backend = router.backend(name)
                if router.is_cloud(name) and (env := getattr(backend, "key_env", "")):
                    await keys.api_key(env, name)  # known before the payload is made
                prepared = router.prepare(name, req)
                stream = (
                    backend.chat(prepared, attempt)
                    if isinstance(prepared, ChatRequest)
                    else backend.generate(prepared, attempt)
                )
                deadline = self._deadline(name, plan[i:], req.path)
                async with contextlib.aclosing(stream) as chunks:
                    chunk = await _first_chunk(chunks, deadline, name)
                    while chunk is not None:
                        if not started and failed:
                            # Said at the first chunk: the consumer may stop early.
                            router.notify(f"{_said(*failed[-1])}; answered by {name}")
                        started = True
                        self.last_backend = name
                        yield chunk
                        chunk = await anext(chunks, None)
            except ContextTooLarge as e:
                router.record(Decision(self.task, name, reason, f"failed: {e}"))
                target = router.escalation_target()
                if target is not None and all(target != p[0] for p in plan[i:]):
                    why = f"escalated: context {e.needed} > {name} {e.available} tokens"
                    plan.insert(i, (target, why))
                failures.append((name, str(e)))
                continue
            except BackendRefused as e:
                router.record(Decision(self.task, name, reason, f"skipped: {e}"))
                failures.append((name, str(e)))
                continue
            except BackendError as e:
                router.record(Decision(self.task, name, reason, f"failed: {e}"))
                router.penalise(name, e)
                failures.append((name, str(e)))
                failed.append((name, str(e)))
                if started:
                    raise  # the user has seen part of this answer
                continue
            except GeneratorExit:  # the consumer had enough: a normal early stop
                router.record(self._decision(name, reason, "ok", req, attempt))
                raise
            except asyncio.CancelledError:
                router.record(self._decision(name, reason, "cancelled", req, attempt))
                raise
            finally:
                if stats is not None:
                    _copy(attempt, stats)
            self.last_backend = name
            router.record(self._decision(name, reason, "ok", req, attempt))
            return
        if len(failures) == 1:
            raise BackendUnavailable(failures[0][1])
        reasons = "; ".join(_said(name, why) for name, why in failures)
        raise BackendUnavailable(f"no backend could answer ({reasons})")

    def _deadline(
        self, name: str, rest: list[tuple[str, str]], path: str | None
    ) -> float | None:
        """How long ``name`` may take to its first chunk (None: its own timeout).

        Only backends outside this process get one (a hung server or a stalled
        connection), and only when a later backend in the plan can take over.
        """
        routing = self.router.settings.routing
        limit = (
            routing.completion_deadline_s
            if self.task == "completion"
            else routing.chat_deadline_s
        )
        if name == LOCAL or not limit:
            return None
        if all(self.router.unusable(other, path) is not None for other, _ in rest):
            return None
        return limit

    def _decision(
        self,
        name: str,
        reason: str,
        outcome: str,
        req: GenerateRequest | ChatRequest,
        stats: GenerationStats,
    ) -> Decision:
        prompt = stats.prompt_tokens or _estimate(req)
        price_in, price_out = self.router.price(name)
        cost = (prompt * price_in + stats.generated_tokens * price_out) / 1e6
        return Decision(
            self.task,
            name,
            reason,
            outcome,
            prompt,
            stats.generated_tokens,
            round(cost, 6),
        )

    async def aclose(self) -> None:
        """Views own nothing."""


async def _first_chunk(
    chunks: AsyncIterator[str], deadline: float | None, name: str
) -> str | None:
    """The stream's first chunk (None: the stream is empty) within ``deadline`` s.

    Past the deadline the stream is cancelled where it waits (its connection is
    closed) and ``BackendTimeout`` says so.
    """
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            return await anext(chunks)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        if not scope.expired():
            raise
        raise BackendTimeout(f"{name}: no answer within {deadline:g} s") from None


def _said(name: str, why: str) -> str:
    """``why`` with the backend's name in front, once."""
    return why if why.startswith(f"{name}:") else f"{name}: {why}"


def _copy(source: GenerationStats, target: GenerationStats) -> None:
    for field in attrs.fields(GenerationStats):
        setattr(target, field.name, getattr(source, field.name))


def _estimate(req: GenerateRequest | ChatRequest) -> int:
    if isinstance(req, ChatRequest):
        chars = sum(len(m.content) for m in req.messages)
        chars += sum(len(f.text) for f in req.context)
    else:
        chars = len(req.prompt) + len(req.suffix or "")
    return chars // 4 + 1
