"""Latency policy: the wait before generating, the model's speed, the context budget.

How long to wait for more typing, how fast the model is on this machine, and how
much workspace context that speed affords.

Pure bookkeeping: no asyncio, no I/O; the engine feeds it times and stats.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

import attrs

from tandem.backends.base import GenerationStats

BURST_GAP_MS = 1000.0
"""Keystrokes further apart than this are not one burst of typing."""
DEFAULT_INTERVAL_MS = 150.0
"""The assumed gap between keystrokes of a burst before any were seen."""
BOUNDARY = frozenset("\n.(:,[{=) ")
"""Characters after which people tend to pause and read a suggestion."""
MIN_CHANGE_RATE = 0.05
"""The context is never assumed to stay the same more than 19 requests in 20."""
BUDGET_STEP = 64
"""Context budgets move in steps of this many tokens: a budget that followed every
wobble of the measured speed would change the context, and so the prompt prefix
held in the KV cache, from one keystroke to the next."""


MIN_PROMPT_SAMPLE = 64
"""Prompt evaluations of fewer new tokens do not update the prompt speed."""


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else old + alpha * (new - old)


@attrs.define
class Debouncer:
    """The wait before generating, from the user's typing rhythm and response times.

    During a burst of typing the next keystroke is likely within about one typical
    interval, so waiting a little longer than that costs nothing and saves starting a
    generation that the next key would cancel. After a pause (the gap before this
    keystroke was long), or after a character where people stop to read (newline,
    ``.``, ``(``), the wait is short. When the model answers faster than the user
    types, there is nothing to save by waiting.
    """

    min_ms: float = 10.0
    max_ms: float = 300.0
    interval_ms: float | None = None
    """Typical gap between keystrokes of a burst (moving average)."""
    response_ms: float | None = None
    """Typical time from the start of a generation to its answer (moving average)."""
    last_wait_ms: float = 0.0
    _last_key: dict[str, float] = attrs.field(factory=dict)

    def keystroke(self, uri: str, now: float, typed: str) -> float:
        """Record a request at ``now`` (seconds) after ``typed``; the wait in ms."""
        last = self._last_key.get(uri)
        self._last_key[uri] = now
        if len(self._last_key) > 256:
            self._last_key.pop(next(iter(self._last_key)))
        gap_ms = (now - last) * 1000 if last is not None else None
        if gap_ms is not None and gap_ms < BURST_GAP_MS:
            self.interval_ms = _ewma(self.interval_ms, gap_ms, 0.2)
        interval = self.interval_ms or DEFAULT_INTERVAL_MS
        if gap_ms is None or gap_ms > 2 * interval or gap_ms > self.max_ms:
            wait = self.min_ms  # a pause: the user is likely waiting for us
        elif self.response_ms is not None and self.response_ms < interval:
            wait = self.min_ms  # cheaper to generate than to wait
        else:
            wait = 1.25 * interval
            if typed[-1:] in BOUNDARY:
                wait /= 2
        self.last_wait_ms = max(self.min_ms, min(self.max_ms, wait))
        return self.last_wait_ms

    def responded(self, ms: float) -> None:
        """Record how long a generation took to answer."""
        self.response_ms = _ewma(self.response_ms, ms, 0.3)

    def forget(self, uri: str) -> None:
        """Drop a closed document's rhythm."""
        self._last_key.pop(uri, None)

    def status(self) -> dict[str, Any]:
        """For the status command."""
        return {
            "intervalMs": self.interval_ms,
            "responseMs": self.response_ms,
            "lastWaitMs": self.last_wait_ms,
            "minMs": self.min_ms,
            "maxMs": self.max_ms,
        }


@attrs.define
class SpeedMeter:
    """Prompt-evaluation and generation speed of the model on this machine.

    Seeded by a short calibration when the model loads, then updated from every
    generation's stats (weighted averages, so one slow request moves it a little).
    """

    prompt_tps: float | None = None
    """Prompt tokens evaluated per second (tokens not already in the KV cache)."""
    gen_tps: float | None = None
    """Tokens generated per second."""
    samples: int = 0
    pinned: bool = False
    """The speeds were given (``TANDEM_SPEED``), not measured: keep them."""
    _generated: deque[int] = attrs.field(factory=lambda: deque(maxlen=32))
    _new_tokens: deque[int] = attrs.field(factory=lambda: deque(maxlen=32))

    def seed(self, prompt_tps: float | None, gen_tps: float | None) -> None:
        """Speeds measured at load (only where nothing was measured yet)."""
        if self.prompt_tps is None and prompt_tps:
            self.prompt_tps = prompt_tps
        if self.gen_tps is None and gen_tps:
            self.gen_tps = gen_tps

    def pin(self, prompt_tps: float, gen_tps: float) -> None:
        """Use these speeds from now on, whatever is measured."""
        self.prompt_tps, self.gen_tps, self.pinned = prompt_tps, gen_tps, True

    def observe(self, stats: GenerationStats) -> None:
        """Learn from a finished generation."""
        new = stats.prompt_tokens - stats.cached_tokens
        if self.pinned:
            pass
        elif new >= MIN_PROMPT_SAMPLE and stats.prompt_ms > 0:
            # Small batches measure per-batch overhead more than speed (and the
            # speed sizes cold prompts, which are evaluated in large ones).
            alpha = min(0.5, new / 512)
            self.prompt_tps = _ewma(
                self.prompt_tps, new / stats.prompt_ms * 1000, alpha
            )
            self.samples += 1
        if not self.pinned and stats.generated_tokens >= 4 and stats.generation_ms > 0:
            tps = (stats.generated_tokens - 1) / stats.generation_ms * 1000
            if tps > 0:
                self.gen_tps = _ewma(self.gen_tps, tps, 0.3)
        if stats.prompt_tokens:
            self._generated.append(stats.generated_tokens)
            self._new_tokens.append(max(new, 1))

    @property
    def generated_tokens(self) -> float:
        """Typical length of a completion, in tokens (16 before any was seen)."""
        return statistics.median(self._generated) if self._generated else 16.0

    def ms(self, new_prompt_tokens: float, generated_tokens: float) -> float | None:
        """Expected time of a request with this much new work; None if unknown."""
        if not self.prompt_tps or not self.gen_tps:
            return None
        return (
            new_prompt_tokens / self.prompt_tps + generated_tokens / self.gen_tps
        ) * 1000

    def status(self) -> dict[str, Any]:
        """For the status command."""
        return {
            "promptTokensPerS": self.prompt_tps,
            "generatedTokensPerS": self.gen_tps,
            "typicalGeneratedTokens": self.generated_tokens,
            "samples": self.samples,
            "pinned": self.pinned,
        }


def context_budget(
    target_ms: float,
    meter: SpeedMeter,
    tail_tokens: int,
    change_rate: float,
    maximum: int,
) -> int:
    """Context tokens a request after one keystroke can afford within ``target_ms``.

    After a keystroke the KV cache still holds the prompt up to the cursor: what
    is evaluated again is the tail (the end of the prefix and the suffix after the
    cursor, ``tail_tokens``), then the completion is generated. Context tokens are
    free while they stay the same; they cost their evaluation when the context
    changes, which happens in ``change_rate`` of requests. The budget is what the
    time left over pays for at that rate, in steps of ``BUDGET_STEP`` tokens, at
    most ``maximum``; ``maximum`` when the speed is not known yet.
    """
    fixed = meter.ms(tail_tokens, meter.generated_tokens)
    if target_ms <= 0 or fixed is None or meter.prompt_tps is None:
        return maximum
    spare_s = (target_ms - fixed) / 1000
    if spare_s <= 0:
        return 0
    affordable = spare_s * meter.prompt_tps / max(change_rate, MIN_CHANGE_RATE)
    return int(min(maximum, affordable) // BUDGET_STEP * BUDGET_STEP)


WARM_S = 2.5
"""A newly opened file should be ready (its prompt prefix evaluated) within this
much idle time: the pause before the user types."""
MIN_WINDOW_TOKENS = 256
"""The budget of the text before the cursor never shrinks below this many tokens
(about 20 lines of code); the window starts at a line numbered a multiple of 32
within it where there is one (``context.window``), so the text itself is often
shorter. Measured on real packages (benchmarks/repo_bench.py, 43 cases,
prompts sized as at 85 prompt tokens/s): 256 instead of 384 takes the first
completion after opening a file and a 3 s pause from p50 2.5 s to 1.1 s, member
hits unchanged, whole-line edit similarity 0.446 -> 0.415 (context off: 0.431 ->
0.385 likewise)."""
WINDOW_STEP = 128
SUFFIX_S = 0.4
"""The text after the cursor is evaluated again after every keystroke: at most
what this many seconds of prompt evaluation pay for."""
MIN_SUFFIX_TOKENS = 32


def window_tokens(meter: SpeedMeter, context_tokens: int, maximum: int) -> int:
    """Tokens of the current file before the cursor that a cold prompt affords.

    A cold prompt (a newly opened file, a new region of it) evaluates the context
    and the window before the cursor. On a slow machine the window shrinks first
    (the cursor's direct dependencies keep their floor), so that the whole
    prefix is evaluated within ``WARM_S`` of idle time. In steps of
    ``WINDOW_STEP`` tokens, never under ``MIN_WINDOW_TOKENS``; ``maximum`` while
    the speed is unknown.
    """
    if meter.prompt_tps is None:
        return maximum
    affordable = meter.prompt_tps * WARM_S - context_tokens
    stepped = int(affordable // WINDOW_STEP * WINDOW_STEP)
    return max(MIN_WINDOW_TOKENS, min(maximum, stepped))


def suffix_tokens(meter: SpeedMeter, maximum: int) -> int:
    """Tokens of the text after the cursor that a request affords.

    What follows the cursor is evaluated again after every keystroke (it comes
    after the prefix, which the keystroke changed): ``SUFFIX_S`` of evaluation,
    at least ``MIN_SUFFIX_TOKENS``; ``maximum`` while the speed is unknown.
    """
    if meter.prompt_tps is None:
        return maximum
    return max(MIN_SUFFIX_TOKENS, min(maximum, int(meter.prompt_tps * SUFFIX_S)))


def more_lines_tokens(meter: SpeedMeter, ms: float) -> int | None:
    """Tokens generated in ``ms`` at the measured speed (None: no limit).

    Used like llama-server's ``t_max_predict_ms``: once a completion has a whole
    line, generation stops after this many tokens. Counted in tokens, not read
    from a clock, so a given speed (``TANDEM_SPEED``) gives the same completion
    on every machine.
    """
    if ms <= 0 or not meter.gen_tps:
        return None
    return max(1, round(meter.gen_tps * ms / 1000))


@attrs.define
class ContextChanges:
    """How often the context of a request differs from the one before it."""

    rate: float = 0.5
    """Moving average of changes (a guess of one in two before any was seen)."""
    _last: dict[str, str] = attrs.field(factory=dict)

    def observe(self, uri: str, text: str) -> bool:
        """Record this request's context text; whether it changed."""
        changed = self._last.get(uri) != text
        self._last[uri] = text
        if len(self._last) > 64:
            self._last.pop(next(iter(self._last)))
        self.rate = _ewma(self.rate, float(changed), 0.1)
        return changed

    def forget(self, uri: str) -> None:
        """Drop a closed document's last context."""
        self._last.pop(uri, None)
