"""The spend ledger shared by several processes, and by two real servers.

Two processes adding to one ledger at once lose nothing (the total is exact) and
cannot both pass the cap; two tandem-ls servers spending on one stand-in cloud API
leave exactly the sum of their decisions; a corrupt ledger file does not stop a
server: it is set aside with one message and counting starts again.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from lsprotocol import types

from tandem.spend import SpendLedger
from tests.e2e.helpers import PALINDROME, complete, open_doc, session, status
from tests.fakes.apis import Reply, serving

ROUNDS = 150
KEY = "sk-ant-api03-TestKeyForSpend0123456789"


def _spend(path: str, capped: str, start: Any, worker: int, results: Any) -> None:
    """Reserve and settle ROUNDS times; then hold $1 at a time while the cap lets."""
    ledger = SpendLedger(Path(path))
    start.wait()
    for n in range(ROUNDS):
        held = ledger.reserve(0.001, cap_usd=1000.0, backend=f"worker{worker}")
        assert held is not None
        ledger.settle(held, (worker * 1000 + n) / 1e9)  # a distinct nano-amount
    ledger.close()
    ledger = SpendLedger(Path(capped))
    ledger.nano_today()  # opened before the race starts
    start.wait()
    accepted = 0
    for _ in range(150):
        if ledger.reserve(1.0, cap_usd=100.0) is not None:
            accepted += 1
    results.put(accepted)
    ledger.close()


def test_two_processes_spending_at_once_lose_nothing(tmp_path: Path) -> None:
    path, capped = str(tmp_path / "spend.sqlite3"), str(tmp_path / "capped.sqlite3")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_spend, args=(path, capped, start, worker, results))
        for worker in (1, 2)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=240)
        assert process.exitcode == 0
    accepted = [results.get(timeout=5) for _ in workers]
    settled = sum((w * 1000 + n) for w in (1, 2) for n in range(ROUNDS))
    assert SpendLedger(Path(path)).nano_today() == settled
    assert sum(accepted) == 100  # exactly what the cap allows, between the two
    assert SpendLedger(Path(capped)).spent_today() == 100.0


def settings(url: str) -> dict[str, Any]:
    return {
        "completion": {"debounceMs": 0, "adaptiveDebounce": False, "prefetch": False},
        "routing": {  # no chain uses the local model: none is loaded
            "completion": ["anthropic"],
            "explain": ["anthropic"],
            "refactor": ["anthropic"],
            "dailySpendCapUsd": 5.0,
        },
        "anthropic": {"baseUrl": url, "apiKeyEnv": "TEST_CLOUD_KEY"},
    }


async def completions(client: Any, name: str, count: int) -> list[Any]:
    """``count`` completions in documents of their own; the server's decisions."""
    for n in range(count):
        uri = f"file:///work/project/{name}{n}.py"
        open_doc(client, uri, PALINDROME)
        text = await complete(client, uri, types.Position(line=2, character=4))
        assert text.startswith("return s")
    return list((await status(client))["routing"]["decisions"])


async def test_two_servers_share_the_ledger_exactly(tmp_path: Path) -> None:
    env = {"TEST_CLOUD_KEY": KEY, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    per_server = 6
    with serving() as cloud:
        cloud.reply(
            *[Reply(texts=["return s", " == s[::-1]"]) for _ in range(2 * per_server)]
        )
        async with (
            session(env, settings(cloud.url)) as first,
            session(env, settings(cloud.url)) as second,
        ):
            decisions = await asyncio.gather(
                completions(first, "a", per_server),
                completions(second, "b", per_server),
            )
    costs = [d["cost_usd"] for server in decisions for d in server]
    assert len(costs) == 2 * per_server and all(cost > 0 for cost in costs)
    db = sqlite3.connect(tmp_path / "cache" / "tandem" / "spend.sqlite3")
    total, still_open = db.execute("SELECT SUM(nano), SUM(open) FROM spend").fetchone()
    assert total == sum(round(cost * 1e9) for cost in costs)
    assert still_open == 0


async def test_a_corrupt_ledger_is_set_aside_and_the_server_starts(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "cache" / "tandem" / "spend.sqlite3"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"\x00garbage, not SQLite\n" * 100)
    env = {"TEST_CLOUD_KEY": KEY, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    with serving() as cloud:
        cloud.reply(Reply(texts=["return s == s[::-1]"]))
        async with session(env, settings(cloud.url)) as client:
            shown = asyncio.ensure_future(
                client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
            )
            assert (await completions(client, "c", 1))[0]["cost_usd"] > 0
            message = (await asyncio.wait_for(shown, 30)).message
            assert "spend ledger" in message and "set aside" in message
            assert (await status(client))["routing"]["spendTodayUsd"] > 0
            assert len(client.messages) == 1
    (aside,) = ledger.parent.glob("spend.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"\x00garbage")
