"""The sector fields the manager filters and counts on are indexed columns generated from the
record (manager.db schema 6): they follow every write path, an older file gains them, and the
queries of the committer, allocation limits, housekeeping, the page and /metrics use their
indexes instead of reading every sector ever sealed."""

import itertools
import json
import sqlite3

from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.state import MANAGER_SCHEMA, SECTOR_INDEXES, ManagerState

MINER = 1000


def _columns(state, number):
    return state.one("SELECT is_open, state, worker, owner, plan, abort_reason FROM sectors WHERE miner = ? AND number = ?",
                     (MINER, number))


def test_the_columns_follow_the_record_through_every_write_path(tmp_path):
    state = ManagerState(tmp_path / "manager.db")
    try:
        assert state.allocate(MINER, 5, 1, None) == 1
        assert _columns(state, 1) == (1, "Allocated", None, None, "sealer", None)
        state.report(MINER, 1, {"state": "PC1Done", "worker": "w1"}, "Allocated", "PC1Done", "PC1", "w1")
        assert _columns(state, 1) == (1, "PC1Done", "w1", None, "sealer", None)
        state.update(MINER, 1, finalized=True, abort_reason="operator", state="Aborted")
        assert _columns(state, 1) == (0, "Aborted", "w1", None, "sealer", "operator")
        state.update(MINER, 1, finalized=None, abort_reason=None)          # restore
        assert _columns(state, 1)[0] == 1 and _columns(state, 1)[5] is None
        number, _ = state.allocate_owned(MINER, 5, 1, None, "w2", 10)
        assert _columns(state, number)[3] == "w2"
        with state.tx() as db:      # a module's own INSERT (sector import) is covered too
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                       (MINER, 9, 5, json.dumps({"state": "Finished", "finalized": True, "plan": "import"}), 0.0))
        assert _columns(state, 9) == (0, "Finished", None, None, "import", None)
        assert [r["number"] for r in state.sectors(MINER, open_only=True)] == [1, number]
        assert [r["number"] for r in state.sectors(MINER)] == [1, number, 9]
        assert state.sector_counts() == _recount(state) == {("Aborted", "sealer"): 1, ("Allocated", "sealer"): 1,
                                                            ("Finished", "import"): 1}
        assert state.sector_counts(is_open=False) == {("Finished", "import"): 1}
        with state.tx() as db:
            db.execute("DELETE FROM sectors WHERE number = 9")
        assert state.sector_counts() == _recount(state)
    finally:
        state.close()


def _recount(state, is_open=None):
    return {(st or "", plan): n for st, plan, n in state.query(
        "SELECT json_extract(info, '$.state'), COALESCE(json_extract(info, '$.plan'), 'sealer'), COUNT(*) FROM sectors "
        "GROUP BY 1, 2")}


def test_the_counts_stay_those_of_the_records_through_many_writes(tmp_path):
    import random
    rng = random.Random(7)
    state = ManagerState(tmp_path / "manager.db")
    try:
        numbers = []
        for _ in range(300):
            numbers.append(state.allocate(MINER, 5, 1, None))
            op, n = rng.random(), rng.choice(numbers)
            if op < 0.3:
                state.update(MINER, n, state=rng.choice(["PC1Done", "PC2Done", "Finished"]))
            elif op < 0.5:
                state.update(MINER, n, finalized=rng.choice([True, None]), plan=rng.choice(["snapup", None]))
            elif op < 0.55:
                with state.tx() as db:
                    db.execute("DELETE FROM sectors WHERE miner = ? AND number = ?", (MINER, n))
                numbers.remove(n)
        assert state.sector_counts() == _recount(state)
        opened = {k: v for k, v in _recount_open(state).items()}
        assert state.sector_counts(is_open=True) == opened
    finally:
        state.close()


def _recount_open(state):
    return {(st or "", plan): n for st, plan, n in state.query(
        "SELECT json_extract(info, '$.state'), COALESCE(json_extract(info, '$.plan'), 'sealer'), COUNT(*) FROM sectors "
        "WHERE json_extract(info, '$.finalized') IS NULL GROUP BY 1, 2")}


