"""One SQLite layer for the manager's state, the devnet and the sealing journals.

- Opening checks the file: not an SQLite file, truncated, failing `PRAGMA integrity_check`, a
  table definition that is not its version's, text that is not UTF-8 or JSON that does not parse
  is a `DatabaseError` naming the file; the file is left as it is.
- Each database records its schema version (`PRAGMA user_version`). Migrations run forward on
  open, after a copy of the file is kept beside it (`<name>.v<N>.bak`); a database newer than this
  binary is refused, naming the file and both versions.
- `Database` gives each thread its own connection (WAL: readers never see another thread's
  uncommitted writes), closed when the thread ends, `tx()` for writes (serialized in the
  process) and `read()` for a multi-statement read in one snapshot. A `fence` set on it is
  checked first in every write transaction (the manager's lease, manager.lease). `transaction()` is the one
  transaction helper. The -wal file is truncated to WAL_SIZE_LIMIT after checkpoints and emptied
  on close.
- Database files (and their -wal/-shm, and copies) are created 0600; an older file with wider
  permissions is narrowed when opened.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .dialect import SQLITE

HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
WAL_SIZE_LIMIT = 16 << 20       # bytes a -wal file is truncated to after a checkpoint

# A migration takes the database from version i to i + 1: an SQL script or a function of the
# connection (run inside the migration's transaction).
Migration = str | Callable[[sqlite3.Connection], None]


class DatabaseError(ValueError):
    """A database file that cannot be used (corrupt, not SQLite, newer than this binary, ...).
    The message names the file; the file itself is never modified or replaced."""


@dataclass(frozen=True)
class Schema:
    kind: str                       # what the file is, for messages: "manager state", "devnet chain"
    migrations: Sequence[Migration]  # migrations[i]: version i -> i + 1; version 1 creates the tables
    expect_tables: frozenset[str] = frozenset()   # an unversioned file must have these to be adopted
    json_columns: frozenset[tuple[str, str]] = frozenset()   # (table, column) holding JSON documents
    # (table, column) holding integers as decimal text (attoFIL amounts outgrow SQLite's 64 bits)
    decimal_columns: frozenset[tuple[str, str]] = frozenset()

    @property
    def version(self) -> int:
        return len(self.migrations)

    def columns(self) -> dict[str, list[str]]:
        """Every table's columns at this version (the migrations run on an empty in-memory database)."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for step in self.migrations:
                with transaction(conn):
                    _run_step(conn, step)
            return table_columns(conn)
        finally:
            conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    # SQLite checkpoints the WAL every 1000 pages but never shrinks the file: after a burst (a
    # long read holding checkpoints back, a big migration) it would keep its high-water size.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    return conn


def _create_private(path: Path) -> None:
    """Create an empty file readable by its owner only (SQLite gives its -wal and -shm the
    database file's mode): the databases hold the farm's whole state."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    _make_private(path)


def _make_private(path: Path) -> None:
    """Take group and other permissions off a database and its -wal/-shm (a file from before
    they were created 0600), when this user owns them."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = p.stat()
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(p, st.st_mode & 0o700)
        except FileNotFoundError:
            continue


def check_file(path: Path, kind: str) -> None:
    """Refuse a file that is not a whole, readable SQLite database (read-only checks; a backup's
    files). Opening a database checks more (_check_existing)."""
    sidecars = _absent_sidecars(path)
    problem = _integrity_problem(path, kind)
    if problem is not None:
        _drop_made(sidecars)
        raise DatabaseError(problem)


def _absent_sidecars(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if not p.exists()]


