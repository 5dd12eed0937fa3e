"""The manager through devnet reorgs (Devnet.reorg), as Damocles' commitmgr waits with Confidence
(damocles 4235a895 damocles-manager/modules/impl/commitmgr: a message counts once it has
Confidence epochs on it): a proof whose receipt a reorg took back is waited for again and lands
once; a PreCommit reorged out and dropped is resent at the same nonce and lands once; a proof made
from a seed a reorg re-drew is refused and made again from the new seed. Real 2KiB sectors."""

import base64
import shutil

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.sealer import LANDED, PACKED, PENDING, Sealer
from appliance.manager.state import ManagerState
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
CONFIDENCE = 4


def make(tmp_path):
    store = tmp_path / "persist-1"
    store.mkdir()
    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1},
                        "Common": {"PersistStores": [{"Name": "persist-1", "Path": str(store)}]},
                        "Miners": [{"Actor": MINER, "Commitment": {"Confidence": CONFIDENCE,
                                    "Pre": {"Batch": {"Threshold": 1}}, "Prove": {"Batch": {"Threshold": 1}}}}]})
    chain = Devnet(tmp_path / "d.db", ChainPolicy(block_time=0))
    chain.create_miner(MINER, P2K.id)
    chain.advance(5)
    state = ManagerState(tmp_path / "m.db")
    return chain, state, Sealer(cfg, state, chain), Committer(cfg, state, chain), store


