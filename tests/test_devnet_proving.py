"""WindowPoSt and WinningPoSt on the devnet: deadlines, partitions, faults, recoveries, penalties
and block elections, with real 2KiB sectors and real (vanilla) PoSt proofs on a manual clock."""

import base64
import json
import sqlite3
import time
from dataclasses import replace

import pytest

from appliance.chain import deadlines as dl
from appliance.chain.bitfield import json_from_numbers
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.post import PrivateSector, encode_post, generate_window_post, generate_winning_post
from appliance.proofs.seal import seal_sector

from .chain_messages import precommit_sector, prove_commit

P2K = seal_proof("StackedDrg2KiBV1_1")
WINDOW = P2K.window_post
MINER = 1000
MANUAL = ChainPolicy(block_time=0)
SEED = bytes(range(32))
POLICY = ChainPolicy()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_chain(tmp_path, offset=0, **policy):
    chain = Devnet(tmp_path / "devnet.db", replace(MANUAL, **policy), genesis_seed=SEED)
    chain.create_miner(MINER, P2K.id, proving_period_start=offset)
    chain.advance(20)
    return chain


def advance_to(chain, epoch):
    assert epoch >= chain.head()
    return chain.advance(epoch - chain.head())


def land(chain, method, params):
    mid = chain.push_message(MINER, method, params)
    chain.advance(chain.policy.message_delay)
    return chain.receipt(mid)


def onboard(chain, tmp_path, numbers):
    """Seal, pre-commit and prove-commit real 2KiB sectors; returns their seal reports."""
    rand_epoch = chain.head() - 5
    ticket = chain.seal_randomness(MINER, rand_epoch)
    rs = {n: seal_sector(P2K, SectorID(MINER, n), ticket, bytes([9]) * 32, tmp_path / "sectors") for n in numbers}
    sectors = [precommit_sector(P2K.id, n, r.comm_r, r.comm_d, rand_epoch, chain.head() + 540 * 2880) for n, r in rs.items()]
    assert land(chain, "PreCommitSectorBatch2", {"Sectors": sectors}).ok
    precommit_epoch = chain.precommit(MINER, numbers[0]).precommit_epoch
    chain.advance(chain.policy.precommit_challenge_delay)
    seed = chain.interactive_seed(MINER, chain.policy.seed_epoch(precommit_epoch))
    mids = []
    for n, r in rs.items():
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        c1 = seal_commit_phase1(P2K, SectorID(MINER, n), ticket, seed, r.comm_d, comm_c, comm_r_last,
                                r.sector_dir / "cache", r.sector_dir / "sealed")
        mids.append(chain.push_message(MINER, "ProveCommitSectors3", prove_commit({n: seal_commit_phase2(c1)})))
    chain.advance(chain.policy.message_delay)
    assert all(chain.receipt(m).ok for m in mids)
    return rs


def window_proof(chain, rs, numbers, challenge):
    rand = chain.window_post_randomness(MINER, challenge)
    private = [PrivateSector(n, rs[n].comm_r, rs[n].sector_dir / "cache", rs[n].sector_dir / "sealed") for n in numbers]
    result = generate_window_post(WINDOW, P2K, private, rand)
    assert not result.faults
    return encode_post(result)


def post_params(chain, deadline, partitions, proof, commit_epoch=None, **over):
    ce = chain.head() if commit_epoch is None else commit_epoch
    params = {"Deadline": deadline, "Partitions": [{"Index": p, "Skipped": json_from_numbers(s)} for p, s in partitions.items()],
              "Proofs": [{"PoStProof": WINDOW.id, "ProofBytes": b64(proof)}],
              "ChainCommitEpoch": ce, "ChainCommitRand": b64(chain.chain_commit_randomness(ce))}
    params.update(over)
    return params


def prove_deadline(chain, rs, index, partitions=None, skipped=()):
    """Submit a valid WindowPoSt for deadline `index` of the current proving period, landing at
    its first epoch (or now if it is already open)."""
    info = chain.proving_deadline(MINER)
    target = dl.next_not_elapsed(POLICY, dl.new_deadline_info(POLICY, info.period_start, index, info.current_epoch))
    if chain.head() < target.open - 1:
        advance_to(chain, target.open - 1)
    parts = chain.deadline_partitions(MINER, index)
    chosen = [p for p in parts if partitions is None or p.index in partitions]
    numbers = [n for p in chosen for n in p.sectors if n not in skipped and (n not in p.faulty or n in p.recovering)]
    proof = window_proof(chain, rs, numbers, target.challenge)
    return land(chain, "SubmitWindowedPoSt",
                post_params(chain, index, {p.index: [n for n in skipped if n in p.sectors] for p in chosen}, proof))


