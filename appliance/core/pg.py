"""The manager's store on a PostgreSQL server: the same interface as core.db.Database (conn(),
tx(), read(), query(), one(), close()), for `[Common.DB] Driver = "postgres"`.

- psycopg 3 is imported here only: the SQLite path and the frozen binary do without it.
- Each thread has its own connection, kept while the thread lives; a thread's connection goes
  back to a few idle ones when the thread ends (per-request RPC threads come and go all day).
- `tx()` is READ COMMITTED and begins by locking one row (WRITER_LOCK), so that write
  transactions take turns across every process on the database, as SQLite's BEGIN IMMEDIATE
  makes them take turns on a file: a transaction that writes several sectors (a batch's
  message) and one that writes one of them would otherwise lock the sectors, the per-state
  counts and the change counter in opposite orders (a deadlock, one of them failed). A `fence`
  set on the database is checked right after that lock (the manager's lease, manager.lease). The
  statements that read to write also lock what they read (`SELECT ... FOR UPDATE`,
  Dialect.for_update): what keeps a number or nonce single once writers no longer take turns.
  A lock waited for longer than LOCK_TIMEOUT_S fails the statement (SQLite's busy_timeout).
- `read()` is a REPEATABLE READ, READ ONLY transaction: one snapshot for several reads; a
  statement outside a transaction (query(), one()) is its own.
- `?` placeholders are rewritten to psycopg's `%s`; nothing else of the SQL is translated (what
  differs between the dialects is in Dialect).
- The schema is created at the current version in one transaction, its version kept in the
  table `damocles_schema`; a database at another version is refused naming both versions.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from .db import DatabaseError, _ThreadConnection
from .dialect import POSTGRES

IDLE_CONNECTIONS = 4        # connections of ended threads kept for the next ones
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_S = 30


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise DatabaseError('[Common.DB] Driver = "postgres" needs psycopg 3, which this installation lacks: '
                            './install.sh --postgres from the source tree, or pip install psycopg[binary] into its Python '
                            '(the frozen executable carries it)') from None
    return psycopg


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
        parts = conninfo_to_dict(dsn)
        if "password" in parts:
            parts["password"] = "***"
        return make_conninfo(**parts)
    except Exception:       # an unparseable DSN: say nothing of it
        return "(the configured DSN)"


def to_pyformat(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (a literal `%` doubled). The manager's SQL has no `?`
    inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection that takes the manager's SQL (`?` placeholders); autocommit, with
    transactions begun and ended explicitly, as core.db does with SQLite."""

    def __init__(self, raw):
        self.raw = raw
        self._sql: dict[str, str] = {}
        self.trace: Callable[[str], None] | None = None

    def execute(self, sql: str, params: Sequence = ()):
        if self.trace is not None:
            self.trace(sql)
        cur = self.raw.cursor()
        if params:
            text = self._sql.get(sql)
            if text is None:
                text = self._sql[sql] = to_pyformat(sql)
            return cur.execute(text, tuple(params))
        return cur.execute(sql)

    def executemany(self, sql: str, rows):
        """One statement over many rows (sqlite3's executemany); psycopg sends them pipelined."""
        if self.trace is not None:
            self.trace(sql)
        cur = self.raw.cursor()
        cur.executemany(to_pyformat(sql), [tuple(r) for r in rows])
        return cur

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != self.raw.info.transaction_status.IDLE

    @property
    def usable(self) -> bool:
        return not self.raw.closed and not self.raw.broken and not self.in_transaction

    def close(self) -> None:
        self.raw.close()


