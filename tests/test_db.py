"""The one database layer (appliance/core/db.py) and the manager's state on top of it: no dirty
reads across threads, schema versions (forward migrations with a copy kept, newer refused), and
damaged files refused with the file named and left untouched."""

import hashlib
import sqlite3
import threading

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError
from appliance.core.db import Database, DatabaseError, Schema
from appliance.manager.state import MANAGER_SCHEMA, ManagerState
from appliance.worker.journal import Journal, JournalError

pytestmark = pytest.mark.timeout(60)


def test_a_reader_never_sees_a_write_that_is_rolled_back(tmp_path):
    """The review's reproduction: one thread moves a sector to PC1Done inside a transaction that
    then rolls back; another thread reading meanwhile must see Allocated (with one shared
    connection it saw PC1Done)."""
    state = ManagerState(tmp_path / "manager.db")
    number = state.allocate(1000, 8, 1, None)
    written, read_done = threading.Event(), threading.Event()
    errors = []

    def writer():
        try:
            with state.tx() as db:
                db.execute("UPDATE sectors SET info = json_set(info, '$.state', 'PC1Done') WHERE number = ?", (number,))
                written.set()
                assert read_done.wait(10)
                raise RuntimeError("the step failed: roll back")
        except RuntimeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    assert written.wait(10)
    try:
        seen = state.sector(1000, number)["state"]
        listed = [s["state"] for s in state.sectors(1000)]
    finally:
        read_done.set()
        t.join(10)
    assert not t.is_alive() and not errors
    assert seen == "Allocated" and listed == ["Allocated"]
    assert state.sector(1000, number)["state"] == "Allocated"
    state.close()


def test_writers_on_many_threads_lose_nothing(tmp_path):
    state = ManagerState(tmp_path / "manager.db")
    got, errors = [], []

    def allocate():
        try:
            for _ in range(25):
                got.append(state.allocate(1000, 8, 1, None))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(got) == list(range(1, 201))
    assert [s["number"] for s in state.sectors(1000)] == list(range(1, 201))
    state.close()


def test_read_gives_one_snapshot(tmp_path):
    state = ManagerState(tmp_path / "manager.db")
    state.allocate(1000, 8, 1, None)
    with state.read():
        first = state.query("SELECT COUNT(*) FROM sectors")[0][0]
        t = threading.Thread(target=state.allocate, args=(1000, 8, 1, None))
        t.start()
        t.join(10)
        assert state.query("SELECT COUNT(*) FROM sectors")[0][0] == first == 1     # still the snapshot
    assert state.query("SELECT COUNT(*) FROM sectors")[0][0] == 2
    state.close()


def test_schema_version_is_recorded_and_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "manager.db"
    ManagerState(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == MANAGER_SCHEMA.version
    db.execute(f"PRAGMA user_version = {MANAGER_SCHEMA.version + 1}")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DatabaseError) as exc:
        ManagerState(path)
    v = MANAGER_SCHEMA.version
    assert str(path) in str(exc.value) and f"schema version {v + 1}" in str(exc.value) and f"binary's {v}" in str(exc.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_migrations_run_forward_after_a_copy_is_kept(tmp_path):
    path = tmp_path / "x.db"
    v1 = Schema("test", ["CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);"], frozenset({"a"}))
    Database(path, v1).close()
    v2 = Schema("test", [v1.migrations[0], lambda db: db.execute("ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 7")])
    d = Database(path, v2)
    assert d.query("SELECT x, y FROM a") == [(1, 7)]
    assert d.one("PRAGMA user_version") == (2,)
    d.close()
    kept = sqlite3.connect(tmp_path / "x.db.v1.bak")
    assert kept.execute("SELECT * FROM a").fetchall() == [(1,)] and kept.execute("PRAGMA user_version").fetchone() == (1,)
    # a migration that fails leaves the file at its old version
    bad = Schema("test", [*v2.migrations, "CREATE TABLE b (z);\nINSERT INTO nowhere VALUES (1);"])
    with pytest.raises(DatabaseError, match="x.db"):
        Database(path, bad)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone() == (2,)
    assert "b" not in {r[0] for r in check.execute("SELECT name FROM sqlite_master")}


def test_an_unversioned_file_of_another_kind_is_refused(tmp_path):
    path = tmp_path / "manager.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE something_else (x)")
    db.commit()
    db.close()
    with pytest.raises(DatabaseError, match="not a manager state database"):
        ManagerState(path)


