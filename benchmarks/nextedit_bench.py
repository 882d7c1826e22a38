"""Next-edit prediction on edit sequences cut from the standard library at run time.

Cases come from the running interpreter's ``Lib/`` (real code nobody here wrote),
found with ``ast`` and chosen with a seeded shuffle. Each case opens a module,
makes one user edit, and asks the next-edit pipeline (in process, the server's
own code, default settings) what follows, with the cursor where the edit ended:

- ``param``: rename a function parameter at its definition; the next edit is the
  parameter's first use in the body;
- ``local``: rename a local variable where it is first assigned; the next edit
  is its next use;
- ``method``: rename a method at its ``def``; the next edit is a ``self.name``
  call to it in the same class;
- ``addparam``: add a parameter to a function that calls itself; the next edit
  passes it on at the recursive call;
- ``quiet``: edits that need nothing after them (a string literal reworded, a
  comment added above a statement): the right answer is no suggestion.

Only targets inside the editable window are chosen (at most ``lines_after``
lines below the edit): an edit further away is the next prediction's after the
user moves on, not this one's.

Scores: *exact* (the first change offered, applied, gives exactly the expected
text), *at target* (it touches the expected span), *shown* (anything offered), on
the edit cases; *quiet* (nothing offered) on the quiet cases; p50 latency of the
prediction on this machine. With ``--json``, each row also has the change the
gate judged, shown or not (``judged``, ``judgedExact``), the log-probabilities
of its tokens that gave the confidence (``changeLogprobs``) and the confidence
the gate's heuristic would give (``heuristic``): what ``minConfidence`` is
calibrated on.

    python benchmarks/nextedit_bench.py --model GGUF [--n 8] [--kinds ...]
        [--format auto|chat|sweep|zeta] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import attrs

from tandem.assist.edits import apply
from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
from tandem.config import NextEditSettings
from tandem.engine import CompletionEngine, Document
from tandem.nextedit import gate
from tandem.nextedit.pipeline import NextEditor

PACKAGES = ("", "json", "email", "http", "logging", "urllib", "xml/dom", "importlib")
"""Where modules come from: the top level of ``Lib/`` and a few of its packages."""
KINDS = ("param", "local", "method", "addparam", "quiet")
SETTINGS = NextEditSettings()


@attrs.frozen
class Case:
    """One user edit and what should follow it."""

    kind: str
    path: str
    original: str
    edited: str
    cursor: int
    """Where the user's edit ended, in ``edited``."""
    expected: str | None
    """The text after the right next edit (None: nothing should follow)."""
    target: tuple[int, int] = (0, 0)
    """The span of ``edited`` the next edit changes."""


def _offsets(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _at(starts: list[int], line: int, col: int) -> int:
    return starts[line - 1] + col


def _new_name(old: str) -> str:
    return old[:3] if len(old) > 4 and old[:3].isidentifier() else old + "_value"


def _replace(text: str, start: int, old: str, new: str) -> str:
    assert text[start : start + len(old)] == old
    return text[:start] + new + text[start + len(old) :]


def _renamed(
    kind: str, path: str, text: str, at: int, use: int, old: str, new: str
) -> Case | None:
    """A rename at ``at`` whose next edit is the same rename at ``use``."""
    if f"{new}" in text or use <= at:
        return None
    edited = _replace(text, at, old, new)
    shift = len(new) - len(old)
    use += shift
    expected = _replace(edited, use, old, new)
    return Case(
        kind, path, text, edited, at + len(new), expected, (use, use + len(old))
    )


def _within(starts: list[int], a: int, b: int, lines: int) -> bool:
    line_a = next(i for i, s in enumerate(starts) if s > a) - 1
    line_b = next(i for i, s in enumerate(starts) if s > b) - 1
    return 0 <= line_b - line_a <= lines


def cases_in(path: str, text: str) -> dict[str, list[Case]]:
    """Every candidate case of each kind in one module."""
    found: dict[str, list[Case]] = {k: [] for k in KINDS}
    if not text.isascii():
        return found  # ast columns are UTF-8 bytes
    tree = ast.parse(text)
    starts = _offsets(text)
    reach = SETTINGS.lines_after
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [
                n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id != "self"
            ]
            loads = sorted(
                (n for n in names if isinstance(n.ctx, ast.Load)),
                key=lambda n: (n.lineno, n.col_offset),
            )
            for arg in node.args.args[:4]:
                name = arg.arg
                if name in ("self", "cls") or len(name) < 2:
                    continue
                at = _at(starts, arg.lineno, arg.col_offset)
                uses = [n for n in loads if n.id == name]
                if not uses:
                    continue
                use = _at(starts, uses[0].lineno, uses[0].col_offset)
                if _within(starts, at, use, reach):
                    case = _renamed("param", path, text, at, use, name, _new_name(name))
                    if case:
                        found["param"].append(case)
            stores = sorted(
                (
                    n
                    for n in names
                    if isinstance(n.ctx, ast.Store)
                    and n.id not in {a.arg for a in node.args.args}
                ),
                key=lambda n: (n.lineno, n.col_offset),
            )
            seen: set[str] = set()
            for store in stores:
                if store.id in seen or len(store.id) < 2:
                    continue
                seen.add(store.id)
                at = _at(starts, store.lineno, store.col_offset)
                later = [
                    n
                    for n in loads
                    if n.id == store.id
                    and (n.lineno, n.col_offset) > (store.lineno, store.col_offset)
                ]
                if not later:
                    continue
                use = _at(starts, later[0].lineno, later[0].col_offset)
                if _within(starts, at, use, reach):
                    case = _renamed(
                        "local", path, text, at, use, store.id, _new_name(store.id)
                    )
                    if case:
                        found["local"].append(case)
            _addparam(found, path, text, starts, node, reach)
        if isinstance(node, ast.ClassDef):
            _methods(found, path, text, starts, node, reach)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.lineno == node.end_lineno
            and len(node.value) > 6
            and node.value.isalpha()
        ):
            start = _at(starts, node.lineno, node.col_offset)
            quote = text[start]
            if (
                quote not in "'\""
                or text[start + 1 : start + 1 + len(node.value)] != node.value
            ):
                continue
            end = start + 1 + len(node.value)
            edited = text[:end] + " now" + text[end:]
            found["quiet"].append(Case("quiet", path, text, edited, end + 4, None))
        if isinstance(node, ast.Return) and node.value is not None:
            start = starts[node.lineno - 1]
            line = text[start : starts[node.lineno]]
            indent = line[: len(line) - len(line.lstrip())]
            comment = f"{indent}# the result\n"
            edited = text[:start] + comment + text[start:]
            found["quiet"].append(
                Case("quiet", path, text, edited, start + len(comment) - 1, None)
            )
    return found


