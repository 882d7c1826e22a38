"""Repository-level completion on real packages nobody here wrote.

Packages are downloaded from PyPI at run time into a scratch folder (cached under
~/.cache/tandem/bench) and their own code is cut into cases of three kinds:

- ``member``: ``module.member`` where ``module`` is another module of the same
  package imported by this file and ``member`` is defined at its top level; the
  cursor stands right after the dot. Hit: the completion starts with the member.
- ``line``: a whole statement inside a function body; the cursor stands after its
  indentation. Exact match (EM) and edit similarity (ES, difflib's ratio) of the
  first line, as CrossCodeEval scores them.
- ``xline``: likewise, but only statements that use something defined in another
  module of the package (a module member through ``module.name``, or a name
  imported from a package module), as CrossCodeEval picks its lines: the ones
  workspace context is for.

Cases are found with Python's ``ast`` (not with tandem's own resolver). Side by
side in one run, case by case, each arm a fresh server (or a plain llama.cpp
call) on the same model:

- ``off``: tandem with ``context.enabled`` false;
- ``defaults``: tandem with default settings, the request right after opening;
- ``warm``: default settings, the editor reports the cursor position
  (``tandem/didFocus``) and the user pauses ``--pause`` seconds before asking;
- ``settled``: likewise, but the user asks once the server is idle (all its
  idle-time work on the file done): a completion in a file the user has been
  reading for a while;
- ``raw``: ``llama_cpp.Llama`` called directly with a FIM prompt of the current
  file only (1,500 characters before the cursor, 400 after) and the first line
  of its answer.

Latency is that of the first completion after opening the file.

    python benchmarks/repo_bench.py [--model GGUF] [--cases N] [--kinds line] [--json]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import difflib
import json
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import attrs
from lsprotocol import types

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lsp import Editor, editor, median, percentile, text_of

CACHE = Path.home() / ".cache" / "tandem"
PACKAGES = ("rich==13.9.4", "click==8.1.8", "requests==2.32.3", "werkzeug==3.1.3")
"""Pure-Python packages with many modules that use each other; none is used by
tandem's tests."""
RAW_PREFIX, RAW_SUFFIX = 1500, 400
ARMS = ("off", "defaults", "warm", "settled", "raw")
DEFAULT_ARMS = ("off", "defaults", "warm", "raw")


@attrs.frozen
class Case:
    kind: str  # "member" | "line" | "xline"
    package: str
    path: Path
    line: int
    column: int
    expected: str
    text: str
    """The file with the rest of the line after the cursor removed."""

    @property
    def offset(self) -> int:
        lines = self.text.split("\n")
        return sum(len(x) + 1 for x in lines[: self.line]) + self.column


def fetch(spec: str) -> Path:
    """The package's source tree, unpacked from its wheel (downloaded once)."""
    name = spec.split("==")[0]
    root = CACHE / "bench" / "repo" / spec.replace("==", "-")
    if (root / ".done").exists():
        return root / name
    wheels = CACHE / "bench" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = list(wheels.glob(f"{name}-{spec.split('==')[1]}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
             ":all:", "-d", str(wheels), spec, "-q"],
            check=True,
        )  # fmt: skip
        found = list(wheels.glob(f"{name}-{spec.split('==')[1]}-*.whl"))
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as wheel:
        for member in wheel.namelist():
            if member.startswith(f"{name}/") and member.endswith(".py"):
                wheel.extract(member, root)
    (root / ".done").touch()
    return root / name


