"""Reorgs against a real manager process (embedded devnet, tests/manager_driver.py), driven over
HTTP as a worker drives it: a forced reorg after the ProveCommit landed and before the manager
calls it landed (within its Confidence) ends with the sector landed once and proven; a PreCommit
reorged out and dropped is resent at the same nonce and lands once. Real 2KiB sectors."""

import base64
import json
import re
import shutil

import pytest

from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector

from .configs import manager_toml
from .conftest import run_cli
from .manager_driver import P2K, ManagerProc, precommit_sectors

PACKED, LANDED = 2, 3

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "manager"
    (home / "persist-1").mkdir(parents=True)
    # one sector a batch; a Confidence of 6 epochs: the window in which the test reorgs a landed message
    (home / "manager.toml").write_text(manager_toml(None, 1, 1, "60s", block_time="0s", check_interval="50ms",
                                                    miner={"Commitment": {"Confidence": 6}}))
    m = ManagerProc(home)
    yield m
    m.stop()


def landed_epoch(m, method, sid) -> int:
    """The epoch the message landed at, from the manager's 'landed at E, waiting for N epochs' (Packed)."""
    poll = m.until("packed", lambda: (lambda p: p if p["State"] == PACKED else None)(m.call(method, sid)))
    return int(re.search(r"landed at (\d+)", poll["Desc"]).group(1))


def head(m) -> int:
    return m.admin_call("Venus.DevnetHead")["Epoch"]


def test_reorg_during_provecommit_ends_with_the_sector_landed_once_and_proven(manager, tmp_path):
    m = manager
    [(sid, r, ticket)] = precommit_sectors(m, 1, tmp_path / "work")
    name = f"s-t0{sid['Miner']}-{sid['Number']}"
    assert m.call("Venus.StoreReserveSpace", sid, 4096, [])["Name"] == "persist-1"
    dest = m.home / "persist-1"
    (dest / "sealed").mkdir(exist_ok=True)
    (dest / "sealed" / name).write_bytes((r.sector_dir / "sealed").read_bytes())
    shutil.copytree(r.sector_dir / "cache", dest / "cache" / name, dirs_exist_ok=True)
    assert m.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is True
    seed = m.until("seed", lambda: m.call("Venus.WaitSeed", sid, P2K.id)["Seed"])
    comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
    c1 = seal_commit_phase1(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]),
                            base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                            r.sector_dir / "sealed")
    assert m.call("Venus.SubmitProof", sid, {"Proof": base64.b64encode(seal_commit_phase2(c1)).decode()}, False)["Res"] == 1
    at = landed_epoch(m, "Venus.PollProofState", sid)
    assert [s["number"] for s in m.admin_call("Venus.DevnetSectors", 1000)] == [sid["Number"]]
    out = m.admin_call("Venus.DevnetReorg", head(m) - at + 1, False)       # the proof's epoch and after
    assert len(out["reorged"]) == 1 and m.admin_call("Venus.DevnetSectors", 1000) == []
    assert m.call("Venus.PollProofState", sid)["State"] != LANDED          # not on the strength of the lost receipt
    m.until("proof landed again", lambda: m.call("Venus.PollProofState", sid)["State"] == LANDED)
    m.call("Venus.ReportFinalized", sid)
    assert [s["number"] for s in m.admin_call("Venus.DevnetSectors", 1000)] == [sid["Number"]]      # landed once
    [listed] = m.call("Venus.ListSectors", "", 0)
    assert listed["Finalized"] and listed["MessageInfo"]["CommitCid"]["/"] == out["reorged"][0]      # the same message


def test_a_dropped_precommit_is_resent_at_its_nonce_and_lands_once(manager, tmp_path):
    m = manager
    m.admin_call("Venus.DevnetAdvance", 5)
    alloc = m.call("Venus.AllocateSector", {})
    sid = alloc["ID"]
    ticket = m.call("Venus.AssignTicket", sid)
    r = seal_sector(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32,
                    tmp_path / "work")
    assert m.call("Venus.SubmitPreCommit", alloc, {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket},
                  False)["Res"] == 1
    at = landed_epoch(m, "Venus.PollPreCommitState", sid)
    common = ["--api", m.rpc.url[: -len("/rpc/v0")], "--home", str(m.home)]      # the operator's command
    bad = run_cli("util", "chain", "reorg", "901", *common, "--json")
    assert bad.returncode != 0 and "beyond finality" in bad.stdout + bad.stderr
    out = json.loads(run_cli("util", "chain", "reorg", str(head(m) - at + 1), "--drop", *common, "--json", check=True).stdout)
    assert len(out["dropped"]) == 1 and out["fork_point"] == at - 1
    m.until("PreCommit landed again", lambda: m.call("Venus.PollPreCommitState", sid)["State"] == LANDED)
    [listed] = m.call("Venus.ListSectors", "", 0)
    assert listed["MessageInfo"]["PreCommitCid"]["/"] == out["dropped"][0]      # same message, same nonce
