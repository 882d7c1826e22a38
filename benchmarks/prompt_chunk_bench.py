"""Prompt evaluation: what chunk size and llama.cpp's abort callback cost.

The llama backend evaluates prompts a chunk at a time and checks a stop flag
between chunks (``local.promptChunk``); on a CPU it also installs llama.cpp's
abort callback, a Python function called for every graph node, which takes the
GIL each time. This measures prompt tokens per second for several chunk sizes,
with the callback on and off, and with another Python thread busy (as the
server's event loop is while it handles messages), interleaving the
configurations so that load on the machine hits them alike.

    python benchmarks/prompt_chunk_bench.py --model GGUF [--tokens 256]
        [--threads N] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import llama_cpp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=max(1024, args.tokens + 64),
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    text = "".join(
        f"def handler_{i}(request, value_{i}):\n"
        f"    return request.process(value_{i} * {i})\n\n"
        for i in range(400)
    )
    tokens = llm.tokenize(text.encode())[: args.tokens]
    calls = [0]

    def should_abort(_data: Any) -> bool:
        calls[0] += 1
        return False

    callback = llama_cpp.ggml_abort_callback(should_abort)
    none = llama_cpp.ggml_abort_callback(0)

    def run(chunk: int, on: bool) -> tuple[float, int]:
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback if on else none, None)
        llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        llm.n_tokens = 0
        calls[0] = 0
        started = time.perf_counter()
        for start in range(0, len(tokens), chunk):
            llm.eval(tokens[start : start + chunk])
        return len(tokens) / (time.perf_counter() - started), calls[0]

    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            pass

    run(len(tokens), False)  # warm up
    configs = [(c, False, False) for c in (32, 64, 128, 256)]
    configs += [(128, True, False), (128, False, True), (128, True, True)]
    speeds: dict[tuple[int, bool, bool], list[float]] = {c: [] for c in configs}
    nodes: dict[tuple[int, bool, bool], int] = {}
    for _ in range(args.reps):
        for config in configs:
            chunk, on, loaded = config
            thread = None
            if loaded:
                stop.clear()
                thread = threading.Thread(target=busy, daemon=True)
                thread.start()
            tps, n = run(chunk, on)
            if thread is not None:
                stop.set()
                thread.join()
            speeds[config].append(tps)
            nodes[config] = n
    for (chunk, on, loaded), found in speeds.items():
        print(
            f"chunk {chunk:3}, callback {'on ' if on else 'off'}, "
            f"busy Python thread {'yes' if loaded else 'no '}: "
            f"median {statistics.median(found):6.1f} prompt tokens/s "
            f"(runs {', '.join(f'{x:.1f}' for x in found)}; "
            f"callback calls {nodes[(chunk, on, loaded)]})"
        )


if __name__ == "__main__":
    main()
