"""Moving runs of cached tokens: finding them (pure), and the KV cache's
bookkeeping against a stand-in for llama.cpp's unified KV cache (cells with one
position and a set of sequences, as llama.cpp's memory functions treat them)."""

from __future__ import annotations

import sys
import threading
import types
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tandem.backends import llama_kv
from tandem.backends.llama_kv import FRESH_TOKENS, KvCache, Run, reusable_run

CONTEXT = list(range(100, 140))
WINDOW = list(range(500, 560))
TAIL = [7, 8, 9]


def test_a_new_context_before_the_window_keeps_the_window_moved() -> None:
    live = [1, 2, *CONTEXT, *WINDOW, *TAIL]
    longer = [1, 2, *range(200, 250), *WINDOW, *TAIL]  # 10 tokens more
    assert reusable_run(live, longer, 2, len(longer), 32) == Run(52, 42, 63)
    shorter = [1, 2] + [300] * 5 + WINDOW + TAIL
    assert reusable_run(live, shorter, 2, len(shorter), 32) == Run(7, 42, 63)


def test_a_run_behind_a_changed_token_is_found() -> None:
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


class Memory:
    """llama.cpp's unified KV cache, as far as moves use it."""

    def __init__(self) -> None:
        self.cells: list[dict[str, Any]] = []  # pos, seqs, token

    @staticmethod
    def _range(p0: int, p1: int) -> tuple[int, int]:
        return max(p0, 0), (1 << 30) if p1 < 0 else p1

    def seq_rm(self, _m: object, seq: int, p0: int, p1: int) -> bool:
        p0, p1 = self._range(p0, p1)
        for c in self.cells:
            if p0 <= c["pos"] < p1:
                c["seqs"].discard(seq)
        self.cells = [c for c in self.cells if c["seqs"]]
        return True

    def seq_cp(self, _m: object, src: int, dst: int, p0: int, p1: int) -> None:
        p0, p1 = self._range(p0, p1)
        for c in self.cells:
            if p0 <= c["pos"] < p1 and src in c["seqs"]:
                c["seqs"].add(dst)

    def seq_add(self, _m: object, seq: int, p0: int, p1: int, delta: int) -> None:
        p0, p1 = self._range(p0, p1)
        for c in self.cells:
            if p0 <= c["pos"] < p1 and seq in c["seqs"]:
                c["pos"] += delta

    def sequence(self, seq: int) -> list[tuple[int, int]]:
        return sorted((c["pos"], c["token"]) for c in self.cells if seq in c["seqs"])


class Llm:
    """The part of ``llama_cpp.Llama`` the KV cache uses."""

    n_batch = 512

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.n_tokens = 0
        self.input_ids = np.zeros(4096, dtype=np.intc)
        self._ctx = types.SimpleNamespace(
            ctx=object(), kv_cache_seq_rm=lambda s, p0, p1: memory.seq_rm(0, 0, p0, p1)
        )
        self.stop_after: tuple[int, threading.Event] | None = None

    @property
    def _input_ids(self) -> Any:
        return self.input_ids[: self.n_tokens]

    def eval(self, tokens: list[int]) -> None:
        self.memory.seq_rm(0, 0, self.n_tokens, -1)
        for t in tokens:
            self.memory.cells.append({"pos": self.n_tokens, "seqs": {0}, "token": t})
            self.input_ids[self.n_tokens] = t
            self.n_tokens += 1
        if self.stop_after is not None:
            n, stop = self.stop_after
            self.stop_after = (n - 1, stop)
            if n == 1:
                stop.set()  # a keystroke during this chunk


class Counters:
    prompt_chunks = states_saved = states_restored = restored_tokens = 0
    reuses = reused_tokens = 0


CURSOR = 9  # the FIM suffix marker
NEVER = threading.Event()


@pytest.fixture
def kv(monkeypatch: pytest.MonkeyPatch) -> KvCache:
    memory = Memory()
    fake = types.ModuleType("llama_cpp")
    fake.llama_get_memory = lambda ctx: memory  # type: ignore[attr-defined]
    fake.llama_memory_seq_rm = memory.seq_rm  # type: ignore[attr-defined]
    fake.llama_memory_seq_cp = memory.seq_cp  # type: ignore[attr-defined]
    fake.llama_memory_seq_add = memory.seq_add  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    return KvCache(Llm(memory), Counters(), 16, 0, 32)  # type: ignore[arg-type]


