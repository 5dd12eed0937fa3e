"""The manager's own database (SQLite, WAL, synchronous commits; or a PostgreSQL database,
`[Common.DB] Driver = "postgres"`; the chain's state is elsewhere): per-miner number counters,
sector records, workers, store reservations. Every change is committed before the answer that
reports it is sent. The SQL of ManagerState's own methods is taken by both (what differs is in
core.dialect). On PostgreSQL write transactions take turns across managers (core.pg) and a
write also locks the rows it read (`self.sql.for_update`): two managers on one database never
hand out a number or a nonce twice."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ..core.db import Database, Schema, statements
from ..core.dialect import Dialect
from .identity import Limits, TooManyNames

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (miner INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sectors (miner INTEGER NOT NULL, number INTEGER NOT NULL, proof INTEGER NOT NULL,
    info TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (miner, number));
CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, info TEXT NOT NULL, last_ping REAL NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (miner INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (miner INTEGER NOT NULL, nonce INTEGER NOT NULL, kind TEXT NOT NULL,
    method TEXT NOT NULL, params TEXT NOT NULL, sectors TEXT NOT NULL, message TEXT, created REAL NOT NULL,
    PRIMARY KEY (miner, nonce));
CREATE TABLE IF NOT EXISTS wdpost_jobs (id TEXT PRIMARY KEY, miner INTEGER NOT NULL, deadline INTEGER NOT NULL,
    period_start INTEGER NOT NULL, partitions TEXT NOT NULL, input TEXT NOT NULL, state TEXT NOT NULL,
    tries INTEGER NOT NULL, worker TEXT, output TEXT, error TEXT, created REAL NOT NULL, started REAL,
    heartbeat REAL, finished REAL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS provers (name TEXT PRIMARY KEY, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS post_rounds (miner INTEGER NOT NULL, period_start INTEGER NOT NULL, deadline INTEGER NOT NULL,
    grp INTEGER NOT NULL, info TEXT NOT NULL, PRIMARY KEY (miner, period_start, deadline, grp));
CREATE TABLE IF NOT EXISTS deals (id INTEGER PRIMARY KEY, miner INTEGER NOT NULL, piece_cid TEXT NOT NULL,
    piece_size INTEGER NOT NULL, payload_size INTEGER NOT NULL, start_epoch INTEGER NOT NULL, end_epoch INTEGER NOT NULL,
    store TEXT NOT NULL, sector INTEGER);
CREATE TABLE IF NOT EXISTS unseal_tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, miner INTEGER NOT NULL, number INTEGER NOT NULL,
    piece_cid TEXT NOT NULL, dest TEXT NOT NULL, state TEXT NOT NULL, worker TEXT, error TEXT, created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rebuild_tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, miner INTEGER NOT NULL, number INTEGER NOT NULL,
    state TEXT NOT NULL, worker TEXT, reason TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS snap_candidates (miner INTEGER NOT NULL, number INTEGER NOT NULL, state TEXT NOT NULL,
    worker TEXT, message TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (miner, number));
CREATE TABLE IF NOT EXISTS reservations (miner INTEGER NOT NULL, number INTEGER NOT NULL, store TEXT NOT NULL,
    size INTEGER NOT NULL, PRIMARY KEY (miner, number));
"""

# The status page's history and change counter (docs/observability.md). Every transition a worker
# reports is one row, bounded per sector and in all; `web_version` counts changes an operator can
# see (sectors, workers' info, PoSt rounds, jobs, stores, deals, tasks) through triggers, so an
# idle status page costs one cheap query per refresh however it is written to.
HISTORY_PER_SECTOR = 200
HISTORY_MAX_ROWS = 500_000
WEB_SCHEMA = """
CREATE TABLE IF NOT EXISTS sector_history (id INTEGER PRIMARY KEY AUTOINCREMENT, miner INTEGER NOT NULL,
    number INTEGER NOT NULL, at REAL NOT NULL, prev TEXT, next TEXT NOT NULL, event TEXT, worker TEXT, level TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS sector_history_by_sector ON sector_history (miner, number, id);
CREATE TABLE IF NOT EXISTS web_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT OR IGNORE INTO web_version (id, version) VALUES (1, 0);
"""
_VERSIONED = {   # table -> WHEN clause of its UPDATE trigger (what counts as a visible change)
    "sectors": "", "post_rounds": "", "reservations": "", "deals": "", "unseal_tasks": "", "rebuild_tasks": "",
    "snap_candidates": "", "workers": "WHEN old.info IS NOT new.info",
    "wdpost_jobs": "WHEN old.state IS NOT new.state OR old.worker IS NOT new.worker",
}


def _web_triggers(db) -> None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    bump = "BEGIN UPDATE web_version SET version = version + 1 WHERE id = 1; END"
    for table, when in _VERSIONED.items():
        if table in tables:
            db.execute(f"CREATE TRIGGER IF NOT EXISTS web_v_{table}_i AFTER INSERT ON {table} {bump}")
            db.execute(f"CREATE TRIGGER IF NOT EXISTS web_v_{table}_u AFTER UPDATE ON {table} FOR EACH ROW {when} {bump}")
            db.execute(f"CREATE TRIGGER IF NOT EXISTS web_v_{table}_d AFTER DELETE ON {table} {bump}")


