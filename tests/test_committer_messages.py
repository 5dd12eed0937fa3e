"""What the Committer sends: PreCommitSectorBatch2 naming no deals (direct data onboarding: the
UnsealedCid is the sector's CommD), then ProveCommitSectors3 carrying several sectors' own proofs
in one message when there are too few to aggregate, each sector's deals as piece manifests; all
landing on the devnet (Groth16-sized proofs accepted unverified). A sector the chain would refuse
whatever its proof (its PreCommit named deals; its deals do not make its CommD) is left out of
the batch and aborted with the reason."""

import base64
import dataclasses

import pytest

from appliance.chain.actor_params import canonical, market_piece
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.chain.miner_actor import DEALS_DISALLOWED
from appliance.core.protocol import OnChainState
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.sealer import Sealer
from appliance.manager.state import ManagerState
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_bytes

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = base64.b64encode(bytes(range(192))).decode()
PIECE = commp_bytes(bytes([7]) * 1016)


def test_proofs_below_the_aggregate_minimum_go_in_one_message_with_their_deals(tmp_path):
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    deal = chain.publish_deal(MINER, commd_to_cid(PIECE.commitment), PIECE.size, 500, 180 * 2880)
    state = ManagerState(tmp_path / "manager.db")
    cfg = parse_config({"Miners": [{"Actor": MINER, "Commitment": {"Pre": {"Batch": {"Threshold": 3}},
                                                                   "Prove": {"Batch": {"Threshold": 3}}}}]})
    committer = Committer(cfg, state, chain)
    try:
        with state.tx() as db:
            db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (deal, MINER, commd_to_cid(PIECE.commitment), PIECE.size, 1016, 500, 180 * 2880, ""))
        for n in (1, 2, 3):
            assert state.allocate(MINER, P2K.id, 1, None) == n
            deals = [deal] if n == 2 else []
            comm_d = comm_d_from_pieces([PIECE] if deals else [], 2048)
            state.update(MINER, n, deals=deals, ticket={"Epoch": 15}, pre_queued_at=0,
                         pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": comm_d.hex()})
        [pre] = committer.tick()
        chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay)
        assert chain.receipt(pre).ok, chain.receipt(pre)
        for n in (1, 2, 3):
            state.update(MINER, n, commit_proof=SNARK, proof_queued_at=0)
        [proof] = committer.tick()
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(proof).ok, chain.receipt(proof)
        msgs = {m["id"]: m for m in chain.messages(MINER)}
        assert msgs[pre]["method"] == "PreCommitSectorBatch2"
        assert [(x["DealIDs"], x["UnsealedCid"]) for x in msgs[pre]["params"]["Sectors"]] == [
            ([], {"/": commd_to_cid(comm_d_from_pieces(pieces, 2048))}) for pieces in ([], [PIECE], [])]
        sent = msgs[proof]["params"]
        assert msgs[proof]["method"] == "ProveCommitSectors3" and canonical("ProveCommitSectors3", sent) == sent
        assert sent["SectorProofs"] == [SNARK] * 3 and sent["AggregateProof"] == "" and sent["AggregateProofType"] is None
        assert [a["Pieces"] for a in sent["SectorActivations"]] == [
            [], [market_piece(deal, commd_to_cid(PIECE.commitment), PIECE.size)], []]
        assert [s.number for s in chain.sectors(MINER)] == [1, 2, 3] and chain.sector(MINER, 2).deal_ids == [deal]
    finally:
        state.close()
        chain.close()