def _filled(kind, path):
    if kind == "manager":
        s = ManagerState(path)
        for _ in range(300):
            n = s.allocate(1000, 8, 1, None)
            s.update(1000, n, note="x" * 200)
        s.close()
    else:
        chain = Devnet(path, ChainPolicy(block_time=0))
        chain.create_miner(1000, 0)
        for i in range(200):
            chain.push_message(1000, "Nothing", {"pad": "y" * 200}, nonce=i)
        chain.close()


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "zeroed":
        data = bytearray(len(data))
    elif how == "truncated":
        data = data[: len(data) // 3]
    elif how == "flipped-header":
        data[3] ^= 0x40
    elif how == "flipped-page":
        page = int.from_bytes(data[16:18], "big")
        data[page] ^= 0xFF                   # page 2's b-tree page type
    path.write_bytes(bytes(data))


OPENERS = {
    "manager": (lambda p: ManagerState(p), DatabaseError),
    "devnet": (lambda p: Devnet(p, ChainPolicy(block_time=0)), ChainError),
}


@pytest.mark.parametrize("how", ["zeroed", "truncated", "flipped-header", "flipped-page"])
@pytest.mark.parametrize("kind", ["manager", "devnet"])
def test_a_damaged_database_is_refused_naming_the_file_and_kept(tmp_path, kind, how):
    path = tmp_path / f"{kind}.db"
    _filled(kind, path)
    _damage(path, how)
    before = path.read_bytes()
    opener, error = OPENERS[kind]
    with pytest.raises(error) as exc:
        opener(path)
    assert str(path) in str(exc.value)
    assert path.read_bytes() == before                          # never repaired, replaced or emptied
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]   # and no new file beside it


def test_a_damaged_journal_is_refused_naming_the_file(tmp_path):
    j = Journal(tmp_path)
    j.transition({"name": "s-t01000-1", "state": "Allocated"}, "Empty", "AllocateSector")
    j.close()
    path = tmp_path / "meta" / "journal.db"
    _damage(path, "zeroed")
    with pytest.raises(JournalError, match=str(path)):
        Journal(tmp_path)
    assert path.read_bytes() == bytes(len(path.read_bytes()))


def test_a_write_inside_a_read_snapshot_is_refused_and_reads_inside_a_write_join_it(tmp_path):
    state = ManagerState(tmp_path / "manager.db")
    with state.read():
        with pytest.raises(RuntimeError, match="a write inside read"):
            state.allocate(1000, 8, 1, None)
    with state.tx() as db:
        db.execute("INSERT INTO counters (miner, next) VALUES (1000, 42)")
        with state.read():                       # inside a write: sees its own uncommitted write
            assert state.next_numbers() == {1000: 42}
        assert state.allocate(1000, 8, 1, None) == 42
    assert state.next_numbers() == {1000: 43}
    state.close()


def _patch(path, find: bytes, offset: int, value: int):
    data = bytearray(path.read_bytes())
    at = data.find(find)
    assert at >= 0, find
    data[at + offset] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("find,offset,value,says", [
    (b'"state": "Allocated"', 3, 0xFF, "sectors.info of row"),             # not UTF-8
    (b'{"allocated_at"', 0, ord("("), "sectors.info of row"),              # not JSON
    # a damaged table definition: its generated columns no longer compile, and SQLite names the table
    (b"info TEXT NOT NULL, updated", 0, ord("j"), "malformed database schema (sectors)"),
    (b"info TEXT NOT NULL, last_ping", 0, ord("j"), "table workers has columns"),   # one SQLite still reads
])
def test_damage_sqlite_cannot_see_is_refused_naming_the_file(tmp_path, find, offset, value, says):
    path = tmp_path / "manager.db"
    _filled("manager", path)
    _patch(path, find, offset, value)
    before = path.read_bytes()
    with pytest.raises(DatabaseError) as exc:
        ManagerState(path)
    assert str(path) in str(exc.value) and says in str(exc.value)
    assert path.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["manager", "devnet"])
