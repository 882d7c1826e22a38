"""The llama backend's KV cache: prompts evaluated in chunks, recent prefixes kept.

Prompts are evaluated a chunk at a time after the part already in the KV cache, and
a plain stop flag is checked between chunks: that stops work on every llama.cpp
backend, GPUs included (llama.cpp hands its abort callback to the CPU backend
only). The KV prefixes of the few most recent documents are kept as saved
sequence states, so switching between two files does not make both cold. Runs on
the backend's worker thread only.
"""

from __future__ import annotations

import collections
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


class KvCounters(Protocol):
    """The counters this module updates (the backend's LlamaCppCounters)."""

    prompt_chunks: int
    states_saved: int
    states_restored: int
    restored_tokens: int


class Stopped(Exception):
    """The stop flag was seen between two chunks of a prompt."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
        for entry in self._entries:
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
        self, llm: Llama, counters: KvCounters, chunk: int, cache_bytes: int
    ) -> None:
        self.llm = llm
        self.counters = counters
        self.chunk = max(1, min(chunk, llm.n_batch))
        self.saved = PrefixCache(cache_bytes)

    @property
    def tokens(self) -> list[int]:
        """The tokens whose KV entries are live, in order."""
        ids: list[int] = self.llm._input_ids.tolist()
        return ids

    def switch_to(self, tokens: Sequence[int]) -> None:
        """Before a job: bring back a saved prefix that serves it better.

        The live prefix is saved first when the job would throw most of it away.
        """
        if not self.saved.max_bytes:
            return
        live = self.tokens
        shared = common_prefix(live, tokens)
        entry, saved_shared = self.saved.best(tokens)
        if len(live) - shared >= MIN_SAVED_TOKENS and shared < len(live) // 2:
            self._save(live)
        if entry is not None and saved_shared > shared:
            self._restore(entry, saved_shared)

    def evaluate(self, tokens: Sequence[int], upto: int, stop: threading.Event) -> int:
        """Evaluate ``tokens[:upto]`` after what is cached, a chunk at a time.

        Returns how many tokens were newly evaluated. Raises ``Stopped`` at a
        chunk boundary once ``stop`` is set.
        """
        llm = self.llm
        keep = min(common_prefix(self.tokens, tokens), upto)
        if keep < llm.n_tokens:
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        done = 0
        for start in range(keep, upto, self.chunk):
            if stop.is_set():
                raise Stopped
            self.counters.prompt_chunks += 1  # started: the abort callback may end it
            llm.eval(tokens[start : min(start + self.chunk, upto)])
            done = min(start + self.chunk, upto) - keep
        return done

    def _save(self, live: list[int]) -> None:
        import llama_cpp

        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > self.saved.max_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if n and self.saved.add(SavedPrefix(tuple(live), bytes(buf)[:n])):
            self.counters.states_saved += 1
            logger.debug("saved a KV prefix of %d tokens (%d bytes)", len(live), n)

    def _restore(self, entry: SavedPrefix, shared: int) -> None:
        import llama_cpp

        llm = self.llm
        if not self.saved.take(entry):
            return
        llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        buf = (ctypes.c_uint8 * len(entry.data)).from_buffer_copy(entry.data)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(buf), 0):
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