def snapshot(chain):
    return ([chain.deadline_partitions(MINER, d) for d in range(48)], chain.miner_power(MINER), chain.penalties(MINER))


# ------------------------------------------------------------------------ deadline math

def test_deadline_math_across_periods_and_negative_starts():
    p = POLICY
    assert dl.current_period_start(p, 100, 50) == -2780
    d = dl.current_deadline(p, 100, 50)
    assert (d.period_start, d.index, d.open, d.close, d.challenge, d.fault_cutoff) == (-2780, 47, 40, 100, 20, -30)
    assert d.is_open and not d.elapsed and d.fault_cutoff_passed
    d = dl.current_deadline(p, 100, 100)
    assert (d.period_start, d.index, d.open, d.close, d.challenge, d.fault_cutoff) == (100, 0, 100, 160, 80, 30)
    assert dl.current_deadline(p, 100, 2979).index == 47 and dl.current_deadline(p, 100, 2979).close == 2980
    assert (dl.current_deadline(p, 100, 2980).period_start, dl.current_deadline(p, 100, 2980).index) == (2980, 0)
    assert dl.current_deadline(p, 0, 0).period_start == 0 and dl.current_deadline(p, 0, -1).period_start == -2880
    # declarations: the current deadline and the next are past their cutoff; an elapsed one is next period's
    assert dl.declaration_deadline(p, 100, 0, 130).fault_cutoff_passed
    assert dl.declaration_deadline(p, 100, 1, 130).fault_cutoff_passed                  # opens 160, cutoff 90
    assert not dl.declaration_deadline(p, 100, 2, 130).fault_cutoff_passed              # opens 220, cutoff 150
    nxt = dl.declaration_deadline(p, 100, 0, 170)
    assert (nxt.period_start, nxt.open, nxt.fault_cutoff, nxt.fault_cutoff_passed) == (2980, 2980, 2910, False)
    assert [i for i in range(4) if dl.is_mutable(p, 100, i, 130)] == [2, 3]
    assert dl.is_mutable(p, 100, 2, 159) and not dl.is_mutable(p, 100, 2, 160)
    assert dl.next_close_after(p, 100, 0, 159) == 160 and dl.next_close_after(p, 100, 0, 160) == 3040
    assert dl.next_close_after(p, 100, 47, -5000) == -2780


def test_proving_deadline_on_the_devnet(tmp_path):
    chain = new_chain(tmp_path, offset=100)                       # head 20
    d = chain.proving_deadline(MINER)
    assert (d.current_epoch, d.period_start, d.index, d.open, d.close) == (20, -2780, 46, -20, 40)
    advance_to(chain, 100)
    d = chain.proving_deadline(MINER)
    assert (d.period_start, d.index, d.challenge, d.fault_cutoff) == (100, 0, 80, 30)
    advance_to(chain, 100 + 2880 + 61)
    d = chain.proving_deadline(MINER)
    assert (d.period_start, d.index, d.open) == (2980, 1, 3040)
    with pytest.raises(ChainError, match="not found"):
        chain.proving_deadline(999)
    with pytest.raises(ChainError, match="deadline index 48"):
        chain.deadline_partitions(MINER, 48)


# --------------------------------------------------------------------------- assignment

def test_assignment_fills_partitions_and_skips_current_and_next(tmp_path):
    chain = new_chain(tmp_path)                                   # offset 0: deadline d opens at 60 d
    onboard(chain, tmp_path, [1, 2, 3, 4, 5])                     # activated at 32: current 0, next 1
    assert chain.sector(MINER, 1).activation == 32
    layout = {d: [(p.index, p.sectors) for p in chain.deadline_partitions(MINER, d)] for d in range(48)}
    assert {d: v for d, v in layout.items() if v} == {2: [(0, (1, 2))], 3: [(0, (3, 4))], 4: [(0, (5,))]}
    power = chain.miner_power(MINER)
    assert (power.raw_bytes, power.qa_bytes, power.active_sectors, power.faulty_sectors) == (5 * 2048, 5 * 2048, 5, 0)
    advance_to(chain, 190)                                        # current deadline 3, next 4
    onboard(chain, tmp_path, [6, 7])
    # deadline 4 has a partial partition but is the next one; 0 (next period) has the fewest sectors
    assert [(p.index, p.sectors) for p in chain.deadline_partitions(MINER, 0)] == [(0, (6, 7))]
    assert [p.sectors for p in chain.deadline_partitions(MINER, 4)] == [(5,)]


