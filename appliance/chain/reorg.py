"""Reorgs of the devnet: the last N epochs undone, their messages back in the pool, other randomness.

Undo mechanism: an undo log written by SQLite triggers. Every table the chain's execution writes
has three triggers (insert, update, delete) that append, while an epoch is being executed, the SQL
statement that reverses the change, tagged with that epoch (`undo_context` holds it; NULL outside
execution, so pushes to the pool, admin actions and the clock are never logged). Undoing to epoch T
runs the statements tagged above T in reverse order. Why not replay from genesis or snapshots: a
replay needs every admin action and every clock jump recorded and re-run through the same code,
and a snapshot per epoch costs the whole state each epoch; the log costs one row per row changed,
is exact by construction (whatever code changed the table, the trigger saw it) and new columns are
covered because the triggers are rebuilt from the tables' columns on every open.

Execution logs epochs in increasing order (devnet._catch_up), so the entries above T are a suffix
of the log: undoing them yields the state as it was when epoch T was done, except for the
bookkeeping of a catch-up that spanned T, which `undo` sets back explicitly (cron and processed
epochs). The log is pruned beyond FINALITY epochs (Lotus' chain finality): deeper reorgs are refused.

Randomness: each reorg records its fork point; the ticket and beacon digests of an epoch E mix in
the number of forks whose fork point is below E, so re-made epochs draw other tickets and seeds
while those at or below a fork point keep theirs (a real fork has other tickets)."""

from __future__ import annotations

from .types import ChainError

FINALITY = 900          # Lotus build.Finality: no reorg deeper than this

SCHEMA = """
CREATE TABLE IF NOT EXISTS undo_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL, stmt TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS undo_log_epoch ON undo_log (epoch);
CREATE TABLE IF NOT EXISTS undo_context (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER);
INSERT OR IGNORE INTO undo_context (id, epoch) VALUES (1, NULL);
CREATE TABLE IF NOT EXISTS forks (seq INTEGER PRIMARY KEY AUTOINCREMENT, fork_point INTEGER NOT NULL,
    depth INTEGER NOT NULL, head INTEGER NOT NULL, dropped INTEGER NOT NULL);
"""

# not logged: the log itself, the reorg records, SQLite's own
_UNLOGGED = {"undo_log", "undo_context", "forks", "sqlite_sequence"}


def migration(db) -> None:
    """Version 3 of devnet.db: the undo log. Epochs executed before it have no log: the floor
    (the lowest fork point a reorg may take) starts at the epoch already processed."""
    for statement in _statements(SCHEMA):
        db.execute(statement)
    row = db.execute("SELECT value FROM meta WHERE key = 'processed_epoch'").fetchone()
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('undo_floor', ?)", (row[0] if row else "0",))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def install_triggers(db) -> None:
    """(Re)build the undo triggers of every logged table from its current columns."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        if table in _UNLOGGED:
            continue
        cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
        for kind in ("i", "u", "d"):
            db.execute(f'DROP TRIGGER IF EXISTS "undo_{table}_{kind}"')
        when = "WHEN (SELECT epoch FROM undo_context WHERE id = 1) IS NOT NULL"
        log = "INSERT INTO undo_log (epoch, stmt) VALUES ((SELECT epoch FROM undo_context WHERE id = 1), {})"
        delete = f"'DELETE FROM \"{table}\" WHERE rowid = ' || NEW.rowid"
        sets = " || ', ' || ".join(f"'\"{c}\" = ' || quote(OLD.\"{c}\")" for c in cols)
        update = f"'UPDATE \"{table}\" SET ' || {sets} || ' WHERE rowid = ' || NEW.rowid"
        names = ", ".join(f'"{c}"' for c in cols).replace("'", "''")
        values = " || ', ' || ".join(f"quote(OLD.\"{c}\")" for c in cols)
        insert = f"'INSERT INTO \"{table}\" (rowid, {names}) VALUES (' || OLD.rowid || ', ' || {values} || ')'"
        db.execute(f'CREATE TRIGGER "undo_{table}_i" AFTER INSERT ON "{table}" {when} BEGIN {log.format(delete)}; END')
        db.execute(f'CREATE TRIGGER "undo_{table}_u" AFTER UPDATE ON "{table}" {when} BEGIN {log.format(update)}; END')
        db.execute(f'CREATE TRIGGER "undo_{table}_d" AFTER DELETE ON "{table}" {when} BEGIN {log.format(insert)}; END')


def recording(db, epoch: int | None) -> None:
    """Tag the changes that follow with `epoch` (None: stop logging)."""
    if epoch is not None:       # INSERT OR REPLACE fires the delete trigger of the row it replaces only so
        db.execute("PRAGMA recursive_triggers = ON")
    db.execute("UPDATE undo_context SET epoch = ? WHERE id = 1", (epoch,))


def floor(db) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'undo_floor'").fetchone()
    return int(row[0]) if row else 0


def prune(db, head: int) -> None:
    """Forget the undo entries a reorg may no longer reach (beyond finality)."""
    keep_from = head - FINALITY
    if keep_from > floor(db):
        db.execute("DELETE FROM undo_log WHERE epoch <= ?", (keep_from,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'undo_floor'", (str(keep_from),))


def check_depth(db, head: int, depth) -> int:
    """The fork point of a reorg of `depth` epochs at `head`, or ChainError saying why not."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ChainError(f"reorg: depth {depth!r} is not a positive number of epochs")
    if depth > FINALITY:
        raise ChainError(f"reorg: depth {depth} is beyond finality ({FINALITY} epochs): refused")
    fork_point = head - depth
    if fork_point < floor(db):
        raise ChainError(f"reorg: depth {depth} at head {head} reaches epoch {fork_point}, below {floor(db)}, the "
                         f"oldest epoch this devnet can go back to (its undo log starts there)")
    return fork_point


def undo(db, fork_point: int) -> list[str]:
    """Undo every change made by epochs above `fork_point`; return the ids of the messages that
    executed in those epochs (now pending again), in execution order."""
    reorged = [r[0] for r in db.execute("SELECT id FROM messages WHERE executed_epoch > ? ORDER BY executed_epoch, seq",
                                        (fork_point,))]
    recording(db, None)
    for seq, stmt in db.execute("SELECT seq, stmt FROM undo_log WHERE epoch > ? ORDER BY seq DESC",
                                (fork_point,)).fetchall():
        db.execute(stmt)
    db.execute("DELETE FROM undo_log WHERE epoch > ?", (fork_point,))
    # a catch-up that ran past the fork point wrote these once, tagged with its last epoch
    for key in ("cron_epoch", "processed_epoch"):
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (str(fork_point), key))
    return reorged


def fork_salt(db, epoch: int) -> int:
    """How many forks re-made `epoch` (0 for an epoch no reorg reached)."""
    return db.execute("SELECT COUNT(*) FROM forks WHERE fork_point < ?", (epoch,)).fetchone()[0]