def _v1(db: sqlite3.Connection) -> None:
    """Version 1: the tables, the status page's history and its triggers (a file from before
    schema versions has some or all of them already: every statement is IF NOT EXISTS)."""
    for statement in statements(SCHEMA) + statements(WEB_SCHEMA):
        db.execute(statement)
    _web_triggers(db)


def _v2(db: sqlite3.Connection) -> None:
    """Version 2: a task remembers the worker thread that took it (the location our worker names
    in its allocate call's optional `Thread`), so that the thread, asking again after a restart
    that lost the task before it was journalled, is handed the same task back (rows from
    version 1 have none: they are never handed back)."""
    for table in ("unseal_tasks", "rebuild_tasks", "snap_candidates"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN thread TEXT")


def _v3(db: sqlite3.Connection) -> None:
    """Version 3: unsent outbox messages take the chain's current methods and param shapes
    (PreCommitSectorBatch2, ProveCommitSectors3, ProveReplicaUpdates3, bitfields), so that they
    are sent as the chain now takes them (manager.legacy_messages)."""
    from .legacy_messages import upgrade_outbox
    upgrade_outbox(db)


def _v4(db: sqlite3.Connection) -> None:
    """Version 4: a journalled message carries how it is sent (`spec`: value, gas limit, fee cap,
    premium, JSON; NULL: as the chain fills it), so that a resend after a crash, a resend with
    more gas or a replacement with a higher premium is journalled before it is pushed."""
    if "spec" not in {r[1] for r in db.execute("PRAGMA table_info(outbox)")}:     # kept where a file already has it
        db.execute("ALTER TABLE outbox ADD COLUMN spec TEXT")


def _v5(db: sqlite3.Connection) -> None:
    """Version 5: direct data onboarding. An unsent PreCommitSectorBatch2 names no deals (DealIDs
    empty, UnsealedCid their CommD): ProveCommitSectors3 refuses a PreCommit that named them, and
    takes the deals from its piece manifests (manager.legacy_messages)."""
    from .legacy_messages import drop_precommit_deals
    drop_precommit_deals(db)


# The sector fields the manager filters and counts on, as indexed columns generated from the
# record (VIRTUAL: computed from `info` when read, kept in the indexes when written), so that every
# write path, old and new, keeps them right. (SQLite does not take an index on such columns as
# covering: a query reads the records it selects, so the counts have their own table below.) `is_open`: neither finished nor aborted (both set
# `finalized`): what the committer, housekeeping, the page and allocation limits look at, so that
# their cost follows the sectors in flight, not every sector ever sealed.
SECTOR_COLUMNS = {
    "is_open": "INTEGER GENERATED ALWAYS AS (json_extract(info, '$.finalized') IS NULL) VIRTUAL",
    "state": "TEXT GENERATED ALWAYS AS (json_extract(info, '$.state')) VIRTUAL",
    "worker": "TEXT GENERATED ALWAYS AS (json_extract(info, '$.worker')) VIRTUAL",
    "owner": "TEXT GENERATED ALWAYS AS (json_extract(info, '$.owner')) VIRTUAL",
    "plan": "TEXT GENERATED ALWAYS AS (COALESCE(json_extract(info, '$.plan'), 'sealer')) VIRTUAL",
    "abort_reason": "TEXT GENERATED ALWAYS AS (json_extract(info, '$.abort_reason')) VIRTUAL",
    "failure_level": "TEXT GENERATED ALWAYS AS (json_extract(info, '$.failure.Level')) VIRTUAL",
    # a sector's end (terminate.py, sector_removal.py): asked for and not landed nor failed; when
    # asked; its files' removal journalled and not done
    "terminate_pending": "INTEGER GENERATED ALWAYS AS (json_extract(info, '$.terminate') IS NOT NULL AND "
                         "json_extract(info, '$.terminate.terminated_at') IS NULL AND "
                         "json_extract(info, '$.terminate.error') IS NULL) VIRTUAL",
    "terminate_queued_at": "REAL GENERATED ALWAYS AS (json_extract(info, '$.terminate.queued_at')) VIRTUAL",
    "removal_pending": "INTEGER GENERATED ALWAYS AS (json_extract(info, '$.removal') IS NOT NULL AND "
                       "json_extract(info, '$.removed') IS NULL) VIRTUAL",
}
SECTOR_INDEXES = {
    "sectors_open": "(is_open, miner, number)",
    "sectors_open_updated": "(is_open, updated)",
    "sectors_state": "(is_open, state)",
    "sectors_worker": "(worker, is_open)",
    "sectors_owner": "(owner, is_open)",
    "sectors_failing": "(is_open, failure_level)",
    # partial: only the few sectors being ended are in them
    "sectors_terminating": "(miner, number) WHERE terminate_pending = 1",
    "sectors_terminations": "(terminate_queued_at) WHERE terminate_queued_at IS NOT NULL",
    "sectors_removing": "(miner, number) WHERE removal_pending = 1",
}


# Sectors per (open, state, plan), kept by triggers on every write of `sectors`: the page's and
# /metrics' counts read a few rows, not an index entry (and its record) per sector ever sealed.
SECTOR_COUNTS = """
CREATE TABLE IF NOT EXISTS sector_counts (is_open INTEGER NOT NULL, state TEXT NOT NULL, plan TEXT NOT NULL,
    n INTEGER NOT NULL, PRIMARY KEY (is_open, state, plan));
CREATE TRIGGER IF NOT EXISTS sector_counts_i AFTER INSERT ON sectors BEGIN
    INSERT INTO sector_counts (is_open, state, plan, n) VALUES (new.is_open, COALESCE(new.state, ''), new.plan, 1)
        ON CONFLICT (is_open, state, plan) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS sector_counts_d AFTER DELETE ON sectors BEGIN
    UPDATE sector_counts SET n = n - 1 WHERE is_open = old.is_open AND state = COALESCE(old.state, '') AND plan = old.plan;
END;
CREATE TRIGGER IF NOT EXISTS sector_counts_u AFTER UPDATE ON sectors
    WHEN old.is_open IS NOT new.is_open OR old.state IS NOT new.state OR old.plan IS NOT new.plan BEGIN
    UPDATE sector_counts SET n = n - 1 WHERE is_open = old.is_open AND state = COALESCE(old.state, '') AND plan = old.plan;
    INSERT INTO sector_counts (is_open, state, plan, n) VALUES (new.is_open, COALESCE(new.state, ''), new.plan, 1)
        ON CONFLICT (is_open, state, plan) DO UPDATE SET n = n + 1;
END;
"""


def _add_sector_columns(db: sqlite3.Connection, columns: dict[str, str], indexes: dict[str, str]) -> None:
    """Generated columns and their indexes on `sectors`; those a file has already are kept."""
    have = {r[1] for r in db.execute("PRAGMA table_xinfo(sectors)")}
    for name, spec in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE sectors ADD COLUMN {name} {spec}")
    for name, on in indexes.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON sectors {on}")


def _v6(db: sqlite3.Connection) -> None:
    """Version 6: the sector fields filtered and counted on become indexed columns generated from
    the record (SECTOR_COLUMNS), and the sectors are counted per state as they are written
    (SECTOR_COUNTS); a file that has some of it keeps it, and the counts start from its records."""
    _add_sector_columns(db, SECTOR_COLUMNS, SECTOR_INDEXES)
    for statement in statements(SECTOR_COUNTS):
        db.execute(statement)
    db.execute("DELETE FROM sector_counts")
    db.execute("INSERT INTO sector_counts (is_open, state, plan, n) SELECT is_open, COALESCE(state, ''), plan, COUNT(*) "
               "FROM sectors GROUP BY 1, 2, 3")


def _v7(db: sqlite3.Connection) -> None:
    """Version 7: the active manager's lease (manager.lease): which `manager run` process may
    write, until when, and where it serves; managers sharing the database stand by meanwhile."""
    from .lease import SQLITE_DDL
    db.execute(SQLITE_DDL)


# When a sector was allocated, indexed among the open ones: /metrics' oldest sector in flight is
# the first index entry, not a read of every open record (20,000 at a million sectors).
ALLOCATED_AT = {"allocated_at": "REAL GENERATED ALWAYS AS (json_extract(info, '$.allocated_at')) VIRTUAL"}
ALLOCATED_AT_INDEX = {"sectors_open_allocated": "(is_open, allocated_at)"}


def _v8(db: sqlite3.Connection) -> None:
    """Version 8: the sectors' allocation time as an indexed column generated from the record."""
    _add_sector_columns(db, ALLOCATED_AT, ALLOCATED_AT_INDEX)


# migrations[i] takes manager.db from version i to i + 1; append, never edit a released one
# (PostgreSQL's steps from a released version are state_pg.MIGRATIONS).
MANAGER_SCHEMA = Schema("manager state", [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8], frozenset({"counters", "sectors", "nonces"}), frozenset({
    ("sectors", "info"), ("workers", "info"), ("outbox", "params"), ("outbox", "sectors"), ("outbox", "spec"), ("wdpost_jobs", "partitions"),
    ("wdpost_jobs", "input"), ("wdpost_jobs", "output"), ("post_rounds", "info")}))


class ManagerState:
    """The manager's repository. Writes go through `tx()`; a thread reads only committed data
    (its own connection), several reads that must agree go through `read()` (one snapshot).
    The modules that own a table (deals, jobs, tasks, rounds) keep their SQL and use these."""

    def __init__(self, path: str | Path, now=time.time, store=None):
        """`store`: the config's `[Common.DB]` (manager.config.DBConfig); None or sqlite: the
        SQLite file `path` (or the one `[Common.DB] Path` names)."""
        if store is not None and store.driver == "sqlite" and store.path is not None:
            path = store.path
        self.path, self._now = Path(path), now
        if store is not None and store.driver == "postgres":
            from ..core.pg import PostgresDatabase      # psycopg is needed only then
            from .state_pg import create_manager_schema, migrations
            self.db = PostgresDatabase(store.dsn, MANAGER_SCHEMA, create_manager_schema, migrations())
        else:
            self.db = Database(self.path, MANAGER_SCHEMA)
        self.sql: Dialect = self.db.dialect
        self.last_pings: dict[str, float] | None = None     # worker -> last ping, in memory for the status page
        self.home_lock = None       # the manager home's lock (manager.home_lock), released by close()
        self.limits = Limits()      # the bounds on what workers store, counted (the Sealer sets its text length)

    def close(self) -> None:
        self.db.close()
        if self.home_lock is not None:      # the home is free once its state is closed
            self.home_lock.release()
            self.home_lock = None

    def tx(self):
        """A write transaction on this thread's connection (yields the connection)."""
        return self.db.tx()

    def read(self):
        """A read snapshot on this thread's connection (yields the connection)."""
        return self.db.read()

    def query(self, sql: str, params=()) -> list[tuple]:
        return self.db.query(sql, params)

    def one(self, sql: str, params=()) -> tuple | None:
        return self.db.one(sql, params)

    def deal_pieces(self, deal_ids: list[int]) -> list[tuple[str, int]]:
        """(piece CID, padded size) of each deal, from the manager's deals; ValueError naming a
        deal it does not know."""
        out = []
        for d in deal_ids:
            row = self.one("SELECT piece_cid, piece_size FROM deals WHERE id = ?", (d,))
            if row is None:
                raise ValueError(f"deal {d} is not in the manager's deals: its piece is unknown")
            out.append((row[0], row[1]))
        return out

    # --------------------------------------------------------------------- sectors

    def allocate(self, miner: int, proof: int, min_number: int, max_number: int | None) -> int | None:
        """The next number of the miner (never the same twice, across restarts and callers): the
        counter's `next` (one above the last number handed out), or `min_number` (the smallest it
        may hand out) if higher; None past `max_number`. With `min_number` = Damocles' MinNumber
        (or InitNumber) + 1 this is Damocles' max(last, MinNumber) + 1 (Sealer.allocate_sector)."""
        with self.tx() as db:
            last, made = self._next(db, "counters", miner)
            number = max(last, min_number)
            if max_number is not None and number > max_number:
                self._unmake(db, "counters", miner, made)
                return None
            db.execute("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE SET next = excluded.next",
                       (miner, number + 1))
            info = {"allocated_at": self._now(), "state": "Allocated"}
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                       (miner, number, proof, json.dumps(info), self._now()))
            return number

    def _next(self, db, table: str, miner: int) -> tuple[int, bool]:
        """The miner's counter in `table` (counters, nonces), 0 when it has none, locked until the
        transaction ends; and whether a row was made to lock (on a server, where two managers may
        both find none: the second waits on the first's row instead of reusing its number)."""
        row = db.execute(f"SELECT next FROM {table} WHERE miner = ?{self.sql.for_update}", (miner,)).fetchone()
        if row is not None or not self.sql.row_locks:
            return (row[0] if row else 0), False
        made = db.execute(f"INSERT INTO {table} (miner, next) VALUES (?, 0) ON CONFLICT (miner) DO NOTHING",
                          (miner,)).rowcount == 1
        return db.execute(f"SELECT next FROM {table} WHERE miner = ? FOR UPDATE", (miner,)).fetchone()[0], made

    @staticmethod
    def _unmake(db, table: str, miner: int, made: bool) -> None:
        """Drop the row _next made when nothing was handed out (no counter, as on SQLite)."""
        if made:
            db.execute(f"DELETE FROM {table} WHERE miner = ? AND next = 0", (miner,))

    def sector(self, miner: int, number: int) -> dict | None:
        row = self.db.conn().execute("SELECT proof, info FROM sectors WHERE miner = ? AND number = ?", (miner, number)).fetchone()
        if row is None:
            return None
        info = json.loads(row[1])
        info.update(miner=miner, number=number, proof=row[0])   # proof: the RegisteredSealProof
        return info

    def update(self, miner: int, number: int, **changes) -> dict:
        """Merge changes into a sector record (None deletes a key); returns the new record."""
        with self.tx() as db:
            self._merge(db, miner, number, changes)
        return self.sector(miner, number)

    def update_open(self, miner: int, number: int, **changes) -> dict | None:
        """`update`, unless the sector is finalized or aborted when the change is written (one
        transaction: an abort between a caller's check and its write wins); None then."""
        with self.tx() as db:
            row = db.execute(f"SELECT info FROM sectors WHERE miner = ? AND number = ?{self.sql.for_update}",
                             (miner, number)).fetchone()
            if row is None:
                raise KeyError((miner, number))
            info = json.loads(row[0])
            if info.get("finalized") or info.get("abort_reason"):
                return None
            self._merge(db, miner, number, changes)
        return self.sector(miner, number)

    def _merge(self, db, miner: int, number: int, changes: dict) -> None:
        row = db.execute(f"SELECT info FROM sectors WHERE miner = ? AND number = ?{self.sql.for_update}",
                         (miner, number)).fetchone()
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

    def recover_sector(self, miner: int, number: int, proof: int, info: dict, deals: list[dict]) -> None:
        """Re-create a sector record the chain has and this state lost (manager.recover), with a
        history row saying so, and tie its deals to it (re-creating the deals this state never
        saw: `deals` are the chain's, each with `payload_size` and `store` added), in one transaction."""
        now = self._now()
        with self.tx() as db:
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                       (miner, number, proof, json.dumps({**info, "entered_at": now}), now))
            db.execute("INSERT INTO sector_history (miner, number, at, prev, next, event, worker, level, error) "
                       "VALUES (?, ?, ?, NULL, ?, 'RecoveredFromChain', NULL, NULL, NULL)", (miner, number, now, info["state"]))
            for d in deals:
                db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, "
                           "sector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET sector = excluded.sector",
                           (d["id"], miner, d["piece_cid"], d["piece_size"], d["payload_size"], d["start_epoch"],
                            d["end_epoch"], d["store"], number))

    # ---------------------------------------------------------------------- outbox

    def enqueue_message(self, miner: int, kind: str, method: str, params: dict, sectors: list[int],
                        spec: dict | None = None) -> int:
        """Journal a chain message with the miner's next nonce before it is sent, and tie the
        sectors to it (`<kind>_nonce`), in one transaction; returns the nonce."""
        with self.tx() as db:
            nonce, _ = self._next(db, "nonces", miner)
            db.execute("INSERT INTO nonces (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE SET next = excluded.next",
                       (miner, nonce + 1))
            db.execute("INSERT INTO outbox (miner, nonce, kind, method, params, sectors, created, spec) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (miner, nonce, kind, method, json.dumps(params), json.dumps(sectors),
                                                           self._now(), json.dumps(spec) if spec else None))
            for n in sectors:
                self._merge(db, miner, n, {f"{kind}_nonce": nonce})
        return nonce

    def unsent(self) -> list[dict]:
        rows = self.db.query("SELECT miner, nonce, kind, method, params, sectors, spec FROM outbox WHERE message IS NULL "
                                "ORDER BY miner, nonce")
        return [{"miner": r[0], "nonce": r[1], "kind": r[2], "method": r[3], "params": json.loads(r[4]),
                 "sectors": json.loads(r[5]), "spec": json.loads(r[6]) if r[6] else {}} for r in rows]

    def sent_since(self, cutoff: float) -> list[dict]:
        """Messages journalled after `cutoff` (a time) and sent: the ones whose receipts are watched."""
        rows = self.db.query("SELECT miner, nonce, kind, method, params, sectors, spec, message FROM outbox "
                             "WHERE message IS NOT NULL AND created > ? ORDER BY miner, nonce", (cutoff,))
        return [{"miner": r[0], "nonce": r[1], "kind": r[2], "method": r[3], "params": json.loads(r[4]),
                 "sectors": json.loads(r[5]), "spec": json.loads(r[6]) if r[6] else {}, "message": r[7]} for r in rows]

    def respec_message(self, miner: int, nonce: int, spec: dict) -> None:
        """Journal a replacement of a pooled message (same nonce and content, new gas): it is
        unsent again until the chain answers the push (record_sent)."""
        with self.tx() as db:
            db.execute("UPDATE outbox SET spec = ?, message = NULL WHERE miner = ? AND nonce = ?",
                       (json.dumps(spec), miner, nonce))

    def outbox_message(self, miner: int, message: str) -> dict | None:
        """The journalled message the chain knows as `message` (a CID), or None."""
        row = self.db.one("SELECT nonce, kind, method, params, sectors FROM outbox WHERE miner = ? AND message = ?",
                          (miner, message))
        return None if row is None else {"nonce": row[0], "kind": row[1], "method": row[2], "params": json.loads(row[3]),
                                         "sectors": json.loads(row[4])}

    def outbox_messages(self, miner: int, kind: str, method: str) -> list[dict]:
        """The miner's journalled messages of a kind and method, sent or not, oldest first."""
        rows = self.db.query("SELECT nonce, params, message FROM outbox WHERE miner = ? AND kind = ? AND method = ? "
                             "ORDER BY nonce", (miner, kind, method))
        return [{"nonce": r[0], "params": json.loads(r[1]), "message": r[2]} for r in rows]

    def record_sent(self, miner: int, nonce: int, message: str) -> None:
        with self.tx() as db:
            row = db.execute(f"SELECT kind, sectors FROM outbox WHERE miner = ? AND nonce = ?{self.sql.for_update}",
                             (miner, nonce)).fetchone()
            db.execute("UPDATE outbox SET message = ? WHERE miner = ? AND nonce = ?", (message, miner, nonce))
            for n in json.loads(row[1]):
                self._merge(db, miner, n, {f"{row[0]}_msg": message})

    def sectors(self, miner: int | None = None, open_only: bool = False) -> list[dict]:
        """The sector records, of one miner or all; `open_only`: only those neither finished nor
        aborted (an index lookup: its cost follows the sectors in flight)."""
        clauses = (["is_open = 1"] if open_only else []) + (["miner = ?"] if miner is not None else [])
        where = " AND ".join(clauses) or "1 = 1"
        with self.read() as db:
            rows = db.execute(f"SELECT miner, number, proof, info FROM sectors WHERE {where} ORDER BY miner, number",
                              () if miner is None else (miner,)).fetchall()
        return [{**json.loads(info), "miner": m, "number": n, "proof": proof} for m, n, proof, info in rows]

    def sector_counts(self, is_open: bool | None = None) -> dict[tuple[str, str], int]:
        """How many sectors are in each (state, plan): open ones, finished/aborted ones, or all."""
        out: dict[tuple[str, str], int] = {}
        which, params = ("", ()) if is_open is None else (" AND is_open = ?", (int(is_open),))
        for state, plan, n in self.db.query(f"SELECT state, plan, SUM(n) FROM sector_counts WHERE n > 0{which} "
                                            f"GROUP BY state, plan", params):
            out[(state, plan)] = int(n)        # PostgreSQL's SUM of BIGINT is NUMERIC
        return out

    def silent_since(self, cutoff: float) -> list[tuple[int, int]]:
        """Open sectors not written since `cutoff` (a time)."""
        return self.db.query("SELECT miner, number FROM sectors WHERE is_open = 1 AND updated < ?", (cutoff,))

    # --------------------------------------------------------------------- workers

    def ping(self, name: str, info: dict) -> None:
        with self.tx() as db:
            now = self._now()
            db.execute("INSERT INTO workers (name, info, last_ping) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET info = excluded.info, last_ping = excluded.last_ping", (name, json.dumps(info), now))
        if self.last_pings is not None:
            self.last_pings[name] = now

    def workers(self) -> list[tuple[str, dict, float]]:
        return [(n, json.loads(i), t) for n, i, t in self.db.query("SELECT name, info, last_ping FROM workers ORDER BY name")]

    # ---------------------------------------------------------------- reservations

    def reserve(self, miner: int, number: int, store: str, size: int) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO reservations (miner, number, store, size) VALUES (?, ?, ?, ?) ON CONFLICT(miner, number) "
                       "DO UPDATE SET store = excluded.store, size = excluded.size", (miner, number, store, size))

    def release(self, miner: int, number: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM reservations WHERE miner = ? AND number = ?", (miner, number))

    def reserved(self, store: str) -> int:
        return int(self.db.one("SELECT COALESCE(SUM(size), 0) FROM reservations WHERE store = ?", (store,))[0])

    def reservation(self, miner: int, number: int) -> tuple[str, int] | None:
        return self.db.one("SELECT store, size FROM reservations WHERE miner = ? AND number = ?", (miner, number))

    # ------------------------------------------------------- history (status page)

    def version(self) -> int:
        """Changes an operator can see so far (one indexed read: what an idle status page costs)."""
        return self.db.one("SELECT version FROM web_version WHERE id = 1")[0]

    def pings(self) -> dict[str, float]:
        """Each worker's last ping, from memory after the first call."""
        if self.last_pings is None:
            self.last_pings = {n: t for n, t in self.db.query("SELECT name, last_ping FROM workers")}
        return dict(self.last_pings)

    def report(self, miner: int, number: int, changes: dict, prev: str | None, next_state: str, event: str,
               worker: str | None, failure: dict | None = None) -> tuple[dict, float | None]:
        """Merge a reported state change into the sector and append it to the sector's history, in
        one transaction. Returns the new record and, for a real transition (not a failure report
        in the same state), the seconds the sector spent in `prev`."""
        now = self._now()
        moved = prev != next_state or failure is None and event not in ("Failure", "Resume")    # an abort moves it
        with self.tx() as db:
            row = db.execute(f"SELECT info FROM sectors WHERE miner = ? AND number = ?{self.sql.for_update}",
                             (miner, number)).fetchone()
            if row is None:
                raise KeyError((miner, number))
            info = json.loads(row[0])
            if info.get("finalized") or info.get("abort_reason"):     # finished or aborted since the caller looked
                return self.sector(miner, number), None       # nothing written
            entered = info.get("entered_at") or info.get("allocated_at")
            self._merge(db, miner, number, {**changes, **({"entered_at": now} if moved else {})})
            row_id = db.execute("INSERT INTO sector_history (miner, number, at, prev, next, event, worker, level, error) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                (miner, number, now, prev, next_state, event, worker,
                                 failure and failure.get("Level"), failure and failure.get("Desc"))).fetchone()[0]
            db.execute("DELETE FROM sector_history WHERE miner = ? AND number = ? AND id <= (SELECT id FROM sector_history "
                       "WHERE miner = ? AND number = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                       (miner, number, miner, number, HISTORY_PER_SECTOR))
            if row_id % 1024 == 0:
                db.execute("DELETE FROM sector_history WHERE id <= ?", (row_id - HISTORY_MAX_ROWS,))
        return self.sector(miner, number), (now - entered if moved and entered else None)

    def history(self, miner: int, number: int) -> list[dict]:
        """The sector's reported transitions, oldest first: at, prev, next, event, worker, level, error."""
        keys = ("at", "prev", "next", "event", "worker", "level", "error")
        return [dict(zip(keys, r)) for r in self.db.query(
            "SELECT at, prev, next, event, worker, level, error FROM sector_history WHERE miner = ? AND number = ? ORDER BY id",
            (miner, number))]

    # ------------------------------------------------------ counters vs the chain

    def next_numbers(self) -> dict[int, int]:
        """miner -> the next sector number it would allocate."""
        return dict(self.db.query("SELECT miner, next FROM counters"))

    def next_nonces(self) -> dict[int, int]:
        """miner -> the nonce its next chain message would take."""
        return dict(self.db.query("SELECT miner, next FROM nonces"))

    def has_history(self) -> bool:
        """Has this state ever allocated a number or journalled a message?"""
        return self.db.one("SELECT EXISTS (SELECT 1 FROM counters) OR EXISTS (SELECT 1 FROM nonces) "
                           "OR EXISTS (SELECT 1 FROM sectors)")[0] == 1

    def raise_counters(self, miner: int, next_number: int, next_nonce: int) -> list[tuple[int, int]]:
        """Move the miner's counters up to at least these values (never down), and move messages
        still unsent at a nonce below `next_nonce` (taken on the chain by messages this state never
        saw) to fresh nonces, re-pointing their sectors. Returns [(old nonce, new nonce)]."""
        moved = []
        with self.tx() as db:
            for table, value in (("counters", next_number), ("nonces", next_nonce)):    # never down
                db.execute(f"INSERT INTO {table} (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE SET next = "
                           f"CASE WHEN excluded.next > {table}.next THEN excluded.next ELSE {table}.next END", (miner, value))
            stale = db.execute("SELECT nonce, kind, sectors FROM outbox WHERE miner = ? AND message IS NULL AND nonce < ? "
                               "ORDER BY nonce", (miner, next_nonce)).fetchall()
            for old, kind, sectors in stale:
                new = db.execute("SELECT next FROM nonces WHERE miner = ?", (miner,)).fetchone()[0]
                db.execute("UPDATE nonces SET next = ? WHERE miner = ?", (new + 1, miner))
                db.execute("UPDATE outbox SET nonce = ? WHERE miner = ? AND nonce = ?", (new, miner, old))
                for n in json.loads(sectors):
                    if db.execute("SELECT 1 FROM sectors WHERE miner = ? AND number = ?", (miner, n)).fetchone():
                        self._merge(db, miner, n, {f"{kind}_nonce": new})
                moved.append((old, new))
        return moved

    # ------------------------------------------- who may act for a worker or sector

    def allocate_owned(self, miner: int, proof: int, min_number: int, max_number: int | None, owner: str,
                       max_in_flight: int) -> tuple[int | None, int]:
        """Allocate the miner's next number to `owner` (a caller identity, rpc.server.Caller) unless
        it already holds `max_in_flight` sectors not finalized; counted and allocated in one
        transaction, so concurrent calls cannot pass the limit together. Returns (the number, or
        None when the limit or the miner's range is reached; the owner's count before)."""
        with self.tx() as db:
            last, made = self._next(db, "counters", miner)      # first: on a server, callers of a miner take turns
            held = db.execute("SELECT COUNT(*) FROM sectors WHERE owner = ? AND is_open = 1", (owner,)).fetchone()[0]
            number = max(last, min_number)
            if held >= max_in_flight or max_number is not None and number > max_number:
                self._unmake(db, "counters", miner, made)
                return None, held
            db.execute("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE SET next = excluded.next",
                       (miner, number + 1))
            now = self._now()
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                       (miner, number, proof, json.dumps({"allocated_at": now, "state": "Allocated", "owner": owner}), now))
            return number, held

    def claim_sector(self, miner: int, number: int, owner: str) -> str:
        """The sector's owner: `owner` if it had none yet (allocated before owners were kept)."""
        with self.tx() as db:
            row = db.execute(f"SELECT owner FROM sectors WHERE miner = ? AND number = ?{self.sql.for_update}",
                             (miner, number)).fetchone()
            if row is None:
                raise KeyError((miner, number))
            if row[0] is None:
                self._merge(db, miner, number, {"owner": owner})
                return owner
            return row[0]

    def worker_owner(self, name: str) -> str | None:
        row = self.db.one(f"SELECT {self.sql.json_text('info', 'Owner')} FROM workers WHERE name = ?", (name,))
        return row[0] if row else None

    def _check_names(self, db, owner: str, max_names: int | None) -> None:
        """Raise TooManyNames when `owner` already holds `max_names` worker names (None: no bound)."""
        if max_names is None:
            return
        held = db.execute(f"SELECT COUNT(*) FROM workers WHERE {self.sql.json_text('info', 'Owner')} = ?",
                          (owner,)).fetchone()[0]
        if held >= max_names:
            raise TooManyNames(held)

    def ping_owned(self, name: str, info: dict, owner: str, max_names: int | None = None) -> str:
        """Record a worker's ping when its name is `owner`'s (or no one's yet: it becomes
        `owner`'s, unless `owner` holds `max_names` names already: TooManyNames); returns the
        name's owner, which is not `owner` when the ping was refused."""
        with self.tx() as db:
            now = self._now()
            row = db.execute(f"SELECT {self.sql.json_text('info', 'Owner')} FROM workers WHERE name = ?{self.sql.for_update}",
                             (name,)).fetchone()
            if row is not None and row[0] is not None and row[0] != owner:
                return row[0]
            if row is None or row[0] is None:
                self._check_names(db, owner, max_names)
            db.execute("INSERT INTO workers (name, info, last_ping) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET info = excluded.info, last_ping = excluded.last_ping", (name, json.dumps({**info, "Owner": owner}), now))
        if self.last_pings is not None:
            self.last_pings[name] = now
        return owner

    def claim_worker(self, name: str, owner: str, max_names: int | None = None) -> str:
        """The worker name's owner, `owner` if the name had none (a worker that reports before
        it pings: its name is bound now, so no one else can ping under it with another address),
        unless `owner` holds `max_names` names already (TooManyNames)."""
        with self.tx() as db:
            row = db.execute(f"SELECT info FROM workers WHERE name = ?{self.sql.for_update}", (name,)).fetchone()
            info = json.loads(row[0]) if row else {"Name": name}
            if info.get("Owner"):
                return info["Owner"]
            self._check_names(db, owner, max_names)
            info["Owner"] = owner
            db.execute("INSERT INTO workers (name, info, last_ping) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                       "SET info = excluded.info", (name, json.dumps(info), self._now()))
        if self.last_pings is not None and name not in self.last_pings:
            self.last_pings[name] = self._now()
        return owner

    def touch_worker(self, name: str) -> None:
        """A call under the name counts as a ping for expiry (a prover polls for WindowPoSt jobs
        and never pings: without this its name would expire while it works)."""
        now = self._now()
        with self.tx() as db:
            db.execute("UPDATE workers SET last_ping = ? WHERE name = ?", (now, name))
        if self.last_pings is not None:
            self.last_pings[name] = now

    def expire_workers(self, cutoff: float) -> list[tuple[str, float]]:
        """Remove the workers whose last ping is before `cutoff`, with their names' bindings (a
        re-installed machine may take its name again); returns them with their last ping."""
        with self.tx() as db:
            gone = db.execute("SELECT name, last_ping FROM workers WHERE last_ping < ? ORDER BY name", (cutoff,)).fetchall()
            db.execute("DELETE FROM workers WHERE last_ping < ?", (cutoff,))
            if self.last_pings is not None:       # under the write lock: a ping that follows sets it again
                for name, _ in gone:
                    self.last_pings.pop(name, None)
        return gone

    def remove_worker(self, name: str) -> bool:
        """Forget a worker (the operator's WorkerPingInfoRemove), with its name's binding; False
        when there is none. A worker still running appears again at its next ping."""
        with self.tx() as db:
            gone = db.execute("DELETE FROM workers WHERE name = ?", (name,)).rowcount
            if self.last_pings is not None:
                self.last_pings.pop(name, None)
        return bool(gone)

    # ------------------------------------------------------------- bulk (bench)

    def bulk_add_sectors(self, rows) -> int:
        """Insert many sector records in one transaction (`damocles bench manager` fills a home
        with a million this way): `rows` yields (miner, number, proof, info dict, updated), each
        stored as `allocate` and later changes would have stored it. Each miner's counter moves
        above its highest number (never down), so allocation continues after them. Returns the
        number of records inserted; a number already present fails the whole call (IntegrityError)."""
        top: dict[int, int] = {}
        count = 0

        def records():
            nonlocal count
            for miner, number, proof, info, updated in rows:
                if number >= top.get(miner, -1):
                    top[miner] = number
                count += 1
                yield miner, number, proof, json.dumps(info), updated

        with self.tx() as db:
            db.executemany("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)", records())
            db.executemany("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) "
                           "DO UPDATE SET next = CASE WHEN excluded.next > counters.next THEN excluded.next ELSE counters.next END",
                           [(m, n + 1) for m, n in top.items()])
        return count
