"""A manager.db journalled with the old message methods and shapes (schema version 2): opening it
rewrites the unsent outbox rows to builtin-actors' current methods and go-state-types' shapes, and
the Committer sends them so that they land; rows already sent are left as the chain has them."""

import base64
import json
import logging
import sqlite3

import pytest

from appliance.chain.actor_params import SNARK_PACK_V2, canonical, market_piece
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.legacy_messages import LegacyMessageError, translate
from appliance.manager.state import MANAGER_SCHEMA, ManagerState
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_bytes

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = bytes(range(192))                 # a Groth16-sized proof, accepted unverified (TrustExternalProofs)
PIECE = commp_bytes(bytes([5]) * 1016)
PIECE_CID = commd_to_cid(PIECE.commitment)
SEALED = commr_to_cid(bytes(31) + b"\x01")
B64 = base64.b64encode(SNARK).decode()
COMM_D_CID = commd_to_cid(comm_d_from_pieces([PIECE], 2048))        # a 2KiB sector holding PIECE


def pieces(ids):
    return [(PIECE_CID, PIECE.size) for _ in ids]


OLD_PRECOMMIT = {"Sectors": [{"SealProof": P2K.id, "SectorNumber": 1, "SealedCID": SEALED, "SealRandEpoch": 15,
                              "DealIDs": [9], "Expiration": 2000000, "UnsealedCID": PIECE_CID}]}


@pytest.mark.parametrize("method, old, new_method, new", [
    ("PreCommitSectorBatch", OLD_PRECOMMIT, "PreCommitSectorBatch2",
     {"Sectors": [{"SealProof": P2K.id, "SectorNumber": 1, "SealedCID": {"/": SEALED}, "SealRandEpoch": 15,
                   "DealIDs": [], "Expiration": 2000000, "UnsealedCid": {"/": PIECE_CID}}]}),
    ("PreCommitSectorBatch", {"Sectors": [{**OLD_PRECOMMIT["Sectors"][0], "UnsealedCID": None}]}, "PreCommitSectorBatch2",
     {"Sectors": [{"SealProof": P2K.id, "SectorNumber": 1, "SealedCID": {"/": SEALED}, "SealRandEpoch": 15,
                   "DealIDs": [], "Expiration": 2000000, "UnsealedCid": {"/": COMM_D_CID}}]}),
    ("ProveCommitSector", {"SectorNumber": 1, "Proof": B64}, "ProveCommitSectors3",
     {"SectorActivations": [{"SectorNumber": 1, "Pieces": [market_piece(9, PIECE_CID, PIECE.size)]}],
      "SectorProofs": [B64], "AggregateProof": "", "AggregateProofType": None,
      "RequireActivationSuccess": True, "RequireNotificationSuccess": True}),
    ("ProveCommitAggregate", {"SectorNumbers": [3, 2], "AggregateProof": B64}, "ProveCommitSectors3",
     {"SectorActivations": [{"SectorNumber": 2, "Pieces": []}, {"SectorNumber": 3, "Pieces": []}],
      "SectorProofs": [], "AggregateProof": B64, "AggregateProofType": SNARK_PACK_V2,
      "RequireActivationSuccess": True, "RequireNotificationSuccess": True}),
    ("ProveReplicaUpdates", {"Updates": [{"SectorID": 4, "Deadline": 1, "Partition": 0, "NewSealedCID": SEALED,
                                          "Deals": [9], "UpdateProofType": 5, "ReplicaProof": B64}]},
     "ProveReplicaUpdates3",
     {"SectorUpdates": [{"Sector": 4, "Deadline": 1, "Partition": 0, "NewSealedCID": {"/": SEALED},
                         "Pieces": [market_piece(9, PIECE_CID, PIECE.size)]}],
      "SectorProofs": [B64], "AggregateProof": "", "UpdateProofsType": 5, "AggregateProofType": None,
      "RequireActivationSuccess": True, "RequireNotificationSuccess": True}),
    ("DeclareFaults", {"Faults": [{"Deadline": 3, "Partition": 0, "Sectors": [3, 4]}]}, "DeclareFaults",
     {"Faults": [{"Deadline": 3, "Partition": 0, "Sectors": [3, 2]}]}),
    ("DeclareFaultsRecovered", {"Recoveries": [{"Deadline": 3, "Partition": 0, "Sectors": [0]}]}, "DeclareFaultsRecovered",
     {"Recoveries": [{"Deadline": 3, "Partition": 0, "Sectors": [0, 1]}]}),
    ("SubmitWindowedPoSt", {"Deadline": 2, "Partitions": [{"Index": 0, "Skipped": []}],
                            "Proofs": [{"PoStProof": 10, "ProofBytes": B64}], "ChainCommitEpoch": 5, "ChainCommitRand": B64},
     "SubmitWindowedPoSt", {"Deadline": 2, "Partitions": [{"Index": 0, "Skipped": [0]}],
                            "Proofs": [{"PoStProof": 10, "ProofBytes": B64}], "ChainCommitEpoch": 5, "ChainCommitRand": B64}),
])
def test_each_old_message_translates(method, old, new_method, new):
    got_method, got = translate(method, old, pieces, lambda n: [9] if n == 1 else [])
    assert (got_method, got) == (new_method, new)
    assert canonical(new_method, got) == got          # exactly the shape the codec encodes


