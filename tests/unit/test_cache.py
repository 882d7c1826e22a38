"""The completion cache: exact hits, typing through a completion, isolation."""

from __future__ import annotations

from tandem.cache import TAIL_CHARS, CompletionCache

PREFIX = "def is_palindrome(s):\n    "
SUFFIX = "\n\nprint(is_palindrome('abba'))\n"
COMPLETION = "return s == s[::-1]"


def test_exact_position_returns_whole_completion() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", PREFIX, SUFFIX) == COMPLETION
    assert (cache.hits, cache.misses) == (1, 0)


def test_typing_through_returns_the_rest() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", PREFIX + "ret", SUFFIX) == "urn s == s[::-1]"
    assert cache.lookup("a", PREFIX + "return s ==", SUFFIX) == " s[::-1]"


def test_typing_something_else_misses() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", PREFIX + "reverse", SUFFIX) is None
    assert cache.misses == 1


def test_typed_all_of_it_asks_the_model_again() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", PREFIX + COMPLETION, SUFFIX) is None


def test_suffix_must_match() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", PREFIX, "\nother()\n") is None


def test_documents_are_separate_and_forgotten() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("b", PREFIX, SUFFIX) is None
    cache.forget("a")
    assert cache.lookup("a", PREFIX, SUFFIX) is None


def test_empty_completion_is_remembered() -> None:
    cache = CompletionCache()
    cache.store("a", PREFIX, SUFFIX, "")
    assert cache.lookup("a", PREFIX, SUFFIX) == ""


def test_short_prefix_must_match_whole_not_just_its_tail() -> None:
    cache = CompletionCache()
    cache.store("a", "x = ", "", "1")
    # Same tail, but a different (longer) document start: not the same position.
    assert cache.lookup("a", "y = 2\nx = ", "") is None


def test_long_prefix_matches_on_tail() -> None:
    cache = CompletionCache()
    head = "#" * (TAIL_CHARS * 2)
    cache.store("a", head + PREFIX, SUFFIX, COMPLETION)
    assert cache.lookup("a", "@" + head + PREFIX + "re", SUFFIX) == COMPLETION[2:]


def test_lru_bounds() -> None:
    cache = CompletionCache(documents=2, per_document=2)
    for i in range(3):
        cache.store("a", f"p{i}", "", f"c{i}")
    assert cache.lookup("a", "p0", "") is None
    assert cache.lookup("a", "p2", "") == "c2"
    cache.store("b", "p", "", "x")
    cache.store("c", "p", "", "y")
    assert cache.lookup("a", "p2", "") is None  # least recently used document