def prompt(context: list[int], window: list[int], after: list[int]) -> list[int]:
    return [1, *context, *window, CURSOR, *after]


def check(kv: KvCache, tokens: list[int]) -> None:
    """The live sequence holds exactly ``tokens`` at their positions."""
    llm: Any = kv.llm
    assert llm.memory.sequence(0) == list(enumerate(tokens))
    assert kv.tokens == tokens
    assert not llm.memory.sequence(llama_kv.PARKED) or kv._parked


WINDOW2 = list(range(1000, 1200))
AFTER = list(range(5000, 5040))


def test_a_changed_context_moves_the_window_but_its_end(kv: KvCache) -> None:
    before = prompt(list(range(100, 120)), WINDOW2, AFTER)
    kv.evaluate(before, len(before), NEVER, CURSOR)
    after = prompt(list(range(200, 230)), WINDOW2, AFTER)
    evaluated = kv.evaluate(after, len(after), NEVER, CURSOR)
    check(kv, after)
    assert kv.counters.reused_tokens == len(WINDOW2) - FRESH_TOKENS
    assert evaluated == len(after) - 1 - kv.counters.reused_tokens


def test_nothing_moves_without_a_cursor_or_from_after_one(kv: KvCache) -> None:
    after_text = list(range(5000, 5120))
    before = prompt(list(range(100, 120)), WINDOW2, after_text)
    kv.evaluate(before, len(before), NEVER, CURSOR)
    after = prompt(list(range(200, 230)), WINDOW2, after_text)
    kv.evaluate(after, len(after), NEVER, None)  # a chat prompt
    assert kv.counters.reuses == 0
    check(kv, after)
    # The cursor moved down: the text after the old one is now before the new
    # one, but it was computed after the suffix marker: it is evaluated again.
    moved_down = [1, *range(200, 230), *WINDOW2, *after_text, CURSOR, 7, 7]
    kv.evaluate(moved_down, len(moved_down), NEVER, CURSOR)
    assert kv.counters.reuses == 0
    check(kv, moved_down)


def test_a_run_parked_by_a_stop_serves_the_next_prompt_in_part(kv: KvCache) -> None:
    before = prompt(list(range(100, 120)), WINDOW2, AFTER)
    kv.evaluate(before, len(before), NEVER, CURSOR)
    stop = threading.Event()
    kv.llm.stop_after = (1, stop)  # type: ignore[attr-defined]
    longer = prompt(list(range(200, 260)), WINDOW2, AFTER)
    with pytest.raises(llama_kv.Stopped):
        kv.evaluate(longer, len(longer), stop, CURSOR)
    kv.llm.stop_after = None  # type: ignore[attr-defined]
    assert kv.counters.reuses == 0 and kv._parked
    # Only the start of the parked window is still in the next prompt.
    cut = prompt(list(range(200, 260)), [*WINDOW2[:120], *range(7000, 7080)], AFTER)
    kv.evaluate(cut, len(cut), NEVER, CURSOR)
    check(kv, cut)
    assert kv.counters.reuses == 1 and kv.counters.reused_tokens == 120
    positions = Counter(pos for pos, _ in kv.llm.memory.sequence(0))  # type: ignore[attr-defined]
    assert max(positions.values()) == 1


def test_a_state_is_not_saved_while_a_shift_waits_for_a_decode(kv: KvCache) -> None:
    before = prompt(list(range(100, 120)), WINDOW2, AFTER)
    kv.evaluate(before, len(before), NEVER, CURSOR)
    stop = threading.Event()
    stop.set()  # stopped right after the move, before anything else ran
    after = prompt(list(range(100, 110)), WINDOW2, AFTER)  # context shorter
    with pytest.raises(llama_kv.Stopped):
        kv.evaluate(after, len(after), stop, CURSOR)
    assert kv.counters.reuses == 1 and kv._shifted
    saved = kv.saved.size
    kv.saved.max_bytes = 1 << 20
    kv._save(kv.tokens)  # would write keys rotated for the old positions
    assert kv.saved.size == saved
