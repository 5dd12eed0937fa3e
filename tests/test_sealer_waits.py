"""Manager waits that end: an allocation no worker ever reported is released with a reason after
`UnreportedReleaseAfter` (its number never handed out again), and a sector whose PreCommit
expired is aborted with "PreCommit expired at epoch E" when its worker asks for the seed."""

import base64

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.sealer import LANDED, Sealer
from appliance.manager.state import ManagerState
from appliance.proofs.seal import seal_sector

P2K = seal_proof("StackedDrg2KiBV1_1")
pytestmark = pytest.mark.timeout(120)


def _parts(tmp_path, policy=ChainPolicy(block_time=0)):
    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1, "UnreportedReleaseAfter": "2m"},
                        "Miners": [{"Actor": 1000, "Commitment": {
                            "Confidence": 1, "Pre": {"Batch": {"Threshold": 1}}}}]})
    chain = Devnet(tmp_path / "d.db", policy)
    chain.create_miner(1000, P2K.id)
    chain.advance(5)
    clock = [1000.0]
    state = ManagerState(tmp_path / "m.db", now=lambda: clock[0])
    return chain, state, Sealer(cfg, state, chain, now=lambda: clock[0]), Committer(cfg, state, chain, now=lambda: clock[0]), clock


def _report(sealer, sid, prev, nxt, event):
    return sealer.report_state(sid, {"Worker": {"Instance": "w1", "Location": "/t0"},
                                     "StateChange": {"Prev": prev, "Next": nxt, "Event": event}, "Failure": None})


def test_an_allocation_no_worker_reported_is_released_with_a_reason(tmp_path):
    chain, state, sealer, committer, clock = _parts(tmp_path)
    orphan = sealer.allocate_sector({})["ID"]                 # the worker died before it journaled this one
    kept = sealer.allocate_sector({})["ID"]
    _report(sealer, kept, "Empty", "Allocated", "Allocate")     # this one's worker journaled and reported it
    clock[0] += 119
    assert sealer.release_silent() == []
    clock[0] += 2
    (miner, number, reason), = sealer.release_silent()
    assert (miner, number) == (1000, orphan["Number"])
    assert "never reported by a worker within 120s" in reason
    rec = state.sector(1000, orphan["Number"])
    assert rec["finalized"] and rec["state"] == "Aborted" and rec["abort_reason"] == reason
    assert not state.sector(1000, kept["Number"]).get("finalized")
    assert sealer.allocate_sector({})["ID"]["Number"] == kept["Number"] + 1      # never reused
    chain.close()
    state.close()


def test_an_expired_precommit_aborts_the_sector_with_its_epoch(tmp_path):
    policy = ChainPolicy(block_time=0, max_prove_commit_duration=40, expired_precommit_cleanup_delay=5)
    chain, state, sealer, committer, clock = _parts(tmp_path, policy)
    alloc = sealer.allocate_sector({})
    sid = alloc["ID"]
    ticket = sealer.assign_ticket(sid)
    r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
    assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1
    committer.tick()
    chain.advance(3)
    assert sealer.poll_pre_commit_state(sid)["State"] == LANDED
    landed_at = chain.precommit(1000, sid["Number"]).precommit_epoch
    chain.advance(50)                       # past the ProveCommit deadline and the chain's clean-up
    assert chain.precommit(1000, sid["Number"]) is None
    res = sealer.wait_seed(sid, P2K.id)
    assert res == {"ShouldWait": False, "Delay": 0, "Seed": None}
    rec = state.sector(1000, sid["Number"])
    assert rec["finalized"] and rec["abort_reason"] == f"PreCommit expired at epoch {landed_at + 40}"
    answer = _report(sealer, sid, "PersistanceSubmitted", "PersistanceSubmitted", "Failure")
    assert answer["Finalized"] and answer["AbortReason"] == rec["abort_reason"]      # how the worker learns it
    chain.close()
    state.close()


def test_a_precommit_past_its_deadline_but_not_cleaned_up_is_expired_too(tmp_path):
    policy = ChainPolicy(block_time=0, max_prove_commit_duration=40, expired_precommit_cleanup_delay=1000)
    chain, state, sealer, committer, clock = _parts(tmp_path, policy)
    alloc = sealer.allocate_sector({})
    sid = alloc["ID"]
    ticket = sealer.assign_ticket(sid)
    r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
    sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)
    committer.tick()
    chain.advance(3)
    pc = chain.precommit(1000, sid["Number"])
    chain.advance(45)
    assert chain.precommit(1000, sid["Number"]) is not None
    assert sealer.wait_seed(sid, P2K.id)["Seed"] is None
    assert state.sector(1000, sid["Number"])["abort_reason"] == f"PreCommit expired at epoch {pc.precommit_epoch + 40}"
    chain.close()
    state.close()
