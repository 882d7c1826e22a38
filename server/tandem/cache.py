"""Recent completions per document, found again when the user types them.

A completion shown for the text ``P`` before the cursor also answers a later request
at ``P + t`` when ``t`` is the start of that completion (the user is typing what was
suggested): the answer is the rest of it. Pure data structure; no I/O, no asyncio.
"""

from __future__ import annotations

from collections import deque

import attrs
from cachetools import LRUCache

TAIL_CHARS = 2048
"""How much of the text before the cursor identifies an entry."""
SUFFIX_CHARS = 256
"""How much of the text after the cursor must match."""


@attrs.frozen
class Entry:
    """One completion and where it was made."""

    prefix_tail: str
    suffix_head: str
    completion: str
    origin: str = "model"
    """What made it: ``model`` (a request) or ``prefetch``."""


@attrs.frozen
class Hit:
    """A cached completion found for a request: the part not typed yet."""

    text: str
    origin: str


class CompletionCache:
    """An LRU of documents, each with its most recent completions."""

    def __init__(self, documents: int = 64, per_document: int = 16) -> None:
        self._docs: LRUCache[str, deque[Entry]] = LRUCache(maxsize=documents)
        self._per_document = per_document
        self.hits = 0
        self.misses = 0

    def store(
        self,
        uri: str,
        prefix: str,
        suffix: str,
        completion: str,
        origin: str = "model",
    ) -> None:
        """Remember ``completion`` for the cursor between ``prefix`` and ``suffix``."""
        entries = self._docs.get(uri)
        if entries is None:
            entries = self._docs[uri] = deque(maxlen=self._per_document)
        entry = Entry(prefix[-TAIL_CHARS:], suffix[:SUFFIX_CHARS], completion, origin)
        same = (entry.prefix_tail, entry.suffix_head)
        for old in [e for e in entries if (e.prefix_tail, e.suffix_head) == same]:
            entries.remove(old)
        entries.append(entry)

    def find(self, uri: str, prefix: str, suffix: str) -> Hit | None:
        """The rest of a cached completion the user is typing through, or None.

        An exact position match returns the whole completion (it may be empty: the
        model had nothing to add there).
        """
        entries = self._docs.get(uri)
        if entries:
            head = suffix[:SUFFIX_CHARS]
            for entry in reversed(entries):
                if entry.suffix_head != head:
                    continue
                rest = _typed_through(entry, prefix)
                if rest is not None:
                    self.hits += 1
                    return Hit(rest, entry.origin)
        self.misses += 1
        return None

    def lookup(self, uri: str, prefix: str, suffix: str) -> str | None:
        """The text of ``find``'s hit."""
        hit = self.find(uri, prefix, suffix)
        return hit.text if hit is not None else None

    def forget(self, uri: str) -> None:
        """Drop a document's entries (closed, or settings changed)."""
        self._docs.pop(uri, None)

    def clear(self) -> None:
        """Drop everything."""
        self._docs.clear()


def _typed_through(entry: Entry, prefix: str) -> str | None:
    """If ``prefix`` is the entry's prefix plus a start of its completion, the rest."""
    tail = entry.prefix_tail
    completion = entry.completion
    for typed in range(min(len(completion), len(prefix)), -1, -1):
        if typed and not prefix.endswith(completion[:typed]):
            continue
        before = prefix[: len(prefix) - typed]
        if before.endswith(tail) and (
            len(tail) == TAIL_CHARS or len(before) == len(tail)
        ):
            rest = completion[typed:]
            if typed and not rest.strip():
                return None  # typed all of it: ask the model what comes next
            return rest
    return None