def test_a_sector_the_chain_would_refuse_is_left_out_of_the_proof_batch_and_aborted_saying_why(tmp_path):
    """Sector 2's PreCommit named its deal (sent by a manager from before DDO): builtin-actors'
    ProveCommitSectors3 refuses it, all or nothing. Sector 3's deal is unknown to the manager, so
    its manifests cannot make its CommD. Both are left out, so sector 1 is proven; PollProofState
    aborts them with the reason."""
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    piece_cid = commd_to_cid(PIECE.commitment)
    deal = chain.publish_deal(MINER, piece_cid, PIECE.size, 500, 180 * 2880)
    other = chain.publish_deal(MINER, piece_cid, PIECE.size, 500, 180 * 2880)
    state = ManagerState(tmp_path / "manager.db")
    cfg = parse_config({"Miners": [{"Actor": MINER, "Commitment": {"Prove": {"Batch": {"Threshold": 3}}}}]})
    committer, sealer = Committer(cfg, state, chain), Sealer(cfg, state, chain)
    try:
        with state.tx() as db:
            db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (deal, MINER, piece_cid, PIECE.size, 1016, 500, 180 * 2880, ""))
        sectors = []
        for n, deals in ((1, []), (2, [deal]), (3, [other])):
            assert state.allocate(MINER, P2K.id, 1, None) == n
            comm_d = comm_d_from_pieces([PIECE] if deals else [], 2048)
            state.update(MINER, n, deals=deals, ticket={"Epoch": 15}, seed={"Epoch": 0},
                         pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": comm_d.hex()})
            sectors.append({"SealProof": P2K.id, "SectorNumber": n, "SealedCID": {"/": commr_to_cid(bytes(31) + bytes([n]))},
                            "SealRandEpoch": 15, "DealIDs": deals if n == 2 else [], "Expiration": chain.head() + 540 * 2880,
                            "UnsealedCid": {"/": commd_to_cid(comm_d)}})
        old_pre = {"Sectors": sectors}              # as the older manager sent it
        assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", old_pre, [1, 2, 3]) == 0
        pre = chain.push_message(MINER, "PreCommitSectorBatch2", old_pre, nonce=0)
        state.record_sent(MINER, 0, pre)
        for n in (1, 2, 3):
            state.update(MINER, n, pre_msg=pre, pre_nonce=0, commit_proof=SNARK, proof_queued_at=0)
        chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay)
        assert chain.receipt(pre).ok and chain.precommit(MINER, 2).deal_ids == [deal]

        [proof] = committer.tick()
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(proof).ok, chain.receipt(proof)
        sent = {m["id"]: m for m in chain.messages(MINER)}[proof]
        assert [a["SectorNumber"] for a in sent["params"]["SectorActivations"]] == [1]
        assert [s.number for s in chain.sectors(MINER)] == [1]
        assert committer.tick() == []                               # not sent later either
        refused = {n: state.sector(MINER, n)["proof_refused"] for n in (2, 3)}
        assert DEALS_DISALLOWED in refused[2] and f"names deals [{deal}]" in refused[2]
        assert f"deal {other} is not in the manager's deals" in refused[3]
        for n in (2, 3):
            poll = sealer.poll_proof_state({"Miner": MINER, "Number": n})
            assert (poll["State"], poll["Desc"]) == (OnChainState.SHOULD_ABORT, refused[n])
            rec = state.sector(MINER, n)
            assert rec["state"] == "Aborted" and rec["abort_reason"] == refused[n]
    finally:
        state.close()
        chain.close()


class NodeReceipts:
    """The devnet, with receipts as a Lotus node gives them: an exit code and no text
    (MessageReceipt{ExitCode, Return, GasUsed, EventsRoot})."""
    def __init__(self, devnet):
        self.devnet = devnet

    def __getattr__(self, name):
        return getattr(self.devnet, name)

    def receipt(self, message):
        r = self.devnet.receipt(message)
        return None if r is None else dataclasses.replace(r, error=None)