def test_assignment_opens_a_new_partition_when_every_deadline_is_full(tmp_path):
    chain = new_chain(tmp_path, offset=0, wpost_period_deadlines=4, wpost_proving_period=240)
    onboard(chain, tmp_path, [1, 2, 3, 4, 5, 6, 7])               # at 32 only deadlines 2 and 3 are mutable
    assert [(p.index, p.sectors) for p in chain.deadline_partitions(MINER, 2)] == [(0, (1, 2)), (1, (5, 6))]
    assert [(p.index, p.sectors) for p in chain.deadline_partitions(MINER, 3)] == [(0, (3, 4)), (1, (7,))]


# ------------------------------------------------------------------------ SubmitWindowedPoSt

def test_valid_window_post(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2])                         # deadline 2: opens 120, challenge 100, closes 180
    rec = prove_deadline(chain, rs, 2)
    assert rec.ok and rec.epoch == 120, rec
    assert [p.proven for p in chain.deadline_partitions(MINER, 2)] == [True]
    advance_to(chain, 180)
    assert chain.deadline_records(MINER) == [
        {"period_start": 0, "index": 2, "close": 180, "partitions": 1, "partitions_proven": 1, "sectors": 2,
         "sectors_proven": 2, "sectors_faulty_new": 0, "penalty": 0.0}]
    assert chain.penalties(MINER) == [] and chain.miner_power(MINER).active_sectors == 2
    assert [p.proven for p in chain.deadline_partitions(MINER, 2)] == [True]      # this period's proof
    advance_to(chain, 2880)
    assert [p.proven for p in chain.deadline_partitions(MINER, 2)] == [False]     # a new period


def test_bad_window_posts_fail_and_change_nothing(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2, 3, 4])                   # deadline 2: 1, 2; deadline 3: 3, 4
    advance_to(chain, 119)
    good = window_proof(chain, rs, [1, 2], 100)
    before = snapshot(chain)
    tampered = bytearray(good)
    tampered[200] ^= 1
    cases = {
        "early": (post_params(chain, 3, {0: []}, window_proof(chain, rs, [3, 4], 100)), "too early"),
        "randomness": (post_params(chain, 2, {0: []}, window_proof(chain, rs, [1, 2], 101)), "invalid post"),
        "commit rand": (post_params(chain, 2, {0: []}, good, ChainCommitRand=b64(chain.chain_commit_randomness(118))),
                        "randomness mismatched"),
        "commit epoch": (post_params(chain, 2, {0: []}, good, commit_epoch=99), "challenge epoch 100"),
        "tampered": (post_params(chain, 2, {0: []}, bytes(tampered)), "invalid post"),
        "other sectors": (post_params(chain, 2, {0: []}, window_proof(chain, rs, [3, 4], 100)), "invalid post"),
        "no partition": (post_params(chain, 2, {1: []}, good), "no such partition"),
        "proof type": (post_params(chain, 2, {0: []}, good, Proofs=[{"PoStProof": 11, "ProofBytes": b64(good)}]),
                       "expected proof of type"),
        "skipped outside": (post_params(chain, 2, {0: [3]}, good), "outside partition"),
    }
    mids = {name: chain.push_message(MINER, "SubmitWindowedPoSt", params) for name, (params, _) in cases.items()}
    chain.advance(1)
    for name, (_, error) in cases.items():
        rec = chain.receipt(mids[name])
        assert rec.exit_code in (16, 17) and error in rec.error, (name, rec)
    assert chain.receipt(mids["no partition"]).exit_code == 17
    assert snapshot(chain) == before
    assert land(chain, "SubmitWindowedPoSt", post_params(chain, 2, {0: []}, good)).ok        # still provable
    again = land(chain, "SubmitWindowedPoSt", post_params(chain, 2, {0: []}, good))
    assert again.exit_code == 16 and "already proven" in again.error
    advance_to(chain, 179)                                        # lands at 180: the window has closed
    late = land(chain, "SubmitWindowedPoSt", post_params(chain, 3, {0: []}, window_proof(chain, rs, [3, 4], 160)))
    assert late.ok                                                # deadline 3 is open (180..239)
    late = land(chain, "SubmitWindowedPoSt", post_params(chain, 2, {0: []}, good))
    assert late.exit_code == 16 and "too late" in late.error
    assert chain.penalties(MINER) == []