def _module_members(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


def _from_base(node: ast.ImportFrom, path: Path, package: Path) -> Path | None:
    """The folder ``from X import ...`` resolves X's parts against (None: not
    this package)."""
    if node.level == 0:
        if not node.module or node.module.split(".")[0] != package.name:
            return None
        return package.parent
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    return base


def _imported_modules(path: Path, package: Path, tree: ast.Module) -> dict[str, Path]:
    """Local names bound to another module file of the package."""
    bound: dict[str, Path] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _from_base(node, path, package)
            if base is None:
                continue
            parts = node.module.split(".") if node.module else []
            for alias in node.names:
                target = base.joinpath(*parts, alias.name)
                for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                    if candidate.is_file() and candidate != path:
                        bound[alias.asname or alias.name] = candidate
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name.split(".")[0] == package.name:
                    target = package.parent.joinpath(*alias.name.split("."))
                    if target.with_suffix(".py").is_file():
                        bound[alias.asname] = target.with_suffix(".py")
    return bound


def _imported_names(path: Path, package: Path, tree: ast.Module) -> set[str]:
    """Local names bound to a top-level definition of another package module."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = _from_base(node, path, package)
        if base is None:
            continue
        target = base.joinpath(*(node.module.split(".") if node.module else []))
        for module in (target.with_suffix(".py"), target / "__init__.py"):
            if module.is_file() and module != path:
                offered = _module_members(module)
                names.update(a.asname or a.name for a in node.names
                             if a.name in offered)  # fmt: skip
    return names


def _uses_another_module(
    stmt: ast.stmt, offered: dict[str, set[str]], names: set[str]
) -> bool:
    """Whether ``stmt`` reads or sets a top-level name of another package module
    (``module.name``, or a name imported from it anywhere in the file)."""
    for node in ast.walk(stmt):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr in offered.get(node.value.id, ())
        ):
            return True
        if isinstance(node, ast.Name) and node.id in names:
            return True
    return False


def find_cases(
    package: Path, rng: random.Random, seed: int = 1
) -> tuple[list[Case], list[Case], list[Case]]:
    members: list[Case] = []
    lines: list[Case] = []
    xlines: list[Case] = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        text_lines = source.split("\n")
        bound = _imported_modules(path, package, tree)
        offered = {name: _module_members(p) for name, p in bound.items()}
        imported = _imported_names(path, package, tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Load)  # a use, not an assignment
                and isinstance(node.value, ast.Name)
                and node.value.id in offered
                and node.attr in offered[node.value.id]
                and node.lineno == node.end_lineno
                and node.col_offset > 0  # inside a body
            ):
                line = text_lines[node.lineno - 1]
                col = len(line.encode()[: node.value.end_col_offset or 0].decode()) + 1
                if line[col - 1 : col] != ".":
                    continue
                members.append(_cut(package, path, text_lines, node.lineno - 1, col,
                                    node.attr, "member"))  # fmt: skip
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for stmt in node.body[1:]:
                    if stmt.lineno != stmt.end_lineno:
                        continue
                    line = text_lines[stmt.lineno - 1]
                    code = line.strip()
                    if not 12 <= len(code) <= 100 or code.startswith(("#", '"')):
                        continue
                    col = len(line) - len(line.lstrip())
                    lines.append(_cut(package, path, text_lines, stmt.lineno - 1, col,
                                      code, "line"))  # fmt: skip
                    if _uses_another_module(stmt, offered, imported):
                        xlines.append(attrs.evolve(lines[-1], kind="xline"))
    rng.shuffle(members)
    rng.shuffle(lines)
    # Its own generator: the member and line cases stay those of earlier runs.
    random.Random(f"{seed}:{package.name}").shuffle(xlines)
    return members, lines, xlines


def _cut(
    package: Path, path: Path, lines: list[str], line: int, col: int, expected: str,
    kind: str,
) -> Case:  # fmt: skip
    cut = [*lines[:line], lines[line][:col], *lines[line + 1 :]]
    return Case(kind, package.name, path, line, col, expected, "\n".join(cut))


def score(case: Case, completion: str) -> dict[str, float]:
    first = completion.split("\n", 1)[0]
    if case.kind == "member":
        return {"hit": float(first.startswith(case.expected))}
    got = first.strip()
    return {
        "em": float(got == case.expected),
        "es": difflib.SequenceMatcher(None, got, case.expected).ratio(),
    }


async def tandem_arm(
    ed: Editor, case: Case, pause: float | None
) -> tuple[str, float, dict[str, Any]]:
    """The first completion after opening the file: ``pause`` None asks at once,
    a number of seconds after reporting the cursor, -1 once the server is idle."""
    uri = case.path.as_uri()
    ed.open(uri, case.text)
    if pause is not None:
        ed.client.protocol.notify(
            "tandem/didFocus",
            {"textDocument": {"uri": uri}, "position": {"line": case.line,
             "character": _utf16(case)}},
        )  # fmt: skip
        if pause >= 0:
            await asyncio.sleep(pause)
        else:
            await asyncio.sleep(0.3)  # the warm-up is under way
            await ed.idle(limit_s=120)
    at = types.Position(line=case.line, character=_utf16(case))
    started = time.perf_counter()
    result = await ed.request(uri, at)
    ms = (time.perf_counter() - started) * 1000
    state = await ed.status()
    ed.close(uri)
    await ed.idle()  # its background work must not slow the next arm down
    last = state["suggestions"][-1] if state["suggestions"] else {}
    return text_of(result), ms, last


def _utf16(case: Case) -> int:
    line = case.text.split("\n")[case.line][: case.column]
    return len(line.encode("utf-16-le")) // 2


class Raw:
    """llama.cpp called directly on the current file only."""

    def __init__(
        self, model: str, prefix: int = RAW_PREFIX, suffix: int = RAW_SUFFIX
    ) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=model, n_ctx=4096, verbose=False)
        self.prefix, self.suffix = prefix, suffix

    def complete(self, case: Case, max_tokens: int) -> tuple[str, float]:
        text, offset = case.text, case.offset
        prefix = text[max(0, offset - self.prefix) : offset]
        suffix = text[offset : offset + self.suffix]
        llm = self.llm
        tokens = (
            llm.tokenize(b"<|fim_prefix|>", add_bos=False, special=True)
            + llm.tokenize(prefix.encode(), add_bos=False, special=False)
            + llm.tokenize(b"<|fim_suffix|>", add_bos=False, special=True)
            + llm.tokenize(suffix.encode(), add_bos=False, special=False)
            + llm.tokenize(b"<|fim_middle|>", add_bos=False, special=True)
        )
        started = time.perf_counter()
        out: list[int] = []
        for token in llm.generate(tokens, temp=0.0, reset=True):
            if llm.token_eos() == token or token in self._stops():
                break
            out.append(token)
            text_out = llm.detokenize(out).decode(errors="replace")
            if "\n" in text_out.lstrip("\n") or len(out) >= max_tokens:
                break
        ms = (time.perf_counter() - started) * 1000
        return llm.detokenize(out).decode(errors="replace"), ms

    def _stops(self) -> set[int]:
        names = (b"<|endoftext|>", b"<|fim_pad|>", b"<|file_sep|>", b"<|im_end|>")
        return {self.llm.tokenize(n, add_bos=False, special=True)[0] for n in names}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cases: list[Case] = []
    roots: dict[str, Path] = {}
    for spec in args.packages:
        package = fetch(spec)
        roots[package.name] = package.parent
        members, lines, xlines = find_cases(package, rng, args.seed)
        if "member" in args.kinds:
            cases += members[: args.cases]
        if "line" in args.kinds:
            cases += lines[: args.cases]
        if "xline" in args.kinds:
            cases += xlines[: args.cases]
    extra: dict[str, Any] = json.loads(args.settings) if args.settings else {}
    arms = {
        "off": _merged(extra, {"context": {"enabled": False}}),
        "defaults": extra,
        "warm": extra,
        "settled": extra,
    }
    arms = {a: s for a, s in arms.items() if a in args.arms}
    results: dict[str, list[dict[str, Any]]] = {a: [] for a in args.arms}
    raw = Raw(args.model, *args.raw) if "raw" in args.arms else None
    for package, root in roots.items():
        eds: dict[str, Editor] = {}
        async with contextlib.AsyncExitStack() as stack:
            for arm, settings in arms.items():
                eds[arm] = await stack.enter_async_context(
                    editor(args.model, settings, root)
                )
                await eds[arm].wait_calibrated()  # one after another
            for arm, ed in eds.items():
                while arm != "off":
                    ed.changed.clear()
                    if "files" in (await ed.status())["index"]:
                        break
                    await ed.changed.wait()  # the server announces the index
            for case in [c for c in cases if c.package == package]:
                for arm, ed in eds.items():
                    pause = {"warm": args.pause, "settled": -1.0}.get(arm)
                    text, ms, stats = await tandem_arm(ed, case, pause)
                    results[arm].append(
                        {"kind": case.kind, "where": f"{case.path.name}:{case.line}",
                         "ms": ms, "text": text,
                         "contextTokens": stats.get("contextTokens", 0),
                         "newPromptTokens": stats.get("newPromptTokens"),
                         "promptMs": stats.get("promptMs"),
                         "generatedTokens": stats.get("generatedTokens"),
                         "generationMs": stats.get("generationMs"),
                         **score(case, text)}
                    )  # fmt: skip
                if raw is not None:
                    text, ms = raw.complete(case, 48)
                    results["raw"].append(
                        {"kind": case.kind, "where": f"{case.path.name}:{case.line}",
                         "ms": ms, "text": text, **score(case, text)}
                    )  # fmt: skip
                if args.verbose:
                    print(case.kind, case.path.name, repr(case.expected[:40]))
                    for a in results:
                        row = results[a][-1]
                        shown = {k: "-" if row.get(k) is None else row[k]
                                 for k in ("contextTokens", "newPromptTokens",
                                           "generatedTokens", "promptMs",
                                           "generationMs")}  # fmt: skip
                        ctx, new = shown["contextTokens"], shown["newPromptTokens"]
                        gen = shown["generatedTokens"]
                        split = f"{shown['promptMs']}/{shown['generationMs']}"
                        print(f"  {a:8} {row['ms']:7.0f} ms ctx {ctx} new {new} "
                              f"gen {gen} p/g ms {split}: "
                              f"{row['text'][:40]!r}")  # fmt: skip
    summary = summarise(results, len(cases))
    summary["es_minus_defaults"] = {
        kind: paired(results, kind) for kind in ("line", "xline")
    }
    return {**summary, "rows": results}


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys, sections merged one level deep."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def summarise(results: dict[str, list[dict[str, Any]]], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"cases": n}
    for arm, rows in results.items():
        member = [r for r in rows if r["kind"] == "member"]
        line = [r for r in rows if r["kind"] == "line"]
        xline = [r for r in rows if r["kind"] == "xline"]
        ms = [r["ms"] for r in rows]
        out[arm] = {
            "member_n": len(member),
            "member_hit": _mean([r["hit"] for r in member]),
            "line_n": len(line),
            "line_em": _mean([r["em"] for r in line]),
            "line_es": _mean([r["es"] for r in line]),
            "xline_n": len(xline),
            "xline_em": _mean([r["em"] for r in xline]),
            "xline_es": _mean([r["es"] for r in xline]),
            "p50_ms": round(median(ms)),
            "p90_ms": round(percentile(ms, 0.9)),
            "context_tokens_p50": median([r.get("contextTokens", 0) for r in rows]),
        }
    return out


def paired(
    results: dict[str, list[dict[str, Any]]], kind: str, base: str = "defaults"
) -> dict[str, tuple[float, float, int]]:
    """Each arm's ES minus ``base``'s on the same ``kind`` cases: mean, s.e., n.

    At the sizes run here the arms' means differ by less than their spread; the
    paired difference is what can tell them apart.
    """
    out: dict[str, tuple[float, float, int]] = {}
    if base not in results:
        return out
    ref = [r for r in results[base] if r["kind"] == kind]
    for arm, rows in results.items():
        mine = [r for r in rows if r["kind"] == kind]
        if arm == base or len(mine) != len(ref) or len(mine) < 2:
            continue
        pairs = list(zip(mine, ref, strict=True))
        assert all(a["where"] == b["where"] for a, b in pairs), "cases out of step"
        diffs = [a["es"] - b["es"] for a, b in pairs]
        mean = sum(diffs) / len(diffs)
        var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
        out[arm] = (round(mean, 3), round((var / len(diffs)) ** 0.5, 3), len(diffs))
    return out


def _no_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 3) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=str(CACHE / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    )
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--cases", type=int, default=10, help="per kind and package")
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--speed",
        help="PROMPT/GENERATED tokens/s: the servers size prompts as on a machine "
        "this fast (TANDEM_SPEED) whatever they measure; for quality comparisons "
        "on a busy machine (latencies are then not this machine's)",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=list(DEFAULT_ARMS),
        choices=ARMS,
        help="what to compare",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["member", "line"],
        choices=("member", "line", "xline"),
    )
    parser.add_argument(
        "--settings",
        help='JSON of "tandem" settings for every tandem arm (e.g. '
        '\'{"context": {"floorTokens": 256}}\'); "off" keeps the context off',
    )
    parser.add_argument(
        "--raw",
        nargs=2,
        type=int,
        default=[RAW_PREFIX, RAW_SUFFIX],
        metavar=("BEFORE", "AFTER"),
        help="characters before and after the cursor in the raw call's prompt",
    )
    parser.add_argument("--rows", help="write every case's result per arm (JSON) here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.speed:
        os.environ["TANDEM_SPEED"] = args.speed  # the servers inherit it
    summary = asyncio.run(run(args))
    rows = summary.pop("rows")
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows, indent=1))
    if args.json:
        # Arms without cases of a kind score NaN there: null in strict JSON.
        print(json.dumps(_no_nan(summary), indent=2))
        return
    print(f"{summary['cases']} cases")
    xline = "xline" in args.kinds
    print(f"{'arm':10} {'member hit':>10} {'line EM':>8} {'line ES':>8} "
          + (f"{'xline EM':>8} {'xline ES':>8} " if xline else "")
          + f"{'p50 ms':>7} {'p90 ms':>7} {'ctx tok':>7}")  # fmt: skip
    for arm in args.arms:
        r = summary[arm]
        print(f"{arm:10} {r['member_hit']:>10.3f} {r['line_em']:>8.3f} "
              f"{r['line_es']:>8.3f} "
              + (f"{r['xline_em']:>8.3f} {r['xline_es']:>8.3f} " if xline else "")
              + f"{r['p50_ms']:>7} {r['p90_ms']:>7} "
              f"{r['context_tokens_p50']:>7}")  # fmt: skip
    for kind, arms in summary["es_minus_defaults"].items():
        for arm, (mean, se, n) in arms.items():
            print(f"{kind} ES, {arm} minus defaults (paired, {n} cases): "
                  f"{mean:+.3f} ± {se:.3f}")  # fmt: skip
    off, on = summary.get("off"), summary.get("defaults")
    if off and on and off["member_hit"]:
        ratio = on["member_hit"] / off["member_hit"]
        print(f"member hit rate, defaults / off: {ratio:.2f}")


if __name__ == "__main__":
    main()
