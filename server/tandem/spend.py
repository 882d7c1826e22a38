"""The spend ledger: what paid backends cost per day, shared by every server process.

A small SQLite database (``$XDG_CACHE_HOME/tandem/spend.sqlite3``, WAL mode) holds
one row per paid request: its day, its amount in nano-dollars (integers, so totals
are exact) and whether it is still open. No keys, no code. A request *reserves* its
worst case in one transaction that also checks the cap, so two editor windows can
never both pass it; afterwards it is *settled* at what it cost. A reservation that
is never settled (the process died) keeps counting at its worst case.

An old ``spend.json`` beside the database is imported once. A database that is not
one (or an old file that is not a day -> amount object) is set aside, renamed, with
one message, and counting starts again: the server always starts.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

NANO = 1_000_000_000
"""Nano-dollars per dollar: amounts are stored as integers of these."""
KEEP_DAYS = 31
BUSY_TIMEOUT_S = 10.0
INIT_ATTEMPTS = 20
"""Tries at opening the file while another process is setting it up."""
"""How long a write waits for another process's transaction."""
_CORRUPT = {11, 26}
"""SQLITE_CORRUPT, SQLITE_NOTADB."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    nano INTEGER NOT NULL,
    open INTEGER NOT NULL DEFAULT 0,
    backend TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS spend_day ON spend (day);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_spend_path() -> Path:
    """``$XDG_CACHE_HOME/tandem/spend.sqlite3``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tandem" / "spend.sqlite3"


def to_nano(usd: float) -> int:
    """Dollars as whole nano-dollars."""
    return round(usd * NANO)


