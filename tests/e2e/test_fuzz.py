"""Bad input never kills the server: property-based fuzzing of real LSP traffic.

Hypothesis generates sessions of hostile messages (positions out of range or inside
surrogate pairs, edits to unknown documents, overlapping and inverted incremental
edits, huge and binary text, deep nesting, settings of every wrong type, unknown and
malformed commands) and plays them against the real server process over stdio, in a
workspace of non-UTF-8, binary, 10 MB and deeply nested files. Every request must get
an answer (a result or a JSON-RPC error), and after every session a canary document
must still be edited and completed correctly. The backend is the scripted fake: the
target here is the protocol, document and context layers, not the model.

Runs derandomized (the same examples every run) unless TANDEM_FUZZ=deep, which runs
many more, random ones.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)
from pytest_lsp import LanguageClient

from tandem import config
from tests.e2e.helpers import session, status

DEEP = os.environ.get("TANDEM_FUZZ") == "deep"
CANARY = "file:///fuzz/canary.py"
CANARY_TEXT = "def add(a, b):\n    "
ANSWER = "return a + b"
BASELINE: dict[str, Any] = {
    "backend": "fake",
    "offline": True,
    "completion": {"debounceMs": 0, "adaptiveDebounce": False, "prefetch": False},
}
HANG_GUARD_S = 60  # a stuck request fails the test instead of stalling CI

URIS = st.one_of(
    st.sampled_from(["file:///fuzz/a.py", "file:///fuzz/b.ts"]),  # mostly open ones
    st.sampled_from(
        [
            "file:///fuzz/%C3%BC%20n%C3%A9.py",
            "untitled:Untitled-1",
            "file:///fuzz/never-opened.py",
            "file:///",
            "not a uri",
            "",
        ]
    ),
)
LANGUAGES = st.sampled_from(["python", "typescript", "rust", "", "no-such-language"])
NUMBERS = st.one_of(
    st.integers(0, 40),  # mostly in range (the weight of a branch is its count)
    st.integers(0, 40),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(-3, -1),
    st.integers(2**31 - 2, 2**31 + 2),
    st.just(10**12),
)
POSITION = st.fixed_dictionaries({"line": NUMBERS, "character": NUMBERS})
RANGE = st.fixed_dictionaries({"start": POSITION, "end": POSITION})
TEXT = st.one_of(
    st.text(
        max_size=300
    ),  # any code points: astral (surrogate pairs in UTF-16), controls
    st.builds(
        lambda unit, n: unit * n,
        st.sampled_from(["x", "😀", "(", "[{", "\t", "\x00", "é", "\r\n", "\u2028"]),
        st.integers(0, 60_000),  # huge lines
    ),
    st.builds(
        lambda n: "def f():\n" + "    " * n + "return (" * n, st.integers(0, 3000)
    ),
    st.sampled_from(["def f(:\n\treturn ]", "\ufeffimport os\n", "a\rb\rc", "'''\n"]),
)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _leaf_keys(cls: type[Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        key = (*prefix, config.camel_case(field.name))
        keys += _leaf_keys(field.type, key) if attrs.has(field.type) else [key]
    return keys


SETTING_KEYS = _leaf_keys(config.Settings)
# Valid values for these would leave the test's sandbox (another backend, the
# network, a model download); invalid ones are fuzzed like every other setting.
SANDBOX = {"backend", "offline", "local", "routing", "ollama", "openai", "anthropic"}


def _nest(pairs: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key[0] in SANDBOX and not config.build(_nest_one(key, value))[1]:
            continue  # a valid value: would change the sandbox
        node = out
        for part in key[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[key[-1]] = value
    return out


def _nest_one(key: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {key[-1]: value}
    for part in reversed(key[:-1]):
        out = {part: out}
    return out


SETTINGS = st.one_of(
    st.lists(st.tuples(st.sampled_from(SETTING_KEYS), JSON), max_size=6).map(_nest),
    JSON,  # the whole section of a wrong type
    st.dictionaries(st.text(max_size=12), JSON, max_size=3),  # unknown settings
)
COMMANDS = st.sampled_from(
    ["tandem.explain", "tandem.refactor", "tandem.status", "tandem.nope", "", "x" * 500]
)

OPS = st.one_of(
    st.tuples(st.just("open"), URIS, LANGUAGES, st.integers(-1, 3), TEXT),
    st.tuples(st.just("full"), URIS, st.integers(-1, 5), TEXT),
    st.tuples(
        st.just("edit"),
        URIS,
        st.integers(-1, 5),
        st.lists(st.tuples(RANGE, TEXT), min_size=1, max_size=4),
    ),
    st.tuples(st.just("close"), URIS),
    st.tuples(st.just("inline"), URIS, POSITION),
    st.tuples(st.just("complete"), URIS, POSITION),
    st.tuples(st.just("actions"), URIS, RANGE),
    st.tuples(st.just("hover"), URIS, POSITION),
    st.tuples(st.just("command"), COMMANDS, st.lists(JSON, max_size=2)),
    st.tuples(
        st.just("command"),
        st.sampled_from(["tandem.explain", "tandem.refactor"]),
        st.lists(
            st.fixed_dictionaries(
                {"uri": URIS, "range": RANGE},
                optional={
                    "task": st.sampled_from(["rewrite", "fix", "??"]),
                    "instruction": JSON,
                    "cloud": JSON,
                },
            ),
            min_size=1,
            max_size=1,
        ),
    ),
    st.tuples(st.just("settings"), SETTINGS),
    st.tuples(st.just("cancel"), st.integers(0, 3)),
)


class Player:
    """Plays generated operations against the server; counts what came back.

    Messages go out as raw JSON-RPC: the client's typed messages would refuse
    the hostile parameters before they left.
    """

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.answers = 0
        self.errors = 0
        self.pending: list[tuple[str, asyncio.Future[Any]]] = []
        self.sent: dict[str, str] = {}
        self.why: collections.Counter[str] = collections.Counter()

    def notify(self, method: str, params: Any) -> None:
        message = JsonRPCNotification(method=method, params=params, jsonrpc="2.0")
        self.client.protocol._send_data(message)

    def request(self, method: str, params: Any) -> None:
        protocol = self.client.protocol
        msg_id = str(uuid.uuid4())
        future: Future[Any] = Future()
        protocol._request_futures[msg_id] = future
        protocol._result_types[msg_id] = JsonRPCResponseMessage  # the raw result
        message = JsonRPCRequestMessage(
            id=msg_id, method=method, params=params, jsonrpc="2.0"
        )
        protocol._send_data(message)
        self.pending.append((msg_id, asyncio.wrap_future(future)))
        self.sent[msg_id] = f"{method} {json.dumps(params)[:300]}"

    async def play(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            kind = op[0]
            if kind == "open":
                _, uri, language, version, text = op
                item = {
                    "uri": uri,
                    "languageId": language,
                    "version": version,
                    "text": text,
                }
                self.notify("textDocument/didOpen", {"textDocument": item})
            elif kind in ("full", "edit"):
                _, uri, version, change = op
                changes = (
                    [{"text": change}]
                    if kind == "full"
                    else [{"range": r, "text": t} for r, t in change]
                )
                doc = {"uri": uri, "version": version}
                self.notify(
                    "textDocument/didChange",
                    {"textDocument": doc, "contentChanges": changes},
                )
            elif kind == "close":
                self.notify("textDocument/didClose", {"textDocument": {"uri": op[1]}})
            elif kind in ("inline", "complete", "hover"):
                method = {
                    "inline": "textDocument/inlineCompletion",
                    "complete": "textDocument/completion",
                    "hover": "textDocument/hover",
                }[kind]
                params: dict[str, Any] = {
                    "textDocument": {"uri": op[1]},
                    "position": op[2],
                }
                if kind == "inline":
                    params["context"] = {"triggerKind": 2}
                self.request(method, params)
            elif kind == "actions":
                params = {
                    "textDocument": {"uri": op[1]},
                    "range": op[2],
                    "context": {"diagnostics": []},
                }
                self.request("textDocument/codeAction", params)
            elif kind == "command":
                params = {"command": op[1], "arguments": op[2]}
                self.request("workspace/executeCommand", params)
            elif kind == "settings":
                self.client.set_configuration(op[1], section="tandem")
                self.notify("workspace/didChangeConfiguration", {"settings": None})
            elif kind == "cancel" and self.pending:
                msg_id, _ = self.pending[-1 - op[1] % len(self.pending)]
                self.notify("$/cancelRequest", {"id": msg_id})
        await self.settle()

    async def settle(self) -> None:
        """Every request answered: a result or an error, none left hanging."""
        for msg_id, future in self.pending:
            try:
                await asyncio.wait_for(future, HANG_GUARD_S)
                self.answers += 1
            except TimeoutError:
                raise AssertionError(f"never answered: {self.sent[msg_id]}") from None
            except JsonRpcException as e:  # an error answer is an answer
                self.errors += 1
                self.why[str(e).split(":")[0][:60]] += 1
        self.pending.clear()

    async def restore_settings(self) -> None:
        """The baseline settings back, and applied (the backend ready again)."""
        client = self.client
        wanted = json.loads(json.dumps(attrs.asdict(config.build(BASELINE)[0])))
        client.set_configuration(BASELINE, section="tandem")
        self.notify("workspace/didChangeConfiguration", {"settings": None})
        for _ in range(HANG_GUARD_S * 50):
            state = await status(client)
            if state["settings"] == wanted and state["model"]["state"] == "ready":
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"settings not restored: {state['model']}")

    async def canary(self) -> None:
        """Sandbox back as it was; a valid session is served correctly."""
        await self.restore_settings()
        doc = {"uri": CANARY, "version": 1}
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {**doc, "languageId": "python", "text": "x"}},
        )
        # An incremental edit round trip: the server's copy must be exact.
        start = {"line": 0, "character": 0}
        end = {"line": 0, "character": 1}
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {**doc, "version": 2},
                "contentChanges": [
                    {"range": {"start": start, "end": end}, "text": CANARY_TEXT}
                ],
            },
        )
        result = await asyncio.wait_for(
            self.client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=CANARY),
                    position=types.Position(line=1, character=4),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked
                    ),
                )
            ),
            HANG_GUARD_S,
        )
        assert result is not None
        items = (
            result.items if isinstance(result, types.InlineCompletionList) else result
        )
        assert [i.insert_text for i in items] == [ANSWER]
        self.notify("textDocument/didClose", {"textDocument": {"uri": CANARY}})


def hostile_workspace(root: Path) -> None:
    """Files a real workspace has: broken encodings, binaries, huge and deep files."""
    (root / "ok.py").write_text("def helper(x: int) -> int:\n    return x * 2\n")
    (root / "latin1.py").write_bytes("# caf\xe9\nname = 'na\xefve'\n".encode("latin-1"))
    (root / "binary.py").write_bytes(bytes(range(256)) * 64)
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    big = "def f{0}(x):\n    return x + {0}\n"
    (root / "big.py").write_text(
        "".join(big.format(i) for i in range(300_000))[: 10 * 2**20]
    )
    (root / "deep.py").write_text("x = " + "[" * 20_000 + "]" * 20_000 + "\n")
    (root / "nested.py").write_text(
        "".join("    " * i + f"if a{i}:\n" for i in range(400))
        + "    " * 400
        + "pass\n"
    )
    (root / "utf16.ts").write_bytes("export const s = 'x';\n".encode("utf-16"))


@pytest.mark.slow
async def test_hostile_lsp_traffic_never_kills_the_server(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    hostile_workspace(root)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"default": ANSWER}))
    env = {"TANDEM_FAKE_SCRIPT": str(script)}
    async with session(env, BASELINE, root=str(root)) as client:
        client.set_configuration(BASELINE, section="tandem")
        player = Player(client)
        await player.canary()
        loop = asyncio.get_running_loop()

        def run(coro: Any) -> None:
            asyncio.run_coroutine_threadsafe(coro, loop).result()

        opened = st.tuples(st.just("open"), URIS, LANGUAGES, st.just(1), TEXT)

        @settings(
            max_examples=1000 if DEEP else 100,
            derandomize=not DEEP,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(OPS, min_size=1, max_size=10), opened)
        def session_of(ops: list[tuple[Any, ...]], first: tuple[Any, ...]) -> None:
            run(player.play([first, *ops]))
            run(player.canary())

        await asyncio.to_thread(session_of)
        state = await status(client)
        assert state["index"]["indexed"] >= 1  # the workspace was indexed, nasties too
        print(f"fuzz: {player.answers} answers, {player.errors} errors: {player.why}")
        assert player.answers > 0