def test_a_broken_old_message_is_named():
    with pytest.raises(LegacyMessageError, match="ProveCommitSector params from before the upgrade lack 'Proof'"):
        translate("ProveCommitSector", {"SectorNumber": 1}, pieces, lambda n: [])


def _downgrade(path):
    """The file as a manager from before schema version 3 left it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()


def test_an_old_unsent_prove_commit_is_resent_as_prove_commit_sectors3_and_lands(tmp_path):
    assert MANAGER_SCHEMA.version >= 3          # the outbox upgrade (version 3) is on the way
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
    state = ManagerState(tmp_path / "manager.db")
    assert state.allocate(MINER, P2K.id, 1, None) == 1
    with state.tx() as db:
        db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (deal, MINER, PIECE_CID, PIECE.size, 1016, 500, 180 * 2880, "", 1))
    comm_d = comm_d_from_pieces([PIECE], 2048)
    state.update(MINER, 1, deals=[deal], pre={"CommR": (bytes(31) + b"\x01").hex(), "CommD": comm_d.hex()},
                 commit_proof=B64)
    # the PreCommit went out (and landed) before the upgrade: journalled in the old shape, sent
    old_pre = {"Sectors": [{**OLD_PRECOMMIT["Sectors"][0], "DealIDs": [deal], "Expiration": chain.head() + 540 * 2880,
                            "UnsealedCID": commd_to_cid(comm_d)}]}
    assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch", old_pre, [1]) == 0
    landed = chain.push_message(MINER, *translate("PreCommitSectorBatch", old_pre, pieces, lambda n: []), nonce=0)
    state.record_sent(MINER, 0, landed)
    chain.advance(chain.policy.message_delay)
    # its ProveCommitSector was journalled but not sent when the old manager stopped
    assert state.enqueue_message(MINER, "proof", "ProveCommitSector", {"SectorNumber": 1, "Proof": B64}, [1]) == 1
    state.close()
    _downgrade(tmp_path / "manager.db")

    state = ManagerState(tmp_path / "manager.db")          # schema 2 -> 3: the outbox is upgraded
    try:
        [row] = state.unsent()
        assert (row["nonce"], row["method"]) == (1, "ProveCommitSectors3")
        assert row["params"]["SectorActivations"] == [{"SectorNumber": 1, "Pieces": [market_piece(deal, PIECE_CID, PIECE.size)]}]
        sent = state.query("SELECT method, params FROM outbox WHERE nonce = 0")
        assert sent == [("PreCommitSectorBatch", json.dumps(old_pre))]     # as the chain has it
        assert chain.receipt(landed) is not None and chain.receipt(landed).ok
        chain.advance(chain.policy.precommit_challenge_delay)
        committer = Committer(parse_config({"Miners": [{"Actor": MINER}]}), state, chain)
        [message] = committer.tick()
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(message).ok, chain.receipt(message)
        assert chain.sector(MINER, 1).deal_ids == [deal] and chain.deal(deal)["activated"] is not None
        assert state.unsent() == [] and state.sector(MINER, 1)["proof_msg"] == message
    finally:
        state.close()
        chain.close()


def test_an_old_message_the_chain_took_before_the_upgrade_is_adopted_not_refused(tmp_path, caplog):
    """The old manager pushed its ProveCommitSector at nonce 1 and stopped before recording it;
    the upgrade rewrote the journal row. Resending the new form at nonce 1 meets the old message:
    the Committer records the chain's message instead of failing on every pass."""
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    state = ManagerState(tmp_path / "manager.db")
    try:
        assert state.allocate(MINER, P2K.id, 1, None) == 1
        state.update(MINER, 1, deals=[])
        old = {"SectorNumber": 1, "Proof": B64}
        assert state.enqueue_message(MINER, "proof", "ProveCommitSector", old, [1]) == 0
        on_chain = chain.push_message(MINER, "ProveCommitSector", old, nonce=0)
        state.close()
        _downgrade(tmp_path / "manager.db")
        state = ManagerState(tmp_path / "manager.db")
        assert state.unsent()[0]["method"] == "ProveCommitSectors3"
        committer = Committer(parse_config({"Miners": [{"Actor": MINER}]}), state, chain)
        assert committer.tick() == [on_chain]
        assert state.unsent() == [] and state.sector(MINER, 1)["proof_msg"] == on_chain
        # a different message at a used nonce is still refused
        assert state.enqueue_message(MINER, "proof", "ProveCommitSectors3", {"SectorActivations": []}, []) == 1
        chain.push_message(MINER, "DeclareFaults", {"Faults": []}, nonce=1)
        with caplog.at_level(logging.WARNING, logger="damocles.manager.commitment"):
            assert committer.tick() == []
        assert [r["nonce"] for r in state.unsent()] == [1]          # refused, kept, never adopted
        assert "nonce 1 not accepted" in caplog.text and "already used" in caplog.text
    finally:
        state.close()
        chain.close()


