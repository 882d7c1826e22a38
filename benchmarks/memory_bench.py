"""Server memory: resident set size without the model, with it, and with a large
workspace (the running interpreter's standard library, ~1,800 files) indexed.

Each figure is the server process's VmRSS (from /proc) after the step settles.

    python benchmarks/memory_bench.py --model GGUF [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from lsprotocol import types

sys.path.insert(0, str(Path(__file__).parent))
from lsp import Editor, editor, text_of

PALINDROME = "def is_palindrome(s: str) -> bool:\n    \n"


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def file_mb(path: str) -> float:
    return os.path.getsize(path) / 1e6


async def complete_once(ed: Editor, root: Path) -> str:
    uri = (root / "pal.py").as_uri()
    ed.open(uri, PALINDROME)
    return text_of(await ed.request(uri, types.Position(line=1, character=4)))


async def indexed(ed: Editor) -> dict[str, Any]:
    while "files" not in (state := await ed.status())["index"]:
        ed.changed.clear()
        await ed.changed.wait()
    index: dict[str, Any] = state["index"]
    return index


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    empty = Path(tempfile.mkdtemp(prefix="tandem-memory-"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, Any] = {"model": args.model}

    # No model: completions routed to a backend that is not configured.
    no_model = {
        "routing": {
            "completion": ["ollama"],
            "explain": ["ollama"],
            "refactor": ["ollama"],
        },
        "offline": True,
    }
    async with editor(args.model, no_model, root=empty) as ed:
        await asyncio.sleep(1.0)  # settled: nothing to load
        state = await ed.status()
        out["without_model_mb"] = round(rss_mb(state["pid"]), 1)

    async with editor(
        args.model, {"context": {"indexWorkspace": False}}, root=empty
    ) as ed:
        state = await ed.wait_ready()
        await complete_once(ed, empty)
        out["with_model_mb"] = round(rss_mb(state["pid"]), 1)
        out["model_file_mb"] = round(file_mb(args.model), 1)

    async with editor(args.model, {}, root=stdlib) as ed:
        state = await ed.wait_ready()
        index = await indexed(ed)
        await complete_once(ed, empty)
        out["with_model_and_stdlib_indexed_mb"] = round(rss_mb(state["pid"]), 1)
        out["indexed_files"] = index.get("files")

    out["model_cost_mb"] = round(out["with_model_mb"] - out["without_model_mb"], 1)
    out["index_cost_mb"] = round(
        out["with_model_and_stdlib_indexed_mb"] - out["with_model_mb"], 1
    )
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    asyncio.run(main())