def test_random_flipped_bits_never_give_a_raw_error(tmp_path, kind):
    """A seeded campaign: one bit flipped at a random offset, then the database opened and used.
    Each run is refused naming the file, or works (the bit was in free space or a value that is
    still valid); none ends in a raw SQLite, JSON or Unicode error."""
    import random
    import shutil
    base = tmp_path / f"base-{kind}.db"
    _filled(kind, base)
    rng = random.Random(13)
    opener, error = OPENERS[kind]
    outcomes = {"refused": 0, "worked": 0}
    for _ in range(200):
        path = tmp_path / f"{kind}.db"
        for sidecar in ("", "-wal", "-shm"):
            (tmp_path / f"{kind}.db{sidecar}").unlink(missing_ok=True)
        shutil.copy(base, path)
        data = bytearray(path.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            db = opener(path)
        except error as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
            continue
        if kind == "manager":
            db.sectors(1000), db.allocate(1000, 8, 1, None), db.unsent(), db.workers()
        else:
            db.head(), db.messages(1000), db.miners(), db.advance(1), db.push_message(1000, "Nothing", {}, nonce=999)
        db.close()
        outcomes["worked"] += 1
    print(kind, outcomes)
    assert outcomes["refused"] > 0


def test_a_manager_db_from_before_schema_versions_is_adopted_with_a_copy_kept(tmp_path):
    from appliance.manager.state import SCHEMA
    path = tmp_path / "manager.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)        # what the previous release wrote: the tables, no version, no history
    old.execute("INSERT INTO counters (miner, next) VALUES (1000, 8)")
    old.commit()
    old.close()
    state = ManagerState(path)
    assert state.allocate(1000, 8, 1, None) == 8
    assert state.one("PRAGMA user_version") == (MANAGER_SCHEMA.version,)
    assert state.history(1000, 8) == []                       # the tables added since exist
    state.close()
    kept = sqlite3.connect(tmp_path / "manager.db.v0.bak")
    assert kept.execute("SELECT next FROM counters").fetchall() == [(8,)]
    kept.close()


def test_an_amount_that_is_not_a_decimal_integer_is_refused_at_open(tmp_path):
    """Amounts are decimal text (attoFIL outgrows 64 bits): a damaged one ('1000' -> '100 0') is
    still text, so the open checks it, instead of a raw ValueError when a message executes."""
    path = tmp_path / "devnet.db"
    Devnet(path, ChainPolicy(block_time=0)).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO accounts (address, balance) VALUES ('f01000', '100 0')")
    conn.commit()
    conn.close()
    with pytest.raises(ChainError, match=r"accounts\.balance of row 1.*restore it from a backup") as exc:
        Devnet(path, ChainPolicy(block_time=0))
    assert str(path) in str(exc.value)


def test_a_document_python_reads_but_sqlite_json_valid_refuses_is_not_damage(tmp_path):
    """The content check asks SQLite's json_valid first and Python's parser where SQLite refuses:
    what the manager wrote and reads back with Python (NaN, say) never makes it refuse its own file."""
    path = tmp_path / "manager.db"
    ManagerState(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO workers (name, info, last_ping) VALUES ('w', '{\"load\": NaN}', 0)")
    assert conn.execute("SELECT json_valid(info) FROM workers").fetchone() == (0,)
    conn.commit()
    conn.close()
    ManagerState(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE workers SET info = '{\"load\": NaN'")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseError, match=r"workers\.info of row 1 \(not a JSON document\)"):
        ManagerState(path)
