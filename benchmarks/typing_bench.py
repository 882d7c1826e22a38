"""Typing replay: a real file typed character by character, as an editor asks.

A function from a package installed here (code nobody here wrote) is removed from
its file and typed back at a human rhythm (seeded, so every run types alike).
Each keystroke sends the change, cancels the pending inline completion request
and asks again, as VS Code does. A completion counts as shown when its answer
comes before the next keystroke; when it matches what comes next, the simulated
user accepts it (Tab) and goes on from its end; when only its first line does,
the user accepts that line (VS Code's Accept Line, llama.vim's Shift+Tab).

Runs the same replay with the latency features on (the defaults) and off (a
fixed 50 ms debounce, no cache, no in-flight reuse, no prefetch, fixed context
budget), and against a peer: llama-cpp-python's own OpenAI-compatible server
on the same model, driven the same way (what a Continue user would run). Prints
p50/p95 shown-completion latency, generations started per 100 keystrokes, the
share of shown completions that cost no new generation, the share of the typed
characters that came from accepted suggestions, and the ratios.

    python benchmarks/typing_bench.py --model GGUF [--modes on,off,peer] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from lsprotocol import types

from tandem.context.window import cursor_window

sys.path.insert(0, str(Path(__file__).parent))
from lsp import editor, median, percentile, text_of

OFF = {
    "adaptiveDebounce": False,
    "debounceMs": 50,
    "cache": False,
    "reuseInFlight": False,
    "prefetch": False,
    "latencyTargetMs": 0,
}


CHARS = 700
"""How much of the method is typed (~90 s at the simulated rhythm)."""


def source_function() -> tuple[str, str, str, str]:
    """(path, text before, the code typed, text after) from an installed package.

    The standard library's ``textwrap.TextWrapper._wrap_chunks``: a real method
    with ~9,800 characters of the module before it (the prompt takes the last
    4,000, ~900 tokens).
    """
    import textwrap

    path = inspect.getsourcefile(textwrap)
    assert path is not None
    text = Path(path).read_text()
    start = text.index("    def _wrap_chunks(self, chunks):")
    end = text.index("    def _split_chunks(self, text):")
    # The first CHARS of it, whole lines; the rest of the method is not there
    # (as when writing it), the rest of the module is.
    cut = text.index("\n", start + CHARS) + 1
    return path, text[:start], text[start:cut], text[end:]


def stroke(target: str, i: int) -> str:
    """What one keystroke at ``i`` inserts: a character, or Enter with the
    indentation the editor adds (and the indentation at the start)."""
    if target[i] == "\n" or (i == 0 and target[0] == " "):
        j = i + 1
        while j < len(target) and target[j] == " ":
            j += 1
        return target[i:j]
    return target[i]


class Rhythm:
    """Seconds after each keystroke: ~8 characters a second, a pause to think
    after Enter, sometimes after ``.`` and ``(``. Seeded: runs type alike."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def after(self, typed: str) -> float:
        wait = self.rng.lognormvariate(-2.1, 0.35)  # median ~120 ms
        if typed.startswith("\n") or typed.startswith(" "):
            wait += self.rng.uniform(0.4, 1.2)
        elif typed in ".(" and self.rng.random() < 0.3:
            wait += self.rng.uniform(0.2, 0.6)
        return wait


def position(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


def _word_end(text: str, end: int) -> int:
    """The last word boundary of ``text`` at or before ``end`` (0 if none)."""

    def word(ch: str) -> bool:
        return ch.isalnum() or ch == "_"

    for p in range(min(end, len(text)), 0, -1):
        if p == len(text) or not word(text[p - 1]) or not word(text[p]):
            return p
    return 0


class Replay:
    """The typing, the requests, and what was shown."""

    def __init__(self, target: str, seed: int, accept: str = "line") -> None:
        self.target = target
        self.accept = accept
        """``whole``: Tab only; ``line``: also Accept Line; ``word``: also
        Accept Word, as far as the suggestion is what comes next."""
        self.rhythm = Rhythm(seed)
        self.keystrokes = 0
        self.accepted = 0
        self.accepted_chars = 0
        self.accepted_lines = 0
        """Accepted by their first line only."""
        self.accepted_words = 0
        """Accepted by their first words only."""
        self.samples: list[dict[str, Any]] = []
        """The first shown completions, and what came next."""
        self.requests = 0
        self.shown: list[float] = []
        """Latency (ms) of each completion answered before the next keystroke."""

    def acceptable(self, shown: str, i: int) -> str:
        """What the user accepts of ``shown`` at ``target[i:]`` ("" if nothing).

        All of it when it is exactly what comes next (Tab); else (``accept``
        line or word) its first line when that line is (VS Code's Accept Line,
        llama.vim's Shift+Tab); else (``accept`` word) its words as far as they
        are (VS Code's Accept Word, Ctrl+Right), 3 characters at least.
        """
        rest = self.target[i:]
        if len(self.samples) < 40:
            self.samples.append({"at": i, "shown": shown[:80], "next": rest[:80]})
        if len(shown.strip()) >= 3 and rest.startswith(shown):
            return shown
        if self.accept == "whole":
            return ""
        first = shown.split("\n", 1)[0]
        if "\n" in shown and len(first.strip()) >= 3 and rest.startswith(first + "\n"):
            self.accepted_lines += 1
            return first
        if self.accept != "word":
            return ""
        pairs = enumerate(zip(shown, rest, strict=False))
        same = next((k for k, (a, b) in pairs if a != b), min(len(shown), len(rest)))
        cut = _word_end(shown, same)
        if len(shown[:cut].strip()) < 3:
            return ""
        self.accepted_words += 1
        return shown[:cut]

    def summary(self, elapsed: float) -> dict[str, Any]:
        return {
            "keystrokes": self.keystrokes,
            "requests": self.requests,
            "accepted": self.accepted,
            "accepted_first_lines": self.accepted_lines,
            "accepted_first_words": self.accepted_words,
            "accept": self.accept,
            "accepted_chars": self.accepted_chars,
            "accepted_share": round(self.accepted_chars / len(self.target), 3),
            "shown": len(self.shown),
            "shown_p50_ms": round(median(self.shown), 1),
            "shown_p95_ms": round(percentile(self.shown, 0.95), 1),
            "replay_s": round(elapsed, 1),
            "shown_samples": self.samples,
        }


async def replay_lsp(
    model: str, settings: dict[str, Any], seed: int, accept: str = "line"
) -> dict[str, Any]:
    """The replay against tandem-ls with ``settings`` for completions."""
    path, before, target, after = source_function()
    uri = Path(path).as_uri()
    replay = Replay(target, seed, accept)
    async with editor(model, {"completion": settings}) as ed:
        ed.open(uri, before + after)
        await ed.wait_ready()
        await ed.request(uri, position(before))  # as the file opens: a cold prompt
        first = (await ed.status())["suggestions"][-1]
        typed = before
        i = 0
        started = time.perf_counter()
        while i < len(target):
            key = stroke(target, i)
            ed.insert(uri, position(typed), key)
            typed += key
            i += len(key)
            replay.keystrokes += 1
            asked = time.perf_counter()
            future = ed.request(uri, position(typed))
            replay.requests += 1
            wait = replay.rhythm.after(key)
            done, _ = await asyncio.wait({future}, timeout=wait)
            if not done:
                continue  # the next keystroke cancels it
            with contextlib.suppress(Exception):
                shown = text_of(future.result())
                if not shown:
                    await asyncio.sleep(wait - (time.perf_counter() - asked))
                    continue
                replay.shown.append((time.perf_counter() - asked) * 1000)
                if shown := replay.acceptable(shown, i):
                    await asyncio.sleep(0.25)  # read it, press Tab
                    ed.insert(uri, position(typed), shown)
                    typed += shown
                    i += len(shown)
                    replay.accepted += 1
                    replay.accepted_chars += len(shown)
                    future = ed.request(uri, position(typed))  # editors ask again
                    replay.requests += 1
                    continue
            await asyncio.sleep(max(0.0, wait - (time.perf_counter() - asked)))
        elapsed = time.perf_counter() - started
        ed.cancel(uri)
        await asyncio.sleep(0.5)
        state = await ed.status()
    stats = state["stats"]
    out = replay.summary(elapsed)
    by_source: dict[str, list[float]] = {}
    for s in state["suggestions"]:
        by_source.setdefault(s["source"], []).append(s["latencyMs"])
    out["server_latency_by_source"] = {
        k: {"count": len(v), "p50_ms": round(median(v), 1)}
        for k, v in by_source.items()
    }
    generated = [s for s in state["suggestions"] if "promptMs" in s]
    warm = [s["promptMs"] for s in generated if 0 < s["newPromptTokens"] < 64]
    if "promptMs" in first and warm:
        out["cold_prompt"] = {
            "tokens": first["newPromptTokens"] + first["cachedTokens"],
            "ms": first["promptMs"],
        }
        out["keystroke_prompt_ms_p50"] = median(warm)
        out["keystroke_over_cold"] = ratio(median(warm), first["promptMs"])
    served = stats["cache_hits"] + stats["reused"]
    out.update(
        generations_started=stats["generations_started"],
        prefetches_started=stats["prefetches_started"],
        generations_cancelled=stats["generations_cancelled"],
        cache_hits=stats["cache_hits"],
        reused_in_flight=stats["reused"],
        prefetch_hits=stats["prefetch_hits"],
        generations_per_100_keys=round(
            100 * stats["generations_started"] / replay.keystrokes, 1
        ),
        no_generation_share=round(served / max(1, stats["requests"]), 3),
        context_budget=state["latency"]["contextBudget"],
        speed=state["latency"]["speed"],
    )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def replay_peer(
    model: str, seed: int, debounce_ms: float, max_tokens: int, accept: str = "line"
) -> dict[str, Any]:
    """The replay against ``python -m llama_cpp.server`` with a FIM prompt."""
    _, before, target, after = source_function()
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "llama_cpp.server", "--model", model),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    replay = Replay(target, seed, accept)
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/models")).status_code == 200:
                        break
                await asyncio.sleep(0.1)

            async def ask(prefix: str, suffix: str) -> str:
                await asyncio.sleep(debounce_ms / 1000)
                # The same window as tandem-ls (its start moves in steps, so
                # consecutive prompts share a prefix the server can reuse).
                window = cursor_window(prefix + suffix, len(prefix), 4000, 400)
                prompt = (
                    f"<|fim_prefix|>{window.prefix}<|fim_suffix|>{window.suffix}"
                    "<|fim_middle|>"
                )
                chunks: list[str] = []
                body = {
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "stream": True,
                    "stop": ["<|endoftext|>", "<|file_sep|>", "\n\n"],
                }
                async with http.stream("POST", f"{base}/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunks.append(json.loads(line[6:])["choices"][0]["text"])
                return "".join(chunks)

            await ask(before, after)  # warm, as tandem-ls is before its replay
            typed = before
            i = 0
            started = time.perf_counter()
            while i < len(target):
                key = stroke(target, i)
                typed += key
                i += len(key)
                replay.keystrokes += 1
                asked = time.perf_counter()
                task = asyncio.ensure_future(ask(typed, after))
                replay.requests += 1
                wait = replay.rhythm.after(key)
                done, _ = await asyncio.wait({task}, timeout=wait)
                if not done:
                    task.cancel()  # closes the connection, as a client does
                    continue
                with contextlib.suppress(Exception):
                    shown = task.result()
                    if shown.strip():
                        replay.shown.append((time.perf_counter() - asked) * 1000)
                        if shown := replay.acceptable(shown, i):
                            await asyncio.sleep(0.25)
                            typed += shown
                            i += len(shown)
                            replay.accepted += 1
                            replay.accepted_chars += len(shown)
                            continue
                await asyncio.sleep(max(0.0, wait - (time.perf_counter() - asked)))
            elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        await server.wait()
    return replay.summary(elapsed)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and a == a and b == b else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF with FIM tokens")
    parser.add_argument("--modes", default="on,off,peer")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--accept",
        choices=("whole", "line", "word"),
        default="line",
        help="what the simulated user accepts: whole suggestions only, also "
        "their first line, also their first words (as far as they are right)",
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    results: dict[str, Any] = {"file": source_function()[0], "model": args.model}
    for mode in modes:
        if mode == "on":
            results["on"] = await replay_lsp(args.model, {}, args.seed, args.accept)
        elif mode == "off":
            results["off"] = await replay_lsp(args.model, OFF, args.seed, args.accept)
        elif mode == "peer":
            results["peer"] = await replay_peer(
                args.model, args.seed, 50, 96, args.accept
            )
        if not args.json:
            print(mode, json.dumps(results[mode]), flush=True)
    on, off, peer = (results.get(m) for m in ("on", "off", "peer"))
    ratios: dict[str, Any] = {}
    if on and off:
        for key in ("shown_p50_ms", "shown_p95_ms", "generations_per_100_keys"):
            ratios[f"{key} on/off"] = ratio(on[key], off[key])
        ratios["shown on/off"] = ratio(on["shown"], off["shown"])
        ratios["accepted_share on/off"] = ratio(
            on["accepted_share"], off["accepted_share"]
        )
    if on and peer:
        for key in ("shown_p50_ms", "shown_p95_ms"):
            ratios[f"{key} peer/on"] = ratio(peer[key], on[key])
        ratios["shown on/peer"] = ratio(on["shown"], peer["shown"])
    results["ratios"] = ratios
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in ratios.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
