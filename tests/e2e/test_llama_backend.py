"""The llama.cpp backend in process with the real Qwen 0.5B model: cancellation at
chunk boundaries and by the abort callback, warm-ups, the KV prefixes of recent
documents, and model loads that are closed or do not fit."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import llama_cpp as llama_cpp_lib
import numpy as np
import pytest

from tandem import fim
from tandem.backends import llama_cpp, llama_kv
from tandem.backends.base import (
    BackendConfigError,
    BackendUnavailable,
    GenerateRequest,
    GenerationStats,
)
from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
from tandem.backends.llama_kv import FRESH_TOKENS
from tandem.context.builder import ContextFile
from tests.models import qwen_model

pytestmark = pytest.mark.slow


def options(**kw: Any) -> LlamaCppOptions:
    """Options for the test model; no background calibration unless asked."""
    kw.setdefault("calibrate", False)
    kw.setdefault("n_ctx", 2048)
    return LlamaCppOptions(model_path=str(qwen_model()), **kw)


@contextlib.asynccontextmanager
async def backend(**kw: Any) -> AsyncIterator[LlamaCppBackend]:
    """A loaded backend, closed afterwards."""
    b = LlamaCppBackend(options(**kw))
    try:
        await b.load()
        await b.drained()  # the speed calibration runs first (it is not a test)
        yield b
    finally:
        await b.aclose()


def long_request(n: int = 15, path: str = "long.py") -> GenerateRequest:
    """A prompt of some hundred tokens (n=15: about 450)."""
    body = "".join(
        f"def handler_{i}(request, value_{i}):\n"
        f"    return request.process(value_{i} * {i}, name='handler_{i}')\n\n"
        for i in range(n)
    )
    return GenerateRequest(
        prompt=body + "def main():\n    ",
        suffix="\n",
        max_tokens=8,
        path=path,
    )


async def until(check: Callable[[], bool]) -> None:
    """Yield to the loop until ``check()`` holds (no time bound: no clock).

    The worker thread moves the counters; it has no event to wait on.
    """
    while not check():  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def drain(stream: Any) -> str:
    return "".join([chunk async for chunk in stream])


async def test_cancel_mid_prompt_stops_at_a_chunk_boundary() -> None:
    # Without the abort callback (as on a GPU), only the chunk loop can stop it.
    async with backend(prompt_chunk=16, abort_callback=False) as b:
        assert b.info is not None and b.info.abort_callback is False
        req = long_request()
        n_prompt = len(b.prompt_tokens(req))
        counters = b.counters
        task = asyncio.create_task(drain(b.generate(req)))
        await until(lambda: counters.prompt_chunks >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        assert counters.prompt_chunk_stops == 1
        assert counters.prompt_aborts == 0
        kv = b._kv
        assert kv is not None
        evaluated = len(kv.tokens)
        assert 32 <= evaluated < n_prompt - 1  # stopped mid-prompt
        assert evaluated % 16 == 0  # ... at a chunk boundary
        assert counters.prompt_chunks == evaluated // 16
        # The worker goes on serving, reusing what was evaluated.
        stats = GenerationStats()
        await drain(b.generate(req, stats))
        assert stats.cached_tokens == evaluated
        assert counters.prompt_chunk_stops == 1


async def test_abort_callback_stops_inside_a_chunk() -> None:
    async with backend(prompt_chunk=512, abort_callback=True) as b:
        assert b.info is not None and b.info.abort_callback is True
        counters = b.counters
        task = asyncio.create_task(drain(b.generate(long_request())))
        await until(lambda: counters.prompt_chunks >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        assert counters.prompt_aborts == 1
        assert counters.prompt_chunk_stops == 0
        kv = b._kv
        assert kv is not None and len(kv.tokens) == 0  # the first chunk never ended


async def test_warm_evaluates_the_prompt_the_completion_then_reuses() -> None:
    async with backend() as b:
        req = long_request(8)
        tokens = b.prompt_tokens(req)
        suffix_at = tokens.index(b._fim_ids["<|fim_suffix|>"])
        assert await b.warm(req) == len(tokens)
        assert await b.warm(req) == 0  # cached already
        # Without the tail (a guessed cursor): nothing to do, nothing dropped.
        assert await b.warm(req, tail=False) == 0
        kv = b._kv
        assert kv is not None and len(kv.tokens) == len(tokens)
        assert b.counters.warm_runs == 3
        # A request right there evaluates one token again (for its logits).
        stats = GenerationStats()
        await drain(b.generate(req, stats))
        assert stats.cached_tokens == len(tokens) - 1
        # The user typed on: the same file, a few more characters at the cursor.
        typed = attrs.evolve(req, prompt=req.prompt + "ret")
        stats = GenerationStats()
        await drain(b.generate(typed, stats))
        assert stats.cached_tokens >= suffix_at - 4
        assert stats.prompt_tokens - stats.cached_tokens < 16


async def test_warm_is_cancelled_at_a_chunk_boundary() -> None:
    async with backend(prompt_chunk=16, abort_callback=False) as b:
        counters = b.counters
        task = asyncio.create_task(b.warm(long_request()))
        await until(lambda: counters.prompt_chunks >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        assert counters.prompt_chunk_stops == 1
        assert counters.warm_runs == 0


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "aborted"])
async def test_a_warm_up_its_request_continues_finishes_its_chunk(keep: bool) -> None:
    async with backend(prompt_chunk=64, abort_callback=True) as b:
        counters = b.counters
        req = long_request(40)  # ~1,200 tokens: many chunks on any machine
        task = asyncio.create_task(b.warm(req))
        await until(lambda: counters.prompt_chunks >= 1)
        if keep:
            b.keep_chunk()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        kv = b._kv
        assert kv is not None
        started = counters.prompt_chunks  # the last one started was under way
        if keep:  # it ended, kept; the next was not started
            assert (counters.prompt_aborts, counters.prompt_chunk_stops) == (0, 1)
            assert len(kv.tokens) == 64 * started
        else:  # aborted inside: what it had evaluated is gone
            assert (counters.prompt_aborts, counters.prompt_chunk_stops) == (1, 0)
            assert len(kv.tokens) == 64 * (started - 1)
        # The request after it evaluates only what the warm-up had not.
        warmed = len(kv.tokens)
        stats = GenerationStats()
        await drain(b.generate(attrs.evolve(req, max_tokens=1), stats))
        assert stats.cached_tokens == warmed


async def test_a_warm_up_starts_outside_its_tail_whatever_the_last_one_left() -> None:
    async with backend() as b:
        b._warm_tail = True  # as a warm-up stopped after its head leaves it
        stop = threading.Event()
        stop.set()
        assert b._warm(long_request(2), stop, threading.Event()) is None
        assert b._warm_tail is False


@pytest.mark.parametrize("whole", [True, False], ids=["its-prompt", "typed-since"])
async def test_a_chunk_of_the_warm_ups_tail_is_kept_for_its_very_prompt_only(
    whole: bool,
) -> None:
    async with backend(prompt_chunk=32, abort_callback=True) as b:
        counters = b.counters
        after = long_request(20).prompt  # ~600 tokens after the cursor
        req = GenerateRequest(
            prompt="def main():\n    ", suffix="\n" + after, max_tokens=1, path="t.py"
        )
        task = asyncio.create_task(b.warm(req))
        await until(lambda: b._warm_tail)
        at_tail = counters.prompt_chunks  # a tail chunk done once two more start
        await until(lambda: counters.prompt_chunks >= at_tail + 2)
        b.keep_chunk(whole=whole)  # whole: the request is at the warm-up's cursor
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        if whole:  # the chunk under way ended and was kept
            assert (counters.prompt_aborts, counters.prompt_chunk_stops) == (0, 1)
        else:  # text after another cursor: of no use to the request
            assert (counters.prompt_aborts, counters.prompt_chunk_stops) == (1, 0)
        kv = b._kv
        assert kv is not None
        head = b.prompt_tokens(req).index(b._fim_ids["<|fim_suffix|>"])
        kept = len(kv.tokens)  # the head, then whole tail chunks
        assert kept > head and (kept - head) % 32 == 0
        stats = GenerationStats()
        await drain(b.generate(req, stats))
        assert stats.cached_tokens == kept  # what the warm-up kept serves it


def document(name: str, n: int) -> GenerateRequest:
    """A file of its own: context, path and text differ from the first token."""
    body = "".join(
        f"def {name}_{i}(x):\n    return x * {i} + len('{name}')\n\n" for i in range(n)
    )
    context = (ContextFile(f"{name}_util.py", f"def {name}_helper():\n    pass\n"),)
    return GenerateRequest(
        prompt=body + "def main():\n    ",
        suffix="\n",
        max_tokens=4,
        path=f"{name}.py",
        context=context,
    )


@pytest.mark.parametrize("cache_mb", [64, 0], ids=["kept", "off"])
async def test_switching_files_restores_the_previous_prefix(cache_mb: int) -> None:
    async with backend(prefix_cache_mb=cache_mb) as b:
        a, other = document("alpha", 12), document("beta", 12)
        await drain(b.generate(a))
        await drain(b.generate(other))
        stats = GenerationStats()
        await drain(b.generate(a, stats))
        counters = b.counters
        if cache_mb:
            assert counters.states_saved >= 1 and counters.states_restored == 1
            assert stats.cached_tokens == stats.prompt_tokens - 1
            assert counters.restored_tokens >= stats.cached_tokens
        else:
            assert counters.states_saved == counters.states_restored == 0
            assert stats.cached_tokens < 8  # both files cold again


async def test_aclose_during_load_waits_and_frees_the_model() -> None:
    b = LlamaCppBackend(options())
    loading = asyncio.create_task(b.load())
    await asyncio.sleep(0)  # the load is submitted to the worker
    await b.aclose()
    assert not b.loaded and b._llm is None
    assert llama_cpp.resident_bytes() == 0
    with pytest.raises((BackendUnavailable, asyncio.CancelledError)):
        await loading
    with pytest.raises(BackendUnavailable):
        await b.load()


async def test_ram_check_counts_the_models_already_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = qwen_model().stat().st_size
    # RAM for one copy of the model and a little more, not for two.
    monkeypatch.setattr(llama_cpp, "memory_available", lambda: int(size * 1.5))
    async with backend() as first:
        assert llama_cpp.resident_bytes() == size
        second = LlamaCppBackend(options())
        with pytest.raises(BackendConfigError, match="loaded already hold"):
            await second.load()
        await second.aclose()
        assert first.loaded
    assert llama_cpp.resident_bytes() == 0
    async with backend():  # room again once the first is closed
        pass


async def test_calibration_runs_after_loading() -> None:
    async with backend(calibrate=True) as b:
        await b.drained()
        assert b.calibration is not None
        prompt_tps, gen_tps = b.calibration
        assert prompt_tps > 0 and gen_tps > 0
        assert b.counters.prompt_chunks >= llama_cpp.CALIBRATION_PROMPT // 64
        assert b._kv is not None and b._kv.tokens == []  # left empty for real work


def replay(
    b: LlamaCppBackend, prompt: list[int], ids: list[int]
) -> list[tuple[float, float]]:
    """Worker: evaluate ``prompt`` afresh, then ``ids`` one at a time.

    For each id, (its log-probability, the largest of its row), with a log-softmax
    of the logits computed here, independently of the backend's. The prompt's last
    token is evaluated alone, as the backend does (a batch of one takes another
    kernel on the CPU: its logits may differ by ~0.1 from a larger batch's).
    """
    llm = b._llm
    assert llm is not None
    llm.reset()
    llm._ctx.kv_cache_clear()
    llm.eval(prompt[:-1])
    llm.eval(prompt[-1:])
    found = []
    for token in ids:
        row = np.ctypeslib.as_array(
            llama_cpp_lib.llama_get_logits_ith(llm._ctx.ctx, -1),
            shape=(llm.n_vocab(),),
        ).astype(np.float64)
        shifted = row - row.max()
        logsoftmax = shifted - np.log(np.exp(shifted).sum())
        found.append((float(logsoftmax[token]), float(logsoftmax.max())))
        llm.eval([token])
    return found


async def test_token_logprobs_only_when_asked_one_per_token_of_the_greedy_row() -> None:
    async with backend() as b:
        req = long_request(4)  # greedy: temperature 0
        plain = GenerationStats()
        text = await drain(b.generate(req, plain))
        assert plain.generated_tokens > 0
        assert plain.token_logprobs == [] and plain.token_offsets == []
        scored = GenerationStats()
        again = await drain(b.generate(attrs.evolve(req, logprobs=True), scored))
        assert again == text  # recording reads the logits; the tokens are the same
        logprobs, offsets = scored.token_logprobs, scored.token_offsets
        assert len(logprobs) == len(offsets) == scored.generated_tokens
        assert all(lp <= 0 for lp in logprobs)
        assert offsets[0] == 0 and offsets == sorted(offsets)
        assert offsets[-1] < len(text)
        # The tokens the model sampled (all but the last were evaluated after).
        llm = b._llm
        assert llm is not None
        prompt = b.prompt_tokens(req)
        ids = [int(t) for t in llm.input_ids[len(prompt) : llm.n_tokens]]
        assert 1 <= len(ids) <= len(logprobs)
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(b._executor, replay, b, prompt, ids)
        for recorded, (logprob, best) in zip(logprobs, rows, strict=False):
            assert recorded == pytest.approx(logprob, abs=0.05)
            assert logprob >= best - 0.05  # greedy took the row's most likely


async def test_flash_attention_is_on_and_a_refusal_loads_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with backend() as b:
        assert b.info is not None and b.info.flash_attention
        on = await drain(b.generate(long_request()))
    made: list[bool] = []
    real = llama_cpp_lib.Llama

    def refusing(*args: Any, **kw: Any) -> llama_cpp_lib.Llama:
        made.append(kw["flash_attn"])
        if kw["flash_attn"]:
            raise ValueError("Failed to create llama_context")
        return real(*args, **kw)

    monkeypatch.setattr(llama_cpp_lib, "Llama", refusing)
    async with backend() as b:
        assert b.info is not None and not b.info.flash_attention
        off = await drain(b.generate(long_request()))
    assert made == [True, False]
    assert on and off  # both answer (flash attention may change the numerics)


def with_context(source: str, lines: int = 12) -> GenerateRequest:
    """The same file and cursor, with one other file's code as context."""
    req = long_request(lines)
    return attrs.evolve(req, max_tokens=12, context=(ContextFile("util.py", source),))


HELPERS = "def helper(x):\n    return x + 1\n"
PRICING = (
    "def apply_volume_discount(price: float, quantity: int) -> float:\n"
    '    """The unit price once the volume discount for ``quantity`` applies."""\n'
    "def shipping_cost(weight: float, express: bool = False) -> float:\n"
    '    """What shipping a parcel of ``weight`` kilograms costs."""\n'
)


def moved_window(b: LlamaCppBackend, req: GenerateRequest) -> int:
    """The tokens of the window a changed context leaves to be moved: from the
    start of the file's text (after the context's comment block, which Qwen's
    prompts begin with) to ``FRESH_TOKENS`` before the cursor."""
    tokens = b.prompt_tokens(req)
    head = b.tokenize(fim.comment_block(req.context, req.comment))
    start = tokens.index(b._fim_ids["<|fim_prefix|>"]) + 1
    assert tokens[start : start + len(head)] == head  # the window starts after it
    return tokens.index(b._fim_ids["<|fim_suffix|>"]) - FRESH_TOKENS - start - len(head)


async def test_an_overlong_prompt_loses_the_context_first() -> None:
    """Over the context window, the context goes (whole) before the file's text."""
    context = (ContextFile("util.py", PRICING),)
    req = attrs.evolve(long_request(40), context=context)
    async with backend(n_ctx=512) as b:
        llm = b._llm
        assert llm is not None
        tokens = b.prompt_tokens(req)
        text = llm.detokenize(tokens).decode()
        assert len(tokens) <= 512 - req.max_tokens
        assert "util.py" not in text and "apply_volume_discount" not in text
        assert text.endswith("def main():\n    \n")  # the cursor's text is kept
        # Where it fits, the context stays.
        fits = attrs.evolve(req, prompt=req.prompt[-600:])
        assert "apply_volume_discount" in llm.detokenize(b.prompt_tokens(fits)).decode()


@pytest.mark.parametrize("reuse", [32, 0], ids=["moved", "off"])
async def test_a_changed_context_moves_the_cached_window_after_it(reuse: int) -> None:
    """The context before the window changed (the cursor reached ``expr.``): the
    window, cached after the old context, is moved instead of evaluated again
    (all but its last ``FRESH_TOKENS``)."""
    old, new = with_context(HELPERS), with_context(PRICING)
    async with backend(cache_reuse=0) as b:
        fresh = await drain(b.generate(new))
    async with backend(cache_reuse=reuse) as b:
        await drain(b.generate(old))
        stats = GenerationStats()
        text = await drain(b.generate(new, stats))
        counters = b.counters
        window = moved_window(b, new)
        evaluated = stats.prompt_tokens - stats.cached_tokens
        shared = llama_kv.common_prefix(b.prompt_tokens(old), b.prompt_tokens(new))
        if reuse:
            assert counters.reuses == 1
            assert counters.reused_tokens >= window
            # The new context, the window's last tokens, the text after the cursor.
            assert evaluated == stats.prompt_tokens - shared - counters.reused_tokens
        else:
            assert counters.reuses == counters.reused_tokens == 0
            assert evaluated > window
        # Moved entries were computed after the old context: an approximation,
        # which here leaves the first line as a fresh evaluation has it.
        assert text.split("\n")[0] == fresh.split("\n")[0]


async def test_a_run_parked_by_a_stopped_request_serves_the_next_one() -> None:
    """Typing on cancels a request while it evaluates the new context: the
    window it was moving stays parked and the next request moves it."""
    more = PRICING * 3  # a context of several chunks
    async with backend(cache_reuse=0) as b:
        fresh = await drain(b.generate(with_context(more)))
    async with backend(cache_reuse=32, prompt_chunk=16, abort_callback=False) as b:
        await drain(b.generate(with_context(HELPERS)))
        counters = b.counters
        chunks = counters.prompt_chunks
        task = asyncio.create_task(drain(b.generate(with_context(more))))
        await until(lambda: counters.prompt_chunks >= chunks + 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await b.drained()
        assert counters.prompt_chunk_stops == 1 and counters.reuses == 0
        req = with_context(more)
        text = await drain(b.generate(req))
        assert counters.reuses == 1
        assert counters.reused_tokens >= moved_window(b, req)
        assert text.split("\n")[0] == fresh.split("\n")[0]
