"""The manager as a real process on loopback, driven over HTTP exactly as a worker drives it:
allocate, ticket, seal with the builtin engine, PreCommit (one batch flushes on Threshold, the
other on MaxWait), poll until Landed, reserve and persist, seed, ProveCommit (aggregated), poll
until Landed, finalize; the devnet records the sectors."""

import base64
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import ROOT

P2K = seal_proof("StackedDrg2KiBV1_1")
CONFIG = """
[RPC]
Listen = "127.0.0.1:0"
[Sealing]
SealRandomnessLookback = 2
InteractivePoRepConfidence = 1
[Chain]
BlockTime = "0s"
[[Common.PersistStores]]
Name = "persist-1"
Path = "persist-1"
[[Miners]]
Actor = 1000
SealProof = "StackedDrg2KiBV1_1"
[Miners.Sector]
MinNumber = 1
[Miners.Commitment]
Confidence = 1
[Miners.Commitment.Pre.Batch]
Threshold = 3
MaxWait = "1s"
CheckInterval = "50ms"
[Miners.Commitment.Prove.Batch]
Threshold = 4
MaxWait = "60s"
CheckInterval = "50ms"
"""


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(CONFIG)
    (home / "persist-1").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "manager", "run", "--home", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    assert line.startswith("listening on "), (line, proc.stderr.read() if proc.poll() is not None else "")
    url = line.split()[-1]
    secret = load_or_create_secret(home / "secret")
    yield home, RPCClient(url, issue_token(secret, "write")), RPCClient(url, issue_token(secret, "admin"))
    proc.terminate()
    proc.wait(timeout=20)


def until(what, fn, admin, attempts=400):
    """Poll like a worker does, moving the devnet clock by hand between polls."""
    for _ in range(attempts):
        out = fn()
        if out:
            return out
        admin.call("Venus.DevnetAdvance", 1)
        time.sleep(0.01)   # let the batcher thread take its turn; the loop is bounded
    raise AssertionError(f"timed out waiting for {what}")


def test_sectors_through_the_manager(manager, tmp_path):
    home, rpc, admin = manager
    admin.call("Venus.DevnetAdvance", 5)
    sectors = {}
    for i in range(4):
        alloc = rpc.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})
        sid = alloc["ID"]
        assert sid == {"Miner": 1000, "Number": i + 1}
        assert rpc.call("Venus.AcquireDeals", sid, {}) is None
        ticket = rpc.call("Venus.AssignTicket", sid)
        assert rpc.call("Venus.AssignTicket", sid) == ticket               # stable once assigned
        r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32,
                        tmp_path / "work")
        res = rpc.call("Venus.SubmitPreCommit", alloc, {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket}, False)
        assert res["Res"] == 1, res
        assert rpc.call("Venus.SubmitPreCommit", alloc, {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket},
                        False)["Res"] in (1, 2)
        sectors[sid["Number"]] = (sid, alloc, r, ticket)
        rpc.call("Venus.ReportState", sid, {"Worker": {"Instance": "w1", "Location": "/data/1"},
                                            "StateChange": {"Prev": "PC2Done", "Next": "PCSubmitted", "Event": "SubmitPC"}})
    for sid, *_ in sectors.values():
        until("PreCommit landed", lambda: rpc.call("Venus.PollPreCommitState", sid)["State"] == 3, admin)
    pre_msgs = [s["MessageInfo"]["PreCommitCid"] for s in rpc.call("Venus.ListSectors")]
    assert pre_msgs[0] == pre_msgs[1] == pre_msgs[2] != pre_msgs[3]      # 3 on Threshold, 1 on MaxWait

    store = None
    for sid, alloc, r, ticket in sectors.values():
        store = rpc.call("Venus.StoreReserveSpace", sid, 4096, [])
        assert store["Name"] == "persist-1"
        name = f"s-t01000-{sid['Number']}"
        assert rpc.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is False     # nothing copied yet
        (home / "persist-1" / "sealed").mkdir(exist_ok=True)
        shutil.copy(r.sector_dir / "sealed", home / "persist-1" / "sealed" / name)
        shutil.copytree(r.sector_dir / "cache", home / "persist-1" / "cache" / name,
                        ignore=shutil.ignore_patterns("sc-02-data-layer-*", "sc-02-data-tree-c*", "sc-02-data-tree-d*"))
        assert rpc.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is True
        seed = until("seed", lambda: rpc.call("Venus.WaitSeed", sid, P2K.id)["Seed"], admin)
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        c1 = seal_commit_phase1(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]),
                                base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                                r.sector_dir / "sealed")
        proof = base64.b64encode(seal_commit_phase2(c1)).decode()
        bad = base64.b64encode(b"DMC2\x01\x00garbage").decode()
        assert rpc.call("Venus.SubmitProof", sid, {"Proof": bad}, False)["Res"] == 4                # Rejected
        assert rpc.call("Venus.SubmitProof", sid, {"Proof": proof}, False)["Res"] == 1
    for sid, *_ in sectors.values():
        until("proof landed", lambda: rpc.call("Venus.PollProofState", sid)["State"] == 3, admin)
        rpc.call("Venus.ReportFinalized", sid)
    listed = rpc.call("Venus.ListSectors")
    assert len({s["MessageInfo"]["CommitCid"] for s in listed}) == 1        # one ProveCommitAggregate
    assert all(s["Finalized"] for s in listed)
    on_chain = rpc.call("Venus.DevnetSectors", 1000)
    assert [s["number"] for s in on_chain] == [1, 2, 3, 4]
    state = rpc.call("Venus.ReportState", {"Miner": 1000, "Number": 1},
                     {"Worker": {"Instance": "w1", "Location": "/data/1"},
                      "StateChange": {"Prev": "ProofSubmitted", "Next": "Finished", "Event": "Finish"}})
    assert state == {"Id": {"Miner": 1000, "Number": 1}, "Finalized": True, "AbortReason": None}


def test_unknown_sector_and_abort(manager):
    home, rpc, admin = manager
    from appliance.rpc import RPCError
    with pytest.raises(RPCError) as e:
        rpc.call("Venus.AssignTicket", {"Miner": 1000, "Number": 77})
    assert e.value.code == 11001
    sid = rpc.call("Venus.AllocateSector", {})["ID"]
    with pytest.raises(RPCError, match="needs 'admin'"):
        rpc.call("Venus.AbortSector", sid, "operator says so")
    admin.call("Venus.AbortSector", sid, "operator says so")
    resp = rpc.call("Venus.ReportState", sid, {"Worker": {"Instance": "w1", "Location": "/d"},
                                               "StateChange": {"Prev": "Allocated", "Next": "DealsAcquired", "Event": "AcquireDeals"}})
    assert resp["Finalized"] is True and resp["AbortReason"] == "operator says so"
    rpc.call("Venus.WorkerPing", {"Name": "w1", "Dest": "127.0.0.1:17890", "Version": "0.1.0"})