@pytest.mark.parametrize("receipts", ["devnet", "node"])
def test_a_journalled_proof_the_chain_refuses_for_pre_committed_deals_aborts_that_sector(tmp_path, receipts):
    """A ProveCommitSectors3 an older manager journalled (unsent) is pushed as it is; the chain
    refuses it, all or nothing. The devnet's receipt names sector 2; a node's has only exit code
    16, and the manager finds sector 2 from its PreCommit on chain. Either way PollProofState
    aborts sector 2 saying why; sector 1's proof is pending, sent again on its own, and lands."""
    devnet = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain = devnet if receipts == "devnet" else NodeReceipts(devnet)
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    piece_cid = commd_to_cid(PIECE.commitment)
    deal = chain.publish_deal(MINER, piece_cid, PIECE.size, 500, 180 * 2880)
    state = ManagerState(tmp_path / "manager.db")
    cfg = parse_config({"Miners": [{"Actor": MINER}]})
    committer, sealer = Committer(cfg, state, chain), Sealer(cfg, state, chain)
    try:
        sectors = []
        for n, deals in ((1, []), (2, [deal])):
            assert state.allocate(MINER, P2K.id, 1, None) == n
            comm_d = comm_d_from_pieces([PIECE] if deals else [], 2048)
            sectors.append({"SealProof": P2K.id, "SectorNumber": n, "SealedCID": {"/": commr_to_cid(bytes(31) + bytes([n]))},
                            "SealRandEpoch": 15, "DealIDs": deals, "Expiration": chain.head() + 540 * 2880,
                            "UnsealedCid": {"/": commd_to_cid(comm_d)}})
            state.update(MINER, n, deals=deals, pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": comm_d.hex()})
        pre = chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": sectors}, nonce=0)
        state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", {"Sectors": sectors}, [1, 2])
        state.record_sent(MINER, 0, pre)
        chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay)
        params = {"SectorActivations": [{"SectorNumber": 1, "Pieces": []},
                                        {"SectorNumber": 2, "Pieces": [market_piece(deal, piece_cid, PIECE.size)]}],
                  "SectorProofs": [SNARK, SNARK], "AggregateProof": "", "AggregateProofType": None,
                  "RequireActivationSuccess": True, "RequireNotificationSuccess": True}
        assert state.enqueue_message(MINER, "proof", "ProveCommitSectors3", params, [1, 2]) == 1
        [proof] = committer.tick()
        for n in (1, 2):
            state.update(MINER, n, commit_proof=SNARK, proof_queued_at=0, proof_msg=proof, proof_nonce=1)
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(proof).exit_code == 16
        polls = {n: sealer.poll_proof_state({"Miner": MINER, "Number": n}) for n in (1, 2)}
        why = f"sector 2: {DEALS_DISALLOWED}" if receipts == "devnet" else f"names deals [{deal}]"
        assert polls[2]["State"] == OnChainState.SHOULD_ABORT and why in polls[2]["Desc"], polls[2]
        assert polls[1]["State"] == OnChainState.PENDING and "sends it again" in polls[1]["Desc"], polls[1]
        [again] = committer.tick()
        assert (state.sector(MINER, 1)["proof_msg"], state.sector(MINER, 2)["proof_msg"]) == (again, proof)
        chain.advance(chain.policy.message_delay)
        assert chain.receipt(again).ok, chain.receipt(again)
        assert [s.number for s in chain.sectors(MINER)] == [1]
        assert sealer.poll_proof_state({"Miner": MINER, "Number": 1})["State"] in (OnChainState.PACKED, OnChainState.LANDED)
    finally:
        state.close()
        chain.close()


def test_a_sector_whose_deals_do_not_make_its_commd_is_refused_before_sending(tmp_path):
    """A PCLanded sector re-created from a node without its deals (none known): its empty
    manifests would make the zero CommD, not the one its PreCommit declared."""
    from appliance.manager.commitment import proof_refusal
    state = ManagerState(tmp_path / "manager.db")
    try:
        comm_d = comm_d_from_pieces([PIECE], 2048).hex()
        record = {"miner": MINER, "number": 4, "proof": P2K.id, "deals": [], "pre": {"CommR": "00", "CommD": comm_d}}
        why = proof_refusal(None, state, record)             # no deals: the chain is not asked
        assert why is not None and f"its deals [] make CommD {comm_d_from_pieces([], 2048).hex()}" in why
        assert f"its PreCommit declared {comm_d}" in why
        assert proof_refusal(None, state, {**record, "pre": {"CommR": "00", "CommD": comm_d_from_pieces([], 2048).hex()}}) is None
    finally:
        state.close()


