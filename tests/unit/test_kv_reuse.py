"""Finding the run of cached tokens a new prompt still holds (pure)."""

from __future__ import annotations

from tandem.backends.llama_kv import Run, reusable_run

CONTEXT = list(range(100, 140))
WINDOW = list(range(500, 560))
TAIL = [7, 8, 9]


def test_a_new_context_before_the_window_keeps_the_window_moved() -> None:
    live = [1, 2, *CONTEXT, *WINDOW, *TAIL]
    longer = [1, 2, *range(200, 250), *WINDOW, *TAIL]  # 10 tokens more
    assert reusable_run(live, longer, 2, len(longer), 32) == Run(52, 42, 63)
    shorter = [1, 2] + [300] * 5 + WINDOW + TAIL
    assert reusable_run(live, shorter, 2, len(shorter), 32) == Run(7, 42, 63)


def test_a_keystroke_before_the_text_after_the_cursor_keeps_that_text() -> None:
    suffix = list(range(900, 940))
    live = [*WINDOW, 11, 12, *suffix]
    typed = [*WINDOW, 11, 13, 14, *suffix]  # the last token of the line changed
    assert reusable_run(live, typed, 61, len(typed), 32) == Run(63, 62, 40)


def test_runs_shorter_than_the_minimum_or_past_the_end_are_not_moved() -> None:
    live = [1, *CONTEXT, *WINDOW]
    new = [1, 99, *WINDOW]
    assert reusable_run(live, new, 1, len(new), 61) is None
    assert reusable_run(live, new, 1, len(new), 0) is None  # off
    # Only what comes before ``end`` is evaluated: a run must end there.
    assert reusable_run(live, new, 1, 2 + 40, 32) == Run(2, 41, 40)
    assert reusable_run(live, new, 1, 2 + 20, 32) is None


def test_the_longest_run_wins() -> None:
    a, b = list(range(10, 50)), list(range(60, 140))
    live = [0, *a, 5, *b]
    new = [0, 3, *b, 4, *a]
    assert reusable_run(live, new, 1, len(new), 32) == Run(2, 42, 80)


def test_a_parked_run_is_searched_from_its_start() -> None:
    parked = WINDOW
    new = [1, 2, 3, *WINDOW[10:], *TAIL]
    assert reusable_run(parked, new, 3, len(new), 32, 0) == Run(3, 10, 50)