def _integrity_problem(path: Path, kind: str) -> str | None:
    """Why the file is not a whole SQLite database (its header, `PRAGMA integrity_check`), or None."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(HEADER))
    except OSError as exc:
        raise DatabaseError(f"{kind} database {path} cannot be read: {exc.strerror or exc}") from None
    if header != HEADER:
        return (f"{kind} database {path} is not an SQLite database (damaged or zeroed header); "
                f"the file is kept as it is: restore it from a backup")
    try:
        conn = _read_only(path)
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]   # indexes too
        finally:
            conn.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:    # SQLite's message can quote damaged bytes
        return f"{kind} database {path} is damaged ({exc}); the file is kept as it is: restore it from a backup"
    if result != ["ok"]:
        return (f"{kind} database {path} is damaged (integrity check: {'; '.join(result[:3])}); "
                f"the file is kept as it is: restore it from a backup")
    return None


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)


def _check_existing(path: Path, schema: Schema) -> bool:
    """Open's checks of an existing file: SQLite's integrity check and, at the same time in a
    thread, the content check when the file is at this version (the integrity check runs in
    SQLite's C code, without the GIL: at a million sectors the two took 14 s and 9 s one after the
    other). Raises the refusal; returns whether the content was checked (else open checks it after
    migrating)."""
    sidecars = _absent_sidecars(path)
    with ThreadPoolExecutor(1, thread_name_prefix="db-content-check") as pool:
        content = pool.submit(_check_content_at_version, path, schema)
        problem = _integrity_problem(path, schema.kind)
        try:
            checked, refusal = content.result(), None
        except DatabaseError as exc:
            checked, refusal = False, exc
    if problem is not None:
        _drop_made(sidecars)            # the content check's connection is closed by now
        raise refusal or DatabaseError(problem)      # the content check names the damaged row
    if refusal is not None:
        raise refusal
    return checked


def _check_content_at_version(path: Path, schema: Schema) -> bool:
    """check_content on its own read-only connection when the file is at the schema's version;
    False when it is not, or SQLite cannot read it (the integrity check says what is wrong)."""
    try:
        conn = _read_only(path)
        try:
            if user_version(conn) != schema.version:
                return False
            check_content(conn, path, schema)
            return True
        finally:
            conn.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        return False


def _drop_made(sidecars: list[Path]) -> None:
    """Remove the empty -wal/-shm a failed check made beside a refused file (nothing else uses it)."""
    for p in sidecars:
        if p.exists() and (p.name.endswith("-shm") or p.stat().st_size == 0):
            p.unlink(missing_ok=True)


def table_columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in names}


_DECIMAL = re.compile(r"-?[0-9]+")
CONTENT_BATCH = 10_000          # rows fetched at a time by the content check


def _python_parses(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def check_content(conn: sqlite3.Connection, path: Path, schema: Schema) -> None:
    """What SQLite's integrity check cannot see: a damaged table definition (its columns are not
    this version's), text that is not UTF-8, a JSON document that does not parse, an amount that is
    not a decimal integer. One pass over the text columns; refuses the file naming the table,
    column and row."""
    expected, found = schema.columns(), table_columns(conn)
    for table, cols in expected.items():
        if found.get(table) != cols:
            raise DatabaseError(f"{schema.kind} database {path} is damaged: table {table} has columns "
                                f"{found.get(table)}, version {schema.version} has {cols}; the file is kept as it is: "
                                f"restore it from a backup")
    reader = _read_only(path)
    reader.text_factory = bytes
    try:
        for table, cols in expected.items():
            for col in cols:
                _check_column(reader, path, schema, table, col)
    finally:
        reader.close()


def _check_column(reader: sqlite3.Connection, path: Path, schema: Schema, table: str, col: str) -> None:
    is_decimal = (table, col) in schema.decimal_columns
    # JSON is parsed by SQLite's json_valid, in C (Python's json.loads was 2/3 of the check's time),
    # and by Python where SQLite refuses it (the manager reads its documents with Python's parser,
    # which takes a little more, NaN for one); the text is decoded here, as SQLite does not check UTF-8
    valid = f'json_valid("{col}")' if (table, col) in schema.json_columns else "1"
    rows = reader.execute(f'SELECT rowid, "{col}", {valid} FROM "{table}" WHERE typeof("{col}") = \'text\'')
    while batch := rows.fetchmany(CONTENT_BATCH):
        for rowid, raw, is_valid in batch:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            else:
                if not is_valid and not _python_parses(text):
                    problem = "not a JSON document"
                elif is_decimal and not _DECIMAL.fullmatch(text):
                    problem = f"{text[:40]!r} is not a decimal integer"
                else:
                    continue
            raise DatabaseError(f"{schema.kind} database {path} is damaged: {table}.{col} of row {rowid} "
                                f"({problem}); the file is kept as it is: restore it from a backup")


def user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def copy_database(src: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of `src` (SQLite's online backup API, one step: one snapshot), mode 0600."""
    _create_private(dest)
    out = sqlite3.connect(dest)
    try:
        src.backup(out)
    finally:
        out.close()


def _keep_copy(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    dest = path.with_name(f"{path.name}.v{version}.bak")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.v{version}.bak{n}")
    copy_database(conn, dest)
    return dest


def open_database(path: str | Path, schema: Schema, create: bool = True) -> sqlite3.Connection:
    """Open (or create) a database at the schema's version: checks, version, migrations.
    Returns a connection in autocommit mode (use `transaction`)."""
    path = Path(path)
    existed = path.exists() and path.stat().st_size > 0
    if not existed and not create:
        raise DatabaseError(f"{schema.kind} database {path} is missing or empty")
    content_checked = existed and _check_existing(path, schema)
    created = not path.exists()
    conn = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)           # or make an existing one private
            conn = _connect(path)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise DatabaseError(f"{schema.kind} database {path} cannot be opened: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, path, schema, existed)
            if existed and not content_checked:
                check_content(conn, path, schema)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise DatabaseError(f"{schema.kind} database {path} cannot be used: {exc}") from None
    except BaseException:
        if conn is not None:
            conn.close()
        if created:       # a file this call began (on a full disk, say) is no database: the next try starts anew
            for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                f.unlink(missing_ok=True)
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path, schema: Schema, existed: bool) -> None:
    version = user_version(conn)
    if version > schema.version:
        raise DatabaseError(f"{schema.kind} database {path} has schema version {version}, newer than this "
                            f"binary's {schema.version}: run the damocles release that wrote it (or a newer one)")
    if version == schema.version:
        return
    if existed:
        present = tables(conn)
        if version == 0 and schema.expect_tables and not schema.expect_tables & present:
            raise DatabaseError(f"{schema.kind} database {path} is an SQLite file without any of its tables "
                                f"({', '.join(sorted(schema.expect_tables))}): not a {schema.kind} database")
        _keep_copy(conn, path, version)
    for v in range(version, schema.version):
        with transaction(conn):
            _run_step(conn, schema.migrations[v])
            conn.execute(f"PRAGMA user_version = {v + 1}")


