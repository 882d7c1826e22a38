"""In-process llama.cpp backend (llama-cpp-python): the private, offline default.

All llama.cpp work runs on one worker thread, so the event loop never blocks and
requests are served one at a time on one KV cache (consecutive prompts that share a
prefix skip re-evaluating it; the prefixes of a few recent documents are kept, see
``llama_kv``). Cancellation sets a per-job flag, checked between prompt chunks of
``promptChunk`` tokens (on every llama.cpp backend, GPUs included), between
generated tokens, and, without GPU offload, by llama.cpp's abort callback inside a
chunk (it aborts ``llama_decode`` within milliseconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import io
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from tandem import fim
from tandem.backends import llama_kv, llama_vocab
from tandem.backends.base import (
    NOT_KEPT,
    BackendConfigError,
    BackendError,
    BackendUnavailable,
    ChatRequest,
    ContextTooLarge,
    GenerateRequest,
    GenerationStats,
)
from tandem.system import GIB, MODEL_RAM_FACTOR, memory_available

if TYPE_CHECKING:
    from llama_cpp import Llama

    from tandem.config import LocalSettings

logger = logging.getLogger(__name__)

_DONE = object()


@attrs.frozen
class LlamaCppOptions:
    """Options of the in-process backend, from ``settings.local``."""

    model_path: str
    n_gpu_layers: int | None = None
    """Layers to offload; None means all when the build supports GPU offload."""
    n_threads: int | None = None
    n_ctx: int = 4096
    n_batch: int = 512
    fim_format: str = "auto"
    prompt_chunk: int = 128
    """Prompt tokens evaluated between two checks of the stop flag."""
    abort_callback: bool | None = None
    """llama.cpp's abort callback, which stops inside a chunk; None: only without
    GPU offload (llama.cpp gives it to the CPU backend alone)."""
    prefix_cache_mb: int = 256
    """KV prefixes of recent documents kept, in MB; 0: none."""
    cache_reuse: int = 0
    """Shortest run of cached tokens moved to a new place in a prompt; 0: none
    (see ``llama_kv``)."""
    calibrate: bool = True
    """Measure the speed after loading (in the background, preempted by work)."""
    flash_attention: bool | None = None
    """llama.cpp's flash attention; None: on the CPU only (see LocalSettings)."""

    @classmethod
    def from_settings(cls, local: LocalSettings, model_path: str) -> LlamaCppOptions:
        """The options ``settings.local`` gives, for the model at ``model_path``."""
        return cls(
            model_path=model_path,
            n_gpu_layers=local.n_gpu_layers,
            n_threads=local.n_threads,
            n_ctx=local.n_ctx,
            fim_format=local.fim_format,
            prompt_chunk=local.prompt_chunk,
            prefix_cache_mb=local.prefix_cache_mb,
            cache_reuse=local.cache_reuse,
            flash_attention=local.flash_attention,
        )


@attrs.frozen
class ModelInfo:
    """What was loaded, for status reports and the health check."""

    path: str
    name: str
    architecture: str
    fim_family: str | None
    n_ctx: int
    n_ctx_train: int
    gpu_offload: bool
    n_gpu_layers: int
    n_threads: int
    load_ms: float
    abort_callback: bool = False
    """Whether llama.cpp's abort callback is installed (see LlamaCppOptions)."""
    prompt_chunk: int = 0
    prompt_tps: float = 0.0
    """Prompt tokens evaluated per second, measured after loading (0: not yet)."""
    gen_tps: float = 0.0
    """Tokens generated per second, measured after loading (0: not yet)."""
    flash_attention: bool = False
    """Whether the model was loaded with flash attention."""


_llama_logger = logging.getLogger("tandem.llama_cpp")


def route_llama_log() -> None:
    """Send llama.cpp's own log lines to our logger at debug level, not stderr.

    Its failures reach us as exceptions; its "errors" include routine KV-cache
    notices that must not alarm users.
    """
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", errors="replace").rstrip()
        if message:
            _llama_logger.debug("llama.cpp[%d]: %s", level, message)

    global _log_callback
    _log_callback = callback  # ctypes callbacks must outlive their registration
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


_log_callback: Any = None