def test_missed_deadline_makes_sectors_faulty(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, [1, 2])
    advance_to(chain, 179)
    assert chain.miner_power(MINER).raw_bytes == 4096
    advance_to(chain, 180)
    parts = chain.deadline_partitions(MINER, 2)
    assert parts[0].faulty == (1, 2) and parts[0].active == ()
    assert chain.miner_power(MINER).raw_bytes == 0
    assert chain.penalties(MINER) == [{"epoch": 180, "reason": "missed-post", "sectors": [1, 2], "amount": 7.0,
                                       "deadline": 2, "period_start": 0}]
    rec = chain.deadline_records(MINER)[0]
    assert (rec["partitions_proven"], rec["sectors_faulty_new"], rec["penalty"]) == (0, 2, 7.0)
    advance_to(chain, 2880 + 180)                                 # still faulty: the fault fee, every period
    assert chain.penalties(MINER)[-1] == {"epoch": 3060, "reason": "fault-fee", "sectors": [1, 2], "amount": 2.0,
                                          "deadline": 2, "period_start": 2880}


def test_declared_fault_before_cutoff_and_refused_after(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2, 3, 4])                   # head 32; deadline 2 cutoff 50, deadline 3 cutoff 110
    rec = land(chain, "DeclareFaults", {"Faults": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([1])}]})
    assert rec.ok, rec
    assert chain.miner_power(MINER).raw_bytes == 3 * 2048        # power drops at once
    assert chain.deadline_partitions(MINER, 2)[0].faulty == (1,)
    rec = land(chain, "DeclareFaults", {"Faults": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([3])}]})
    assert rec.exit_code == 16 and "not all assigned" in rec.error
    advance_to(chain, 50)
    rec = land(chain, "DeclareFaults", {"Faults": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([2])}]})
    assert rec.exit_code == 16 and "late fault" in rec.error and chain.deadline_partitions(MINER, 2)[0].faulty == (1,)
    rec = land(chain, "DeclareFaultsRecovered", {"Recoveries": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([1])}]})
    assert rec.exit_code == 16 and "late" in rec.error
    assert land(chain, "DeclareFaults", {"Faults": [{"Deadline": 3, "Partition": 0, "Sectors": json_from_numbers([4])}]}).ok
    assert prove_deadline(chain, rs, 2).ok                        # proves sector 2 only
    advance_to(chain, 180)
    assert chain.penalties(MINER) == [{"epoch": 180, "reason": "fault-fee", "sectors": [1], "amount": 1.0,
                                       "deadline": 2, "period_start": 0}]
    rec = chain.deadline_records(MINER)[0]
    assert (rec["sectors_proven"], rec["sectors_faulty_new"], rec["penalty"]) == (1, 0, 1.0)


def test_recovery_returns_power_after_the_next_proof_only(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2])
    assert land(chain, "DeclareFaults", {"Faults": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([1])}]}).ok
    assert prove_deadline(chain, rs, 2).ok
    advance_to(chain, 200)
    rec = land(chain, "DeclareFaultsRecovered", {"Recoveries": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([1, 2])}]})
    assert rec.ok, rec                                            # sector 2 is not faulty: ignored
    part = chain.deadline_partitions(MINER, 2)[0]
    assert (part.faulty, part.recovering) == ((1,), (1,))
    advance_to(chain, 2880 + 119)
    assert chain.miner_power(MINER).active_sectors == 1           # no power before the proof
    assert prove_deadline(chain, rs, 2).ok                        # includes the recovering sector 1
    assert chain.miner_power(MINER).active_sectors == 2
    assert chain.deadline_partitions(MINER, 2)[0].faulty == ()
    advance_to(chain, 2880 + 180)
    assert [p["amount"] for p in chain.penalties(MINER)] == [1.0]  # only the first period's fee


def test_failed_recovery_stays_faulty(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, [1, 2])
    advance_to(chain, 180)                                        # missed: both faulty
    assert land(chain, "DeclareFaultsRecovered", {"Recoveries": [{"Deadline": 2, "Partition": 0, "Sectors": json_from_numbers([1])}]}).ok
    advance_to(chain, 2880 + 180)                                 # no proof again
    part = chain.deadline_partitions(MINER, 2)[0]
    assert (part.faulty, part.recovering) == ((1, 2), ())
    assert [(p["reason"], p["amount"]) for p in chain.penalties(MINER)] == [("missed-post", 7.0), ("fault-fee", 2.0)]