def _run_step(conn: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(conn)
    else:
        for statement in statements(step):
            conn.execute(statement)


def statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit the migration's transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.RLock | None = None,
                begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """Run the block in one transaction on `conn` (committed, or rolled back on any exception).
    Inside a transaction already open on this connection, the block joins it."""
    if lock is not None:
        lock.acquire()
    try:
        if conn.in_transaction:
            yield conn
            return
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:    # a failed COMMIT (a full disk) can leave it open, too
                conn.execute("ROLLBACK")
            raise
    finally:
        if lock is not None:
            lock.release()


# Connections a forked child inherited from its parent's other threads, kept open on purpose:
# closing one there can wait forever on an SQLite mutex or _conns_lock that a thread of the parent
# held at the fork, and that thread does not exist in the child to release it.
_INHERITED: list = []


class _ThreadConnection:
    """A thread's connection, held in the Database's thread-local storage: Python drops that
    storage when the thread ends, and this closes the connection then (per-request RPC threads
    come and go all day; their connections must not outlive them).

    A child forked with a preexec_fn (subprocess does, for the external processors' pinning)
    drops every other thread's storage right after the fork, in the child: there this keeps the
    connection instead of closing it (_INHERITED); the child execs or exits soon after."""

    __slots__ = ("conn", "_db", "_pid")

    def __init__(self, conn: sqlite3.Connection, db: "Database"):
        self.conn, self._db, self._pid = conn, weakref.ref(db), os.getpid()

    def __del__(self):
        if os.getpid() != self._pid:
            _INHERITED.append(self.conn)
            return
        db = self._db()
        if db is not None:
            db._forget(self.conn)
        else:
            self.conn.close()


class Database:
    """A database shared by the threads of one process: one connection per thread, closed when
    its thread ends."""

    dialect = SQLITE

    def __init__(self, path: str | Path, schema: Schema, create: bool = True):
        self.path, self.schema = Path(path), schema
        first = open_database(self.path, schema, create)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.RLock()     # re-entered if a connection is dropped while held
        self._trace: Callable[[str], None] | None = None
        # fence(conn): called first in each write transaction; raising refuses it (manager.lease)
        self.fence: Callable[[sqlite3.Connection], None] | None = None
        self._closed = False
        self._adopt(first)

    def _adopt(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        with self._conns_lock:
            self._conns.append(conn)
            conn.set_trace_callback(self._trace)
        self._local.owned = _ThreadConnection(conn, self)
        return conn

    def _forget(self, conn: sqlite3.Connection) -> None:
        """Close a connection whose thread ended (a rollback of anything it left open)."""
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def connections(self) -> int:
        """Connections open now (one per live thread that used the database)."""
        with self._conns_lock:
            return len(self._conns)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        owned = getattr(self._local, "owned", None)
        if owned is None:
            if self._closed:
                raise DatabaseError(f"{self.schema.kind} database {self.path} is closed")
            return self._adopt(_connect(self.path))
        return owned.conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (writers of this process take turns; others wait on busy_timeout)."""
        if getattr(self._local, "reading", False):
            raise RuntimeError(f"{self.schema.kind} database {self.path}: a write inside read() (its snapshot may be stale)")
        conn = self.conn()
        begins = not conn.in_transaction
        with transaction(conn, self._write_lock) as conn:
            if begins and self.fence is not None:     # under the write lock: no other writer between check and commit
                self.fence(conn)
            yield conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Several reads from one snapshot (a deferred transaction; joins an open one). No writes
        inside: a snapshot cannot become a write transaction once another connection committed."""
        conn = self.conn()
        outer = getattr(self._local, "reading", False)
        self._local.reading = outer or not conn.in_transaction
        try:
            with transaction(conn, None, "BEGIN"):
                yield conn
        finally:
            self._local.reading = outer

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """One statement, committed data only (its own snapshot)."""
        return self.conn().execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self.conn().execute(sql, params).fetchone()

    def set_trace(self, callback: Callable[[str], None] | None) -> None:
        """Trace every statement on every connection (the bench's query counter)."""
        with self._conns_lock:
            self._trace = callback
            for c in self._conns:
                c.set_trace_callback(callback)

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the whole WAL into the database file and empty it (readers holding an older
        snapshot make it partial: (busy, WAL pages, pages copied), as SQLite reports it)."""
        return self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        """Checkpoint (the file alone is then whole: a copy of a stopped manager needs no -wal) and
        close every thread's connection."""
        if not self._closed:
            try:
                with self._write_lock:
                    self.checkpoint()
            except sqlite3.Error:      # busy under another process's reader: SQLite finishes it later
                pass
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()
        self._local = threading.local()