def default_threads() -> int:
    """Threads for llama.cpp: the CPUs this process may use, at most 16."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 16))


def gpu_layers(requested: int | None) -> tuple[int, bool]:
    """Resolve the layer count to offload: all of them when the build can."""
    import llama_cpp

    supported = bool(llama_cpp.llama_supports_gpu_offload())
    if requested is not None:
        return requested, supported
    return (-1 if supported else 0), supported


def check_gguf(path: Path) -> None:
    """Fail early and clearly on a missing or non-GGUF model file."""
    if not path.is_file():
        raise BackendConfigError(
            f"model file not found: {path}. Set tandem.local.modelPath or "
            "TANDEM_MODEL to a .gguf file."
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise BackendConfigError(f"{path} is not a GGUF model file")


_LOAD_LOCK = threading.Lock()
"""One model load at a time in this process, so each RAM check sees the last."""
_RESIDENT: dict[int, int] = {}
"""Bytes of model file mapped into RAM, per loaded backend (id) in this process."""


def resident_bytes() -> int:
    """RAM held by the models this process has loaded (without GPU offload).

    Their weights are memory-mapped file pages, which the system still counts
    as available memory; a second model must not count on them.
    """
    return sum(_RESIDENT.values())


def check_fits(
    path: Path, on_gpu: bool, available: int | None, resident: int = 0
) -> None:
    """Refuse, before loading, a model that cannot fit in free RAM.

    Loading it anyway would swap the machine to a halt (or get the editor's
    process killed). ``resident``: RAM the models already loaded here hold.
    With GPU offload the weights go to the GPU: not checked.
    """
    if on_gpu or available is None:
        return
    need = path.stat().st_size * MODEL_RAM_FACTOR
    available -= resident
    if need > available:
        held = (
            f" (models loaded already hold {resident / GIB:.1f} GB)" if resident else ""
        )
        raise BackendConfigError(
            f"{path.name} needs about {need / GIB:.1f} GB of RAM and "
            f"{max(available, 0) / GIB:.1f} GB is free{held}. As a rule of thumb "
            "a 7B model needs ~8 GB, 13B ~16 GB, 70B 64 GB or more (or a GPU). Set "
            "tandem.local.modelPath to a smaller GGUF (`tandem-ls doctor` recommends "
            "a size and quantisation for this machine)."
        )


CALIBRATION_PROMPT = 256
"""Prompt tokens of the speed calibration: the length of a typical prompt."""
CALIBRATION_CHUNK = 64
CALIBRATION_TOKENS = 8
_CALIBRATION = """\
def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    \"\"\"Merge overlapping closed intervals, sorted by start.\"\"\"
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
"""


@attrs.define
class LlamaCppCounters:
    """What the worker did, since load; the status command shows them."""

    runs: int = 0
    prompt_aborts: int = 0
    """Jobs stopped by llama.cpp's abort callback inside a prompt chunk."""
    prompt_chunk_stops: int = 0
    """Jobs stopped by the stop flag at a boundary between prompt chunks."""
    prompt_chunks: int = 0
    """Prompt chunks started (warm-ups and calibration included)."""
    generation_stops: int = 0
    """Requests stopped between tokens (cancelled, or the engine had enough)."""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens found in the KV cache and not evaluated again."""
    generated_tokens: int = 0
    warm_runs: int = 0
    """Warm-ups that ran to the end."""
    warm_tokens: int = 0
    """Tokens warm-ups evaluated into the KV cache."""
    states_saved: int = 0
    """KV prefixes saved when the cache switched to another document."""
    states_restored: int = 0
    """Saved KV prefixes brought back for a job."""
    restored_tokens: int = 0
    """Prompt tokens served by restored prefixes (also in cached_tokens)."""
    reuses: int = 0
    """Runs of cached tokens moved to a new place in a prompt."""
    reused_tokens: int = 0
    """Prompt tokens those runs held (also in cached_tokens)."""


class LlamaCppBackend:
    """Generate with a GGUF model loaded in this process."""

    name: ClassVar[str] = "llama_cpp"

    def __init__(self, options: LlamaCppOptions) -> None:
        self.options = options
        self.info: ModelInfo | None = None
        self.counters = LlamaCppCounters()
        self._llm: Llama | None = None
        self._kv: llama_kv.KvCache | None = None
        self._fim: fim.FimFormat | None = None
        self._fim_ids: dict[str, int] = {}
        self._stop_ids: frozenset[int] = frozenset()
        self._prefix_bos: list[int] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tandem-llama"
        )
        self._load_future: asyncio.Future[ModelInfo] | None = None
        self._abort_flag: threading.Event | None = None
        self._keep_chunk = False
        """Set by ``keep_chunk``: the warm-up being cancelled finishes its chunk."""
        self._keep_tail = False
        """Set by ``keep_chunk(whole=True)``: even a chunk of the warm-up's tail."""
        self._warm_tail = False
        """The running warm-up evaluates its tail (the text after the cursor)."""
        self._abort_cb: Any = None  # keeps the ctypes callback alive
        self._calibration_stop = threading.Event()
        self._calibrating: asyncio.Future[None] | None = None
        self._closed = False
        self._freed = False
        self._chat_format: Any = None
        self._template_has_bos = False

    # -- loading ---------------------------------------------------------------

    async def load(self) -> ModelInfo:
        """Load the model once (on the worker thread); later calls wait for it.

        The speed calibration runs next on the worker, in the background: the
        model is ready before it ends, and any job preempts it.
        """
        if self._closed:
            raise BackendUnavailable("the local backend was shut down")
        if self._load_future is None:
            loop = asyncio.get_running_loop()
            self._load_future = asyncio.ensure_future(
                loop.run_in_executor(self._executor, self._load)
            )
            if self.options.calibrate:
                calibrating = loop.run_in_executor(self._executor, self._calibrate)
                calibrating.add_done_callback(_consume_exception)
                self._calibrating = calibrating
        return await asyncio.shield(self._load_future)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._llm is not None and not self._closed

    def _load(self) -> ModelInfo:
        with _LOAD_LOCK:
            return self._load_locked()

    def _new_llama(
        self, path: Path, n_gpu: int, threads: int, flash: bool
    ) -> tuple[Llama | None, str]:
        """A ``Llama`` for the model at ``path`` with these options.

        (None, why) when flash attention was asked for and llama.cpp could not
        create a context with it (the caller tries again without); other
        failures raise.
        """
        import llama_cpp

        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.options.n_ctx,
                n_batch=self.options.n_batch,
                n_gpu_layers=n_gpu,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=flash,
                verbose=True,
            )
            if self.options.cache_reuse:
                llama_kv.two_sequences(llm)
        except ValueError as e:
            if flash and "context" in str(e):
                return None, str(e)
            raise
        return llm, ""

    def _load_locked(self) -> ModelInfo:
        if self._closed:
            raise BackendUnavailable("the local backend was shut down")
        path = Path(self.options.model_path).expanduser()
        check_gguf(path)
        n_gpu, supported = gpu_layers(self.options.n_gpu_layers)
        on_gpu = supported and n_gpu != 0
        check_fits(path, on_gpu, memory_available(), resident_bytes())
        threads = self.options.n_threads or default_threads()
        started = time.perf_counter()
        route_llama_log()
        chatter = io.StringIO()
        try:
            # verbose=False would make llama-cpp-python dup2() fds 1 and 2 to
            # /dev/null while it loads: process-wide, so LSP messages the event
            # loop writes to stdout meanwhile are lost. Stay verbose and catch
            # its Python-level prints instead (llama.cpp's own log is routed).
            flash = self.options.flash_attention
            if flash is None:
                flash = not on_gpu
            with contextlib.redirect_stderr(chatter):
                llm, refused = self._new_llama(path, n_gpu, threads, flash)
                if llm is None:
                    gc.collect()  # the failed attempt's weights, before a second copy
                    logger.info("no flash attention (%s): loading without it", refused)
                    flash = False
                    llm, _ = self._new_llama(path, n_gpu, threads, flash)
                    assert llm is not None
        except (ValueError, RuntimeError, OSError) as e:
            raise BackendConfigError(
                f"llama.cpp could not load {path} ({e}): the file may be truncated "
                "(download it again) or in a format this llama.cpp does not support. "
                "Set tandem.local.modelPath to another GGUF file."
            ) from e
        finally:
            logger.debug("llama-cpp-python: %s", chatter.getvalue().strip())
        if self._is_closed():  # aclose() came while loading: free it now
            llm.close()
            raise BackendUnavailable("the local backend was shut down")
        llm.verbose = False  # no per-request prints from here on
        load_ms = (time.perf_counter() - started) * 1000
        if not on_gpu:
            _RESIDENT[id(self)] = path.stat().st_size
        self._llm = llm
        callback = (
            self.options.abort_callback
            if self.options.abort_callback is not None
            else not on_gpu
        )
        if callback:
            self._install_abort_callback(llm)
        self._kv = llama_kv.KvCache(
            llm,
            self.counters,
            self.options.prompt_chunk,
            self.options.prefix_cache_mb << 20,
            self.options.cache_reuse if llama_kv.can_move(llm) else 0,
        )
        meta = llm.metadata
        arch = meta.get("general.architecture", "")
        name = meta.get("general.name", path.stem)
        self._detect_fim(llm, arch, name, path)
        self._prefix_bos = llm.tokenize(b"", add_bos=True, special=False)
        template = meta.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            # The template's own special tokens: we stop on end-of-generation
            # token ids, not on text, so the formatter's stop strings are unused.
            bos = self._token_text(llm.token_bos())
            self._chat_format = Jinja2ChatFormatter(
                template, eos_token=self._token_text(llm.token_eos()), bos_token=bos
            )
            self._template_has_bos = bool(bos) and "bos_token" in template
        self.info = ModelInfo(
            path=str(path),
            name=name,
            architecture=arch,
            fim_family=self._fim.family if self._fim else None,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            gpu_offload=on_gpu,
            n_gpu_layers=n_gpu,
            n_threads=threads,
            load_ms=load_ms,
            abort_callback=callback,
            prompt_chunk=self._kv.chunk,
            flash_attention=flash,
        )
        logger.info(
            "loaded %s (%s, FIM %s) in %.0f ms, GPU offload %s, %d threads, "
            "prompt chunks of %d tokens, abort callback %s",
            path.name,
            arch,
            self.info.fim_family or "off",
            load_ms,
            "on" if on_gpu else "off",
            threads,
            self._kv.chunk,
            "on" if callback else "off",
        )
        return self.info

    def _is_closed(self) -> bool:
        """Whether aclose() was called (read again: another task may set it)."""
        return self._closed

    def _detect_fim(self, llm: Llama, arch: str, name: str, path: Path) -> None:
        """FIM format and token ids from llama.cpp's vocabulary, and stop ids."""
        requested = self.options.fim_format
        found = llama_vocab.detect(
            llama_vocab.Vocabulary(llm._model), arch, name, requested
        )
        if found.format is None and requested not in ("auto", "none"):
            raise BackendConfigError(
                f"fimFormat {requested!r} does not match the vocabulary of {path.name}"
            )
        self._fim = found.format
        self._fim_ids = found.ids
        stop_texts = self._fim.stop if self._fim else ()
        self._stop_ids = frozenset(found.ids[t] for t in stop_texts if t in found.ids)

    def _calibrate(self) -> None:
        """Worker: time a prompt of typical length and a few generated tokens.

        The speed the engine starts from; it smooths with every request after.
        Evaluated in chunks; any job submitted meanwhile stops it at the next
        chunk (what was measured by then is kept).
        """
        llm, kv, stop = self._llm, self._kv, self._calibration_stop
        if llm is None or kv is None or self.info is None or stop.is_set():
            return
        text = self.tokenize(_CALIBRATION)
        body = (text * (CALIBRATION_PROMPT // max(1, len(text)) + 1))[
            :CALIBRATION_PROMPT
        ]
        tokens = self._prefix_bos + body
        found: dict[str, float] = {}
        try:
            started = time.perf_counter()
            first = min(CALIBRATION_CHUNK, len(tokens))
            llm.eval(tokens[:first])
            self.counters.prompt_chunks += 1
            prompt_s = time.perf_counter() - started
            done = first
            # A few tokens right away: generation speed needs no long prompt.
            started = time.perf_counter()
            n = 0
            for _ in llm.generate(tokens[:first], temp=0.0, reset=True):
                n += 1
                if n > CALIBRATION_TOKENS:
                    break
            gen_s = time.perf_counter() - started
            if n > 1 and gen_s > 0:
                found["gen_tps"] = n / gen_s
            # Then the rest of the prompt, behind what the first chunk left.
            llm.n_tokens = first
            llm._ctx.kv_cache_seq_rm(-1, first, -1)
            for start in range(first, len(tokens), CALIBRATION_CHUNK):
                if stop.is_set():
                    break
                t0 = time.perf_counter()
                llm.eval(tokens[start : start + CALIBRATION_CHUNK])
                self.counters.prompt_chunks += 1
                prompt_s += time.perf_counter() - t0
                done = min(start + CALIBRATION_CHUNK, len(tokens))
            if prompt_s > 0:
                found["prompt_tps"] = done / prompt_s
        finally:
            # Calibration text is no prefix of anything: start the cache empty.
            llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
            llm.n_tokens = 0
        if found and self.info is not None:
            self.info = attrs.evolve(
                self.info,
                prompt_tps=found.get("prompt_tps", 0.0),
                gen_tps=found.get("gen_tps", 0.0),
            )
            logger.info(
                "measured %.0f prompt tokens/s (%d tokens), %.0f generated tokens/s",
                self.info.prompt_tps,
                done,
                self.info.gen_tps,
            )

    @property
    def calibration(self) -> tuple[float, float] | None:
        """(prompt tokens/s, generated tokens/s) measured after loading."""
        info = self.info
        if info is None or not info.prompt_tps or not info.gen_tps:
            return None
        return info.prompt_tps, info.gen_tps

    def _install_abort_callback(self, llm: Llama) -> None:
        import llama_cpp

        def should_abort(_data: Any) -> bool:
            flag = self._abort_flag
            return flag is not None and flag.is_set()

        self._abort_cb = llama_cpp.ggml_abort_callback(should_abort)
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)

    def _token_text(self, token: int) -> str:
        assert self._llm is not None
        if token < 0:
            return ""
        piece: object = self._llm._model.token_get_text(token)
        return piece if isinstance(piece, str) else ""

    # -- prompts -----------------------------------------------------------------

    @property
    def fim_format(self) -> fim.FimFormat | None:
        """The FIM format in use (None: prefix-only completion)."""
        return self._fim

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary."""
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Tokenize user text: no BOS, special-token parsing off."""
        assert self._llm is not None
        return self._llm.tokenize(text.encode(), add_bos=False, special=False)

    def prompt_tokens(self, req: GenerateRequest) -> list[int]:
        """Assemble the prompt as token ids, fitted into the context window."""
        assert self._llm is not None
        if self._fim is not None and req.suffix is not None:
            parts = self._fim.render(
                req.prompt, req.suffix, req.path, req.context, req.repo, req.comment
            )
            prefix_piece = parts.index(fim.Special(self._fim.prefix)) + 1
        else:
            parts = [fim.comment_block(req.context, req.comment) + req.prompt]
            prefix_piece = 0
        pieces = [
            [self._fim_ids[p.text]] if isinstance(p, fim.Special) else self.tokenize(p)
            for p in parts
        ]
        limit = self._llm.n_ctx() - req.max_tokens - len(self._prefix_bos)
        overflow = sum(map(len, pieces)) - limit
        if overflow > 0 and req.context:
            # Too long: the context goes first, whole (cut mid-way, a comment
            # block's first line would read as code).
            return self.prompt_tokens(attrs.evolve(req, context=()))
        if overflow > 0:
            # Drop the oldest prefix text first; then the far end of the suffix.
            cut = min(overflow, len(pieces[prefix_piece]))
            pieces[prefix_piece] = pieces[prefix_piece][cut:]
            overflow -= cut
            if overflow > 0:
                for piece in pieces:
                    if len(piece) > 1 and piece is not pieces[prefix_piece]:
                        del piece[len(piece) - min(overflow, len(piece)) :]
                        break
        return self._prefix_bos + [t for piece in pieces for t in piece]

    def chat_tokens(self, req: ChatRequest) -> list[int]:
        """The chat prompt as token ids; ContextTooLarge when it cannot fit."""
        assert self._llm is not None
        prompt = self._chat_prompt(req)
        tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
        if not self._template_has_bos and self._prefix_bos:
            tokens = self._prefix_bos + tokens
        available = self._llm.n_ctx() - req.max_tokens
        if len(tokens) > available:
            raise ContextTooLarge(len(tokens), available)
        return tokens

    def _chat_prompt(self, req: ChatRequest) -> str:
        messages = [{"role": m.role, "content": m.content} for m in req.messages]
        if self._chat_format is None:
            # No template in the GGUF: a plain transcript the model can continue.
            turns = [f"### {m['role'].title()}\n{m['content']}\n" for m in messages]
            return "\n".join(turns) + "\n### Assistant\n"
        prompt: str = self._chat_format(messages=messages).prompt
        return prompt

    # -- generation --------------------------------------------------------------

    def generate(
        self, req: GenerateRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the completion; cancelling stops prompt eval and generation."""
        tokens = functools.partial(self.prompt_tokens, req)
        stats = stats or GenerationStats()
        return self._stream(
            _Job(
                tokens,
                req.max_tokens,
                req.temperature,
                req.stop,
                stats,
                req.logprobs,
                fim=True,
            )
        )

    def chat(
        self, req: ChatRequest, stats: GenerationStats | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream an answer rendered with the model's own chat template."""
        tokens = functools.partial(self.chat_tokens, req)
        stats = stats or GenerationStats()
        return self._stream(
            _Job(tokens, req.max_tokens, req.temperature, (), stats, req.logprobs)
        )

    def new_tokens(self, req: GenerateRequest) -> int | None:
        """Tokens of ``req``'s prompt that the KV cache does not hold.

        Neither live nor in a saved prefix: what a request with it would
        evaluate (None: not loaded). Read on the event loop while the worker
        may be evaluating: a snapshot, good for choosing between prompts, not a
        promise.
        """
        kv = self._kv
        if kv is None or self._llm is None or self._closed:
            return None
        return kv.new_tokens(self.prompt_tokens(req))

    async def warm(
        self, req: GenerateRequest, tail: bool = True, keep_live: bool = False
    ) -> int:
        """Evaluate ``req``'s prompt into the KV cache, with no sampling.

        All of ``prompt_tokens(req)``, in order: its start (the context and the
        text before the cursor) serves the requests made while typing from
        there; the rest (the text after the cursor and the FIM markers around
        it, which each keystroke changes the place of) serves a request made at
        this very cursor before any keystroke; ``tail`` false leaves it out
        (the cursor is a guess). ``keep_live``: the prompt cached now is saved
        first even where this one shares most of it (a request may still want
        it: see ``KvCache.switch_to``), and ``NOT_KEPT`` is returned, nothing
        evaluated, where it cannot be (no prefix cache, or too small for it);
        the saved copy is dropped once this prompt is all in. On the worker
        thread after
        any job before it. Returns how many tokens were newly evaluated (0: all
        cached already). Cancelling the calling task stops it at the next chunk
        (or inside one, where the abort callback is on) and raises
        ``CancelledError``. A following completion of the same document then
        reuses those tokens.
        """
        await self.load()
        # Not a reason to cut the speed calibration short (a request is): the
        # warm-up waits for it on the worker thread.
        loop = asyncio.get_running_loop()
        stop, abort = threading.Event(), threading.Event()
        self._keep_chunk = self._keep_tail = self._warm_tail = False
        done = loop.run_in_executor(
            self._executor, self._warm, req, stop, abort, tail, keep_live
        )
        done.add_done_callback(_consume_exception)
        try:
            evaluated = await asyncio.shield(done)
        except asyncio.CancelledError:
            stop.set()
            if not self._keep_chunk or (self._warm_tail and not self._keep_tail):
                abort.set()
            raise
        finally:
            self._keep_chunk = self._keep_tail = False
        if evaluated is None:  # stopped, though not by us: the backend closed
            raise BackendUnavailable("the local backend was shut down")
        return evaluated

    def keep_chunk(self, whole: bool = False) -> None:
        """A request continues the running warm-up: let its chunk finish.

        A request that preempts a warm-up of its own prompt would evaluate the
        chunk under way again; so that chunk is finished (and kept) rather than
        aborted. ``whole``: the request's prompt is all of the warm-up's (the
        same text after the cursor too); otherwise a chunk of the warm-up's tail
        (the text after its cursor and the markers around it) is aborted, even
        where the request's prompt shares the start of it (the same cursor, the
        text after it changed further on): the case this is for is a keystroke
        since the warm-up, whose prompt parts from it at the cursor. Applies to
        the warm-up running now, if any.
        """
        self._keep_chunk = True
        self._keep_tail = whole

    def _warm(
        self,
        req: GenerateRequest,
        stop: threading.Event,
        abort: threading.Event,
        tail: bool = True,
        keep_live: bool = False,
    ) -> int | None:
        """Worker: evaluate the prompt; None if stopped.

        ``stop`` ends it at the next chunk boundary, ``abort`` inside a chunk.
        """
        kv = self._kv
        self._warm_tail = False  # here: a warm-up before this one may have set it
        if stop.is_set() or self._closed or kv is None:
            return None
        self._abort_flag = abort
        try:
            tokens = self.prompt_tokens(req)
            if not kv.switch_to(tokens, keep_live):
                return NOT_KEPT
            # The start (up to the FIM suffix marker) first: what typing at the
            # cursor keeps; then the tail, which serves a request right there.
            head = len(tokens)
            if self._fim is not None and req.suffix is not None:
                marker = self._fim_ids[self._fim.suffix]
                if self._fim.order == "psm" and marker in tokens:
                    head = tokens.index(marker)
            evaluated = 0
            # Skipped when the head is cached: evaluate() cuts the KV cache back
            # to where it stops, which would drop a tail cached already.
            if llama_kv.common_prefix(kv.tokens, tokens) < head:
                evaluated = kv.evaluate(tokens, head, stop, self._cursor_token())
            if tail:
                self._warm_tail = True
                evaluated += kv.evaluate(tokens, len(tokens), stop)
        except llama_kv.Stopped:
            self.counters.prompt_chunk_stops += 1
            kv.partial = keep_live
            return None
        except RuntimeError as e:
            if abort.is_set():  # llama_decode aborted by our callback
                self.counters.prompt_aborts += 1
                kv.partial = keep_live
                return None
            raise BackendError(f"llama.cpp failed: {e}") from e
        finally:
            self._abort_flag = None
        if keep_live:
            kv.drop_kept()  # this prompt serves whatever the kept one did
        self.counters.warm_runs += 1
        self.counters.warm_tokens += evaluated
        return evaluated

    def _cursor_token(self) -> int | None:
        """The token that marks the cursor in this model's FIM prompts.

        Its suffix marker in prefix-suffix-middle order (None: no FIM, or
        another order), for moves of cached tokens (``KvCache.evaluate``).
        """
        if self._fim is None or self._fim.order != "psm":
            return None
        return self._fim_ids[self._fim.suffix]

    async def _stream(self, job: _Job) -> AsyncGenerator[str, None]:
        await self.load()
        self._calibration_stop.set()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        done = loop.run_in_executor(self._executor, self._run, job, stop, emit)
        done.add_done_callback(_consume_exception)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, str)
                yield item
        finally:
            stop.set()

    def _run(
        self, job: _Job, stop: threading.Event, emit: Callable[[object], None]
    ) -> None:
        """Worker thread: evaluate the prompt and sample tokens until done."""
        llm, kv = self._llm, self._kv
        if stop.is_set() or self._closed or llm is None or kv is None:
            emit(_DONE)
            return
        from llama_cpp import llama_vocab_is_eog as is_eog

        vocab = llm._model.vocab
        self._abort_flag = stop
        counters = self.counters
        counters.runs += 1
        first_token_at: float | None = None
        stats = job.stats
        try:
            tokens = job.tokens()
            kv.switch_to(tokens)
            cached = min(llama_kv.common_prefix(kv.tokens, tokens), len(tokens) - 1)
            stats.prompt_tokens = len(tokens)
            stats.cached_tokens = cached
            counters.prompt_tokens += stats.prompt_tokens
            counters.cached_tokens += stats.cached_tokens
            started = time.perf_counter()
            # All but the last token in chunks, checking the stop flag between
            # them; generate() finds them cached and evaluates the last one.
            cursor = self._cursor_token() if job.fim else None
            evaluated = kv.evaluate(tokens, len(tokens) - 1, stop, cursor)
            moved = max(0, len(tokens) - 1 - cached - evaluated)  # cached too
            stats.cached_tokens += moved
            counters.cached_tokens += moved
            generated: list[int] = []
            emitted = ""
            decoded = 0  # where the next token's text starts
            logprob = _logprob_reader(llm) if job.logprobs else None
            for token in llm.generate(
                tokens, temp=job.temperature, top_k=40, top_p=0.95, reset=True
            ):
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    stats.prompt_ms = (first_token_at - started) * 1000
                if stop.is_set():
                    counters.generation_stops += 1
                    logger.debug("generation stopped after %d tokens", len(generated))
                    break
                if token in self._stop_ids or is_eog(vocab, token):
                    break
                if logprob is not None:  # before the next token replaces the row
                    stats.token_logprobs.append(logprob(token))
                    stats.token_offsets.append(decoded)
                generated.append(token)
                stats.generated_tokens = len(generated)
                # Live: a consumer that stops reading records the stats at once.
                stats.generation_ms = (time.perf_counter() - first_token_at) * 1000
                text = llm.detokenize(generated).decode("utf-8", errors="replace")
                # A character split between tokens belongs to the next one (its
                # first bytes decode to one replacement character for now).
                decoded = len(text) - text.endswith("\ufffd")
                if not text.endswith("\ufffd"):
                    text, hit_stop = _cut_at_stop(text, job.stop)
                    if len(text) > len(emitted):
                        emit(text[len(emitted) :])
                        emitted = text
                    if hit_stop:
                        break
                if len(generated) >= job.max_tokens:
                    break
            counters.generated_tokens += len(generated)
            if first_token_at is not None:
                stats.generation_ms = (time.perf_counter() - first_token_at) * 1000
            emit(_DONE)
        except llama_kv.Stopped:
            counters.prompt_chunk_stops += 1
            logger.debug("prompt evaluation stopped between chunks")
            emit(_DONE)
        except RuntimeError as e:
            if stop.is_set():  # llama_decode aborted by our callback
                if first_token_at is None:
                    counters.prompt_aborts += 1
                    logger.debug("prompt evaluation aborted")
                else:
                    counters.generation_stops += 1
                emit(_DONE)
            else:
                emit(BackendError(f"llama.cpp failed: {e}"))
        except BackendError as e:
            emit(e)
        except Exception as e:  # surfaces in the awaiting task, never lost
            emit(e)
        finally:
            self._abort_flag = None

    async def calibrated(self) -> None:
        """Wait until the speed calibration after loading is over (at once if none)."""
        if self._calibrating is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._calibrating)

    async def drained(self) -> None:
        """Wait until the worker has finished every job submitted before."""
        if not self._freed:
            await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)

    async def aclose(self) -> None:
        """Stop work and free the model; a load under way is waited for and freed."""
        self._closed = True
        self._calibration_stop.set()
        if (flag := self._abort_flag) is not None:  # the worker may clear it meanwhile
            flag.set()
        if self._freed:
            return
        self._freed = True
        if self._load_future is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._load_future)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._free)
        self._executor.shutdown(wait=False)

    def _free(self) -> None:
        """Worker: drop the model (after any job still queued has seen _closed)."""
        llm, self._llm, self._kv = self._llm, None, None
        _RESIDENT.pop(id(self), None)
        if llm is not None:
            llm.close()


