"""ManagerState's own methods, the ones the sealer's RPC path uses, with the same assertions on
each store driver: SQLite (manager.db) and PostgreSQL (a throwaway cluster, tests/pg_cluster.py;
skipped, saying why, where PostgreSQL or psycopg is not installed). Then what only a server has:
two managers on one database never hand out a sector number or a nonce twice."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.core.db import DatabaseError
from appliance.manager.config import DBConfig
from appliance.manager.identity import TooManyNames
from appliance.manager.state import (ALLOCATED_AT, ALLOCATED_AT_INDEX, MANAGER_SCHEMA, SECTOR_COLUMNS, SECTOR_INDEXES,
                                     ManagerState)
from tests.pg_cluster import pg_dsn, pg_server  # noqa: F401  (fixtures)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """(the DBConfig, the manager home's database path) for each driver."""
    if request.param == "sqlite":
        return DBConfig(), tmp_path / "manager.db"
    return DBConfig("postgres", request.getfixturevalue("pg_dsn")), tmp_path / "manager.db"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state(store, clock):
    s = ManagerState(store[1], now=clock, store=store[0])
    yield s
    s.close()


def test_allocate_hands_out_each_number_once_from_the_floor_to_the_ceiling(state):
    assert [state.allocate(1000, 8, 5, 7) for _ in range(4)] == [5, 6, 7, None]
    assert state.allocate(1001, 8, 0, None) == 0
    assert state.next_numbers() == {1000: 8, 1001: 1}
    rec = state.sector(1000, 5)
    assert (rec["state"], rec["miner"], rec["number"], rec["proof"], rec["allocated_at"]) == ("Allocated", 1000, 5, 8, 1000.0)
    assert state.sector(1000, 99) is None


def test_a_refused_allocation_leaves_no_counter_behind(state):
    assert state.allocate(1000, 8, 10, 5) is None          # the range is empty
    assert state.next_numbers() == {} and not state.has_history()
    assert state.allocate_owned(1000, 8, 10, 5, "w", 4) == (None, 0)
    assert state.next_numbers() == {}


def test_allocate_owned_stops_at_the_owners_limit_of_open_sectors(state):
    assert [state.allocate_owned(1000, 8, 0, None, "alice", 2) for _ in range(3)] == [(0, 0), (1, 1), (None, 2)]
    assert state.allocate_owned(1000, 8, 0, None, "bob", 2) == (2, 0)
    state.update(1000, 0, finalized=True, state="Finished")
    assert state.allocate_owned(1000, 8, 0, None, "alice", 2) == (3, 1)
    assert state.sector(1000, 3)["owner"] == "alice"
    assert state.claim_sector(1000, 3, "mallory") == "alice"


def test_update_merges_and_update_open_refuses_a_closed_sector(state, clock):
    state.allocate(1000, 8, 0, None)
    clock.t = 1010.0
    rec = state.update(1000, 0, state="PC1Done", worker="w1", ticket={"epoch": 5})
    assert (rec["state"], rec["worker"], rec["ticket"]) == ("PC1Done", "w1", {"epoch": 5})
    assert "worker" not in state.update(1000, 0, worker=None)
    assert state.update_open(1000, 0, state="PC2Done")["state"] == "PC2Done"
    state.update(1000, 0, abort_reason="operator")
    assert state.update_open(1000, 0, state="C1Done") is None
    assert state.sector(1000, 0)["state"] == "PC2Done"
    with pytest.raises(KeyError):
        state.update(1000, 9, state="x")
    with pytest.raises(KeyError):
        state.update_open(1000, 9, state="x")


def test_report_records_the_transition_and_its_history(state, clock):
    state.allocate(1000, 8, 0, None)
    clock.t = 1030.0
    rec, spent = state.report(1000, 0, {"state": "PC1Done"}, "Allocated", "PC1Done", "PC1", "w1")
    assert (rec["state"], rec["entered_at"], spent) == ("PC1Done", 1030.0, 30.0)
    clock.t = 1040.0
    _, spent = state.report(1000, 0, {"failure": {"Level": "temp", "Desc": "disk"}}, "PC1Done", "PC1Done", "Failure", "w1",
                            {"Level": "temp", "Desc": "disk"})
    assert spent is None
    assert state.history(1000, 0) == [
        {"at": 1030.0, "prev": "Allocated", "next": "PC1Done", "event": "PC1", "worker": "w1", "level": None, "error": None},
        {"at": 1040.0, "prev": "PC1Done", "next": "PC1Done", "event": "Failure", "worker": "w1", "level": "temp",
         "error": "disk"}]
    state.update(1000, 0, finalized=True)
    rec, spent = state.report(1000, 0, {"state": "Late"}, "PC1Done", "Late", "x", "w1")
    assert (rec["state"], spent, len(state.history(1000, 0))) == ("PC1Done", None, 2)
    with pytest.raises(KeyError):
        state.report(1000, 7, {}, None, "x", "x", None)


def test_the_outbox_journals_sends_and_replaces_messages(state, clock):
    for _ in range(2):
        state.allocate(1000, 8, 0, None)
    assert state.enqueue_message(1000, "pre", "PreCommitSectorBatch2", {"Sectors": [0, 1]}, [0, 1]) == 0
    assert state.enqueue_message(1000, "prove", "ProveCommitSectors3", {"x": 1}, [0], {"GasLimit": 5}) == 1
    assert state.enqueue_message(1001, "post", "SubmitWindowedPoSt", {}, []) == 0
    assert state.next_nonces() == {1000: 2, 1001: 1}
    assert state.sector(1000, 1)["pre_nonce"] == 0 and state.sector(1000, 0)["prove_nonce"] == 1
    assert [(m["miner"], m["nonce"], m["spec"]) for m in state.unsent()] == [(1000, 0, {}), (1000, 1, {"GasLimit": 5}), (1001, 0, {})]
    state.record_sent(1000, 0, "bafy-pre")
    assert state.sector(1000, 1)["pre_msg"] == "bafy-pre"
    assert [(m["nonce"], m["message"], m["sectors"]) for m in state.sent_since(999.0)] == [(0, "bafy-pre", [0, 1])]
    assert state.sent_since(1000.0) == []
    state.respec_message(1000, 0, {"GasPremium": "100"})
    assert [m["message"] for m in state.outbox_messages(1000, "pre", "PreCommitSectorBatch2")] == [None]
    assert state.unsent()[0]["spec"] == {"GasPremium": "100"}
    assert state.outbox_messages(1000, "pre", "Other") == []


def test_listings_and_counts(state):
    for _ in range(4):
        state.allocate(1000, 8, 0, None)
    state.allocate(1001, 8, 0, None)
    state.update(1000, 0, finalized=True, state="Finished")
    state.update(1000, 1, state="PC1Done", plan="snapup")
    assert [(s["miner"], s["number"]) for s in state.sectors()] == [(1000, 0), (1000, 1), (1000, 2), (1000, 3), (1001, 0)]
    assert [s["number"] for s in state.sectors(1000, open_only=True)] == [1, 2, 3]
    assert len(state.sectors(open_only=True)) == 4
    assert state.sector_counts() == {("Finished", "sealer"): 1, ("PC1Done", "snapup"): 1, ("Allocated", "sealer"): 3}
    assert state.sector_counts(True) == {("PC1Done", "snapup"): 1, ("Allocated", "sealer"): 3}
    assert state.sector_counts(False) == {("Finished", "sealer"): 1}
    assert sorted(state.silent_since(2000.0)) == [(1000, 1), (1000, 2), (1000, 3), (1001, 0)]
    assert state.silent_since(1000.0) == []


def test_workers_their_owners_and_the_change_counter(state, clock):
    v0 = state.version()
    state.ping("w1", {"Name": "w1", "Threads": 4})
    v1 = state.version()
    assert v1 > v0
    clock.t = 1005.0
    state.ping("w1", {"Name": "w1", "Threads": 4})       # the same info: no visible change
    assert state.version() == v1
    assert state.workers() == [("w1", {"Name": "w1", "Threads": 4}, 1005.0)]
    assert state.worker_owner("w1") is None and state.worker_owner("nobody") is None
    assert state.claim_worker("w1", "alice") == "alice"
    assert state.worker_owner("w1") == "alice"
    assert state.ping_owned("w1", {"Name": "w1"}, "bob") == "alice"        # refused: alice's name
    assert state.ping_owned("w2", {"Name": "w2"}, "alice", max_names=2) == "alice"
    with pytest.raises(TooManyNames):
        state.ping_owned("w3", {"Name": "w3"}, "alice", max_names=2)
    assert state.pings() == {"w1": 1005.0, "w2": 1005.0}
    clock.t = 2000.0
    state.touch_worker("w2")
    assert state.expire_workers(1500.0) == [("w1", 1005.0)]
    assert state.remove_worker("w2") and not state.remove_worker("w2")


def test_reservations(state):
    v0 = state.version()
    state.reserve(1000, 1, "s1", 100)
    state.reserve(1000, 2, "s1", 50)
    state.reserve(1000, 1, "s1", 70)         # the same sector again: replaced
    assert (state.reserved("s1"), state.reserved("s2")) == (120, 0)
    assert state.reservation(1000, 1) == ("s1", 70)
    state.release(1000, 1)
    assert state.reservation(1000, 1) is None and state.reserved("s1") == 50
    assert state.version() > v0


def test_counters_move_up_to_the_chains_and_stale_messages_to_fresh_nonces(state):
    state.allocate(1000, 8, 0, None)
    state.enqueue_message(1000, "pre", "PreCommitSectorBatch2", {}, [0])
    assert state.raise_counters(1000, 10, 3) == [(0, 3)]
    assert state.raise_counters(1000, 2, 1) == []           # never down
    assert (state.next_numbers(), state.next_nonces()) == ({1000: 10}, {1000: 4})
    assert state.sector(1000, 0)["pre_nonce"] == 3 and state.has_history()


def test_a_sector_recovered_from_the_chain_comes_back_with_its_deals(state, clock):
    deal = {"id": 7, "piece_cid": "baga-x", "piece_size": 2048, "payload_size": 1000, "start_epoch": 10,
            "end_epoch": 500, "store": "p1"}
    state.recover_sector(1000, 42, 8, {"state": "Finished", "finalized": True}, [deal])
    state.recover_sector(1000, 43, 8, {"state": "Finished", "finalized": True}, [deal])    # the deal moves along
    assert state.sector(1000, 42)["entered_at"] == 1000.0
    assert state.history(1000, 42)[0]["event"] == "RecoveredFromChain"
    assert state.deal_pieces([7]) == [("baga-x", 2048)]
    assert state.one("SELECT sector FROM deals WHERE id = 7")[0] == 43
    assert state.sector_counts(False) == {("Finished", "sealer"): 2}
    with state.tx() as db:      # nothing deletes a sector today; the counts follow if something does
        db.execute("DELETE FROM sectors WHERE miner = ? AND number = ?", (1000, 42))
    assert state.sector_counts() == {("Finished", "sealer"): 1}
    with pytest.raises(ValueError, match="deal 8 is not in the manager's deals"):
        state.deal_pieces([8])


def test_a_read_sees_one_snapshot(state):
    state.allocate(1000, 8, 0, None)
    with state.read() as db:
        n = db.execute("SELECT COUNT(*) FROM sectors").fetchone()[0]
        with pytest.raises(RuntimeError):
            with state.tx():
                pass
    assert n == 1


def test_a_read_keeps_its_snapshot_while_another_manager_writes(state, store):
    state.allocate(1000, 8, 0, None)
    other = ManagerState(store[1], store=store[0])
    try:
        with state.read() as db:
            before = db.execute("SELECT COUNT(*) FROM sectors").fetchone()[0]
            other.allocate(1000, 8, 0, None)
            during = db.execute("SELECT COUNT(*) FROM sectors").fetchone()[0]
        assert (before, during, len(state.sectors())) == (1, 1, 2)
    finally:
        other.close()


def test_the_lifecycle_columns_follow_the_record(state):
    """A termination asked, landed; a removal journalled, done: the generated columns the
    terminator, the page and the start's resume read follow, with JSON null read as absent."""
    n = state.allocate(1000, 5, 1, None)

    def cols():
        return state.one("SELECT terminate_pending, terminate_queued_at, removal_pending FROM sectors "
                         "WHERE miner = ? AND number = ?", (1000, n))
    assert cols() == (0, None, 0)
    state.update(1000, n, terminate={"queued_at": 12.5, "msg": None, "terminated_at": None, "error": None})
    assert cols() == (1, 12.5, 0)
    state.update(1000, n, terminate={"queued_at": 12.5, "terminated_at": 300})
    assert cols() == (0, 12.5, 0)
    state.update(1000, n, removal={"paths": []})
    assert cols() == (0, 12.5, 1)
    state.update(1000, n, removed=True)
    assert cols() == (0, 12.5, 0)


# ------------------------------------------------------------------ PostgreSQL only

def test_postgres_tables_are_the_sqlite_schemas(pg_dsn):
    """The PostgreSQL layout has every table and column of manager.db's current version, in order."""
    import psycopg
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    s.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                            "AND is_generated = 'NEVER' ORDER BY table_name, ordinal_position").fetchall()
        version = conn.execute("SELECT version FROM damocles_schema").fetchone()[0]
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    assert found.pop("damocles_schema") == ["id", "version"]
    assert found == MANAGER_SCHEMA.columns()
    assert version == MANAGER_SCHEMA.version
    with psycopg.connect(pg_dsn) as conn:         # the generated columns and indexes are SQLite's too
        generated = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'sectors' "
            "AND is_generated = 'ALWAYS' ORDER BY ordinal_position")]
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'sectors'")}
    assert generated == list(SECTOR_COLUMNS) + list(ALLOCATED_AT)
    assert indexes >= set(SECTOR_INDEXES) | set(ALLOCATED_AT_INDEX)