def _addparam(
    found: dict[str, list[Case]],
    path: str,
    text: str,
    starts: list[int],
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    reach: int,
) -> None:
    """A new parameter ``context`` passed on at the function's call to itself."""
    args = node.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or not args.args:
        return
    if "context" in text:
        return
    last = args.args[-1]
    at = _at(starts, last.lineno, last.col_offset) + len(last.arg)
    for call in ast.walk(node):
        if not isinstance(call, ast.Call) or call.keywords or not call.args:
            continue
        func = call.func
        on_self = (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("self", "cls")
        )
        called = (
            func.id
            if isinstance(func, ast.Name)
            else (func.attr if on_self and isinstance(func, ast.Attribute) else "")
        )
        if called != node.name or any(isinstance(a, ast.Starred) for a in call.args):
            continue
        end = _at(starts, call.end_lineno or call.lineno, call.end_col_offset or 0) - 1
        if text[end] != ")" or not _within(starts, at, end, reach):
            continue
        edited = text[:at] + ", context" + text[at:]
        end += len(", context")
        expected = edited[:end] + ", context" + edited[end:]
        found["addparam"].append(
            Case(
                "addparam",
                path,
                text,
                edited,
                at + len(", context"),
                expected,
                (end, end),
            )
        )
        return


def _methods(
    found: dict[str, list[Case]],
    path: str,
    text: str,
    starts: list[int],
    cls: ast.ClassDef,
    reach: int,
) -> None:
    """A method renamed at its ``def``; the next edit is a ``self.`` call near it."""
    calls = sorted(
        (
            n
            for n in ast.walk(cls)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
            and isinstance(n.ctx, ast.Load)
        ),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for item in cls.body:
        if not isinstance(item, ast.FunctionDef) or item.name.startswith("__"):
            continue
        line = text[starts[item.lineno - 1] : starts[item.lineno]]
        col = line.find(f"def {item.name}(")
        if col < 0:
            continue
        at = starts[item.lineno - 1] + col + 4
        for call in calls:
            if call.attr != item.name:
                continue
            use = _at(starts, call.end_lineno or call.lineno, call.end_col_offset or 0)
            use -= len(item.name)
            if _within(starts, at, use, reach):
                case = _renamed(
                    "method", path, text, at, use, item.name, _new_name(item.name)
                )
                if case:
                    found["method"].append(case)
                break


def collect(n: int, kinds: list[str], seed: int) -> list[Case]:
    """``n`` cases of each kind, a seeded choice over the modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pool: dict[str, list[Case]] = {k: [] for k in kinds}
    for package in PACKAGES:
        for path in sorted((stdlib / package).glob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
                found_in = cases_in(path.relative_to(stdlib).as_posix(), text)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for kind, found in found_in.items():
                if kind in pool:
                    pool[kind].extend(found)
    rng = random.Random(seed)
    chosen = []
    for kind in kinds:
        rng.shuffle(pool[kind])
        chosen.extend(pool[kind][:n])
    return chosen


async def run_case(
    nexted: NextEditor, case: Case, settings: NextEditSettings
) -> dict[str, Any]:
    """Predict after the case's edit; the scores of the answer."""
    uri = f"file:///stdlib/{case.path}"
    nexted.history.closed(uri)
    nexted.history.opened(uri, case.original, case.path)
    nexted.history.changed(uri, case.edited)
    doc = Document(uri, case.edited, "python", case.path)
    latest = nexted.history.latest(uri)
    started = time.perf_counter()
    try:
        prediction = await nexted.predict(doc, case.cursor, settings)
    finally:
        # Closed: its edit must not reach the next case's prompt as another open
        # document's (an added ``, context`` then turned up in quiet cases).
        nexted.history.closed(uri)
    ms = (time.perf_counter() - started) * 1000
    assert prediction is not None  # nothing preempts it here
    shown = prediction.shown
    stats = prediction.stats
    whole = gate.logprob_confidence(stats.token_logprobs) if stats else 0.0
    candidate = prediction.changes[0] if prediction.changes else None
    first = candidate if shown else None
    exact = at_target = right = False
    if candidate is not None and case.expected is not None:
        # Whether the change the gate judged is right, shown or not (calibration).
        right = apply(case.edited, [candidate]) == case.expected
        exact = right and shown
        lo, hi = case.target
        at_target = shown and candidate.start <= hi and candidate.end >= lo
    return {
        "kind": case.kind,
        "path": case.path,
        "shown": shown,
        "exact": exact,
        "atTarget": at_target,
        "reason": prediction.reason,
        "confidence": round(prediction.confidence, 2),
        "judged": candidate is not None,
        "judgedExact": right,
        "changeLogprobs": [round(x, 3) for x in prediction.logprobs],
        # The whole answer's geometric mean, for comparison with the change's.
        "answerConfidence": round(whole, 3),
        "heuristic": gate.heuristic_confidence(
            case.edited, prediction.changes[:1], latest
        ),
        "ms": round(ms),
        "generated": stats.generated_tokens if stats else 0,
        "offered": (
            {"old": case.edited[first.start : first.end], "new": first.new_text}
            if first
            else None
        ),
        "answer": prediction.raw,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates per kind and overall."""
    out: dict[str, Any] = {}
    for kind in [*KINDS, "edits"]:
        group = [
            r
            for r in rows
            if r["kind"] == kind or (kind == "edits" and r["kind"] != "quiet")
        ]
        if not group:
            continue
        n = len(group)
        entry: dict[str, Any] = {
            "n": n,
            "p50Ms": statistics.median(r["ms"] for r in group),
        }
        if kind == "quiet":
            entry["quiet"] = sum(not r["shown"] for r in group) / n
        else:
            entry["exact"] = sum(r["exact"] for r in group) / n
            entry["atTarget"] = sum(r["atTarget"] for r in group) / n
            entry["shown"] = sum(r["shown"] for r in group) / n
        out[kind] = entry
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=8, help="cases of each kind")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--format", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    cases = collect(args.n, kinds, args.seed)
    backend = LlamaCppBackend(
        LlamaCppOptions(model_path=args.model, n_threads=args.threads)
    )
    info = await backend.load()
    engine = CompletionEngine(backend)
    nexted = NextEditor(engine)
    nexted.model_name = lambda: f"{info.name} {Path(info.path).name}"
    settings = attrs.evolve(SETTINGS, format=args.format)
    rows = []
    for case in cases:
        row = await run_case(nexted, case, settings)
        rows.append(row)
        if args.verbose:
            print(json.dumps(row), file=sys.stderr)
    result: dict[str, Any] = {
        "model": Path(args.model).name,
        "format": nexted.format_for(settings),
        "cases": len(rows),
        "summary": summary(rows),
    }
    if args.json:
        print(json.dumps({**result, "rows": rows}, indent=1))
    else:
        print(f"{result['model']} ({result['format']} format), {len(rows)} cases")
        head = ("kind", "n", "exact", "at", "shown", "quiet", "p50 ms")
        print(f"{head[0]:9} " + " ".join(f"{h:>6}" for h in head[1:]))
        for kind, s in result["summary"].items():

            def pct(key: str, s: dict[str, Any] = s) -> str:
                return f"{s[key]:.0%}" if key in s else "-"

            print(
                f"{kind:9} {s['n']:>3} {pct('exact'):>6} {pct('atTarget'):>6} "
                f"{pct('shown'):>6} {pct('quiet'):>6} {s['p50Ms']:>7.0f}"
            )
    await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
