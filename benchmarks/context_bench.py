"""Workspace context on a real code base nobody here wrote: CPython's Lib/.

Prints the initial index time, index memory, p50/p95 context build time per
request (with the model's tokenizer when --model is given), and the prompt-eval
time of a request after one keystroke divided by the cold one (KV-cache reuse).

    python benchmarks/context_bench.py [--root DIR] [--model GGUF] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import random
import statistics
import sysconfig
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tandem.context import builder
from tandem.context.index import WorkspaceIndex


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def index_root(root: Path) -> tuple[WorkspaceIndex, dict[str, Any]]:
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    index = WorkspaceIndex()
    count = index.build([root])
    seconds = time.perf_counter() - started
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return index, {
        "files": count,
        "skipped": index.skipped,
        "index_s": round(seconds, 2),
        "index_mb": round(memory / 1e6, 1),
    }


def context_times(
    index: WorkspaceIndex, count_tokens: Any, requests: int, budget: int
) -> dict[str, Any]:
    rng = random.Random(7)
    paths = [p for p in index.paths() if p.endswith(".py")]
    times: list[float] = []
    sizes: list[int] = []
    for _ in range(requests):
        path = rng.choice(paths)
        text = Path(path).read_text(errors="replace")
        if len(text) < 200:
            continue
        offset = rng.randrange(len(text) // 4, len(text))
        started = time.perf_counter()
        current = index.update(path, text)
        assert current is not None
        found = builder.build(current, text, offset, index, budget, count_tokens)
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(found.tokens)
    return {
        "requests": len(times),
        "budget_tokens": budget,
        "build_ms_p50": round(percentile(times, 0.5), 2),
        "build_ms_p95": round(percentile(times, 0.95), 2),
        "context_tokens_mean": round(statistics.mean(sizes), 1),
    }


async def keystroke_ratio(
    model: str, index: WorkspaceIndex, root: Path
) -> dict[str, Any]:
    """Cold prompt eval vs the same request after typing one character."""
    from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
    from tandem.config import CompletionSettings, ContextSettings
    from tandem.engine import CompletionEngine, Document

    backend = LlamaCppBackend(LlamaCppOptions(model_path=model))
    await backend.load()
    engine = CompletionEngine(backend, index)
    engine.roots = [str(root)]
    path = root / "json" / "decoder.py"
    text = path.read_text()
    offset = text.index("    def raw_decode(")  # a ~900-token prompt with context
    completion = CompletionSettings(debounce_ms=0, max_tokens=8)
    context = ContextSettings()
    doc = Document(path.as_uri(), text, "python", "json/decoder.py", str(path))
    cold = await engine.complete(doc, offset, completion, context)
    typed = text[:offset] + "\n" + text[offset:]
    doc2 = Document(path.as_uri(), typed, "python", "json/decoder.py", str(path))
    warm = await engine.complete(doc2, offset + 1, completion, context)
    await engine.aclose()
    assert cold is not None and warm is not None
    assert cold.stats is not None and warm.stats is not None
    return {
        "prompt_tokens": cold.stats.prompt_tokens,
        "cold_prompt_ms": round(cold.stats.prompt_ms, 1),
        "keystroke_prompt_ms": round(warm.stats.prompt_ms, 1),
        "keystroke_cached_tokens": warm.stats.cached_tokens,
        "keystroke_ratio": round(warm.stats.prompt_ms / cold.stats.prompt_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"])
    )
    parser.add_argument("--model", help="GGUF: use its tokenizer, measure KV reuse")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    index, result = index_root(args.root)
    result["root"] = str(args.root)
    count_tokens: Any = lambda text: int(len(text) / 3.5) + 1  # noqa: E731
    # The server memoises token counts the same way (definitions recur).
    backend = None
    if args.model:
        from llama_cpp import Llama

        backend = Llama(args.model, vocab_only=True, verbose=False)
        count_tokens = functools.lru_cache(maxsize=8192)(
            lambda text: len(
                backend.tokenize(text.encode(), add_bos=False, special=False)
            )
        )
    result.update(context_times(index, count_tokens, args.requests, args.budget))
    result["tokenizer"] = "model" if args.model else "approx"
    if args.model:
        result.update(asyncio.run(keystroke_ratio(args.model, index, args.root)))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"indexed {result['files']} files under {result['root']} "
        f"in {result['index_s']} s ({result['skipped']} skipped), "
        f"index memory {result['index_mb']} MB"
    )
    print(
        f"context build over {result['requests']} requests "
        f"(budget {result['budget_tokens']} tokens, {result['tokenizer']} tokenizer): "
        f"p50 {result['build_ms_p50']} ms, p95 {result['build_ms_p95']} ms, "
        f"mean {result['context_tokens_mean']} tokens"
    )
    if args.model:
        print(
            f"prompt eval of a {result['prompt_tokens']}-token prompt: cold "
            f"{result['cold_prompt_ms']} ms, after one keystroke "
            f"{result['keystroke_prompt_ms']} ms "
            f"({result['keystroke_cached_tokens']} tokens reused); "
            f"ratio {result['keystroke_ratio']}"
        )


if __name__ == "__main__":
    main()
