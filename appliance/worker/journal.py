"""A sealing thread's journal: `<location>/meta/journal.db`, SQLite in WAL mode with synchronous
writes. It holds the current sector record and an append-only log of transitions (with events
and errors). A transition is committed before the thread acts on it, so a restart resumes at the
step that was in flight. A journal that cannot be read is a crit error naming the file: it is
never replaced by an empty one. The location is locked (`.holder`, flock) while in use."""

from __future__ import annotations

import errno
import json
import sqlite3
import time
from pathlib import Path

from ..core.db import DatabaseError, Schema, open_database, transaction
from ..core.pidlock import LockHeld, PidLock

SCHEMA = """
CREATE TABLE IF NOT EXISTS sector (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, sector TEXT,
    prev TEXT, next TEXT, event TEXT, level TEXT, error TEXT);
"""

# migrations[i] takes a journal from version i to i + 1; append, never edit a released one.
JOURNAL_SCHEMA = Schema("sealing journal", [SCHEMA], frozenset({"sector", "log"}), frozenset({("sector", "record")}))


class JournalError(Exception):
    """The journal or location cannot be used; the thread stops with a crit error."""


class JournalWriteError(Exception):
    """A write to the journal failed (a full disk, an I/O error): nothing of it was committed,
    the record on disk is the one before. A temp failure: the thread retries when it can write."""

    def __init__(self, path: Path, exc: BaseException):
        errno_ = getattr(exc, "errno", None)
        full = errno_ == errno.ENOSPC or "full" in str(exc).lower()
        reason = f"no space left on the device (ENOSPC): {exc}" if full else str(exc)
        super().__init__(f"journal {path} cannot be written: {reason}")
        self.no_space = full


class LocationLock(PidLock):
    """Exclusive use of a sealing location by one worker process."""

    def __init__(self, location: Path):
        self.location = Path(location)
        try:
            self.location.mkdir(parents=True, exist_ok=True)
            super().__init__(self.location / ".holder", "damocles worker", 0o644)
        except LockHeld as held:
            raise JournalError(f"sealing location {self.location} is in use by worker process "
                               f"{held.pid if held.pid is not None else 'another process'}") from None
        except OSError as exc:
            raise JournalError(f"sealing location {self.location} cannot be used: {exc.strerror or exc}") from None


class Journal:
    def __init__(self, location: Path):
        self.path = Path(location) / "meta" / "journal.db"
        try:
            self._db = open_database(self.path, JOURNAL_SCHEMA)    # checked, versioned, migrated
        except DatabaseError as exc:
            raise JournalError(f"journal {self.path} cannot be read: {exc}") from None
        except OSError as exc:
            raise JournalError(f"journal {self.path} cannot be read: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._db.close()

    def current(self) -> dict | None:
        try:
            row = self._db.execute("SELECT record FROM sector WHERE id = 1").fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise JournalError(f"journal {self.path} cannot be read: {exc}") from None

    def _write(self, *statements: tuple[str, tuple]) -> None:
        """Run the statements in one transaction: all of them are committed or none."""
        try:
            with transaction(self._db):
                for sql, args in statements:
                    self._db.execute(sql, args)
        except (sqlite3.OperationalError, OSError) as exc:
            raise JournalWriteError(self.path, exc) from None

    @staticmethod
    def _upsert(record: dict) -> tuple[str, tuple]:
        return ("INSERT INTO sector (id, record) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record",
                (json.dumps(record),))

    @staticmethod
    def _log_row(sector: str | None, prev: str | None, nxt: str | None, event: str | None,
                 level: str | None = None, error: str | None = None) -> tuple[str, tuple]:
        return ("INSERT INTO log (ts, sector, prev, next, event, level, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), sector, prev, nxt, event, level, error))

    def transition(self, record: dict, prev: str, event: str) -> None:
        """Commit the new record (its `state` already the next state) and the log row, together."""
        self._write(self._upsert(record), self._log_row(record.get("name"), prev, record["state"], event))

    def save(self, record: dict) -> None:
        """Update the record without a transition (retry counters, pause flags)."""
        self._write(self._upsert(record))

    def failure(self, record: dict | None, level: str, error: str) -> None:
        name = record.get("name") if record else None
        self._write(self._log_row(name, record.get("state") if record else None, None, None, level, error))

    def clear(self, record: dict, event: str) -> None:
        """The sector is done (finished or aborted): drop the current record, keep the log."""
        self._write(("DELETE FROM sector WHERE id = 1", ()), self._log_row(record.get("name"), record.get("state"), None, event))

    def log(self, sector: str | None = None) -> list[dict]:
        rows = self._db.execute("SELECT seq, ts, sector, prev, next, event, level, error FROM log "
                                "WHERE ? IS NULL OR sector = ? ORDER BY seq", (sector, sector)).fetchall()
        return [dict(zip(("seq", "ts", "sector", "prev", "next", "event", "level", "error"), r)) for r in rows]
