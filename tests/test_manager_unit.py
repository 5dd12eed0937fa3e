"""Manager pieces in process: configuration, number allocation, chain answers mapped to
Damocles' codes, release of silent sectors."""

import threading

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.config import ConfigError
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.sealer import PERM_FAILED, SHOULD_ABORT, Sealer
from appliance.manager.state import ManagerState
from appliance.proofs.seal import seal_sector

P2K = seal_proof("StackedDrg2KiBV1_1")


def test_config_reports_unknown_keys_and_refuses_bad_values():
    cfg = parse_config({"RPC": {"Listen": "0.0.0.0:1789", "Bogus": 1},
                        "Miners": [{"Actor": 1000, "Sector": {"MinNumber": 10, "Typo": 1},
                                    "Commitment": {"Pre": {"Batch": {"Threshold": 5, "MaxWait": "30m"}}}}],
                        "Chain": {"BlockTime": "4s", "Nope": 1}})
    assert cfg.listen == "0.0.0.0:1789" and cfg.chain.block_time == 4.0
    m = cfg.miner(1000)
    assert (m.min_number, m.pre_batch.threshold, m.pre_batch.max_wait, m.prove_batch.threshold) == (10, 5, 1800.0, 4)
    assert sorted(cfg.warnings) == ["[Chain]: unknown key 'Nope' ignored", "[RPC]: unknown key 'Bogus' ignored",
                                    "[[Miners]][0].Sector: unknown key 'Typo' ignored"]
    bad = [({"Miners": [{"Sector": {"MinNumber": 1}}]}, r"\[\[Miners\]\]\[0\].Actor is required"),
           ({"Miners": [{"Actor": -5}]}, "Actor: -5 is not a non-negative integer"),
           ({"Miners": [{"Actor": 1, "SealProof": "Nope"}]}, "SealProof: unknown seal proof type"),
           ({"Miners": [{"Actor": 1, "Sector": {"MinNumber": 5, "MaxNumber": 2}}]}, "MaxNumber 2 is below MinNumber 5"),
           ({"Miners": [{"Actor": 1, "Commitment": {"Pre": {"Batch": {"MaxWait": "soon"}}}}]}, "MaxWait: invalid duration"),
           ({"Miners": [{"Actor": 1}, {"Actor": 1}]}, "configured twice"),
           ({"Common": {"PersistStores": [{"Name": "a", "Path": "/x"}, {"Name": "a", "Path": "/y"}]}}, "duplicate store name"),
           ({"RPC": {"AllowNetworks": "10.0.0.0/8"}}, "AllowNetworks: expected a list")]
    for raw, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            parse_config(raw)


def test_allocation_is_unique_under_concurrency_and_restart(tmp_path):
    state = ManagerState(tmp_path / "m.db")
    got, lock = [], threading.Lock()

    def worker():
        for _ in range(25):
            n = state.allocate(1000, 5, 1, None)
            with lock:
                got.append(n)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 201))
    state.close()
    again = ManagerState(tmp_path / "m.db")
    assert again.allocate(1000, 5, 1, None) == 201
    assert again.allocate(1000, 5, 1, 201) is None          # MaxNumber reached


@pytest.fixture
def parts(tmp_path):
    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1, "ReleaseAfter": "60s"},
                        "Miners": [{"Actor": 1000, "Commitment": {
                            "Confidence": 1, "Pre": {"Batch": {"Threshold": 1}}}}]})
    chain = Devnet(tmp_path / "d.db", ChainPolicy(block_time=0))
    chain.create_miner(1000, P2K.id)
    chain.advance(5)
    clock = [1000.0]
    state = ManagerState(tmp_path / "m.db", now=lambda: clock[0])
    sealer = Sealer(cfg, state, chain, now=lambda: clock[0])
    return cfg, chain, state, sealer, Committer(cfg, state, chain, now=lambda: clock[0]), clock


def _precommit(sealer, tmp_path, alloc):
    import base64
    sid = alloc["ID"]
    ticket = sealer.assign_ticket(sid)
    r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
    return sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)


def test_chain_rejections_reach_the_worker_as_damocles_codes(parts, tmp_path):
    cfg, chain, state, sealer, committer, clock = parts
    a1 = sealer.allocate_sector({})
    # the number is already allocated on chain (say, by another manager): ShouldAbort
    chain.push_message(1000, "PreCommitSectorBatch2", {"Sectors": [{
        "SealProof": 5, "SectorNumber": a1["ID"]["Number"], "SealedCID": {"/": "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"},
        "SealRandEpoch": 1, "DealIDs": [], "Expiration": 5 + 540 * 2880, "UnsealedCid": None}]})
    chain.advance(1)
    assert _precommit(sealer, tmp_path, a1)["Res"] == 1
    committer.tick()
    chain.advance(1)
    assert sealer.poll_pre_commit_state(a1["ID"])["State"] == SHOULD_ABORT
    # any other chain failure (here a lifetime shorter than the chain's minimum): PermFailed
    short = parse_config({"Sealing": {"SealRandomnessLookback": 1},
                          "Miners": [{"Actor": 1000, "Sector": {"LifetimeDays": 10}, "Commitment": {"Pre": {"Batch": {"Threshold": 1}}}}]})
    committer.config = sealer.config = short
    a2 = sealer.allocate_sector({})
    assert _precommit(sealer, tmp_path, a2)["Res"] == 1
    committer.tick()
    chain.advance(1)
    res = sealer.poll_pre_commit_state(a2["ID"])
    assert res["State"] == PERM_FAILED and "exit code 16" in res["Desc"]


def test_silent_sectors_are_released(parts):
    cfg, chain, state, sealer, committer, clock = parts
    sid = sealer.allocate_sector({})["ID"]
    state.reserve(1000, sid["Number"], "persist-1", 4096)
    clock[0] += 30
    assert sealer.release_silent() == []
    clock[0] += 31
    assert sealer.release_silent() == [(1000, sid["Number"], "released: no report for 60s")]
    rec = state.sector(1000, sid["Number"])
    assert rec["finalized"] and rec["abort_reason"].startswith("released: no report")
    assert state.reservation(1000, sid["Number"]) is None
    assert sealer.release_silent() == []


def test_duplicate_submit_and_files_missed(parts, tmp_path):
    from appliance.manager.sealer import DUPLICATE_SUBMIT, FILES_MISSED, LANDED
    cfg, chain, state, sealer, committer, clock = parts
    alloc = sealer.allocate_sector({})
    sid = alloc["ID"]
    assert _precommit(sealer, tmp_path, alloc)["Res"] == 1
    committer.tick()
    rec = state.sector(1000, sid["Number"])
    again = sealer.submit_pre_commit(alloc, {"CommR": bytes.fromhex(rec["pre"]["CommR"]), "CommD": bytes.fromhex(rec["pre"]["CommD"]),
                                             "Ticket": rec["ticket"]}, False)
    assert again["Res"] == DUPLICATE_SUBMIT
    chain.advance(2)
    assert sealer.poll_pre_commit_state(sid)["State"] == LANDED
    chain.advance(20)
    assert sealer.wait_seed(sid, 5)["Seed"] is not None
    assert sealer.submit_proof(sid, {"Proof": b"whatever"}, False)["Res"] == FILES_MISSED
