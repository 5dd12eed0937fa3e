"""A task taken by a worker thread that died before journalling it is not lost (issue 14, the slow
kill campaign's "unfinished tasks [... 'State': 'allocated' ...]"): our worker names the asking
thread (the optional `Thread` of the allocate spec, its location); the same identity and thread
asking again is handed the same task (same sector, pieces, offsets); another thread, another
identity or a call without Thread (Damocles' Rust worker) is not. A manager.db of version 1 gets
the column and keeps its tasks."""

import sqlite3
from types import SimpleNamespace

import pytest

from appliance.manager.state import MANAGER_SCHEMA, ManagerState
from appliance.rpc import INVALID_PARAMS
from appliance.worker.failure import Wait
from appliance.worker.snapup import SnapUpSteps
from appliance.worker.unseal import UnsealSteps

from .pg_cluster import manager_store, pg_dsn, pg_server  # noqa: F401  (the cluster fixture's)
from .test_task_binding import PIECE, cluster, refused  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.timeout(120)

NO_FILTER = {"AllowedMiners": None, "AllowedProofTypes": None}


def task_rows(svc, table):
    order = "miner, number" if table == "snap_candidates" else "id"       # the order they were made in
    return svc.state.query(f"SELECT state, worker, thread FROM {table} ORDER BY {order}")


def test_an_unseal_task_is_handed_back_to_the_thread_that_lost_it_and_to_no_one_else(cluster):
    svc, owner, other, admin, sid = cluster
    for dest in ("file:///out/a", "file:///out/b", "file:///out/c"):
        admin.call("Venus.UnsealRequest", sid, PIECE, dest)
    first = owner.call("Venus.AllocateUnsealSector", {**NO_FILTER, "Thread": "t0"})
    assert first["Dest"] == ["file:///out/a"]
    # the worker died before journalling it: the same thread asks again and gets the same answer
    assert owner.call("Venus.AllocateUnsealSector", {**NO_FILTER, "Thread": "t0"}) == first
    assert owner.call("Venus.AllocateUnsealSector", {"Thread": "t0"}) == first
    # another thread of the same worker, another worker under the same thread name: not that task
    assert owner.call("Venus.AllocateUnsealSector", {**NO_FILTER, "Thread": "t1"})["Dest"] == ["file:///out/b"]
    assert other.call("Venus.AllocateUnsealSector", {**NO_FILTER, "Thread": "t0"})["Dest"] == ["file:///out/c"]
    # without Thread (Damocles' Rust worker): as before, nothing taken is handed out again
    assert owner.call("Venus.AllocateUnsealSector", NO_FILTER) is None
    assert task_rows(svc, "unseal_tasks") == [("allocated", "name:sealer-01", "t0"), ("allocated", "name:sealer-01", "t1"),
                                              ("allocated", "name:sealer-02", "t0")]
    # once the task is done it is not handed back
    owner.call("Venus.AchieveUnsealSector", sid, {"/": PIECE}, "")
    assert task_rows(svc, "unseal_tasks")[0][0] == "done"
    assert owner.call("Venus.AllocateUnsealSector", {**NO_FILTER, "Thread": "t0"}) is None


def test_a_rebuild_is_handed_back_to_the_thread_that_lost_it_and_to_no_one_else(cluster):
    svc, owner, other, admin, sid = cluster
    admin.call("Venus.RebuildRequest", sid)
    first = other.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t0"})
    assert first["Sector"]["ID"] == sid
    assert other.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t0"}) == first
    assert other.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t1"}) is None
    assert owner.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t0"}) is None
    assert other.call("Venus.AllocateRebuildSector", NO_FILTER) is None
    assert task_rows(svc, "rebuild_tasks") == [("allocated", "name:sealer-02", "t0")]
    other.call("Venus.RebuildDone", sid, "")
    assert other.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t0"}) is None


def test_a_snapup_is_handed_back_with_the_same_deals_to_the_thread_that_lost_it_and_to_no_one_else(cluster):
    svc, owner, other, admin, sid = cluster
    with svc.state.tx() as db:
        db.execute("INSERT INTO snap_candidates (miner, number, state, created, updated) VALUES (?, ?, 'candidate', 0, 0)",
                   (sid["Miner"], sid["Number"]))
    spec = {"Sector": NO_FILTER, "Deals": {"MaxDeals": None, "MinUsedSpace": None}}
    first = owner.call("Venus.AllocateSanpUpSector", {**spec, "Thread": "t0"})
    assert first["Sector"]["ID"] == sid and [p["Piece"]["PieceCID"] for p in first["Pieces"]] == [{"/": PIECE}]
    deals = svc.state.query("SELECT id, sector FROM deals ORDER BY id")
    assert owner.call("Venus.AllocateSanpUpSector", {**spec, "Thread": "t0"}) == first
    assert svc.state.query("SELECT id, sector FROM deals ORDER BY id") == deals      # no deal packed twice
    assert owner.call("Venus.AllocateSanpUpSector", {**spec, "Thread": "t1"}) is None
    assert other.call("Venus.AllocateSanpUpSector", {**spec, "Thread": "t0"}) is None
    assert owner.call("Venus.AllocateSanpUpSector", spec) is None
    assert task_rows(svc, "snap_candidates") == [("allocated", "name:sealer-01", "t0")]