def test_a_state_behind_the_chain_adopts_the_old_form_of_its_unsent_message(tmp_path):
    """--rebuild-from-chain after the upgrade: the journalled row (rewritten by schema 3) was
    taken by the chain in its old form; adopt_sent records it instead of moving it to a new nonce."""
    from appliance.manager.guard import adopt_sent, lags
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0))
    chain.create_miner(MINER, P2K.id)
    state = ManagerState(tmp_path / "manager.db")
    try:
        assert state.allocate(MINER, P2K.id, 1, None) == 1
        old = {"SectorNumber": 1, "Proof": B64}
        assert state.enqueue_message(MINER, "proof", "ProveCommitSector", old, [1]) == 0
        taken = chain.push_message(MINER, "ProveCommitSector", old, nonce=0)
        chain.push_message(MINER, "DeclareFaults", {"Faults": []}, nonce=1)     # the state never saw this one
        state.close()
        _downgrade(tmp_path / "manager.db")
        state = ManagerState(tmp_path / "manager.db")
        found = lags(state, chain, [MINER])
        assert [(lag.next_nonce, lag.chain_nonce) for lag in found] == [(1, 2)]
        assert adopt_sent(state, chain, found) == [(MINER, 0, taken)]
        assert state.unsent() == []
    finally:
        state.close()
        chain.close()


def _downgrade_to(path, version):
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