def _layout(dsn: str) -> tuple:
    import psycopg
    with psycopg.connect(dsn) as conn:
        columns = conn.execute("SELECT table_name, column_name, data_type, is_generated, generation_expression "
                               "FROM information_schema.columns WHERE table_schema = 'public' "
                               "ORDER BY table_name, ordinal_position").fetchall()
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                               "ORDER BY indexname").fetchall()
        version = conn.execute("SELECT version FROM damocles_schema").fetchone()[0]
    return columns, indexes, version


def test_a_postgres_database_of_the_last_release_migrates_to_this_version(pg_dsn):
    """A database created by the release before the lease (version 6) is taken to the current
    version at the next start, its sectors kept, and ends with the layout a new database gets."""
    import psycopg
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    first = s.allocate(1000, 8, 0, None)
    s.close()
    fresh = _layout(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:        # version 6's layout, as that release created it
        conn.execute("DROP TABLE manager_lease")
        conn.execute("DROP INDEX sectors_open_allocated")
        conn.execute("ALTER TABLE sectors DROP COLUMN allocated_at")
        conn.execute("UPDATE damocles_schema SET version = 6")
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    try:
        assert [x["number"] for x in s.sectors()] == [first]
        second = s.allocate(1000, 8, 0, None)
        assert second == first + 1
        assert [tuple(r) for r in s.query("SELECT number FROM sectors WHERE is_open = 1 AND allocated_at IS NOT NULL "
                                          "ORDER BY number")] == [(first,), (second,)]
    finally:
        s.close()
    assert _layout(pg_dsn) == fresh
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE damocles_schema SET version = 5")
    with pytest.raises(DatabaseError, match="schema version 5; this binary's is .* no migration from version 5 on PostgreSQL"):
        ManagerState("unused", store=DBConfig("postgres", pg_dsn))


def test_postgres_reopens_its_schema_and_refuses_a_newer_one(pg_dsn):
    import psycopg
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    s.allocate(1000, 8, 0, None)
    s.close()
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    assert s.allocate(1000, 8, 0, None) == 1
    s.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE damocles_schema SET version = version + 1")
    with pytest.raises(DatabaseError, match=f"schema version {MANAGER_SCHEMA.version + 1}, newer than this binary's"):
        ManagerState("unused", store=DBConfig("postgres", pg_dsn))


def test_postgres_unreachable_is_a_clear_error_without_the_password(pg_server):
    dsn = f"postgresql://damocles:s3cret@127.0.0.1:{pg_server.port}/no_such_db"
    with pytest.raises(DatabaseError) as err:
        ManagerState("unused", store=DBConfig("postgres", dsn))
    assert "cannot be opened" in str(err.value) and "no_such_db" in str(err.value) and "s3cret" not in str(err.value)


def _race(workers: int, fn) -> list:
    """Run `fn(i)` on `workers` threads started together; its results, or the first error."""
    results, errors = [], []
    gate = threading.Barrier(workers, timeout=30)

    def run(i):
        try:
            gate.wait()
            results.extend(fn(i))
        except BaseException as exc:      # reported below: a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[0]
    return results


@pytest.mark.timeout(180)
def test_two_managers_on_one_database_never_hand_out_a_number_or_nonce_twice(pg_dsn):
    """Two ManagerStates (two managers' processes' worth of connections) allocate and journal
    messages from many threads at once, on a miner whose counters do not exist yet (the case
    where no row is there to lock)."""
    managers = [ManagerState("unused", store=DBConfig("postgres", pg_dsn)) for _ in range(2)]
    try:
        per_thread, threads = 25, 8
        numbers = _race(threads, lambda i: [managers[i % 2].allocate(1000, 8, 100, None) for _ in range(per_thread)])
        assert sorted(numbers) == list(range(100, 100 + per_thread * threads))
        owned = _race(threads, lambda i: [managers[i % 2].allocate_owned(1001, 8, 0, None, f"w{i}", 1000)[0]
                                          for _ in range(per_thread)])
        assert sorted(owned) == list(range(per_thread * threads))
        nonces = _race(threads, lambda i: [managers[i % 2].enqueue_message(1002, "pre", "PreCommitSectorBatch2", {}, [])
                                           for _ in range(per_thread)])
        assert sorted(nonces) == list(range(per_thread * threads))
        assert managers[0].sector_counts() == {("Allocated", "sealer"): 2 * per_thread * threads}
        assert managers[1].next_numbers() == {1000: 100 + per_thread * threads, 1001: per_thread * threads}
    finally:
        for m in managers:
            m.close()


@pytest.mark.timeout(180)
def test_two_managers_writing_a_batch_and_its_sectors_at_once_take_turns(pg_dsn):
    """One manager journals messages for a batch of sectors (writing each) while the other takes
    reports for the same sectors in the opposite order: without writers taking turns, the two
    lock the sectors and the change counter crosswise and PostgreSQL fails one (a deadlock)."""
    managers = [ManagerState("unused", store=DBConfig("postgres", pg_dsn)) for _ in range(2)]
    try:
        batch = [managers[0].allocate(1000, 8, 0, None) for _ in range(10)]
        rounds = 15

        def work(i):
            if i % 2 == 0:
                return [managers[0].enqueue_message(1000, "pre", "PreCommitSectorBatch2", {}, batch) for _ in range(rounds)]
            for r in range(rounds):
                for n in reversed(batch):
                    managers[1].report(1000, n, {"step": r}, "Allocated", "Allocated", f"E{i}.{r}", "w1")
            return []

        nonces = _race(4, work)
        assert sorted(nonces) == list(range(2 * rounds))
        assert all(len(managers[1].history(1000, n)) == 2 * rounds for n in batch)
    finally:
        for m in managers:
            m.close()


def test_postgres_connections_of_ended_threads_are_reused_not_leaked(pg_dsn):
    """Per-request RPC threads come and go: each ended thread's connection goes back to a few
    idle ones, so the server sees a bounded number however many threads came and went."""
    import psycopg
    from appliance.core.pg import IDLE_CONNECTIONS
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    try:
        for round_ in range(5):
            _race(8, lambda i: [s.allocate(1000, 8, 0, None)])
        assert s.db.connections() == 1          # this thread's; the threads' went idle or closed
        with psycopg.connect(pg_dsn, autocommit=True) as conn:     # a closed one's backend exits soon after
            deadline = time.monotonic() + 15
            while (seen := conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND pid <> pg_backend_pid()").fetchone()[0]) > 1 + IDLE_CONNECTIONS \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        assert seen <= 1 + IDLE_CONNECTIONS
        assert s.next_numbers() == {1000: 40}
    finally:
        s.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:       # a closed session's backend exits soon after
        deadline = time.monotonic() + 15
        while (left := conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()").fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == 0, f"{left} sessions still open after close()"
    with pytest.raises(DatabaseError, match="is closed"):
        s.next_numbers()


def test_postgres_a_dsn_that_does_not_parse_is_a_clear_error():
    pytest.importorskip("psycopg", reason='psycopg 3 is not installed: pip install -e ".[postgres]"')
    with pytest.raises(DatabaseError, match="manager state database .* cannot be opened"):
        ManagerState("unused", store=DBConfig("postgres", "host=127.0.0.1 port=notaport"))


@pytest.mark.timeout(120)
def test_postgres_managers_starting_together_on_an_empty_database_create_it_once(pg_dsn):
    started = _race(4, lambda i: [ManagerState("unused", store=DBConfig("postgres", pg_dsn))])
    try:
        assert [s.allocate(1000, 8, 0, None) for s in started] == [0, 1, 2, 3]
        assert started[0].one("SELECT version FROM damocles_schema")[0] == MANAGER_SCHEMA.version
    finally:
        for s in started:
            s.close()


def test_postgres_a_thread_reconnects_after_the_server_dropped_its_connection(pg_dsn):
    import psycopg
    s = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    try:
        assert s.allocate(1000, 8, 0, None) == 0
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
        with pytest.raises(psycopg.OperationalError):       # the statement that finds it dropped
            s.allocate(1000, 8, 0, None)
        assert s.allocate(1000, 8, 0, None) == 1            # nothing was handed out by the failed one
    finally:
        s.close()