def test_a_lost_task_the_thread_no_longer_takes_goes_back_to_the_others(cluster):
    svc, owner, other, admin, sid = cluster
    admin.call("Venus.RebuildRequest", sid)
    owner.call("Venus.AllocateRebuildSector", {**NO_FILTER, "Thread": "t0"})
    # the thread's config changed (another miner only) while it was down: the task is pending again
    assert owner.call("Venus.AllocateRebuildSector", {"AllowedMiners": [sid["Miner"] + 1], "Thread": "t0"}) is None
    assert task_rows(svc, "rebuild_tasks") == [("pending", None, None)]
    assert other.call("Venus.AllocateRebuildSector", NO_FILTER)["Sector"]["ID"] == sid


def test_a_thread_name_is_a_bounded_string(cluster):
    svc, owner, other, admin, sid = cluster
    assert "spec.Thread" in refused(INVALID_PARAMS, owner.call, "Venus.AllocateUnsealSector", {"Thread": 7})
    msg = refused(INVALID_PARAMS, owner.call, "Venus.AllocateSanpUpSector", {"Sector": {}, "Thread": "x" * 5000})
    assert "spec.Thread" in msg and "5000" in msg


def _steps(cls, client, location):
    sealing = SimpleNamespace(allowed_miners=(), max_deals=None, min_deal_space=None)
    return cls(SimpleNamespace(rpc=client, sealing=sealing, location=location, attached=[]), "w1-task-0")


@pytest.mark.parametrize("cls", [UnsealSteps, SnapUpSteps])
def test_our_worker_thread_names_its_location_and_gets_its_lost_task_back(cluster, tmp_path, cls):
    svc, owner, other, admin, sid = cluster
    if cls is UnsealSteps:
        admin.call("Venus.UnsealRequest", sid, PIECE, "file:///out/a")
    else:
        with svc.state.tx() as db:
            db.execute("INSERT INTO snap_candidates (miner, number, state, created, updated) VALUES (?, ?, 'candidate', 0, 0)",
                       (sid["Miner"], sid["Number"]))
    location = tmp_path / "store-0"
    first = _steps(cls, owner, location).on_Empty(None)       # answered, then the worker died: nothing journalled
    again = _steps(cls, owner, location).on_Empty(None)       # the restarted thread on the same location
    assert again.outputs["task"] == first.outputs["task"] and first.outputs["task"]["Sector"]["ID"] == sid
    table = "unseal_tasks" if cls is UnsealSteps else "snap_candidates"
    assert task_rows(svc, table) == [("allocated", "name:sealer-01", str(location))]
    with pytest.raises(Wait):         # a thread on another location gets no task
        _steps(cls, owner, tmp_path / "store-1").on_Empty(None)


def test_a_version_1_manager_db_gets_the_thread_column_and_keeps_its_tasks(tmp_path):
    from dataclasses import replace

    from appliance.core.db import Database
    path = tmp_path / "manager.db"
    Database(path, replace(MANAGER_SCHEMA, migrations=MANAGER_SCHEMA.migrations[:1])).close()    # the released version 1
    old = sqlite3.connect(path)
    old.execute("INSERT INTO unseal_tasks (miner, number, piece_cid, dest, state, worker, created, updated) "
                "VALUES (1000, 1, 'baga', 'piecestore', 'allocated', 'name:w1', 0, 0)")
    old.execute("INSERT INTO rebuild_tasks (miner, number, state, worker, created, updated) "
                "VALUES (1000, 2, 'pending', NULL, 0, 0)")
    old.execute("INSERT INTO snap_candidates (miner, number, state, worker, created, updated) "
                "VALUES (1000, 3, 'allocated', 'name:w2', 0, 0)")
    assert old.execute("PRAGMA user_version").fetchone() == (1,)
    old.commit()
    old.close()
    state = ManagerState(path)
    assert state.one("PRAGMA user_version") == (MANAGER_SCHEMA.version,) and MANAGER_SCHEMA.version >= 2
    assert state.query("SELECT number, state, worker, thread FROM unseal_tasks") == [(1, "allocated", "name:w1", None)]
    assert state.query("SELECT number, state, worker, thread FROM rebuild_tasks") == [(2, "pending", None, None)]
    assert state.query("SELECT number, state, worker, thread FROM snap_candidates") == [(3, "allocated", "name:w2", None)]
    state.close()
    kept = sqlite3.connect(tmp_path / "manager.db.v1.bak")
    assert kept.execute("PRAGMA user_version").fetchone() == (1,)
    assert "thread" not in [r[1] for r in kept.execute("PRAGMA table_info(unseal_tasks)")]
    kept.close()
