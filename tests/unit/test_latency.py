"""The latency policy: debounce from typing rhythm, measured speed, context budget."""

from __future__ import annotations

from tandem.backends.base import GenerationStats
from tandem.latency import (
    BUDGET_STEP,
    MIN_SUFFIX_TOKENS,
    MIN_WINDOW_TOKENS,
    SUFFIX_S,
    WARM_S,
    ContextChanges,
    Debouncer,
    SpeedMeter,
    context_budget,
    suffix_tokens,
    window_tokens,
)


def type_burst(
    debouncer: Debouncer, text: str, gap_s: float, start: float = 0.0
) -> list[float]:
    """Keystrokes ``gap_s`` apart; the wait after each."""
    return [
        debouncer.keystroke("a", start + i * gap_s, text[: i + 1])
        for i in range(len(text))
    ]


def test_debounce_waits_a_little_longer_than_the_rhythm_during_a_burst() -> None:
    debouncer = Debouncer(min_ms=10, max_ms=300)
    waits = type_burst(debouncer, "abcdefgh", 0.120)
    assert waits[0] == 10  # first key: nothing known, do not make the user wait
    assert debouncer.interval_ms is not None
    assert 110 < debouncer.interval_ms < 130
    assert 140 < waits[-1] <= 160  # 1.25 x the rhythm


def test_debounce_is_short_after_a_pause_and_at_boundaries() -> None:
    debouncer = Debouncer(min_ms=10, max_ms=300)
    type_burst(debouncer, "abcdefgh", 0.100)
    assert debouncer.keystroke("a", 5.0, "x") == 10  # 4 s later: a pause
    type_burst(debouncer, "abcd", 0.100, start=10.0)
    burst = debouncer.keystroke("a", 10.4, "y")
    boundary = debouncer.keystroke("a", 10.5, "(")
    assert boundary < burst


def test_debounce_is_short_when_the_model_is_faster_than_typing() -> None:
    debouncer = Debouncer(min_ms=10, max_ms=300)
    type_burst(debouncer, "abcdefgh", 0.150)
    debouncer.responded(40)  # a GPU answers in 40 ms
    assert debouncer.keystroke("a", 1.35, "z") == 10


def test_debounce_stays_within_bounds() -> None:
    debouncer = Debouncer(min_ms=20, max_ms=100)
    waits = type_burst(debouncer, "abcdefgh", 0.090)
    assert all(20 <= w <= 100 for w in waits)


def stats(
    prompt: int, cached: int, generated: int, prompt_ms: float, gen_ms: float
) -> GenerationStats:
    return GenerationStats(prompt, cached, generated, prompt_ms, gen_ms)


def test_speed_meter_learns_from_generations() -> None:
    meter = SpeedMeter()
    meter.seed(100.0, 30.0)
    for _ in range(20):
        meter.observe(stats(1000, 500, 21, 2500.0, 1000.0))  # 200 tok/s, 20 tok/s
    assert meter.prompt_tps is not None and 190 < meter.prompt_tps < 210
    assert meter.gen_tps is not None and 19 < meter.gen_tps < 21
    assert meter.generated_tokens == 21
    meter.seed(1.0, 1.0)  # a later seed does not override measurements
    assert meter.prompt_tps > 190


def test_speed_meter_ignores_tiny_samples() -> None:
    meter = SpeedMeter()
    meter.observe(stats(900, 898, 2, 30.0, 10.0))  # 2 new tokens: mostly overhead
    assert meter.prompt_tps is None and meter.gen_tps is None
    meter.seed(200.0, 30.0)
    for _ in range(20):  # the tail after a keystroke: 40 tokens at 100 tokens/s
        meter.observe(stats(900, 860, 8, 400.0, 300.0))
    assert meter.prompt_tps == 200.0  # cold prompts are sized from large batches


def test_budget_counts_the_kv_cache_as_free() -> None:
    meter = SpeedMeter(prompt_tps=1000.0, gen_tps=50.0)
    # Generation (16 tokens, 320 ms) and the tail (100 tokens, 100 ms) leave 380 ms:
    # 380 new tokens, paid only when the context changes (1 request in 4).
    budget = context_budget(800, meter, 100, change_rate=0.25, maximum=4096)
    assert budget == 1520 // BUDGET_STEP * BUDGET_STEP
    assert context_budget(800, meter, 100, 1.0, 4096) < budget  # always changing
    assert context_budget(800, meter, 100, 0.25, 512) == 512  # capped


def test_budget_shrinks_with_speed_and_is_zero_past_the_target() -> None:
    fast = SpeedMeter(prompt_tps=2000.0, gen_tps=100.0)
    slow = SpeedMeter(prompt_tps=110.0, gen_tps=32.0)
    slower = SpeedMeter(prompt_tps=40.0, gen_tps=10.0)
    budgets = [context_budget(1000, m, 40, 0.2, 100_000) for m in (fast, slow, slower)]
    assert budgets[0] > budgets[1] > budgets[2] == 0
    assert all(b % BUDGET_STEP == 0 for b in budgets)


def test_budget_without_measurements_or_target_is_the_maximum() -> None:
    assert context_budget(800, SpeedMeter(), 40, 0.5, 512) == 512
    assert (
        context_budget(0, SpeedMeter(prompt_tps=1.0, gen_tps=1.0), 40, 0.5, 512) == 512
    )


def test_context_changes_are_counted() -> None:
    changes = ContextChanges(rate=0.5)
    assert changes.observe("a", "def f(): ...")  # first time: a change
    for _ in range(30):
        assert not changes.observe("a", "def f(): ...")
    assert changes.rate < 0.05
    assert changes.observe("a", "def g(): ...")


def test_the_window_shrinks_on_a_slow_machine_and_for_a_large_context() -> None:
    fast = SpeedMeter(prompt_tps=2000.0, gen_tps=100.0)
    slow = SpeedMeter(prompt_tps=400.0, gen_tps=40.0)
    slower = SpeedMeter(prompt_tps=80.0, gen_tps=30.0)
    assert window_tokens(fast, 384, 1333) == 1333  # all of prefixChars
    assert window_tokens(slow, 0, 1333) == int(400 * WARM_S) // 128 * 128
    assert window_tokens(slow, 256, 1333) < window_tokens(slow, 0, 1333)
    assert window_tokens(slower, 256, 1333) == MIN_WINDOW_TOKENS  # the floor
    assert window_tokens(SpeedMeter(), 384, 1333) == 1333  # speed unknown


def test_the_suffix_is_what_a_keystroke_affords() -> None:
    assert suffix_tokens(SpeedMeter(prompt_tps=2000.0, gen_tps=100.0), 133) == 133
    mid = suffix_tokens(SpeedMeter(prompt_tps=200.0, gen_tps=40.0), 133)
    assert mid == int(200 * SUFFIX_S) < 133
    slow = SpeedMeter(prompt_tps=40.0, gen_tps=10.0)
    assert suffix_tokens(slow, 133) == MIN_SUFFIX_TOKENS
    assert suffix_tokens(SpeedMeter(), 133) == 133
