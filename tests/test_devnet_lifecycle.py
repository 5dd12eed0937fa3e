"""A sector's end on the devnet (chain/lifecycle_actor.py): on-time expiry at its deadline's cron,
ExtendSectorExpiration2 and TerminateSectors with builtin-actors' rules, reorgs across them, the
devnet.db migration, and the Lotus reads (StateSectorExpiration, StateSectorPartition,
StateMinerActiveSectors, partitions' Terminated sets) through LotusChain. Real 2KiB sectors and
real vanilla WindowPoSt proofs, the clock advanced by hand; the policy's minimum sector lifetime
is cut to 60 epochs so that a sector can end within the first proving period."""

import sqlite3
from dataclasses import replace

import pytest

from appliance.chain import money
from appliance.chain.bitfield import json_from_numbers
from appliance.chain.devnet import Devnet
from appliance.chain.devnet_api import DevnetAPIServer
from appliance.chain.lifecycle_actor import EPOCHS_IN_YEAR, quantized_expiration
from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError, ExitCode, SectorExpiration, SectorLocation
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector

from .chain_messages import precommit_sector, prove_commit
from .test_devnet_proving import MINER, P2K, SEED, advance_to, land, prove_deadline
from .test_lotus_client import EXAMPLES, RecordingClient, conforms, shape

POLICY = ChainPolicy(block_time=0, min_sector_expiration=60)
DEADLINE = 2           # where sectors activated at epoch ~32 go (0 is current, 1 next: immutable)
LAST = 179             # deadline 2's last epoch in the first period (offset 0): its window is [120, 180)


def new_chain(tmp_path, **policy) -> Devnet:
    chain = Devnet(tmp_path / "devnet.db", replace(POLICY, **policy), genesis_seed=SEED)
    chain.create_miner(MINER, P2K.id, proving_period_start=0)
    chain.advance(20)
    return chain


def onboard(chain, tmp_path, expirations: dict[int, int]):
    """Seal, pre-commit (each sector its own expiration) and prove-commit real 2KiB sectors."""
    rand_epoch = chain.head() - 5
    ticket = chain.seal_randomness(MINER, rand_epoch)
    rs = {n: seal_sector(P2K, SectorID(MINER, n), ticket, bytes([9]) * 32, tmp_path / "sectors") for n in expirations}
    sectors = [precommit_sector(P2K.id, n, r.comm_r, r.comm_d, rand_epoch, expirations[n]) for n, r in rs.items()]
    assert land(chain, "PreCommitSectorBatch2", {"Sectors": sectors}).ok
    precommit_epoch = chain.precommit(MINER, min(expirations)).precommit_epoch
    chain.advance(chain.policy.precommit_challenge_delay)
    seed = chain.interactive_seed(MINER, chain.policy.seed_epoch(precommit_epoch))
    proofs = {}
    for n, r in rs.items():
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        proofs[n] = seal_commit_phase2(seal_commit_phase1(P2K, SectorID(MINER, n), ticket, seed, r.comm_d, comm_c, comm_r_last,
                                                          r.sector_dir / "cache", r.sector_dir / "sealed"))
    assert land(chain, "ProveCommitSectors3", prove_commit(proofs)).ok
    return rs


def extension(number_list, new_expiration, deadline=DEADLINE, partition=0, claims=()):
    return {"Deadline": deadline, "Partition": partition, "Sectors": json_from_numbers(number_list),
            "SectorsWithClaims": list(claims), "NewExpiration": new_expiration}


def extend(chain, *decls):
    return land(chain, "ExtendSectorExpiration2", {"Extensions": list(decls)})


def termination(number_list, deadline=DEADLINE, partition=0):
    return {"Deadline": deadline, "Partition": partition, "Sectors": json_from_numbers(number_list)}


def terminate(chain, *decls):
    return land(chain, "TerminateSectors", {"Terminations": list(decls)})


