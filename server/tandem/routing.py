"""The backend selector: per-task chains, escalation, fallback, privacy, spend.

Each task (completion, explain, refactor) has a chain of backends tried in order
(``routing.<task>``); when one fails before its first chunk (down, timeout, 401,
429, 5xx, no network, a malformed stream, no first chunk by the deadline) the next
one serves and the user gets one message. A completion that fails mid-answer is
continued by the next backend from the text already passed on; an explanation the
user has started reading is not switched silently. Hard requests may be
*escalated* to ``routing.escalateTo`` when the user allows it: a prompt larger than
the local context window, a large selection, a local rewrite that fails its checks,
or an explicit "ask the cloud". Every attempt is recorded as a ``Decision``
(backend, reason, tokens, cost) for the status.

Paid backends are kept under ``routing.dailySpendCapUsd`` by the ledger in
``spend``: each request reserves its worst case before it is sent and is settled
at its cost afterwards: the usage the server reported, or, for a request given up
(stopped early, cancelled, past a deadline), what it could have cost.

In front of every backend that is not in this process stands the privacy gate:
with ``offline`` (or while the network is found to be down) no socket is opened;
``neverSend`` files stay local; secrets are redacted (see ``privacy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import sqlite3
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

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
from tandem.spend import NANO, SpendLedger, default_spend_path, to_nano

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Decision", "RoutedBackend", "Router", "default_spend_path"]

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
        self.spend = SpendLedger(spend_path, warn=lambda message: self.notify(message))
        self.notify: Callable[[str], None] = lambda message: None
        """One user-visible message (a fallback happened)."""
        self.changed: Callable[[], None] = lambda: None
        """The status changed (offline state, spend)."""
        self.roots: Callable[[], Sequence[str]] = lambda: ()
        """The workspace folders (absolute paths), for the privacy rules."""

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
        if (why := self.unpriced(name)) is not None:
            return why
        cap = self.settings.routing.daily_spend_cap_usd
        if sum(self.price(name)) > 0 and self.spend.spent_today() >= cap:
            return f"today's spend cap of ${cap:.2f} is reached"
        privacy_rules = self.settings.privacy
        if cloud and (why := privacy.refusal(path, privacy_rules, self.roots())):
            return why
        if (why := keys.unconfirmed_host(self.settings, name)) is not None:
            return why
        return None

    def unpriced(self, name: str) -> str | None:
        """Why ``name`` is refused for want of a price (None: priced, free or here)."""
        if name != "openai":
            return None  # Anthropic always has a price; Ollama is free
        from tandem.backends.openai_compat import unpriced

        return unpriced(self.settings.openai)

    async def reserve(self, name: str, usd: float) -> int:
        """Hold ``usd`` of today's cap for a request to ``name``; the reservation.

        Raises ``BackendRefused`` when the request could pass the cap (in one
        transaction with the other server processes, so no two pass it together).
        """
        cap = self.settings.routing.daily_spend_cap_usd
        try:
            held = await _off_loop(self.spend.reserve, usd, cap, name)
        except sqlite3.Error as e:
            raise BackendRefused(f"the spend ledger cannot be written ({e})") from e
        if held is None:
            raise BackendRefused(
                f"today's spend cap of ${cap:.2f} could be passed: this request "
                f"may cost up to ${usd:.4f}"
            )
        return held

    async def settle(self, reservation: int, usd: float) -> None:
        """Count what a request cost in place of its reservation."""
        try:
            await _off_loop(self.spend.settle, reservation, usd)
        except sqlite3.Error:  # the reservation stays, at its worst case
            logger.warning("the spend ledger cannot be written", exc_info=True)

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
            req = privacy.gate(
                req, self.settings.privacy, known + keys.found(), self.roots()
            )
        return with_context(req) if isinstance(req, ChatRequest) else req

    def record(self, decision: Decision) -> None:
        """Remember a decision (its cost is on the ledger already)."""
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
        self.spend.close()


class RoutedBackend:
    """The Backend the engine and the assistant use: one task's chain."""

    name: ClassVar[str] = "router"

    def __init__(self, router: Router, task: Task, escalation: str = "") -> None:
        self.router = router
        self.task = task
        self.escalation = escalation
        """Why this view goes to the cloud first (empty: it does not)."""
        self.local_only = False
        """Only the in-process model serves this view (nothing leaves the machine)."""
        self.last_backend = ""

    def only_local(self) -> RoutedBackend:
        """This task on the in-process model alone, whatever its chain says."""
        view = RoutedBackend(self.router, self.task)
        view.local_only = True
        return view

    @property
    def loaded(self) -> bool:
        """Whether the local model is loaded (its tokenizer counts context)."""
        return bool(getattr(self.router.local, "loaded", False))

    @property
    def local_first(self) -> bool:
        """Whether this task goes to the in-process model first."""
        if self.local_only:
            return True
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
        if self.local_only:
            return [("local", "in-process only")]
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

    async def calibrated(self) -> None:
        """Wait until the local model's speed calibration after loading is over.

        A warm-up sized before the speed is known would not be the prompt the
        request after it builds.
        """
        local = self.router.local
        calibrated = getattr(local, "calibrated", None)
        if self.local_first and calibrated is not None:
            await calibrated()

    def keep_chunk(self, whole: bool = False) -> None:
        """Let the in-process model's running warm-up finish its prompt chunk.

        The next request continues it (see ``LlamaCppBackend.keep_chunk``).
        """
        keep = getattr(self.router.local, "keep_chunk", None)
        if self.local_first and keep is not None:
            keep(whole=whole)

    def new_tokens(self, req: GenerateRequest) -> int | None:
        """Tokens of ``req``'s prompt the in-process model has not cached.

        None where this task does not go to that model first, or it cannot say.
        """
        local = self.router.local
        count = getattr(local, "new_tokens", None)
        if not self.local_first or count is None or not getattr(local, "loaded", True):
            return None
        result: int | None = count(req)
        return result

    async def warm(
        self, req: GenerateRequest, tail: bool = True, keep_live: bool = False
    ) -> int:
        """Put ``req``'s prompt into the in-process model's KV cache; tokens evaluated.

        ``tail``, ``keep_live``: as ``LlamaCppBackend.warm``.

        Only when this task goes to the in-process model first and that model is
        loaded and can warm (nothing is generated); otherwise 0, and nothing is
        done: a server or cloud backend is never warmed. No deadline, no fallback.
        """
        local = self.router.local
        warm = getattr(local, "warm", None)
        if not self.local_first or warm is None or not getattr(local, "loaded", True):
            return 0
        try:
            return int(await warm(req, tail=tail, keep_live=keep_live))
        except BackendError as e:
            logger.debug("warming the local model failed: %s", e)
            return 0

    async def _route(
        self, req: GenerateRequest | ChatRequest, stats: GenerationStats | None
    ) -> AsyncGenerator[str, None]:
        router = self.router
        plan = self._plan()
        failures: list[tuple[str, str]] = []
        failed: list[tuple[str, str]] = []
        """Attempts that failed with an error (skips by the rules are not news)."""
        sent: list[str] = []
        """Completion text passed on from attempts that failed mid-answer."""
        i = 0
        while i < len(plan):
            name, reason = plan[i]
            i += 1
            if (why := router.unusable(name, req.fs_path or req.path)) is not None:
                router.record(Decision(self.task, name, reason, f"skipped: {why}"))
                failures.append((name, why))
                if why == router.unpriced(name):
                    failed.append((name, why))  # news: a setting the user can fix
                continue
            attempt = GenerationStats()
            bill: _Bill | None = None
            started = False
            try:
                backend = router.backend(name)
                if router.is_cloud(name) and (env := getattr(backend, "key_env", "")):
                    await keys.api_key(env, name)  # known before the payload is made
                prepared = router.prepare(name, _continued(req, sent))
                bill = await self._reserve(name, prepared)
                stream = (
                    backend.chat(prepared, attempt)
                    if isinstance(prepared, ChatRequest)
                    else backend.generate(prepared, attempt)
                )
                deadline = self._deadline(name, plan[i:], req.fs_path or req.path)
                async with contextlib.aclosing(stream) as chunks:
                    chunk = await _first_chunk(chunks, deadline, name)
                    while chunk is not None:
                        if not started and failed:
                            # Said at the first chunk: the consumer may stop early.
                            router.notify(f"{_said(*failed[-1])}; answered by {name}")
                        started = True
                        self.last_backend = name
                        sent.append(chunk)
                        yield chunk
                        chunk = await anext(chunks, None)
            except ContextTooLarge as e:
                await self._end(name, reason, f"failed: {e}", req, attempt, bill)
                target = router.escalation_target()
                if target is not None and all(target != p[0] for p in plan[i:]):
                    why = f"escalated: context {e.needed} > {name} {e.available} tokens"
                    plan.insert(i, (target, why))
                failures.append((name, str(e)))
                continue
            except BackendRefused as e:
                await self._end(name, reason, f"skipped: {e}", req, attempt, bill)
                failures.append((name, str(e)))
                continue
            except GeneratorExit:  # the consumer had enough: a normal early stop
                await self._end(name, reason, "ok", req, attempt, bill, "abandoned")
                raise
            except asyncio.CancelledError:
                await self._end(
                    name, reason, "cancelled", req, attempt, bill, "abandoned"
                )
                raise
            except Exception as caught:
                error = (
                    caught if isinstance(caught, BackendError) else _unexpected(name)
                )
                timeout = isinstance(error, BackendTimeout)
                ended: _Ended = "abandoned" if timeout else "failed"
                outcome = f"failed: {error}"
                await self._end(name, reason, outcome, req, attempt, bill, ended)
                router.penalise(name, error)
                failures.append((name, str(error)))
                failed.append((name, str(error)))
                if started and isinstance(req, ChatRequest):
                    if error is caught:  # the user has read part of this answer
                        raise
                    raise error from caught
                continue  # a completion is continued from what was sent
            finally:
                if stats is not None:
                    _copy(attempt, stats)
            self.last_backend = name
            await self._end(name, reason, "ok", req, attempt, bill, "done")
            return
        if len(failures) == 1:
            raise BackendUnavailable(failures[0][1])
        reasons = "; ".join(_said(name, why) for name, why in failures)
        raise BackendUnavailable(f"no backend could answer ({reasons})")

    async def _reserve(
        self, name: str, req: GenerateRequest | ChatRequest
    ) -> _Bill | None:
        """Hold the worst case of ``req`` at ``name`` (None: ``name`` is free)."""
        price_in, price_out = self.router.price(name)
        if not (price_in or price_out):
            return None
        bill = _Bill(price_in, price_out, _bound(req), req.max_tokens)
        bill.reservation = await self.router.reserve(name, bill.worst())
        return bill

    async def _end(
        self,
        name: str,
        reason: str,
        outcome: str,
        req: GenerateRequest | ChatRequest,
        stats: GenerationStats,
        bill: _Bill | None,
        ended: _Ended = "failed",
    ) -> None:
        """Settle the attempt's reservation at its cost and record the decision."""
        prompt = stats.prompt_tokens or _estimate(req)
        cost = 0.0
        if bill is not None:
            prompt, generated = bill.tokens(stats, ended, _estimate(req))
            cost = bill.cost(prompt, generated)
            if bill.reservation is not None:
                await self.router.settle(bill.reservation, cost)
        self.router.record(
            Decision(
                self.task,
                name,
                reason,
                outcome,
                prompt,
                stats.generated_tokens,
                cost,
            )
        )

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


