"""The llama backend's KV cache: prompts evaluated in chunks, recent prefixes kept.

Prompts are evaluated a chunk at a time after the part already in the KV cache, and
a plain stop flag is checked between chunks: that stops work on every llama.cpp
backend, GPUs included (llama.cpp hands its abort callback to the CPU backend
only). The KV prefixes of the few most recent documents are kept as saved
sequence states, so switching between two files does not make both cold. Runs on
the backend's worker thread only.

Where a FIM prompt differs from the cached one before the cursor (the context
changed as the cursor reached ``expr.``, the window's first lines moved, a line
above the cursor was edited), the longest run of cached tokens from before the old
cursor that it still holds before the new one may be kept and moved to its new
place (llama.cpp shifts its positions) instead of being evaluated again, as
llama-server's ``--cache-reuse`` does: an approximation (the moved entries were
computed after the old text before them), off unless ``local.cacheReuse`` asks
for it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from llama_cpp import Llama

logger = logging.getLogger(__name__)

MIN_SAVED_TOKENS = 64
"""Prefixes shorter than this are not worth saving: they evaluate in a blink."""
FRESH_TOKENS = 32
"""What comes last before the cursor is evaluated again, never moved: measured on
real code, moving it as well changes one completion in four (the model loses
track of the characters just before the cursor), and moving the text after the
cursor after a keystroke changes almost all of them (FIM reads the gap there)."""
PARKED = 1
"""The sequence that holds a run of cached tokens while the text before its new
place is evaluated (llama.cpp adds tokens to a sequence at its end only)."""


class KvCounters(Protocol):
    """The counters this module updates (the backend's LlamaCppCounters)."""

    prompt_chunks: int
    states_saved: int
    states_restored: int
    restored_tokens: int
    reuses: int
    reused_tokens: int


class Stopped(Exception):
    """The stop flag was seen between two chunks of a prompt."""


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """How many leading tokens (or other items) ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def two_sequences(llm: Llama) -> None:
    """Give ``llm`` a context of two sequences in one KV buffer.

    llama-cpp-python makes one of one; the second parks the cached tokens being
    moved. Right after loading, before any evaluation: the first context is freed and
    one with the same parameters but ``n_seq_max`` 2 takes its place. Not for
    recurrent or hybrid models (left as they are: ``can_move`` is then false).
    """
    from llama_cpp import _internals

    if getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False):
        return  # a recurrent state cannot be cut and moved like attention entries
    params = llm.context_params
    llm._ctx.close()  # type: ignore[no-untyped-call]
    params.n_seq_max = 2
    params.kv_unified = True  # one buffer, the whole n_ctx for the live sequence
    llm._ctx = llm._stack.enter_context(
        contextlib.closing(
            _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        )
    )


def can_move(llm: Llama) -> bool:
    """Whether cached tokens can be moved in ``llm``'s KV cache.

    It needs two sequences (``two_sequences``) and positions llama.cpp can shift
    (not every model's are).
    """
    import llama_cpp

    if llm.context_params.n_seq_max < 2:
        return False
    memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
    return memory is not None and bool(llama_cpp.llama_memory_can_shift(memory))


def _before(tokens: Sequence[int], cursor: int) -> int:
    """``FRESH_TOKENS`` before the first ``cursor`` token in ``tokens`` (0: none)."""
    try:
        at = list(tokens).index(cursor)
    except ValueError:
        return 0
    return max(0, at - FRESH_TOKENS)


@attrs.frozen
class Run:
    """``size`` tokens cached at ``source`` that the new prompt has at ``target``."""

    target: int
    source: int
    size: int


def reusable_run(
    live: Sequence[int],
    tokens: Sequence[int],
    start: int,
    end: int,
    minimum: int,
    live_start: int | None = None,
) -> Run | None:
    """The longest run of ``live[live_start:]`` that ``tokens[start:end]`` has.

    At least ``minimum`` tokens long (None: none is); ``live_start`` is
    ``start`` (where the two part) unless given.
    """
    k = max(1, min(minimum, 8))
    first = start if live_start is None else live_start
    if minimum <= 0 or end - start < minimum or len(live) - first < minimum:
        return None
    where: dict[tuple[int, ...], list[int]] = {}
    for i in range(first, len(live) - k + 1):
        where.setdefault(tuple(live[i : i + k]), []).append(i)
    best: Run | None = None
    at = start
    while at <= end - k:
        longest, found = 0, 0
        for source in where.get(tuple(tokens[at : at + k]), ())[:16]:
            n = 0
            while (
                at + n < end
                and source + n < len(live)
                and (live[source + n] == tokens[at + n])
            ):
                n += 1
            if n > longest:
                longest, found = n, source
        if longest >= minimum and (best is None or longest > best.size):
            best = Run(at, found, longest)
        at += max(1, longest)
    return best


@attrs.frozen(eq=False)
class SavedPrefix:
    """One sequence's KV state, and the tokens it holds."""

    tokens: tuple[int, ...]
    data: bytes


class PrefixCache:
    """Saved KV prefixes, least recently used first out, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: collections.deque[SavedPrefix] = collections.deque()

    @property
    def size(self) -> int:
        """Bytes held."""
        return sum(len(e.data) for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, tokens: Sequence[int]) -> tuple[SavedPrefix | None, int]:
        """The saved prefix sharing the most leading tokens with ``tokens``."""
        found, shared = None, 0
        # A copy: the event loop asks (``KvCache.new_tokens``) while the worker adds.
        for entry in list(self._entries):
            n = common_prefix(entry.tokens, tokens)
            if n > shared:
                found, shared = entry, n
        return found, shared

    def add(self, entry: SavedPrefix) -> bool:
        """Keep ``entry`` (dropping what it supersedes); False if it cannot fit."""
        if len(entry.data) > self.max_bytes:
            return False
        for old in list(self._entries):
            if entry.tokens[: len(old.tokens)] == old.tokens:
                self._entries.remove(old)  # a shorter copy of the same prefix
        self._entries.append(entry)
        while self.size > self.max_bytes:
            self._entries.popleft()
        return True

    def take(self, entry: SavedPrefix) -> bool:
        """Remove ``entry`` to make it the live KV cache; False if it is gone."""
        if entry not in self._entries:
            return False
        self._entries.remove(entry)
        return True


class KvCache:
    """What one ``Llama``'s KV cache holds, and how prompts get into it."""

    def __init__(
        self,
        llm: Llama,
        counters: KvCounters,
        chunk: int,
        cache_bytes: int,
        reuse_min: int = 0,
    ) -> None:
        self.llm = llm
        self.counters = counters
        self.chunk = max(1, min(chunk, llm.n_batch))
        self.saved = PrefixCache(cache_bytes)
        self._parked: tuple[int, ...] = ()
        """The tokens of a run parked by a job stopped before it was moved."""
        self._parked_at = 0
        """Where they are in the parked sequence."""
        self._shifted = False
        """Positions were shifted and no decode has applied the shift to the
        keys yet: a saved state would hold keys for the old positions."""
        self.partial = False
        """The live cache is the start of a prompt a ``keep_live`` job (a longer
        version of the prompt it kept) was stopped in: not worth saving."""
        self.kept: SavedPrefix | None = None
        """What the last ``switch_to`` saved."""
        self.reuse_min = reuse_min
        """Shortest run of cached tokens moved to a new place (0: none is);
        needs a context of two sequences whose positions llama.cpp can shift
        (see ``can_move``)."""

    @property
    def tokens(self) -> list[int]:
        """The tokens whose KV entries are live, in order."""
        ids: list[int] = self.llm._input_ids.tolist()
        return ids

    def new_tokens(self, tokens: Sequence[int]) -> int:
        """What a job with ``tokens`` would evaluate.

        Those past the longest cached start, live or saved; one more where only
        a saved prefix holds it (its restore is a copy of its KV state).
        """
        live = common_prefix(self.tokens, tokens)
        saved = self.saved.best(tokens)[1]
        return len(tokens) - live if live >= saved else len(tokens) - saved + 1

    def switch_to(self, tokens: Sequence[int], keep_live: bool = False) -> bool:
        """Before a job: bring back a saved prefix that serves it better.

        The live prefix is saved first when the job would throw most of it away,
        or (``keep_live``) any sizeable part of it. Returns False when
        ``keep_live`` asked for a save that could not be made (no prefix cache,
        or a state bigger than it). The live prefix is never saved when it is
        what a stopped ``keep_live`` job left half done (``partial``).
        """
        live = self.tokens
        shared = common_prefix(live, tokens)
        dropped = len(live) - shared
        keep = dropped >= MIN_SAVED_TOKENS and (keep_live or shared < len(live) // 2)
        partial, self.partial = self.partial, False
        self.kept = None
        if not self.saved.max_bytes:
            return not (keep_live and keep)
        entry, saved_shared = self.saved.best(tokens)
        if keep and not partial:
            self.kept = self._save(live)
            if keep_live and self.kept is None:
                return False
        if entry is not None and saved_shared > shared:
            self._restore(entry, saved_shared)
        return True

    def drop_kept(self) -> None:
        """Forget the prefix the last ``switch_to`` saved (its job superseded it)."""
        if self.kept is not None:
            self.saved.take(self.kept)
            self.kept = None

    def evaluate(
        self,
        tokens: Sequence[int],
        upto: int,
        stop: threading.Event,
        cursor: int | None = None,
    ) -> int:
        """Evaluate ``tokens[:upto]`` after what is cached, a chunk at a time.

        ``cursor``: the token that marks the cursor in a FIM prompt (its suffix
        marker); where given, a run of cached tokens from before the cursor of
        the cached prompt may be moved to a place before the cursor of this one,
        ``FRESH_TOKENS`` short of each (None: nothing moves). Returns how many
        tokens were newly evaluated. Raises ``Stopped`` at a chunk boundary once
        ``stop`` is set.
        """
        llm = self.llm
        live = self.tokens
        keep = min(common_prefix(live, tokens), upto)
        run = parked = None
        if self.reuse_min and cursor is not None:
            end, least = min(upto, _before(tokens, cursor)), self.reuse_min
            run = reusable_run(live[: _before(live, cursor)], tokens, keep, end, least)
            parked = reusable_run(self._parked, tokens, keep, end, least, 0)
        if parked is not None and (run is None or parked.size > run.size):
            return self._move(parked, tokens, keep, upto, stop, from_parked=True)
        self._unpark()
        if run is not None:
            return self._move(run, tokens, keep, upto, stop)
        if keep < llm.n_tokens:
            llm._ctx.kv_cache_seq_rm(0, keep, -1)
            llm.n_tokens = keep
        return self._append(tokens, upto, stop)

    def _append(self, tokens: Sequence[int], upto: int, stop: threading.Event) -> int:
        """Evaluate ``tokens[n_tokens:upto]``; how many (see ``evaluate``)."""
        llm = self.llm
        first = llm.n_tokens
        for start in range(first, upto, self.chunk):
            if stop.is_set():
                raise Stopped
            self.counters.prompt_chunks += 1  # started: the abort callback may end it
            llm.eval(tokens[start : min(start + self.chunk, upto)])
            self._shifted = False  # llama.cpp applies pending shifts as it decodes
        return max(0, upto - first)

    def _move(
        self,
        run: Run,
        tokens: Sequence[int],
        keep: int,
        upto: int,
        stop: threading.Event,
        from_parked: bool = False,
    ) -> int:
        """``evaluate``, keeping ``run`` of the cached tokens.

        The run is parked in another sequence while the tokens before its new
        place are evaluated; then it is shifted there and joins the live
        sequence again. A job stopped meanwhile leaves it parked, for the next
        one (typing on cancels the requests before): ``from_parked``, ``run``
        is in the parked tokens.
        """
        import llama_cpp

        llm = self.llm
        memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
        if from_parked:
            source = self._parked_at + run.source
            # Only the part used stays parked: the rest would be copied back too.
            llama_cpp.llama_memory_seq_rm(memory, PARKED, -1, source)
            llama_cpp.llama_memory_seq_rm(memory, PARKED, source + run.size, -1)
            self._parked = self._parked[run.source : run.source + run.size]
            self._parked_at = source
        else:
            source = run.source
            llama_cpp.llama_memory_seq_cp(memory, 0, PARKED, source, source + run.size)
            self._parked = tuple(tokens[run.target : run.target + run.size])
            self._parked_at = source
        llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1)
        llm.n_tokens = keep
        done = self._append(tokens, run.target, stop)  # Stopped: stays parked
        end = source + run.size
        llama_cpp.llama_memory_seq_add(memory, PARKED, source, end, run.target - source)
        llama_cpp.llama_memory_seq_cp(
            memory, PARKED, 0, run.target, run.target + run.size
        )
        self._shifted = True  # until the next decode (see ``_save``)
        self._unpark()
        moved = run.target + run.size
        llm.input_ids[run.target : moved] = tokens[run.target : moved]
        llm.n_tokens = moved
        self.counters.reuses += 1
        self.counters.reused_tokens += run.size
        logger.debug(
            "moved %d cached tokens from %d to %d", run.size, source, run.target
        )
        return done + self._append(tokens, upto, stop)

    def _unpark(self) -> None:
        """Drop the parked run, if any."""
        if not self._parked:
            return
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.llm._ctx.ctx)
        llama_cpp.llama_memory_seq_rm(memory, PARKED, -1, -1)
        self._parked, self._parked_at = (), 0

    def _save(self, live: list[int]) -> SavedPrefix | None:
        import llama_cpp

        if self._shifted:
            return None  # its keys still wait for the shift (a stop after a move)
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > self.saved.max_bytes:
            return None
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        entry = SavedPrefix(tuple(live), ctypes.string_at(buf, n))
        if not n or not self.saved.add(entry):
            return None
        self.counters.states_saved += 1
        logger.debug("saved a KV prefix of %d tokens (%d bytes)", len(live), n)
        return entry

    def _restore(self, entry: SavedPrefix, shared: int) -> None:
        import llama_cpp

        llm = self.llm
        if not self.saved.take(entry):
            return
        llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        self._parked, self._parked_at = (), 0  # cleared with the rest
        data = ctypes.c_char_p(entry.data)  # read in place, not copied
        buf = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint8))
        if not llama_cpp.llama_state_seq_set_data(
            llm._ctx.ctx, buf, len(entry.data), 0
        ):
            logger.debug("a saved KV prefix could not be restored")
            llm.n_tokens = 0
            return
        n = len(entry.tokens)
        llm.input_ids[:n] = entry.tokens
        llm.n_tokens = n
        llm._requires_eval = True
        self.counters.states_restored += 1
        self.counters.restored_tokens += shared
        logger.debug("restored a KV prefix of %d tokens (%d shared)", n, shared)
