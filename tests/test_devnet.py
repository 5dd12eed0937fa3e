"""The devnet enforces the miner actor's sealing rules; every rejection is asserted on the chain
receipt's exit code (builtin-actors: 16 illegal argument, 17 not found, 18 forbidden)."""

import json
from dataclasses import replace

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.miner_actor import encode_aggregate
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector
from .chain_messages import precommit_sector, prove_commit, prove_commit_aggregate

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
MANUAL = ChainPolicy(block_time=0)
LIFETIME = 540 * 2880


@pytest.fixture
def chain(tmp_path):
    d = Devnet(tmp_path / "devnet.db", MANUAL)
    d.create_miner(MINER, P2K.id)
    d.advance(20)
    yield d
    d.close()


def seal(chain, tmp_path, number, rand_epoch):
    ticket = chain.seal_randomness(MINER, rand_epoch)
    return seal_sector(P2K, SectorID(MINER, number), ticket, bytes([9]) * 32, tmp_path / "sectors")


def prove(chain, r, number, seed_epoch, seed=None):
    cache = r.sector_dir / "cache"
    comm_c, comm_r_last = read_p_aux(cache)
    meta_ticket = bytes.fromhex(json.loads((r.sector_dir / "sector.json").read_text())["ticket"])
    seed = seed or chain.interactive_seed(MINER, seed_epoch)
    c1 = seal_commit_phase1(P2K, SectorID(MINER, number), meta_ticket, seed, r.comm_d, comm_c, comm_r_last, cache,
                            r.sector_dir / "sealed")
    return seal_commit_phase2(c1)


def precommit_params(r, number, rand_epoch, head, **over):
    return {"Sectors": [precommit_sector(P2K.id, number, r.comm_r, r.comm_d, rand_epoch, head + LIFETIME, **over)]}


def land(chain, method, params):
    mid = chain.push_message(MINER, method, params)
    assert chain.receipt(mid) is None            # pending until it lands
    chain.advance(chain.policy.message_delay)
    return chain.receipt(mid)


def test_seal_precommit_prove_happy_path(chain, tmp_path):
    r = seal(chain, tmp_path, 1, 15)
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()))
    assert rec.ok and rec.exit_code == 0, rec
    pc = chain.precommit(MINER, 1)
    assert pc.precommit_epoch == 21 and pc.sealed_cid == commr_to_cid(r.comm_r)
    chain.advance(chain.policy.precommit_challenge_delay)          # head 31 = seed epoch
    proof = prove(chain, r, 1, chain.policy.seed_epoch(21))
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: proof}))
    assert rec.ok, rec
    s = chain.sector(MINER, 1)
    assert s.activation == 32 and chain.precommit(MINER, 1) is None
    assert [x.number for x in chain.sectors(MINER)] == [1]


def test_wrong_commd_rejected(chain, tmp_path):
    """A PreCommit without deals declares its CommD as it likes (builtin-actors checks it against
    deals only); the proof, made for the sector's real CommD, is refused against the declared one."""
    r = seal(chain, tmp_path, 1, 15)
    rec = land(chain, "PreCommitSectorBatch2",
               precommit_params(r, 1, 15, chain.head(), UnsealedCid={"/": commd_to_cid(bytes(32))}))
    assert rec.ok, rec
    chain.advance(chain.policy.precommit_challenge_delay)
    proof = prove(chain, r, 1, chain.policy.seed_epoch(chain.precommit(MINER, 1).precommit_epoch))
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: proof}))
    assert rec.exit_code == 16 and "invalid seal proof" in rec.error, rec
    assert chain.sector(MINER, 1) is None


def test_stale_and_future_ticket_rejected(chain, tmp_path):
    r = seal(chain, tmp_path, 1, 15)
    chain.advance(3780)                                              # head 3800: epoch 15 is 3785 old
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()))
    assert rec.exit_code == 16 and "too old" in rec.error
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, chain.head() + 5, chain.head()))
    assert rec.exit_code == 16 and "must be before now" in rec.error


def test_reused_sector_number_rejected(chain, tmp_path):
    r = seal(chain, tmp_path, 1, 15)
    assert land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head())).ok
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()))
    assert rec.exit_code == 16 and "already allocated" in rec.error
    p = precommit_params(r, 2, 15, chain.head())
    p["Sectors"].append(dict(p["Sectors"][0]))
    rec = land(chain, "PreCommitSectorBatch2", p)
    assert rec.exit_code == 16 and "duplicate" in rec.error and chain.precommit(MINER, 2) is None   # all or nothing


def test_prove_commit_too_early_too_late_and_invalid(tmp_path):
    chain = Devnet(tmp_path / "d.db", replace(MANUAL, max_prove_commit_duration=40, expired_precommit_cleanup_delay=50))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    r = seal(chain, tmp_path, 1, 15)
    assert land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head())).ok    # precommit epoch 21
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: b"not a proof"}))               # executes at 22 ≤ 31
    assert rec.exit_code == 18 and "too early" in rec.error
    chain.advance(10)
    good = prove(chain, r, 1, 31)
    bad = prove(chain, r, 1, 31, seed=bytes([7]) * 32)                                       # proven for another seed
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: bad}))
    assert rec.exit_code == 16 and "invalid seal proof" in rec.error
    chain.advance(40)                                                                         # past 21 + 40
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: good}))
    assert rec.exit_code == 16 and "too late" in rec.error
    chain.advance(60)                                                                         # cleaned up
    assert chain.precommit(MINER, 1) is None
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: good}))
    assert rec.exit_code == 17


