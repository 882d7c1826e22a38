"""Moved KV entries (``local.cacheReuse``) against a fresh evaluation, on real code.

Cut points are drawn from the files of real packages (the ones repo_bench.py
downloads from PyPI, cached under ~/.cache/tandem/bench). At each, two backends
on the same model serve the same two requests one after the other: a first
prompt, then one whose context before the text before the cursor changed. One
backend moves the cached text to its new place (``cacheReuse``), the other
evaluates it again. Kinds of change:

- ``added``: a second file's code is added to the context (what reaching
  ``module.`` does);
- ``swapped``: the context is another file's code altogether;
- ``renamed``: the same code under another path (a change of a few tokens).

Printed per kind: how many first lines of the completion are the same in both,
how many requests moved tokens, and the prompt tokens each evaluated.

    python benchmarks/cache_reuse_bench.py [--model GGUF] [--cases N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from repo_bench import CACHE, PACKAGES, fetch
from tandem.backends.base import GenerateRequest, GenerationStats
from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
from tandem.context.builder import ContextFile

KINDS = ("added", "swapped", "renamed")
PREFIX, SUFFIX = 900, 400


@attrs.frozen
class Point:
    prefix: str
    suffix: str
    first: ContextFile
    other: ContextFile


def points(files: list[Path], n: int, rng: random.Random) -> list[Point]:
    """``n`` cut points inside code lines (not comments), with two context files."""
    found: list[Point] = []
    while len(found) < n:
        text = rng.choice(files).read_text(errors="replace")
        lines = text.split("\n")
        if len(lines) < 60:
            continue
        i = rng.randrange(30, len(lines) - 30)
        code = lines[i].lstrip()
        if len(code) < 12 or code.startswith("#"):
            continue
        column = len(lines[i]) - len(code) + rng.randrange(4, len(code) - 4)
        offset = sum(len(x) + 1 for x in lines[:i]) + column
        first, other = (rng.choice(files) for _ in range(2))
        found.append(
            Point(
                text[max(0, offset - PREFIX) : offset],
                text[offset : offset + SUFFIX],
                ContextFile(first.name, first.read_text(errors="replace")[:600]),
                ContextFile(other.name, other.read_text(errors="replace")[:500]),
            )
        )
    return found


def change(point: Point, kind: str) -> tuple[GenerateRequest, GenerateRequest]:
    before = GenerateRequest(
        prompt=point.prefix,
        suffix=point.suffix,
        max_tokens=16,
        path="current.py",
        context=(point.first,),
        stop=("\n",),
    )
    context = {
        "added": (point.first, point.other),
        "swapped": (point.other,),
        "renamed": (attrs.evolve(point.first, path="renamed_" + point.first.path),),
    }[kind]
    return before, attrs.evolve(before, context=context)


async def drain(backend: LlamaCppBackend, req: GenerateRequest) -> tuple[str, int]:
    stats = GenerationStats()
    text = "".join([chunk async for chunk in backend.generate(req, stats)])
    return text, stats.prompt_tokens - stats.cached_tokens


async def run(args: argparse.Namespace) -> dict[str, Any]:
    files = sorted(path for spec in PACKAGES for path in fetch(spec).rglob("*.py"))
    cases = points(files, args.cases, random.Random(args.seed))
    common = {"model_path": args.model, "calibrate": False, "prefix_cache_mb": 0}
    moved = LlamaCppBackend(LlamaCppOptions(cache_reuse=args.reuse, **common))
    fresh = LlamaCppBackend(LlamaCppOptions(cache_reuse=0, **common))
    await moved.load()
    await fresh.load()
    results: dict[str, dict[str, Any]] = {}
    for kind in args.kinds:
        same = moves = new_moved = new_fresh = 0
        for point in cases:
            before, after = change(point, kind)
            reuses = moved.counters.reuses
            await drain(moved, before)
            got, n_moved = await drain(moved, after)
            moves += moved.counters.reuses > reuses
            await drain(fresh, before)
            expected, n_fresh = await drain(fresh, after)
            same += got.split("\n")[0] == expected.split("\n")[0]
            new_moved += n_moved
            new_fresh += n_fresh
            if args.verbose and got != expected:
                print(f"{kind}: {expected!r} -> {got!r}", flush=True)
        results[kind] = {
            "cases": len(cases),
            "sameFirstLine": same,
            "moved": moves,
            "newPromptTokensMoved": round(new_moved / len(cases)),
            "newPromptTokensFresh": round(new_fresh / len(cases)),
        }
    await moved.aclose()
    await fresh.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=str(CACHE / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    )
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--reuse", type=int, default=32, help="local.cacheReuse")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("kind      same first line  moved  new prompt tokens (moved / fresh)")
    for kind, r in results.items():
        print(
            f"{kind:<9} {r['sameFirstLine']:>6} of {r['cases']:<6} {r['moved']:>5}"
            f"  {r['newPromptTokensMoved']:>5} / {r['newPromptTokensFresh']}"
        )


if __name__ == "__main__":
    main()