def _deal_sector(state, chain, number):
    """A deal on chain and in the manager's deals, and sector `number` holding it; its PreCommit as
    a manager from before direct data onboarding journalled it (DealIDs, UnsealedCid null)."""
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
    assert state.allocate(MINER, P2K.id, 1, None) == number
    with state.tx() as db:
        db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (deal, MINER, PIECE_CID, PIECE.size, 1016, 500, 180 * 2880, "", number))
    state.update(MINER, number, deals=[deal], pre={"CommR": (bytes(31) + bytes([number])).hex(),
                                                    "CommD": comm_d_from_pieces([PIECE], 2048).hex()})
    return deal, {"Sectors": [{"SealProof": P2K.id, "SectorNumber": number,
                               "SealedCID": {"/": commr_to_cid(bytes(31) + bytes([number]))}, "SealRandEpoch": 15,
                               "DealIDs": [deal], "Expiration": chain.head() + 540 * 2880, "UnsealedCid": None}]}


def test_an_unsent_precommit_naming_deals_is_rewritten_without_them_and_its_sector_proven(tmp_path):
    """Schema 4 -> 5: the journalled, unsent PreCommitSectorBatch2 names no deals and declares
    their CommD; a sent one stays as the chain has it. The PreCommit lands, and the proof's
    manifests activate the deal (builtin-actors refuses a PreCommit with deal ids)."""
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    state = ManagerState(tmp_path / "manager.db")
    try:
        sent_deal, sent = _deal_sector(state, chain, 1)
        deal, unsent = _deal_sector(state, chain, 2)
        assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", sent, [1]) == 0
        state.record_sent(MINER, 0, chain.push_message(MINER, "PreCommitSectorBatch2", sent, nonce=0))
        assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", unsent, [2]) == 1
        state.close()
        _downgrade_to(tmp_path / "manager.db", 4)

        state = ManagerState(tmp_path / "manager.db")
        [row] = state.unsent()
        assert row["nonce"] == 1 and row["params"]["Sectors"][0]["DealIDs"] == []
        assert row["params"]["Sectors"][0]["UnsealedCid"] == {"/": COMM_D_CID}
        assert canonical("PreCommitSectorBatch2", row["params"]) == row["params"]
        assert state.query("SELECT params FROM outbox WHERE nonce = 0") == [(json.dumps(sent),)]      # as sent

        committer = Committer(parse_config({"Miners": [{"Actor": MINER}]}), state, chain)
        [pre] = committer.tick()
        chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay)
        assert chain.receipt(pre).ok and chain.precommit(MINER, 2).deal_ids == []
        state.update(MINER, 2, pre_msg=pre, pre_nonce=1, commit_proof=B64, proof_queued_at=0)
        [proof] = committer.tick()
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(proof).ok, chain.receipt(proof)
        assert chain.sector(MINER, 2).deal_ids == [deal] and chain.deal(deal)["activated"] is not None
    finally:
        state.close()
        chain.close()


def test_a_precommit_naming_deals_the_chain_took_before_the_upgrade_is_adopted(tmp_path):
    """The older manager pushed its PreCommit (with DealIDs) and stopped before recording it;
    schema 5 rewrote the journal row without them. The chain's message at that nonce is this one
    in its old form: recorded, not refused on every pass nor sent under another nonce."""
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    state = ManagerState(tmp_path / "manager.db")
    try:
        deal, old = _deal_sector(state, chain, 1)
        old["Sectors"][0]["UnsealedCid"] = {"/": COMM_D_CID}          # as the manager sent it
        assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", old, [1]) == 0
        on_chain = chain.push_message(MINER, "PreCommitSectorBatch2", old, nonce=0)
        state.close()
        _downgrade_to(tmp_path / "manager.db", 4)
        state = ManagerState(tmp_path / "manager.db")
        assert state.unsent()[0]["params"]["Sectors"][0]["DealIDs"] == []
        committer = Committer(parse_config({"Miners": [{"Actor": MINER}]}), state, chain)
        assert committer.tick() == [on_chain]
        assert state.unsent() == [] and state.query("SELECT message FROM outbox WHERE nonce = 0") == [(on_chain,)]
        chain.advance(chain.policy.message_delay)
        assert chain.precommit(MINER, 1).deal_ids == [deal]          # it cannot be proven: the sealer aborts it
    finally:
        state.close()
        chain.close()
