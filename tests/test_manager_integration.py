"""The manager as a real process on loopback, driven over HTTP exactly as a worker drives it
(tests/manager_driver.py): allocate, ticket, seal with the builtin engine, PreCommit (one batch
flushes on Threshold, the other on MaxWait), poll until Landed, reserve and persist, seed,
ProveCommit (aggregated), poll until Landed, finalize; the devnet records the sectors."""

import base64
import json

import pytest

from appliance.rpc import RPCError

from .conftest import run_cli
from .manager_driver import ManagerProc, drive_sectors


@pytest.fixture
def manager(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    yield m
    m.stop()


def test_sectors_through_the_manager(manager, tmp_path):
    done = drive_sectors(manager, 4, tmp_path / "work")
    assert [s["Number"] for s in done] == [1, 2, 3, 4]
    listed = manager.call("Venus.ListSectors", "", 0)
    pre_msgs = [s["MessageInfo"]["PreCommitCid"] for s in listed]
    assert pre_msgs[0] == pre_msgs[1] == pre_msgs[2] != pre_msgs[3]      # 3 on Threshold, 1 on MaxWait
    assert len({s["MessageInfo"]["CommitCid"]["/"] for s in listed}) == 1     # one aggregated ProveCommitSectors3
    assert all(s["Finalized"] for s in listed)
    assert [s["number"] for s in manager.call("Venus.DevnetSectors", 1000)] == [1, 2, 3, 4]
    found = manager.call("Venus.SectorIndexerFind", "normal", {"Miner": 1000, "Number": 2})
    assert found["Found"] and found["Instance"] == {"SealedFile": "persist-1", "CacheDir": "persist-1"}   # store names
    assert manager.call("Venus.SectorIndexerFind", "normal", {"Miner": 1000, "Number": 9})["Found"] is False
    state = manager.call("Venus.ReportState", {"Miner": 1000, "Number": 1},
                         {"Worker": {"Instance": "w1", "Location": "/data/1"},
                          "StateChange": {"Prev": "ProofSubmitted", "Next": "Finished", "Event": "Finish"}})
    assert state == {"Id": {"Miner": 1000, "Number": 1}, "Finalized": True, "AbortReason": ""}   # Go: a pointer to the (empty) reason


def test_worker_facing_answers(manager):
    m = manager
    m.admin_call("Venus.DevnetAdvance", 5)
    alloc = m.call("Venus.AllocateSector", {"AllowedMiners": [1000], "AllowedProofTypes": [5]})
    sid = alloc["ID"]
    assert m.call("Venus.AllocateSector", {"AllowedMiners": [2000]}) is None
    ticket = m.call("Venus.AssignTicket", sid)
    assert m.call("Venus.AssignTicket", sid) == ticket                    # stable once assigned
    assert m.call("Venus.AcquireDeals", sid, {}) is None                  # CC only for now
    assert m.call("Venus.PollPreCommitState", sid)["State"] == 4          # NotFound before submitting
    other = dict(ticket, Epoch=ticket["Epoch"] - 1)
    res = m.call("Venus.SubmitPreCommit", alloc, {"CommR": [1] * 32, "CommD": [0] * 32, "Ticket": other}, False)
    assert res["Res"] == 4 and "ticket" in res["Desc"]                     # Rejected
    res = m.call("Venus.SubmitPreCommit", alloc, {"CommR": [1] * 32, "CommD": [0] * 32, "Ticket": ticket}, False)
    assert res["Res"] == 3 and "CommD" in res["Desc"]                      # MismatchedSubmission
    assert m.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is False   # files missing
    res = m.call("Venus.SubmitProof", sid, {"Proof": base64.b64encode(b"x").decode()}, False)
    assert res["Res"] == 4                                                 # no seed yet: Rejected
    with pytest.raises(RPCError) as e:
        m.call("Venus.AssignTicket", {"Miner": 1000, "Number": 77})
    assert e.value.code == 11001
    with pytest.raises(RPCError, match="needs 'admin'"):
        m.call("Venus.AbortSector", sid, "operator says so")
    m.admin_call("Venus.AbortSector", sid, "operator says so")
    resp = m.call("Venus.ReportState", sid, {"Worker": {"Instance": "w1", "Location": "/d"},
                                             "StateChange": {"Prev": "Allocated", "Next": "DealsAcquired", "Event": "AcquireDeals"}})
    assert resp["Finalized"] is True and resp["AbortReason"] == "operator says so"
    m.call("Venus.WorkerPing", {"Name": "w1", "Dest": "127.0.0.1:17890", "Version": "0.1.0"})


def test_operator_cli(manager):
    api = manager.rpc.url[: -len("/rpc/v0")]
    common = ["--api", api, "--home", str(manager.home)]
    out = json.loads(run_cli("util", "chain", "advance", "7", *common, "--json", check=True).stdout)
    assert out["Epoch"] >= 7
    assert json.loads(run_cli("util", "chain", "head", *common, "--json", check=True).stdout)["Epoch"] == out["Epoch"]
    sid = manager.call("Venus.AllocateSector", {})["ID"]
    listed = json.loads(run_cli("util", "sectors", "list", *common, "--json", check=True).stdout)["sectors"]
    assert [s["ID"] for s in listed] == [sid]
    text = run_cli("util", "sectors", "list", *common, check=True).stdout
    assert "s-t01000-1" in text and "Allocated" in text
    run_cli("util", "sectors", "abort", "1000-1", "--reason", "bad disk", *common, check=True)
    info = json.loads(run_cli("util", "sectors", "info", "s-t01000-1", *common, "--json", check=True).stdout)
    assert info["AbortReason"] == "bad disk"
    run_cli("util", "sectors", "restore", "1000-1", *common, check=True)
    assert json.loads(run_cli("util", "sectors", "info", "1000-1", *common, "--json", check=True).stdout)["AbortReason"] == ""
    stores = json.loads(run_cli("util", "storage", "list", *common, "--json", check=True).stdout)["stores"]
    assert stores[0]["Name"] == "persist-1" and stores[0]["Free"] > 0
    assert json.loads(run_cli("util", "miner", "info", "1000", *common, "--json", check=True).stdout)["SectorSize"] == 2048
    manager.call("Venus.WorkerPing", {"Name": "w1", "Dest": "127.0.0.1:17890", "Version": "0.1.0"})
    assert "w1" in run_cli("util", "workers", "list", *common, check=True).stdout
    assert run_cli("util", "chain", "sectors", *common, check=True).returncode == 0
    p = run_cli("util", "sectors", "info", "1000-99", *common)
    assert p.returncode == 2 and "not found" in p.stderr
    p = run_cli("util", "sectors", "list", "--api", api, "--token", "bogus")
    assert p.returncode == 2 and "invalid token" in p.stderr
