"""The manager's own database (SQLite, WAL, synchronous commits; the chain's state is elsewhere):
per-miner number counters, sector records, workers, store reservations. Every change is
committed before the answer that reports it is sent."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (miner INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sectors (miner INTEGER NOT NULL, number INTEGER NOT NULL, proof INTEGER NOT NULL,
    info TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (miner, number));
CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, info TEXT NOT NULL, last_ping REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (miner INTEGER NOT NULL, number INTEGER NOT NULL, store TEXT NOT NULL,
    size INTEGER NOT NULL, PRIMARY KEY (miner, number));
"""


class ManagerState:
    def __init__(self, path: str | Path, now=time.time):
        self.path, self._now = Path(path), now
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def tx(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --------------------------------------------------------------------- sectors

    def allocate(self, miner: int, proof: int, min_number: int, max_number: int | None) -> int | None:
        """The next number of the miner (never the same twice, across restarts and callers)."""
        with self.tx() as db:
            row = db.execute("SELECT next FROM counters WHERE miner = ?", (miner,)).fetchone()
            number = max(row[0] if row else 0, min_number)
            if max_number is not None and number > max_number:
                return None
            db.execute("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE SET next = excluded.next",
                       (miner, number + 1))
            info = {"allocated_at": self._now(), "state": "Allocated"}
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                       (miner, number, proof, json.dumps(info), self._now()))
            return number

    def sector(self, miner: int, number: int) -> dict | None:
        row = self._db.execute("SELECT proof, info FROM sectors WHERE miner = ? AND number = ?", (miner, number)).fetchone()
        if row is None:
            return None
        info = json.loads(row[1])
        info.update(miner=miner, number=number, proof=row[0])   # proof: the RegisteredSealProof
        return info

    def update(self, miner: int, number: int, **changes) -> dict:
        """Merge changes into a sector record (None deletes a key); returns the new record."""
        with self.tx() as db:
            row = db.execute("SELECT info FROM sectors WHERE miner = ? AND number = ?", (miner, number)).fetchone()
            if row is None:
                raise KeyError((miner, number))
            info = json.loads(row[0])
            for k, v in changes.items():
                if v is None:
                    info.pop(k, None)
                else:
                    info[k] = v
            db.execute("UPDATE sectors SET info = ?, updated = ? WHERE miner = ? AND number = ?",
                       (json.dumps(info), self._now(), miner, number))
        return self.sector(miner, number)

    def sectors(self, miner: int | None = None) -> list[dict]:
        rows = self._db.execute("SELECT miner, number FROM sectors WHERE ? IS NULL OR miner = ? ORDER BY miner, number",
                                (miner, miner)).fetchall()
        return [self.sector(m, n) for m, n in rows]

    def silent_since(self, cutoff: float) -> list[tuple[int, int]]:
        return self._db.execute("SELECT miner, number FROM sectors WHERE updated < ?", (cutoff,)).fetchall()

    # --------------------------------------------------------------------- workers

    def ping(self, name: str, info: dict) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO workers (name, info, last_ping) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET info = excluded.info, last_ping = excluded.last_ping", (name, json.dumps(info), self._now()))

    def workers(self) -> list[tuple[str, dict, float]]:
        return [(n, json.loads(i), t) for n, i, t in self._db.execute("SELECT name, info, last_ping FROM workers ORDER BY name")]

    # ---------------------------------------------------------------- reservations

    def reserve(self, miner: int, number: int, store: str, size: int) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO reservations (miner, number, store, size) VALUES (?, ?, ?, ?) ON CONFLICT(miner, number) "
                       "DO UPDATE SET store = excluded.store, size = excluded.size", (miner, number, store, size))

    def release(self, miner: int, number: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM reservations WHERE miner = ? AND number = ?", (miner, number))

    def reserved(self, store: str) -> int:
        return self._db.execute("SELECT COALESCE(SUM(size), 0) FROM reservations WHERE store = ?", (store,)).fetchone()[0]

    def reservation(self, miner: int, number: int) -> tuple[str, int] | None:
        return self._db.execute("SELECT store, size FROM reservations WHERE miner = ? AND number = ?", (miner, number)).fetchone()