def pledge_of(chain, number) -> int:
    row = chain.database.one("SELECT amount FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'pledge'",
                             (MINER, number))
    return int(row[0]) if row else 0


def partition0(chain):
    (p,) = chain.deadline_partitions(MINER, DEADLINE)
    return p


# ------------------------------------------------------------------------------ expiry

def test_a_sector_expires_at_its_deadline_cron_and_power_pledge_partitions_and_posts_follow(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, {1: 150, 2: 1000})
    assert chain.sector_location(MINER, 1) == SectorLocation(DEADLINE, 0) == chain.sector_location(MINER, 2)
    # quantised up to the deadline's last epoch: 150 -> 179 (this period), 1000 -> 179 + 2880
    assert chain.sector_expiration(MINER, 1) == SectorExpiration(LAST, 0)
    assert chain.sector_expiration(MINER, 2) == SectorExpiration(LAST + 2880, 0)
    pledge = pledge_of(chain, 1)
    assert pledge > 0
    assert prove_deadline(chain, rs, DEADLINE).ok        # the last occurrence before expiry proves both
    advance_to(chain, LAST)
    assert chain.miner_power(MINER).active_sectors == 2 and partition0(chain).sectors == (1, 2)
    available = chain.available_balance(MINER)
    chain.advance(1)                                      # the cron of the deadline closing at 180
    power = chain.miner_power(MINER)
    assert (power.active_sectors, power.raw_bytes) == (1, 2048)
    assert chain.available_balance(MINER) == available + pledge          # the pledge is free again
    p = partition0(chain)
    assert (p.sectors, p.terminated, p.faulty) == ((2,), (1,), ())
    assert chain.sector_expiration(MINER, 1) is None                    # not live
    assert chain.sector_location(MINER, 1) == SectorLocation(DEADLINE, 0)  # still in its partition
    assert chain.sector(MINER, 1).expiration == 150                      # its info stays (no compaction)
    assert [s.number for s in chain.active_sectors(MINER)] == [2]
    assert [s.number for s in chain.winning_post_sectors(MINER, chain.head())] == [2]
    assert chain.ended_sectors(MINER) == [{"number": 1, "deadline": DEADLINE, "partition": 0, "epoch": LAST + 1,
                                          "reason": "expired", "fee": 0}]
    # the next occurrence challenges sector 2 only: a proof of it alone (nothing skipped) is accepted
    assert prove_deadline(chain, rs, DEADLINE).ok
    advance_to(chain, LAST + 2880 + 1)
    record = chain.deadline_records(MINER)[-1]
    assert (record["close"], record["sectors"], record["sectors_proven"], record["penalty"]) == (LAST + 2881, 1, 1, 0)
    assert chain.miner_power(MINER).active_sectors == 0 and partition0(chain).terminated == (1, 2)
    assert chain.locked_funds(MINER)["InitialPledge"] == 0


def test_a_faulty_sector_expires_on_time_after_its_missed_post_penalty(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 150})
    advance_to(chain, LAST + 1)            # no proof in its only occurrence: detected faulty, then expired
    assert [(p["reason"], p["sectors"]) for p in chain.penalties(MINER)] == [("missed-post", [1])]
    assert chain.miner_power(MINER).faulty_sectors == 0 and partition0(chain).terminated == (1,)
    assert chain.locked_funds(MINER)["InitialPledge"] == 0


# ---------------------------------------------------------------------------- extension

def test_extension_accepted_moves_the_expiry(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 150, 2: 150})
    r = extend(chain, extension([1], 5000))
    assert r.ok, r.error
    assert chain.sector(MINER, 1).expiration == 5000
    assert chain.sector_expiration(MINER, 1) == SectorExpiration(quantized_expiration(chain.policy, 0, DEADLINE, 5000))
    assert chain.sector_expiration(MINER, 1).on_time == 5939 == LAST + 2 * 2880
    advance_to(chain, LAST + 1)
    p = partition0(chain)
    assert (p.sectors, p.terminated) == ((1,), (2,))       # 2 expired, 1 extended lives on (faulty: no proof)