class SpendLedger:
    """Spend per day in a SQLite file several processes share (None: in memory).

    ``path`` names the database; a path ending in ``.json`` (the old ledger) names
    the database beside it. ``warn`` gets one message when a file is set aside.
    Methods block on the file for a moment: call the writing ones off the event loop.
    """

    def __init__(
        self, path: Path | None, warn: Callable[[str], None] | None = None
    ) -> None:
        if path is not None and path.suffix == ".json":
            path = path.with_suffix(".sqlite3")
        self.path = path
        self.legacy = path.with_name("spend.json") if path is not None else None
        self.warn = warn or (lambda message: None)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._last = 0

    @staticmethod
    def today() -> str:
        """The local date, ISO."""
        return datetime.date.today().isoformat()

    # -- reading and writing ---------------------------------------------------------

    def spent_today(self) -> float:
        """USD counted for today: settled amounts and open reservations."""
        return self.nano_today() / NANO

    def nano_today(self) -> int:
        """Today's total in nano-dollars (exact; the last one read if it cannot be)."""
        try:
            self._last = self._run(lambda db: _total(db, self.today()))
        except sqlite3.Error as e:
            logger.warning("the spend ledger cannot be read (%s)", e)
        return self._last

    def reserve(self, usd: float, cap_usd: float, backend: str = "") -> int | None:
        """Hold ``usd`` for today unless that passes ``cap_usd``; the reservation id.

        None: today's total plus ``usd`` is over the cap (nothing is held).
        """
        day, nano, cap = self.today(), to_nano(usd), to_nano(cap_usd)
        oldest = (
            datetime.date.today() - datetime.timedelta(days=KEEP_DAYS)
        ).isoformat()

        def reserve(db: sqlite3.Connection) -> int | None:
            with _transaction(db):
                if _total(db, day) + nano > cap:
                    return None
                cursor = db.execute(
                    "INSERT INTO spend (day, nano, open, backend) VALUES (?, ?, 1, ?)",
                    (day, nano, backend),
                )
                db.execute("DELETE FROM spend WHERE day < ?", (oldest,))
                return int(cursor.lastrowid or 0)

        return self._run(reserve)

    def settle(self, reservation: int, usd: float) -> None:
        """Replace a reservation's worst case with what the request cost."""

        def settle(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "UPDATE spend SET nano = ?, open = 0 WHERE id = ?",
                    (to_nano(usd), reservation),
                )

        self._run(settle)

    def add(self, usd: float, backend: str = "") -> None:
        """Count ``usd`` for today (no cap: it was spent)."""
        if usd <= 0:
            return

        def add(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "INSERT INTO spend (day, nano, backend) VALUES (?, ?, ?)",
                    (self.today(), to_nano(usd), backend),
                )

        self._run(add)

    def close(self) -> None:
        """Close the database (it opens again when next used)."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    # -- the file ----------------------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the open database, under this process's lock.

        A file found corrupt (now, or by another process's writes) is set aside
        and ``work`` runs once more on a new one.
        """
        with self._lock:
            try:
                return work(self._open())
            except sqlite3.DatabaseError as e:
                if not _corrupt(e) or self._db is None or self.path is None:
                    raise
                self._db.close()
                self._db = None
                self._set_aside(self.path, str(e))
            return work(self._open())

    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self.path is None:
            self._db = _init(":memory:")
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = _init(str(self.path))
            except sqlite3.DatabaseError as e:
                if not _corrupt(e):
                    raise
                self._set_aside(self.path, str(e))
                db = _init(str(self.path))
            self._migrate(db)
        except (OSError, sqlite3.Error) as e:
            message = (
                f"the spend ledger {self.path} cannot be used ({e}); spend is "
                "counted for this session only"
            )
            logger.warning("%s", message)
            self.warn(message)
            db = _init(":memory:")
        self._db = db
        return db

    def _set_aside(self, path: Path, error: str) -> None:
        """Rename an unreadable file (and drop its WAL) out of the way; one message."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        with contextlib.suppress(OSError):
            path.rename(aside)
        for extra in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                path.with_name(path.name + extra).unlink()
        message = (
            f"the spend ledger {path} could not be read ({error}); it was set aside "
            f"as {aside.name} and today's spend counts from $0"
        )
        logger.warning("%s", message)
        self.warn(message)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Import the old ``spend.json`` once (under the write lock: one process)."""
        legacy = self.legacy
        if legacy is None or not legacy.is_file():
            return
        with _transaction(db):
            done = db.execute("SELECT value FROM meta WHERE key = 'migrated'")
            if done.fetchone() is not None:
                return
            days = _read_legacy(legacy)
            rows = [(day, to_nano(usd)) for day, usd in (days or {}).items()]
            db.executemany(
                "INSERT INTO spend (day, nano, backend) VALUES (?, ?, 'spend.json')",
                [row for row in rows if row[1] > 0],
            )
            db.execute("INSERT INTO meta (key, value) VALUES ('migrated', '1')")
        if days is None:
            self._set_aside(legacy, "not a JSON object of day -> USD")
        else:
            with contextlib.suppress(OSError):
                legacy.rename(legacy.with_name(legacy.name + ".migrated"))


def _read_legacy(path: Path) -> dict[str, float] | None:
    """The old ledger's days, or None when it is not a day -> amount object."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(loaded, dict):
        return None
    try:
        return {str(day): float(usd) for day, usd in loaded.items()}
    except (TypeError, ValueError):
        return None


def _init(where: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, schema made.

    One connection per process, used under the ledger's lock from whichever
    thread asks.
    """
    for attempt in range(INIT_ATTEMPTS):
        db = sqlite3.connect(
            where, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            return db
        except sqlite3.OperationalError as e:
            db.close()
            # Another process switching the file to WAL or making the schema at the
            # same moment: SQLite answers "locked" at once, busy timeout or not.
            # Not a reason to count this session in memory.
            if "locked" not in str(e) or attempt == INIT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        except BaseException:
            db.close()
            raise
    raise AssertionError("unreachable")


def _total(db: sqlite3.Connection, day: str) -> int:
    """Nano-dollars counted for ``day``."""
    row = db.execute(
        "SELECT COALESCE(SUM(nano), 0) FROM spend WHERE day = ?", (day,)
    ).fetchone()
    return int(row[0])


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the write lock first, so a read-then-write is atomic)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _corrupt(error: sqlite3.DatabaseError) -> bool:
    """Whether ``error`` says the file is not a (sound) database."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in _CORRUPT
    return type(error) is sqlite3.DatabaseError