def test_prove_commit_aggregate(chain, tmp_path):
    rs = {n: seal(chain, tmp_path, n, 15) for n in range(1, 6)}
    params = {"Sectors": [precommit_params(r, n, 15, chain.head())["Sectors"][0] for n, r in rs.items()]}
    assert land(chain, "PreCommitSectorBatch2", params).ok
    chain.advance(10)
    proofs = {n: prove(chain, r, n, 31) for n, r in rs.items()}
    few = {n: proofs[n] for n in (1, 2, 3)}
    rec = land(chain, "ProveCommitSectors3", prove_commit_aggregate([1, 2, 3], encode_aggregate(few)))
    assert rec.exit_code == 16 and "must be 4..819" in rec.error
    four = {n: proofs[n] for n in (1, 2, 3, 4)}
    rec = land(chain, "ProveCommitSectors3", prove_commit_aggregate([1, 2, 3, 4], encode_aggregate(four)))
    assert rec.ok, rec
    assert [s.number for s in chain.sectors(MINER)] == [1, 2, 3, 4]


def test_bad_messages(chain):
    assert land(chain, "NoSuchMethod", {}).exit_code == 22
    assert land(chain, "PreCommitSectorBatch2", {"Sectors": "x"}).exit_code == 21
    assert land(chain, "PreCommitSectorBatch2", {"Sectors": []}).exit_code == 16
    bad = land(chain, "ProveCommitSectors3", {**prove_commit({1: b"x"}), "SectorProofs": ["***"]})
    assert bad.exit_code == 21 and "SectorProofs[0]" in bad.error
    # the retired methods are not handled (builtin-actors: USR_UNHANDLED_MESSAGE)
    assert land(chain, "PreCommitSectorBatch", {"Sectors": []}).exit_code == 22
    assert land(chain, "ProveCommitSector", {"SectorNumber": 1, "Proof": "AA=="}).exit_code == 22
    assert land(chain, "ProveCommitAggregate", {"SectorNumbers": [0, 1], "AggregateProof": "AA=="}).exit_code == 22
    assert land(chain, "ProveReplicaUpdates", {"Updates": []}).exit_code == 22
    with pytest.raises(ChainError, match="not found"):
        chain.push_message(999, "PreCommitSectorBatch2", {})
    with pytest.raises(ChainError, match="future epoch"):
        chain.seal_randomness(MINER, chain.head() + 1)
    with pytest.raises(ChainError, match="message nope not found"):
        chain.receipt("nope")


def test_restart_keeps_everything(tmp_path):
    path = tmp_path / "d.db"
    chain = Devnet(path, MANUAL)
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    ticket = chain.seal_randomness(MINER, 10)
    mid = chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": []})
    chain.close()
    again = Devnet(path, MANUAL)
    assert again.head() == 20 and again.seal_randomness(MINER, 10) == ticket
    assert again.receipt(mid) is None
    again.advance(1)
    assert again.receipt(mid).exit_code == 16
    assert again.miner_info(MINER).seal_proof == P2K.id


def test_clock_runs_on_block_time(tmp_path):
    t = [1000.0]
    chain = Devnet(tmp_path / "d.db", ChainPolicy(block_time=2.0), now=lambda: t[0])
    assert chain.head() == 0
    t[0] += 9.5
    assert chain.head() == 4
    chain.set_block_time(0)
    t[0] += 100
    assert chain.head() == 4
    assert chain.advance(3) == 7


def test_policy_from_config():
    p, warnings = ChainPolicy.from_config({"BlockTime": "4s", "PreCommitChallengeDelay": 150, "Bogus": 1})
    assert p.block_time == 4.0 and p.precommit_challenge_delay == 150
    assert warnings == ["[Chain]: unknown key 'Bogus' ignored"]
    with pytest.raises(ValueError, match=r"\[Chain\].AggregateMin: -1"):
        ChainPolicy.from_config({"AggregateMin": -1})


def test_expiration_bounds(chain, tmp_path):
    r = seal(chain, tmp_path, 1, 15)
    head = chain.head()
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, head, Expiration=head + 100))
    assert rec.exit_code == 16 and "less than" in rec.error
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, head, Expiration=head + 1279 * 2880))
    assert rec.exit_code == 16 and "more than" in rec.error
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, head, SealProof=6))
    assert rec.exit_code == 16 and "not the miner's type" in rec.error


def test_nonce_makes_pushes_idempotent(chain):
    a = chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": []}, nonce=0)
    assert chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": []}, nonce=0) == a
    with pytest.raises(ChainError, match="nonce 0 .* already used"):
        chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": [1]}, nonce=0)
    assert len(chain.messages(MINER)) == 1