@pytest.mark.parametrize("case, code, words", [
    ("reduce", ExitCode.ILLEGAL_ARGUMENT, "cannot reduce sector 1 expiration to 149 from 150"),
    ("beyond max extension", ExitCode.ILLEGAL_ARGUMENT, "cannot be more than 10000 past current epoch"),
    ("lifetime", ExitCode.ILLEGAL_ARGUMENT, f"cannot exceed {5 * EPOCHS_IN_YEAR} after activation"),
    ("no such partition", ExitCode.NOT_FOUND, "no such partition"),
    ("no such sector", ExitCode.NOT_FOUND, "sector not found: 7"),
    ("other partition", ExitCode.ILLEGAL_STATE, "sector 1 is not in this partition"),
    ("bad deadline", ExitCode.ILLEGAL_ARGUMENT, "deadline 48 not in range 0..48"),
    ("claims", ExitCode.ILLEGAL_ARGUMENT, "no verified claims"),
    ("too many", ExitCode.ILLEGAL_ARGUMENT, "too many declarations 3001, max 3000"),
    ("expired", ExitCode.FORBIDDEN, "cannot extend expiration for expired sector 2"),
])
def test_extension_refused_naming_the_rule(tmp_path, case, code, words):
    max_ext = 6 * EPOCHS_IN_YEAR if case == "lifetime" else 10_000
    chain = new_chain(tmp_path, max_sector_expiration_extension=max_ext)
    onboard(chain, tmp_path, {1: 150, 2: 150, **({3: 150} if case == "other partition" else {})})    # 3: deadline 3
    activation = chain.sector(MINER, 1).activation
    if case == "expired":
        advance_to(chain, 2880 + 30)                       # both expired at 180; deadline 2 mutable again
        decl = extension([2], 6000)
    else:
        decl = {"reduce": extension([1], 149),
                "beyond max extension": extension([1], chain.head() + 1 + 10_001),
                "lifetime": extension([1], activation + 5 * EPOCHS_IN_YEAR + 1),
                "no such partition": extension([1], 5000, partition=5),
                "no such sector": extension([1, 7], 5000),
                "other partition": extension([1], 5000, deadline=DEADLINE + 1),
                "bad deadline": extension([1], 5000, deadline=48),
                "claims": extension([1], 5000, claims=[{"SectorNumber": 1, "MaintainClaims": [3], "DropClaims": []}]),
                "too many": None}[case]
    decls = [extension([1], 5000)] * 3001 if case == "too many" else [decl]
    before = chain.sector(MINER, 1)
    r = extend(chain, *decls)
    assert not r.ok and r.exit_code == code and words in r.error, r.error
    assert chain.sector(MINER, 1) == before


# --------------------------------------------------------------------------- termination