class PostgresDatabase:
    """A PostgreSQL database shared by the threads of one process (see the module's doc)."""

    dialect = POSTGRES

    def __init__(self, dsn: str, schema, create_schema: Callable[[PgConnection], None],
                 migrations: dict[int, list[str]] | None = None):
        """`schema`: the SQLite Schema whose version and kind this database takes; `create_schema`
        creates its tables at that version on an empty database; `migrations[v]`: the statements
        taking a database at version v to v + 1."""
        self.dsn, self.schema, self.kind = dsn, schema, schema.kind
        self.path = f"postgres {redact(dsn)}"       # what messages name, as core.db names the file
        self._psycopg = _psycopg()
        self._local = threading.local()
        self._conns: list[PgConnection] = []
        self._idle: list[PgConnection] = []
        self._conns_lock = threading.RLock()
        self._trace: Callable[[str], None] | None = None
        # fence(conn): called first in each write transaction; raising refuses it (manager.lease)
        self.fence: Callable[[PgConnection], None] | None = None
        self._closed = False
        first = self._connect()
        try:
            ensure_schema(first, schema.version, create_schema, self.path, schema.kind, migrations or {})
        except BaseException:
            first.close()
            raise
        self._adopt(first)

    def _connect(self) -> PgConnection:
        try:
            raw = self._psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except self._psycopg.Error as exc:
            raise DatabaseError(f"{self.kind} database {self.path} cannot be opened: {str(exc).strip()}") from None
        conn = PgConnection(raw)
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        conn.trace = self._trace
        return conn

    def _adopt(self, conn: PgConnection) -> PgConnection:
        with self._conns_lock:
            self._conns.append(conn)
        self._local.owned = _ThreadConnection(conn, self)
        return conn

    def _forget(self, conn: PgConnection) -> None:
        """A thread ended: its connection is kept idle for the next thread, or closed."""
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
            if not self._closed and conn.usable and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def connections(self) -> int:
        """Connections held by live threads now."""
        with self._conns_lock:
            return len(self._conns)

    def conn(self) -> PgConnection:
        """This thread's connection; a new one after the server dropped it (a restart, a failover
        of the server): the statement that found it dropped failed, the thread's next one works."""
        owned = getattr(self._local, "owned", None)
        if owned is not None:
            if not (owned.conn.raw.closed or owned.conn.raw.broken):
                return owned.conn
            self._local.owned = None        # its finalizer closes the dropped connection
        with self._conns_lock:
            if self._closed:
                raise DatabaseError(f"{self.kind} database {self.path} is closed")
            conn = self._idle.pop() if self._idle else None
        return self._adopt(conn if conn is not None else self._connect())

    @contextmanager
    def _transaction(self, begin: str, lock: str | None = None) -> Iterator[PgConnection]:
        conn = self.conn()
        if conn.in_transaction:         # joins the transaction open on this thread
            yield conn
            return
        conn.execute(begin)
        try:
            if lock is not None:
                conn.execute(lock)
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if not conn.raw.closed and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def tx(self) -> Iterator[PgConnection]:
        """A write transaction: writers take turns (WRITER_LOCK), as on SQLite."""
        if getattr(self._local, "reading", False):
            raise RuntimeError(f"{self.kind} database {self.path}: a write inside read() (its snapshot may be stale)")
        begins = not self.conn().in_transaction
        with self._transaction("BEGIN ISOLATION LEVEL READ COMMITTED", WRITER_LOCK) as conn:
            if begins and self.fence is not None:     # after WRITER_LOCK: no other writer between check and commit
                self.fence(conn)
            yield conn

    @contextmanager
    def read(self) -> Iterator[PgConnection]:
        """Several reads from one snapshot (joins a transaction open on this thread)."""
        conn = self.conn()
        outer = getattr(self._local, "reading", False)
        self._local.reading = outer or not conn.in_transaction
        try:
            with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as c:
                yield c
        finally:
            self._local.reading = outer

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.conn().execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self.conn().execute(sql, params).fetchone()

    def set_trace(self, callback: Callable[[str], None] | None) -> None:
        with self._conns_lock:
            self._trace = callback
            for c in self._conns + self._idle:
                c.trace = callback

    def checkpoint(self) -> tuple[int, int, int]:
        """Nothing to do: the server keeps its own write-ahead log."""
        return (0, 0, 0)

    def close(self) -> None:
        with self._conns_lock:
            self._closed = True
            conns, self._conns, self._idle = self._conns + self._idle, [], []
        for c in conns:
            c.close()
        self._local = threading.local()


VERSION_TABLE = "damocles_schema"
WRITER_LOCK = f"SELECT version FROM {VERSION_TABLE} WHERE id = 1 FOR UPDATE"     # held until the write commits


def ensure_schema(conn: PgConnection, version: int, create: Callable[[PgConnection], None], where: str,
                  kind: str, migrations: dict[int, list[str]]) -> None:
    """Create the schema at `version` on an empty database, or take an existing one from its
    version to `version` (`migrations`, every step in the one transaction: a failed step leaves the
    database as it was), or refuse it. Managers starting together: the version row is locked
    (FOR UPDATE) while one creates or migrates, the others then find it done."""
    from psycopg import errors
    for attempt in range(2):     # CREATE TABLE IF NOT EXISTS can still collide with a concurrent one
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
                         f"version INTEGER NOT NULL)")
            conn.execute(f"INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            break
        except (errors.UniqueViolation, errors.DuplicateTable, errors.DuplicateObject):
            if attempt:
                raise
    conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
    try:
        found = conn.execute(f"SELECT version FROM {VERSION_TABLE} WHERE id = 1 FOR UPDATE").fetchone()[0]
        if found > version:
            raise DatabaseError(f"{kind} database {where} has schema version {found}, newer than this binary's "
                                f"{version}: run the damocles release that wrote it (or a newer one)")
        missing = [v for v in range(found, version) if v not in migrations]
        if found and missing:
            raise DatabaseError(f"{kind} database {where} has schema version {found}; this binary's is {version} "
                                f"and it has no migration from version {missing[0]} on PostgreSQL")
        if found < version:
            if found == 0:
                create(conn)
            for v in range(found or version, version):
                for statement in migrations[v]:
                    conn.execute(statement)
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = ? WHERE id = 1", (version,))
        conn.execute("COMMIT")
    except BaseException:
        if not conn.raw.closed and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
