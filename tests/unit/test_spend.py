"""The spend ledger: reservations, settlement, the old JSON file, corrupt files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tandem.spend import SpendLedger


def ledger(path: Path) -> tuple[SpendLedger, list[str]]:
    messages: list[str] = []
    return SpendLedger(path, warn=messages.append), messages


def test_a_reservation_counts_until_settled_at_the_real_cost(tmp_path: Path) -> None:
    spend, messages = ledger(tmp_path / "new" / "tandem" / "spend.sqlite3")
    held = spend.reserve(0.25, cap_usd=1.0, backend="anthropic")
    assert held is not None and spend.spent_today() == 0.25
    spend.settle(held, 0.000123456)
    assert spend.nano_today() == 123_456
    spend.add(0.1)
    assert spend.nano_today() == 100_123_456  # integers: no float drift
    assert messages == []


def test_a_reservation_over_the_cap_holds_nothing(tmp_path: Path) -> None:
    spend, _ = ledger(tmp_path / "spend.sqlite3")
    spend.add(0.7)
    assert spend.reserve(0.31, cap_usd=1.0) is None
    assert spend.spent_today() == 0.7
    assert spend.reserve(0.3, cap_usd=1.0) is not None  # exactly to the cap
    assert spend.reserve(1e-9, cap_usd=1.0) is None


def test_an_unsettled_reservation_keeps_its_worst_case(tmp_path: Path) -> None:
    crashed, _ = ledger(tmp_path / "spend.sqlite3")
    assert crashed.reserve(0.02, cap_usd=1.0) is not None  # never settled
    crashed.close()
    assert ledger(tmp_path / "spend.sqlite3")[0].spent_today() == 0.02


def test_the_old_json_ledger_is_imported_once(tmp_path: Path) -> None:
    old = tmp_path / "spend.json"
    today = SpendLedger.today()
    old.write_text(json.dumps({today: 0.42, "2020-01-01": 3.0}), encoding="utf-8")
    spend, messages = ledger(tmp_path / "spend.json")  # names the ledger beside it
    assert spend.path == tmp_path / "spend.sqlite3"
    assert spend.spent_today() == 0.42
    assert not old.exists() and (tmp_path / "spend.json.migrated").exists()
    spend.close()
    old.write_text(json.dumps({today: 0.42}), encoding="utf-8")  # put back
    again, _ = ledger(tmp_path / "spend.sqlite3")
    assert again.spent_today() == 0.42  # not counted twice
    assert messages == []


def test_an_old_ledger_holding_a_list_is_set_aside_with_one_message(
    tmp_path: Path,
) -> None:
    old = tmp_path / "spend.json"
    old.write_text("[1, 2, 3]", encoding="utf-8")
    spend, messages = ledger(tmp_path / "spend.sqlite3")
    assert spend.spent_today() == 0.0
    assert not old.exists()
    (aside,) = tmp_path.glob("spend.json.corrupt-*")
    assert aside.read_text(encoding="utf-8") == "[1, 2, 3]"
    assert len(messages) == 1 and "set aside" in messages[0]
    assert spend.reserve(0.5, cap_usd=1.0) is not None  # and it works
    assert len(messages) == 1


def test_a_corrupt_ledger_is_set_aside_with_one_message(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    path.write_bytes(b"this is not a database\n" * 200)
    spend, messages = ledger(path)
    assert spend.spent_today() == 0.0
    spend.add(0.5)
    assert spend.spent_today() == 0.5
    (aside,) = tmp_path.glob("spend.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert len(messages) == 1 and str(path) in messages[0]
    assert "not a database" in messages[0]


def test_a_ledger_corrupted_between_uses_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "spend.sqlite3"
    spend, messages = ledger(path)
    spend.add(0.5)
    spend.close()
    with path.open("r+b") as f:  # another program scribbles over the header
        f.write(b"garbage" * 20)
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    assert spend.reserve(0.25, cap_usd=1.0) is not None
    assert spend.spent_today() == 0.25
    assert len(messages) == 1


def test_the_ledger_is_a_wal_database(tmp_path: Path) -> None:
    spend, _ = ledger(tmp_path / "spend.sqlite3")
    spend.add(0.01)
    mode = sqlite3.connect(tmp_path / "spend.sqlite3").execute("PRAGMA journal_mode")
    assert mode.fetchone()[0] == "wal"


def test_an_unusable_location_counts_in_memory_with_one_message(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    spend, messages = ledger(blocker / "spend.sqlite3")
    spend.add(0.25)
    assert spend.spent_today() == 0.25
    assert len(messages) == 1 and "this session only" in messages[0]