def test_skipped_sector_becomes_faulty(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2])
    rec = prove_deadline(chain, rs, 2, skipped=[2])
    assert rec.ok, rec
    assert chain.deadline_partitions(MINER, 2)[0].faulty == (2,)
    assert chain.miner_power(MINER).active_sectors == 1
    assert chain.penalties(MINER) == [{"epoch": 120, "reason": "skipped", "sectors": [2], "amount": 3.5,
                                       "deadline": 2, "period_start": 0}]
    advance_to(chain, 180)
    rec = chain.deadline_records(MINER)[0]
    assert (rec["sectors_proven"], rec["sectors_faulty_new"], rec["penalty"]) == (1, 1, 3.5)
    skip_all = prove_deadline(chain, rs, 2, skipped=[1, 2])       # next period: nothing left to prove
    assert skip_all.exit_code == 16 and "no active sectors" in skip_all.error


def test_two_periods_proven_and_long_jumps_stay_fast(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2, 3])                      # deadline 2: 1, 2; deadline 3: 3
    for period in (0, 1):
        assert prove_deadline(chain, rs, 2).ok and prove_deadline(chain, rs, 3).ok
        t = time.monotonic()
        advance_to(chain, period * 2880 + 2880 + 100)
        assert time.monotonic() - t < 2
    records = chain.deadline_records(MINER)
    assert [(r["period_start"], r["index"], r["partitions_proven"], r["penalty"]) for r in records] == [
        (0, 2, 1, 0.0), (0, 3, 1, 0.0), (2880, 2, 1, 0.0), (2880, 3, 1, 0.0)]
    t = time.monotonic()
    chain.advance(20 * 2880)                                      # 20 periods unproven in one jump
    assert time.monotonic() - t < 5
    records = chain.deadline_records(MINER)
    assert len(records) == 4 + 40 and all(r["partitions_proven"] == 0 for r in records[4:])
    assert sum(p["amount"] for p in chain.penalties(MINER)) == 3 * 3.5 + 19 * 3 * 1.0
    chain.close()
    again = Devnet(tmp_path / "devnet.db", MANUAL)                # restart loses nothing
    assert again.deadline_records(MINER) == records and again.miner_power(MINER).faulty_sectors == 3


def test_messages_and_crons_interleave_in_one_jump(tmp_path):
    chain = new_chain(tmp_path, message_delay=2)
    rs = onboard(chain, tmp_path, [1, 2])                         # deadline 2 closes at 180
    advance_to(chain, 177)
    proof = window_proof(chain, rs, [1, 2], 100)
    in_time = chain.push_message(MINER, "SubmitWindowedPoSt", post_params(chain, 2, {0: []}, proof))   # lands 179
    chain.advance(1)
    late = chain.push_message(MINER, "SubmitWindowedPoSt", post_params(chain, 2, {0: []}, proof))      # lands 180
    assert chain.receipt(in_time) is None
    chain.advance(3000 - 178)                                     # one catch-up: 179, the cron of 180, then 180
    assert chain.receipt(in_time).ok and chain.receipt(in_time).epoch == 179
    rec = chain.receipt(late)
    assert rec.exit_code == 16 and "too late" in rec.error and rec.epoch == 180
    assert chain.deadline_records(MINER)[0]["partitions_proven"] == 1 and chain.penalties(MINER) == []


# ------------------------------------------------------------------------------ WinningPoSt

def test_winning_election_frequency_matches_power_share(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2])                         # 4 KiB against 16 KiB: p = 0.2
    assert prove_deadline(chain, rs, 2).ok                        # keeps the power until the next period
    first, n = 33, 2000
    advance_to(chain, first + n)
    elected = [e for e in range(first, first + n) if chain.winning_election(MINER, e)]
    p = 4096 / (4096 + chain.policy.network_power)
    assert abs(len(elected) - n * p) < 4 * (n * p * (1 - p)) ** 0.5, len(elected)
    missed = [b["epoch"] for b in chain.blocks(MINER) if not b["won"]]
    assert missed == elected                                      # nobody mined: every election was missed
    assert not chain.winning_election(MINER, 10)                  # no power yet
    with pytest.raises(ChainError, match="future"):
        chain.winning_election(MINER, chain.head() + 1)