def test_a_version_5_file_gains_the_columns_with_its_records(tmp_path):
    path = tmp_path / "manager.db"
    db = sqlite3.connect(path, isolation_level=None)
    for step in MANAGER_SCHEMA.migrations[:5]:
        step(db)
    db.execute("PRAGMA user_version = 5")
    db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
               (MINER, 1, 5, json.dumps({"state": "PC2Done", "worker": "w1", "owner": "w1"}), 1.0))
    db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
               (MINER, 2, 5, json.dumps({"state": "Finished", "finalized": True}), 1.0))
    db.close()
    state = ManagerState(path)
    try:
        assert state.one("PRAGMA user_version") == (MANAGER_SCHEMA.version,)     # 6, and the steps after it
        assert _columns(state, 1) == (1, "PC2Done", "w1", "w1", "sealer", None)
        assert _columns(state, 2)[:2] == (0, "Finished")
        assert state.sector_counts() == {("PC2Done", "sealer"): 1, ("Finished", "sealer"): 1}
    finally:
        state.close()


def test_the_hot_queries_use_the_indexes_not_a_scan_of_every_sector(tmp_path):
    """The statements the committer, allocation limits, housekeeping, terminations, removals, the
    page and /metrics run on `sectors` (caught by SQLite's trace as they run), each planned through an index, never a
    scan of the table (the counts come from sector_counts, kept by triggers)."""
    from types import SimpleNamespace
    from appliance.manager.sector_removal import resume_removals
    from appliance.manager.terminate import Terminator
    from appliance.metrics.manager import _Collector
    from appliance.web.views import WebViews
    state = ManagerState(tmp_path / "manager.db")
    seen: list[str] = []
    try:
        state.allocate(MINER, 5, 1, None)
        state.db.set_trace(seen.append)
        Committer(parse_config({"Miners": [{"Actor": MINER}]}), state, None).tick()
        state.allocate_owned(MINER, 5, 1, None, "w1", 10)
        state.silent_since(1.0)
        views = WebViews(state, None, None, None, None)
        views.sectors()
        views.sectors_page({"state": "PC1Done"})
        views.terminations()
        Terminator(None, state, None, None)._in_flight(MINER)
        resume_removals(state)
        # the first four families are the sectors' (version, per state, failing, oldest in flight)
        list(itertools.islice(_Collector(None)._families(SimpleNamespace(state=state)), 4))
        state.db.set_trace(None)
        reads = sorted({q for q in seen if "FROM sectors" in q and "WHERE miner = " not in q})
        assert len(reads) >= 11, reads
        for sql in reads:
            plan = " ".join(r[3] for r in state.query("EXPLAIN QUERY PLAN " + sql))
            # a search through an index, or a walk of a partial index (it holds only the few sectors being ended)
            partial = any(f"INDEX {name}" in plan for name, cols in SECTOR_INDEXES.items() if " WHERE " in cols)
            assert "INDEX" in plan and ("SCAN sectors" not in plan or partial), (sql, plan)
        # an index on is_open alone would still read every open record's JSON for a generated
        # column it lacks (/metrics' oldest sector in flight: 63 ms at 25,000 open sectors)
        oldest = next(q for q in reads if "allocated_at IS NULL" in q)
        plan = [r[3] for r in state.query("EXPLAIN QUERY PLAN " + oldest) if "sectors" in r[3]]
        assert plan and all("(is_open=? AND allocated_at" in p for p in plan), plan
    finally:
        state.close()


def test_the_committer_reads_only_the_sectors_in_flight(tmp_path):
    """Hundreds of finished sectors and two in flight: each pass's reads return the two."""
    state = ManagerState(tmp_path / "manager.db")
    try:
        with state.tx() as db:
            db.executemany("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                           [(MINER, n, 5, json.dumps({"state": "Finished", "finalized": True, "pre": {"CommR": "00"}}), 0.0)
                            for n in range(100, 600)])
        for n in (1, 2):
            state.allocate(MINER, 5, 1, None)
        read = []
        real = state.sectors

        def counted(*args, **kwargs):
            out = real(*args, **kwargs)
            read.append(len(out))
            return out
        state.sectors = counted

        class Idle:                      # nothing due: the passes only look
            def head(self):
                return 100
        cfg = parse_config({"Miners": [{"Actor": MINER}]})
        Committer(cfg, state, Idle()).tick()
        assert read and max(read) == 2, read
    finally:
        state.close()