def test_termination_charges_its_fee_and_takes_power_and_pledge_at_once(tmp_path):
    chain = new_chain(tmp_path)
    rs = onboard(chain, tmp_path, {1: 1000, 2: 1000})
    pledge = pledge_of(chain, 1)
    estimate = chain.termination_fee(MINER, [1])
    balance, available = chain.balance(f"f0{MINER}"), chain.available_balance(MINER)
    r = terminate(chain, termination([1]))
    assert r.ok, r.error
    assert r.returned == {"Done": True}
    # monies.rs pledge_penalty_for_termination: a sector 2 epochs old pays the lower bound,
    # max(2% of its pledge, 1.05 x BR(3.51 days)) (8.5% x age / 140 days is below it)
    fault_fee = money.expected_reward(chain, 2048, 2880 * 351 // 100)
    age = r.epoch - chain.sector(MINER, 1).activation
    fee = max(min(pledge * 85 // 1000, age * (pledge * 85 // 1000) // (140 * 2880)), pledge * 2 // 100, fault_fee * 105 // 100)
    assert fee > 0 and estimate == fee
    assert chain.balance(f"f0{MINER}") == balance - fee
    assert chain.available_balance(MINER) == available + pledge - fee
    assert chain.miner_power(MINER).active_sectors == 1
    p = partition0(chain)
    assert (p.sectors, p.terminated) == ((2,), (1,))
    assert chain.ended_sectors(MINER)[0] | {"fee": None} == {"number": 1, "deadline": DEADLINE, "partition": 0,
                                                             "epoch": r.epoch, "reason": "terminated", "fee": None}
    assert chain.ended_sectors(MINER)[0]["fee"] == fee
    with pytest.raises(ChainError, match=r"sectors \[1\] of f01000 are not live: no termination fee"):
        chain.termination_fee(MINER, [1, 2])
    # WindowPoSt no longer challenges it: a proof of sector 2 alone is accepted
    assert prove_deadline(chain, rs, DEADLINE).ok


@pytest.mark.parametrize("case, code, words", [
    ("twice", ExitCode.ILLEGAL_ARGUMENT, "can only terminate live sectors"),
    ("immutable", ExitCode.ILLEGAL_ARGUMENT, "cannot terminate sectors in immutable deadline 2"),
    ("not in partition", ExitCode.ILLEGAL_ARGUMENT, "can only terminate live sectors ([9] are not live"),
    ("no such partition", ExitCode.NOT_FOUND, "failed to find partition 4"),
    ("bad deadline", ExitCode.ILLEGAL_ARGUMENT, "failed to process deadline 48, partition 0"),
    ("too many partitions", ExitCode.ILLEGAL_ARGUMENT, "too many partitions 3001, max 3000"),
])
def test_termination_refused_naming_the_rule(tmp_path, case, code, words):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 1000, 2: 1000})
    if case == "twice":
        assert terminate(chain, termination([1])).ok
    if case == "immutable":
        advance_to(chain, 60)                   # deadline 2 is the next one from epoch 60 (opens at 120)
    decls = {"twice": [termination([1])], "immutable": [termination([1])], "not in partition": [termination([2, 9])],
             "no such partition": [termination([1], partition=4)],
             "bad deadline": [termination([1], deadline=48)],
             "too many partitions": [termination([1], partition=i) for i in range(3001)]}[case]
    power, balance = chain.miner_power(MINER), chain.balance(f"f0{MINER}")
    r = terminate(chain, *decls)
    assert not r.ok and r.exit_code == code and words in r.error, r.error
    assert chain.miner_power(MINER) == power and chain.balance(f"f0{MINER}") == balance     # gas is the worker's
    assert chain.locked_funds(MINER)["InitialPledge"] == pledge_of(chain, 1) + pledge_of(chain, 2) > 0


def test_termination_later_in_a_period_when_the_deadline_is_mutable_again(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 1000, 2: 1000})
    advance_to(chain, 200)                       # deadline 2 closed at 180: mutable until 2880 + 60
    assert chain.miner_power(MINER).faulty_sectors == 2           # missed their occurrence: faulty, still live
    assert terminate(chain, termination([1, 2])).ok
    assert chain.miner_power(MINER).faulty_sectors == 0 and partition0(chain).terminated == (1, 2)


# ------------------------------------------------------------------------------- reorgs

def test_reorg_dropping_an_extension_lets_the_sector_expire_and_the_undo_is_exact(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 150, 2: 150})
    assert extend(chain, extension([1], 5000)).ok
    extended_at = chain.head()
    advance_to(chain, LAST + 5)
    assert partition0(chain).terminated == (2,)
    chain.reorg(chain.head() - extended_at + 1, drop=True)      # the extension was never on this fork
    p = partition0(chain)
    assert (p.sectors, p.terminated) == ((), (1, 2))
    assert chain.sector(MINER, 1).expiration == 150
    assert chain.locked_funds(MINER)["InitialPledge"] == 0
    # a reorg over the expiry alone re-makes it: the same state, not a second record
    ended = chain.ended_sectors(MINER)
    chain.reorg(chain.head() - (LAST - 1))
    assert chain.ended_sectors(MINER) == ended


