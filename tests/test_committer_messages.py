"""What the Committer sends: PreCommitSectorBatch2, then ProveCommitSectors3 carrying several
sectors' own proofs in one message when there are too few to aggregate, each sector's deals as
piece manifests; all landing on the devnet (Groth16-sized proofs accepted unverified)."""

import base64

from appliance.chain.actor_params import canonical, market_piece
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.state import ManagerState
from appliance.proofs.cid import commd_to_cid
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
        sent = msgs[proof]["params"]
        assert msgs[proof]["method"] == "ProveCommitSectors3" and canonical("ProveCommitSectors3", sent) == sent
        assert sent["SectorProofs"] == [SNARK] * 3 and sent["AggregateProof"] == "" and sent["AggregateProofType"] is None
        assert [a["Pieces"] for a in sent["SectorActivations"]] == [
            [], [market_piece(deal, commd_to_cid(PIECE.commitment), PIECE.size)], []]
        assert [s.number for s in chain.sectors(MINER)] == [1, 2, 3] and chain.sector(MINER, 2).deal_ids == [deal]
    finally:
        state.close()
        chain.close()