def test_winning_post_accepted_in_its_epoch_only(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, [1, 2, 3])
    while not chain.winning_election(MINER, chain.head()):
        chain.advance(1)
    epoch = chain.head()
    sectors = chain.winning_post_sectors(MINER, epoch)
    assert [s.number for s in sectors] == [1, 2, 3]
    (target,) = chain.winning_post_challenge(MINER, epoch)
    rand = chain.winning_post_randomness(MINER, epoch)
    assert rand[31] & 0xC0 == 0
    other = next(n for n in rs if n != target.number)

    def proof_for(number, randomness=rand):
        r = rs[number]
        private = PrivateSector(number, r.comm_r, r.sector_dir / "cache", r.sector_dir / "sealed")
        return encode_post(generate_winning_post(P2K.winning_post, P2K, private, randomness))

    with pytest.raises(ChainError, match="invalid WinningPoSt"):
        chain.submit_winning_post(MINER, epoch, proof_for(other))
    good = proof_for(target.number)
    chain.submit_winning_post(MINER, epoch, good)
    chain.submit_winning_post(MINER, epoch, good)                 # the same block again: no error
    chain.advance(1)
    with pytest.raises(ChainError, match="within its epoch"):
        chain.submit_winning_post(MINER, epoch, good)
    while chain.winning_election(MINER, chain.head()):
        chain.advance(1)
    with pytest.raises(ChainError, match="not elected"):
        chain.submit_winning_post(MINER, chain.head(), good)
    while not chain.winning_election(MINER, chain.head()):
        chain.advance(1)
    missed = chain.head()
    chain.advance(1)
    blocks = chain.blocks(MINER)
    assert {"epoch": epoch, "won": True} in blocks and {"epoch": missed, "won": False} in blocks


# ---------------------------------------------------------------------- config, migration

def test_network_power_config():
    p, warnings = ChainPolicy.from_config({"NetworkPower": "32KiB", "PostedPartitionsMax": 2})
    assert (p.network_power, p.posted_partitions_max, warnings) == (32 << 10, 2, [])
    assert ChainPolicy().network_power == 16 << 10
    with pytest.raises(ValueError, match="WpostProvingPeriod"):
        ChainPolicy.from_config({"WPoStProvingPeriod": 1000})


def test_old_database_sectors_get_deadlines(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, [1, 2])
    chain.close()
    db = sqlite3.connect(tmp_path / "devnet.db")
    db.execute("DROP TABLE sector_deadlines")
    db.execute("DROP TABLE power_history")
    db.execute("DELETE FROM meta WHERE key IN ('cron_epoch', 'winning_checked')")
    db.commit()
    db.execute("PRAGMA user_version = 0")     # a file from before schema versions
    db.close()
    again = Devnet(tmp_path / "devnet.db", MANUAL)
    assert (tmp_path / "devnet.db.v0.bak").exists()        # the copy kept before migrating
    assert [p.sectors for p in again.deadline_partitions(MINER, 2)] == [(1, 2)]
    assert again.miner_power(MINER).active_sectors == 2
    with pytest.raises(ChainError, match="another genesis seed"):
        Devnet(tmp_path / "devnet.db", MANUAL, genesis_seed=bytes(32))
    assert json.loads(json.dumps(again.blocks(MINER))) == again.blocks(MINER)


def test_a_read_at_an_executed_head_executes_nothing_again(tmp_path, monkeypatch):
    """Every chain read asks for the head. Once a head is executed, asking again neither lists the
    deadlines with partitions nor runs anything (at a million sectors that list read every sector
    at each call); the clock moving executes again. The list itself (one index probe per deadline)
    names exactly the deadlines that have sectors."""
    from appliance.chain import proving
    from appliance.chain.types import SectorOnChain
    chain = new_chain(tmp_path, offset=7)
    with chain._tx():
        chain._catch_up()
        for n in range(1, 6):
            chain.put_sector(SectorOnChain(MINER, n, P2K.id, f"bagboea4b5abc{n:040d}", f"baga6ea4seaq{n:040d}", 0,
                                           chain.head() + 540 * 2880))
        chain.assign_deadlines(MINER, list(range(1, 6)))
    with_sectors = sorted({r[0] for r in chain.db.execute("SELECT deadline FROM sector_deadlines")})
    assert with_sectors and proving.proving_deadlines(chain) == [(MINER, d, 7) for d in with_sectors]
    listed = []
    real = proving.proving_deadlines
    monkeypatch.setattr(proving, "proving_deadlines", lambda state: listed.append(state.epoch) or real(state))
    head = chain.head()
    listed.clear()
    assert chain.head() == head and chain.head() == head and listed == []
    assert chain.advance(1) == head + 1 and listed                   # the clock moved: executed
