"""Overhead against the limit: an LSP round trip vs a direct llama.cpp call.

For each of a set of cursor positions in a real file (the standard library's
``textwrap.py``), the same FIM prompt is completed (a) through the full LSP
round trip (``textDocument/inlineCompletion`` on a real tandem-ls process, no
debounce, no context, no post-processing, so it evaluates exactly that prompt
and generates up to the same number of tokens) and (b) by a direct
``llama_cpp.Llama.create_completion`` in a separate process, timed inside it.
The two alternate, position by position, so both see the same machine load.
Prints the median ratio a/b (target: at most 1.05).

    python benchmarks/overhead_bench.py --model GGUF [--rounds 12] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

from tandem import fim
from tandem.context.window import cursor_window

sys.path.insert(0, str(Path(__file__).parent))
from lsp import editor, median, text_of

DIRECT = r"""
import json, sys, time
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=4096, n_batch=512, n_threads=int(sys.argv[2]),
            verbose=False)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    out = llm.create_completion(job["prompt"], max_tokens=job["max_tokens"],
                                temperature=0.0, top_k=40, top_p=0.95)
    ms = (time.perf_counter() - started) * 1000
    print(json.dumps({"ms": ms, "text": out["choices"][0]["text"],
                      "tokens": out["usage"]["completion_tokens"]}), flush=True)
"""

SETTINGS = {
    "completion": {
        "adaptiveDebounce": False,
        "debounceMs": 0,
        "postprocess": False,
        "prefetch": False,
        "cache": False,
        "reuseInFlight": False,
        "maxLines": 999,
        "maxTokens": 32,
    },
    "context": {"enabled": False},
}


def positions(text: str, count: int) -> list[int]:
    """Offsets at the start of method bodies (after ``def ...:`` and its line)."""
    found = []
    start = 0
    while len(found) < count:
        i = text.find("    def ", start)
        if i < 0:
            break
        body = text.index("\n", text.index(":\n", i) + 2) + 1
        found.append(body + len(text[body:]) - len(text[body:].lstrip(" ")))
        start = body
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    path = Path(inspect.getsourcefile(textwrap) or "")
    text = inspect.getsource(textwrap)
    max_tokens = SETTINGS["completion"]["maxTokens"]
    family = fim.by_name("qwen")
    assert family is not None

    direct = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DIRECT,
        args.model,
        str(args.threads),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert direct.stdin is not None and direct.stdout is not None
    json.loads(await direct.stdout.readline())
    rows: list[dict[str, Any]] = []
    settings = {**SETTINGS, "local": {"nThreads": args.threads}}
    async with editor(args.model, settings, root=path.parent) as ed:
        await ed.wait_ready()
        for n, offset in enumerate(positions(text, args.rounds)):
            name = f"round{n}_{path.name}"  # a new document: nothing cached
            uri = (path.parent / name).as_uri()
            doc = text
            window = cursor_window(doc, offset, 4000, 400)
            parts = family.render(window.prefix, window.suffix, name)
            prompt = "".join(p.text if isinstance(p, fim.Special) else p for p in parts)
            ed.open(uri, doc)
            lines = doc[:offset].split("\n")
            at = types.Position(line=len(lines) - 1, character=len(lines[-1]))
            asked = time.perf_counter()
            via_lsp = text_of(await ed.request(uri, at))
            lsp_ms = (time.perf_counter() - asked) * 1000
            ed.close(uri)
            direct.stdin.write(
                (
                    json.dumps({"prompt": prompt, "max_tokens": max_tokens}) + "\n"
                ).encode()
            )
            raw = json.loads(await direct.stdout.readline())
            state = await ed.status()
            last = state["suggestions"][-1]
            rows.append(
                {
                    "lsp_ms": round(lsp_ms, 1),
                    "direct_ms": round(raw["ms"], 1),
                    "ratio": round(lsp_ms / raw["ms"], 3),
                    "lsp_tokens": last.get("generatedTokens"),
                    "direct_tokens": raw["tokens"],
                    "prompt_tokens": last.get("newPromptTokens", 0)
                    + last.get("cachedTokens", 0),
                    "same_text": via_lsp == raw["text"],
                }
            )
            if not args.json:
                print(json.dumps(rows[-1]), flush=True)
    direct.stdin.close()
    await direct.wait()
    # The first round loads caches and pages on both sides: reported, not counted.
    counted = rows[1:] or rows
    result = {
        "model": args.model,
        "file": str(path),
        "rounds": rows,
        "median_lsp_ms": median([r["lsp_ms"] for r in counted]),
        "median_direct_ms": median([r["direct_ms"] for r in counted]),
        "median_ratio": median([r["ratio"] for r in counted]),
        "same_tokens": all(r["lsp_tokens"] == r["direct_tokens"] for r in counted),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"median LSP {result['median_lsp_ms']:.0f} ms, direct "
            f"{result['median_direct_ms']:.0f} ms, ratio {result['median_ratio']:.3f} "
            f"(target <= 1.05); same token counts: {result['same_tokens']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