def test_a_sector_whose_precommit_named_deals_is_aborted_at_wait_seed_saying_why(tmp_path):
    """The earliest point: WaitSeed, before the worker spends C1/C2 on a proof no chain takes.
    Its deals stay with it in the manager (the PreCommit holds them on the devnet until it expires)."""
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain.create_miner(MINER, P2K.id)
    chain.advance(20)
    piece_cid = commd_to_cid(PIECE.commitment)
    deal = chain.publish_deal(MINER, piece_cid, PIECE.size, 500, 180 * 2880)
    state = ManagerState(tmp_path / "manager.db")
    sealer = Sealer(parse_config({"Miners": [{"Actor": MINER}]}), state, chain)
    try:
        with state.tx() as db:
            db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, "
                       "sector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (deal, MINER, piece_cid, PIECE.size, 1016, 500, 180 * 2880, "", 1))
        assert state.allocate(MINER, P2K.id, 1, None) == 1
        comm_d = comm_d_from_pieces([PIECE], 2048)
        old = {"Sectors": [{"SealProof": P2K.id, "SectorNumber": 1, "SealedCID": {"/": commr_to_cid(bytes(31) + b"\x01")},
                            "SealRandEpoch": 15, "DealIDs": [deal], "Expiration": chain.head() + 540 * 2880,
                            "UnsealedCid": {"/": commd_to_cid(comm_d)}}]}
        pre = chain.push_message(MINER, "PreCommitSectorBatch2", old, nonce=0)
        state.update(MINER, 1, deals=[deal], ticket={"Epoch": 15}, pre_msg=pre, pre_nonce=0, state="PCLanded",
                     pre={"CommR": (bytes(31) + b"\x01").hex(), "CommD": comm_d.hex()})
        chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay + 1)
        assert sealer.wait_seed({"Miner": MINER, "Number": 1}, P2K.id) == {"ShouldWait": False, "Delay": 0, "Seed": None}
        rec = state.sector(MINER, 1)
        assert rec["state"] == "Aborted" and f"names deals [{deal}]" in rec["abort_reason"]
        assert DEALS_DISALLOWED in rec["abort_reason"] and "seed" not in rec
        assert state.query("SELECT sector FROM deals WHERE id = ?", (deal,)) == [(1,)]
    finally:
        state.close()
        chain.close()


class NodeWithoutAggregates(NodeReceipts):
    """The devnet, taking proofs as a node would be sent them: the builtin engine's aggregate is a
    stand-in for SnarkPack that no node takes."""
    def takes_builtin_aggregate(self):
        return False


def test_against_a_node_proofs_go_side_by_side_even_above_the_aggregate_minimum(tmp_path):
    devnet = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    chain = NodeWithoutAggregates(devnet)
    devnet.create_miner(MINER, P2K.id)
    devnet.advance(20)
    state = ManagerState(tmp_path / "manager.db")
    n_sectors = devnet.policy.aggregate_min + 1
    cfg = parse_config({"Miners": [{"Actor": MINER, "Commitment": {"Pre": {"Batch": {"Threshold": n_sectors}},
                                                                   "Prove": {"Batch": {"Threshold": n_sectors}}}}]})
    committer = Committer(cfg, state, chain)
    try:
        for n in range(1, n_sectors + 1):
            assert state.allocate(MINER, P2K.id, 1, None) == n
            state.update(MINER, n, deals=[], ticket={"Epoch": 15}, pre_queued_at=0,
                         pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": comm_d_from_pieces([], 2048).hex()})
        [pre] = committer.tick()
        devnet.advance(devnet.policy.message_delay + devnet.policy.precommit_challenge_delay)
        for n in range(1, n_sectors + 1):
            state.update(MINER, n, commit_proof=SNARK, proof_queued_at=0)
        [proof] = committer.tick()
        devnet.advance(devnet.policy.message_delay)
        assert devnet.receipt(proof).ok, devnet.receipt(proof)
        sent = {m["id"]: m for m in devnet.messages(MINER)}[proof]["params"]
        assert sent["SectorProofs"] == [SNARK] * n_sectors and sent["AggregateProof"] == "" and sent["AggregateProofType"] is None
        assert [s.number for s in devnet.sectors(MINER)] == list(range(1, n_sectors + 1))
    finally:
        state.close()
        devnet.close()


def test_proofs_side_by_side_are_cut_to_the_message_size_limit():
    from appliance.manager.commitment import proof_batches
    big = base64.b64encode(bytes(1920)).decode()           # a 32GiB sector's proof: 10 partitions of 192 bytes
    waiting = [{"number": n, "commit_proof": big} for n in range(70, 0, -1)]
    batches = proof_batches(waiting, 819, 56 * 1024)
    assert [len(b) for b in batches] == [29, 29, 12]        # 29 x 1920 = 55,680 bytes, 30 would pass 57,344
    assert [r["number"] for r in batches[0]] == list(range(42, 71)) and batches[2][0]["number"] == 1
    assert [len(b) for b in proof_batches(waiting, 819, None)] == [70]         # an aggregate: the count alone
    assert [len(b) for b in proof_batches(waiting, 32, None)] == [32, 32, 6]