def _continued(
    req: GenerateRequest | ChatRequest, sent: list[str]
) -> GenerateRequest | ChatRequest:
    """``req`` for the next backend after one failed with ``sent`` already passed on.

    A completion's consumer holds that text: the next backend continues it.
    """
    if not sent or isinstance(req, ChatRequest):
        return req
    return attrs.evolve(req, prompt=req.prompt + "".join(sent))


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


_Ended = Literal["done", "abandoned", "failed"]
"""How an attempt ended, for its cost: ``done`` (the stream ended), ``abandoned``
(stopped early, cancelled, past a deadline: the server may have gone on) or
``failed`` (an error: what the server reported, if anything)."""
BYTES_PER_TOKEN_BOUND = 1
"""For the reservation, a prompt is counted as a token per UTF-8 byte: a bound
(no token is shorter than a byte), where code averages about 4 bytes a token
and hex, base64 or minified text far fewer."""
FILL_OVERHEAD_TOKENS = 100
"""The fill-in instruction and fences around a completion asked as a chat."""


@attrs.define
class _Bill:
    """What one attempt at a paid backend may cost, and its reservation."""

    price_in: float
    price_out: float
    """USD per million tokens."""
    bound: int
    """Prompt tokens, counted high."""
    max_tokens: int
    reservation: int | None = None

    def worst(self) -> float:
        """The most the attempt can cost."""
        return self.cost(self.bound, self.max_tokens)

    def cost(self, prompt: int, generated: int) -> float:
        """USD for these tokens, to the nano-dollar."""
        usd = (prompt * self.price_in + generated * self.price_out) / 1e6
        return to_nano(usd) / NANO

    def tokens(
        self, stats: GenerationStats, ended: _Ended, estimate: int
    ) -> tuple[int, int]:
        """Prompt and generated tokens to charge: reported, or what they could be."""
        if ended == "done":
            return stats.prompt_tokens or estimate, stats.generated_tokens
        if ended == "abandoned":
            generated = max(self.max_tokens, stats.generated_tokens)
            return stats.prompt_tokens or self.bound, generated
        if stats.prompt_tokens or stats.generated_tokens:  # failed mid-answer
            return stats.prompt_tokens or estimate, stats.generated_tokens
        return 0, 0  # refused before any work (HTTP error, no connection)


async def _off_loop(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on a worker thread; it completes even if we are cancelled."""
    return await asyncio.shield(asyncio.to_thread(work, *args))


def _unexpected(name: str) -> BackendError:
    """A backend's unexpected exception (a bug, or input it did not foresee)."""
    logger.warning("%s failed unexpectedly", name, exc_info=True)
    kind = type(sys.exc_info()[1]).__name__
    return BackendUnavailable(f"{name}: unexpected {kind} (details in the log)")


def _bound(req: GenerateRequest | ChatRequest) -> int:
    """Prompt tokens of ``req``, counted high (for the reservation)."""
    if isinstance(req, ChatRequest):
        texts = [m.content for m in req.messages] + [f.text for f in req.context]
        overhead = 10 * len(req.messages)
    else:
        texts = [req.prompt, req.suffix or "", req.path or ""]
        texts += [f.text for f in req.context]
        overhead = FILL_OVERHEAD_TOKENS
    size = sum(len(text.encode()) for text in texts)
    return size // BYTES_PER_TOKEN_BOUND + overhead