def precommitted(chain, sealer, committer, tmp_path):
    alloc = sealer.allocate_sector({})
    sid = alloc["ID"]
    ticket = sealer.assign_ticket(sid)
    r = seal_sector(P2K, SectorID(MINER, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
    assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1
    assert len(committer.tick()) == 1
    return sid, ticket, r


def wait_state(chain, committer, poll, want, epochs=40):
    """Advance epoch by epoch (the Committer's pass each time) until `poll()` answers `want`."""
    for _ in range(epochs):
        committer.tick()
        got = poll()
        if got["State"] == want:
            return got
        chain.advance(1)
    raise AssertionError(f"still {got} after {epochs} epochs, expected state {want}")


def persist(sealer, sid, r, store):
    name = f"s-t0{MINER}-{sid['Number']}"
    assert sealer.store_reserve_space(sid, 4096, [])["Name"] == "persist-1"
    (store / "sealed").mkdir(exist_ok=True)
    shutil.copy(r.sector_dir / "sealed", store / "sealed" / name)
    shutil.copytree(r.sector_dir / "cache", store / "cache" / name, dirs_exist_ok=True)
    assert sealer.submit_persisted(sid, "persist-1") is True


def prove(sid, ticket, seed, r) -> bytes:
    comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
    c1 = seal_commit_phase1(P2K, SectorID(MINER, sid["Number"]), base64.b64decode(ticket["Ticket"]),
                            base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                            r.sector_dir / "sealed")
    return seal_commit_phase2(c1)


def seed_of(chain, sealer, committer, sid):
    for _ in range(40):
        got = sealer.wait_seed(sid, P2K.id)
        if got["Seed"]:
            return got["Seed"]
        chain.advance(1)
    raise AssertionError("no seed")


def test_a_proof_reorged_out_before_confidence_is_waited_for_and_lands_once(tmp_path):
    chain, state, sealer, committer, store = make(tmp_path)
    try:
        sid, ticket, r = precommitted(chain, sealer, committer, tmp_path)
        wait_state(chain, committer, lambda: sealer.poll_pre_commit_state(sid), LANDED)
        persist(sealer, sid, r, store)
        seed = seed_of(chain, sealer, committer, sid)
        assert sealer.submit_proof(sid, {"Proof": prove(sid, ticket, seed, r)}, False)["Res"] == 1
        assert len(committer.tick()) == 1
        packed = wait_state(chain, committer, lambda: sealer.poll_proof_state(sid), PACKED)
        msg = state.sector(MINER, sid["Number"])["proof_msg"]
        landed_at = chain.receipt(msg).epoch
        assert chain.sector(MINER, sid["Number"]) is not None and "waiting for" in packed["Desc"]
        # the fork point: the epoch before the proof landed (the seed's epoch is older: it stays)
        chain.reorg(chain.head() - landed_at + 1)
        assert chain.sector(MINER, sid["Number"]) is None
        poll = sealer.poll_proof_state(sid)
        assert poll["State"] == PENDING and "not executed yet" in poll["Desc"]     # not on the vanished receipt
        wait_state(chain, committer, lambda: sealer.poll_proof_state(sid), LANDED)
        assert chain.receipt(msg).epoch > landed_at
        proofs = [m for m in chain.messages(MINER) if m["method"] == "ProveCommitSectors3"]
        assert [(m["id"], m["exit_code"]) for m in proofs] == [(msg, 0)]                  # sent once, landed once
        assert [s.number for s in chain.sectors(MINER)] == [sid["Number"]]
    finally:
        state.close()
        chain.close()


def test_a_precommit_reorged_out_and_dropped_is_resent_at_its_nonce_and_lands_once(tmp_path):
    chain, state, sealer, committer, store = make(tmp_path)
    try:
        sid, ticket, r = precommitted(chain, sealer, committer, tmp_path)
        first = state.sector(MINER, sid["Number"])
        wait_state(chain, committer, lambda: sealer.poll_pre_commit_state(sid), PACKED)
        landed_at = chain.receipt(first["pre_msg"]).epoch
        out = chain.reorg(chain.head() - landed_at + 1, drop=True)
        assert out["dropped"] == [first["pre_msg"]] and chain.precommit(MINER, sid["Number"]) is None
        poll = sealer.poll_pre_commit_state(sid)
        assert poll["State"] == PENDING and "gone from the chain" in poll["Desc"]
        wait_state(chain, committer, lambda: sealer.poll_pre_commit_state(sid), LANDED)
        again = state.sector(MINER, sid["Number"])
        # the same message at the same nonce (on Filecoin its CID would be the same too)
        assert again["pre_nonce"] == first["pre_nonce"] and chain.receipt(again["pre_msg"]).ok
        assert chain.message_at_nonce(MINER, first["pre_nonce"])["id"] == again["pre_msg"]
        pres = [m for m in chain.messages(MINER) if m["method"] == "PreCommitSectorBatch2"]
        assert [(m["id"], m["exit_code"]) for m in pres] == [(again["pre_msg"], 0)]
        assert chain.next_nonce(MINER) == first["pre_nonce"] + 1
    finally:
        state.close()
        chain.close()


def test_a_proof_from_a_seed_a_reorg_redrew_is_refused_and_made_again(tmp_path):
    chain, state, sealer, committer, store = make(tmp_path)
    try:
        sid, ticket, r = precommitted(chain, sealer, committer, tmp_path)
        wait_state(chain, committer, lambda: sealer.poll_pre_commit_state(sid), LANDED)
        persist(sealer, sid, r, store)
        old = seed_of(chain, sealer, committer, sid)
        chain.reorg(chain.head() - old["Epoch"] + 1)        # the seed's epoch is re-made
        refused = sealer.submit_proof(sid, {"Proof": prove(sid, ticket, old, r)}, False)
        assert refused["Res"] != 1 and "changed in a chain reorg" in refused["Desc"]
        new = seed_of(chain, sealer, committer, sid)
        assert new["Epoch"] == old["Epoch"] and new["Seed"] != old["Seed"]
        assert sealer.submit_proof(sid, {"Proof": prove(sid, ticket, new, r)}, False)["Res"] == 1
        committer.tick()
        wait_state(chain, committer, lambda: sealer.poll_proof_state(sid), LANDED)
    finally:
        state.close()
        chain.close()
