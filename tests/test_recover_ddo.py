"""Sector records re-created from the chain (manager.recover) take a sector's deals where direct
data onboarding puts them: the piece manifests of its ProveCommitSectors3 (each notifying the
market actor f05 of a deal), the PreCommit naming none. A PreCommit from a manager before DDO
(DealIDs) is still read; a DDO PreCommit waiting for its proof takes them from the manager's deals."""

import base64
from dataclasses import replace


from appliance.chain.actor_params import market_piece
from appliance.core.proof_types import seal_proof
from appliance.manager.recover import recover_sectors
from appliance.manager.state import ManagerState
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_bytes

from .chain_messages import precommit_sector, prove_commit
from .test_devnet_messages import chain  # noqa: F401 - the fixture: a devnet with miner f01000

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = bytes(range(192))                      # accepted unverified (TrustExternalProofs)
PIECE = commp_bytes(bytes([9]) * 1016)
PIECE_CID = commd_to_cid(PIECE.commitment)
COMM_D = comm_d_from_pieces([PIECE], 2048)


class NodeLike:
    """The devnet answering as a Lotus node does: its SectorOnChainInfo has no deal ids
    (builtin-actors b0a3bdd6 leaves them empty, `deprecated_deal_ids: vec![]`)."""

    def __init__(self, devnet):
        self._devnet = devnet

    def __getattr__(self, name):
        return getattr(self._devnet, name)

    def sectors(self, miner):
        return [replace(s, deal_ids=[]) for s in self._devnet.sectors(miner)]




def _land(chain, nonce, method, params):
    msg = chain.push_message(MINER, method, params, nonce=nonce)
    chain.advance(chain.policy.message_delay)
    assert chain.receipt(msg).ok, chain.receipt(msg)
    return msg


def test_deals_come_from_the_proofs_manifests_the_precommits_deal_ids_or_the_managers_deals(chain, tmp_path):
    deals = [chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880) for _ in range(3)]
    expiration = chain.head() + 540 * 2880
    sectors = [precommit_sector(P2K.id, 1, bytes(31) + b"\x01", COMM_D, 15, expiration),                  # DDO, proven
               precommit_sector(P2K.id, 2, bytes(31) + b"\x02", COMM_D, 15, expiration),                  # DDO, waiting
               precommit_sector(P2K.id, 3, bytes(31) + b"\x03", COMM_D, 15, expiration, [deals[2]])]      # before DDO
    pre = _land(chain, 0, "PreCommitSectorBatch2", {"Sectors": sectors})
    chain.advance(chain.policy.precommit_challenge_delay)
    proof = _land(chain, 1, "ProveCommitSectors3", prove_commit({1: SNARK}, {1: [market_piece(deals[0], PIECE_CID, PIECE.size)]}))
    assert [s.number for s in chain.sectors(MINER)] == [1]

    state = ManagerState(tmp_path / "manager.db")          # lost its sector records; still knows sector 2's deal
    try:
        with state.tx() as db:
            db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, "
                       "sector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (deals[1], MINER, PIECE_CID, PIECE.size, 1016, 500, 180 * 2880, "", 2))
        done = recover_sectors(state, NodeLike(chain), [], [MINER])
        assert sorted(done) == [(MINER, 1, "Finished"), (MINER, 2, "PCLanded"), (MINER, 3, "PCLanded")]
        records = {n: state.sector(MINER, n) for n in (1, 2, 3)}
        assert [records[n]["deals"] for n in (1, 2, 3)] == [[deals[0]], [deals[1]], [deals[2]]]
        assert (records[1]["proof_msg"], records[1]["commit_proof"]) == (proof, base64.b64encode(SNARK).decode())
        assert all(records[n]["pre_msg"] == pre and records[n]["pre"]["CommD"] == COMM_D.hex() for n in (1, 2, 3))
        tied = dict(state.query("SELECT id, sector FROM deals ORDER BY id"))
        assert tied == {deals[0]: 1, deals[1]: 2, deals[2]: 3}
    finally:
        state.close()