def test_reorg_dropping_a_termination_gives_back_the_sector_its_pledge_and_the_fee(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 1000, 2: 1000})
    before = (chain.miner_power(MINER), chain.locked_funds(MINER), chain.available_balance(MINER))
    r = terminate(chain, termination([1]))
    assert r.ok
    chain.reorg(chain.head() - r.epoch + 1, drop=True)
    assert (chain.miner_power(MINER), chain.locked_funds(MINER)) == before[:2]
    assert chain.available_balance(MINER) == before[2]       # the fee is back (the actor paid no gas)
    assert partition0(chain).terminated == () and chain.ended_sectors(MINER) == []


# ----------------------------------------------------------------------------- migration

def test_a_version_3_database_opens_and_its_sectors_expire(tmp_path):
    chain = new_chain(tmp_path)
    onboard(chain, tmp_path, {1: 150})
    mids = [m["id"] for m in chain.messages()]
    chain.close()
    db = sqlite3.connect(tmp_path / "devnet.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'undo_%'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    db.execute("DROP TABLE terminated_sectors")
    db.execute("ALTER TABLE messages DROP COLUMN return_value")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    again = Devnet(tmp_path / "devnet.db", POLICY)
    assert all(again.receipt(m).ok and again.receipt(m).returned is None for m in mids)
    advance_to(again, LAST + 1)
    assert partition0(again).terminated == (1,)


# ---------------------------------------------------------------------- through LotusChain

@pytest.fixture
def node(tmp_path):
    srv = DevnetAPIServer(tmp_path / "devnet", POLICY, genesis_seed=SEED)
    srv.devnet.create_miner(MINER, P2K.id, proving_period_start=0)
    srv.start()
    srv.devnet.advance(20)
    yield srv
    srv.close()


def test_lotus_reads_equal_the_devnet_and_have_lotus_shapes(node, tmp_path):
    devnet = node.devnet
    onboard(devnet, tmp_path, {1: 150, 2: 1000, 3: 1000})      # 1 and 2 in deadline 2, 3 in deadline 3
    assert devnet.sector_location(MINER, 3) == SectorLocation(DEADLINE + 1, 0)
    chain = LotusChain(RecordingClient(parse_endpoint(node.api_info())), devnet.policy)
    mid = chain.push_message(MINER, "TerminateSectors", {"Terminations": [termination([3], deadline=DEADLINE + 1)]})
    devnet.advance(1)
    receipt = chain.receipt(mid)
    assert receipt.ok and receipt.returned == {"Done": True}
    assert [s.number for s in chain.active_sectors(MINER)] == [1, 2]
    assert chain.active_sectors(MINER) == devnet.active_sectors(MINER)
    active = raw_active = chain.client.call("Filecoin.StateMinerActiveSectors", f"f0{MINER}", None)
    assert len(active) == 2 and not conforms(shape(raw_active), shape(EXAMPLES["StateMinerActiveSectors"]["result"]))
    advance_to(devnet, LAST + 1)                        # 1 expired, 3 terminated, 2 live (faulty: no proof)
    for n in (1, 2, 3, 4):
        assert chain.sector_expiration(MINER, n) == devnet.sector_expiration(MINER, n)
        assert chain.sector_location(MINER, n) == devnet.sector_location(MINER, n)
    assert chain.sector_expiration(MINER, 2) == SectorExpiration(LAST + 2880)
    assert chain.sector_expiration(MINER, 1) is None and chain.sector_location(MINER, 4) is None
    assert chain.active_sectors(MINER) == devnet.active_sectors(MINER) == []           # 2 is faulty
    for d in (DEADLINE, DEADLINE + 1):
        assert chain.deadline_partitions(MINER, d) == devnet.deadline_partitions(MINER, d)
    assert [p.terminated for d in (DEADLINE, DEADLINE + 1) for p in chain.deadline_partitions(MINER, d)] == [(1,), (3,)]
    assert chain.termination_fee(MINER, [2]) == devnet.termination_fee(MINER, [2]) > 0
    raw = chain.client
    for method in ("StateSectorExpiration", "StateSectorPartition", "StateMinerActiveSectors", "StateMinerPartitions"):
        example, params = EXAMPLES[method], raw.sent[method]
        assert len(params) == len(example["params"]), method
        assert not conforms(shape(params), shape(example["params"]), method)
    answers = {"StateSectorExpiration": raw.call("Filecoin.StateSectorExpiration", f"f0{MINER}", 2, None),
               "StateSectorPartition": raw.call("Filecoin.StateSectorPartition", f"f0{MINER}", 1, None),
               "StateMinerPartitions": raw.call("Filecoin.StateMinerPartitions", f"f0{MINER}", DEADLINE, None)}
    for method, answer in answers.items():
        assert not conforms(shape(answer), shape(EXAMPLES[method]["result"]), method), (method, answer)
    part = answers["StateMinerPartitions"][0]
    assert (part["AllSectors"], part["LiveSectors"]) == ([1, 2], [2, 1])       # {1, 2} and {2}: 1 terminated
    lookup = raw.call("Filecoin.StateSearchMsg", None, {"/": mid}, -1, True)
    assert (lookup["Receipt"]["Return"], lookup["ReturnDec"]) == ("gfU=", {"Done": True})     # CBOR [true]


def test_a_node_without_the_devnet_methods_gives_no_fee_estimate(node):
    class NoDevnet(LotusClient):
        def call(self, method, *params):
            if method.startswith("Devnet."):
                from appliance.chain.lotus.client import METHOD_NOT_FOUND, NodeError
                raise NodeError(method, METHOD_NOT_FOUND, "method not found")
            return super().call(method, *params)
    chain = LotusChain(NoDevnet(parse_endpoint(node.api_info())), node.devnet.policy)
    assert chain.termination_fee(MINER, [1]) is None


def test_a_window_post_may_name_a_partition_whose_sectors_all_ended(tmp_path):
    """A partition of terminated sectors stays (no compaction): a poster naming it beside a live one
    is not refused. 93 sectors with Groth16 stand-ins accepted unverified (no sealing): 46 mutable
    deadlines take two each, the 93rd opens deadline 2's second partition."""
    from appliance.proofs.commitment import comm_d_from_pieces
    from .test_devnet_proving import post_params
    snark = bytes(range(192))
    chain = new_chain(tmp_path, trust_external_proofs=True)
    numbers = range(1, 94)
    sectors = [precommit_sector(P2K.id, n, bytes(31) + bytes([n]), comm_d_from_pieces([], 2048), 15, 1000) for n in numbers]
    assert land(chain, "PreCommitSectorBatch2", {"Sectors": sectors}).ok
    chain.advance(chain.policy.precommit_challenge_delay)
    assert land(chain, "ProveCommitSectors3", prove_commit({n: snark for n in numbers})).ok
    assert chain.sector_location(MINER, 93) == SectorLocation(DEADLINE, 1)
    assert terminate(chain, termination([1, 2])).ok
    assert [(p.sectors, p.terminated) for p in chain.deadline_partitions(MINER, DEADLINE)] == [((), (1, 2)), ((93,), ())]
    advance_to(chain, 119)
    r = land(chain, "SubmitWindowedPoSt", post_params(chain, DEADLINE, {0: [], 1: []}, snark))
    assert r.ok, r.error
    assert [p.proven for p in chain.deadline_partitions(MINER, DEADLINE)] == [True, True]