@attrs.frozen
class _Job:
    """One generation for the worker: how to build the prompt, and limits."""

    tokens: Callable[[], list[int]]
    """Builds the prompt token ids (on the worker thread: it needs the model)."""
    max_tokens: int
    temperature: float
    stop: tuple[str, ...]
    stats: GenerationStats
    logprobs: bool = False
    """Record each token's log-probability and text offset in ``stats``."""
    fim: bool = False
    """A fill-in-the-middle prompt (``generate``), not a chat (``chat``)."""


def _logprob_reader(llm: Llama) -> Callable[[int], float]:
    """A function giving a sampled token's log-probability under the model.

    It reads the logits row the token was just sampled from (the last one
    llama.cpp computed: ``llama_get_logits_ith(ctx, -1)``, valid until the next
    decode, so it is called before the generator resumes) and takes its
    log-softmax. llama-cpp-python keeps no logits of its own without
    ``logits_all`` (``Llama.scores`` stays empty). The distribution is the
    model's own, before top-k/top-p/temperature: with greedy sampling the
    token's log-probability is the row's largest.
    """
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()
    ctx = llm._ctx.ctx
    scratch = np.empty(n_vocab, dtype=np.float32)  # no allocation per token

    def logprob(token: int) -> float:
        row = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)
        )
        top = row.max()
        np.subtract(row, top, out=scratch)
        np.exp(scratch, out=scratch)
        total = scratch.sum(dtype=np.float64)
        return float(row[token] - top - np.log(total))

    return logprob


def _nothing() -> None:
    """A no-op job: when it runs, the jobs before it are done."""


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        logger.error("llama.cpp worker failed", exc_info=exc)
