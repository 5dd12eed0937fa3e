"""The devnet's miner actor reads builtin-actors' current methods in go-state-types' shapes:
ProveCommitSectors3 (batched proofs, aggregates, deals as piece manifests notifying f05: the
direct data onboarding path, a PreCommit that named deals refused as builtin-actors does), params
checked through the codec (21 naming the field), the retired methods unhandled (22). Proofs are
192-byte Groth16 stand-ins accepted unverified (TrustExternalProofs), so no sector is sealed."""

import base64

import pytest

from appliance.chain.actor_params import market_piece
from appliance.chain.devnet import Devnet
from appliance.chain.miner_actor import encode_aggregate
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_bytes

from .chain_messages import precommit_sector, prove_commit, prove_commit_aggregate

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = bytes(range(192))
PIECE = commp_bytes(bytes([3]) * 1016)            # a 1024-byte padded piece
PIECE_CID = commd_to_cid(PIECE.commitment)


@pytest.fixture
def chain(tmp_path):
    d = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True))
    d.create_miner(MINER, P2K.id)
    d.advance(20)
    yield d
    d.close()


def land(chain, method, params):
    mid = chain.push_message(MINER, method, params)
    chain.advance(chain.policy.message_delay)
    return chain.receipt(mid)


def precommit(chain, numbers, deals=None, deal_ids=None, pieces=None):
    """PreCommit `numbers`. `deals` {number: deal}: a DDO sector (no DealIDs, UnsealedCid the
    CommD of PIECE); `deal_ids` {number: [deal]}: the PreCommit names them (as older managers
    sent); `pieces` {number: [PieceInfo]}: a DDO sector of other pieces."""
    deals, deal_ids, pieces = deals or {}, deal_ids or {}, dict(pieces or {})
    sectors = []
    for n in numbers:
        if n in deals or n in deal_ids:
            pieces.setdefault(n, [PIECE])
        sectors.append(precommit_sector(P2K.id, n, bytes(31) + bytes([n]), comm_d_from_pieces(pieces.get(n, []), 2048), 15,
                                        chain.head() + 540 * 2880, deal_ids=deal_ids.get(n, [])))
    rec = land(chain, "PreCommitSectorBatch2", {"Sectors": sectors})
    assert rec.ok, rec
    chain.advance(chain.policy.precommit_challenge_delay)


def test_one_message_proves_several_sectors(chain):
    precommit(chain, [1, 2, 3])
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK, 2: SNARK, 3: SNARK}))
    assert rec.ok, rec
    assert [s.number for s in chain.sectors(MINER)] == [1, 2, 3]


def test_aggregate_goes_in_prove_commit_sectors3(chain):
    precommit(chain, [1, 2, 3, 4])
    agg = encode_aggregate({n: SNARK for n in (1, 2, 3, 4)})
    wrong_type = {**prove_commit_aggregate([1, 2, 3, 4], agg), "AggregateProofType": 0}
    rec = land(chain, "ProveCommitSectors3", wrong_type)
    assert rec.exit_code == 16 and "SnarkPackV2" in rec.error
    rec = land(chain, "ProveCommitSectors3", prove_commit_aggregate([1, 2, 3, 4], agg))
    assert rec.ok, rec
    assert len(chain.sectors(MINER)) == 4


@pytest.mark.parametrize("change, why", [
    ({"SectorProofs": []}, "exactly one of sector proofs or aggregate proof"),
    ({"AggregateProof": base64.b64encode(b"x").decode()}, "exactly one of sector proofs or aggregate proof"),
    ({"AggregateProofType": 1}, "aggregate proof type must be null"),
    ({"SectorProofs": [base64.b64encode(SNARK).decode()] * 2}, "mismatched lengths"),
    ({"SectorActivations": []}, "no sectors to prove"),
])
def test_prove_commit_sectors3_rules(chain, change, why):
    precommit(chain, [1])
    rec = land(chain, "ProveCommitSectors3", {**prove_commit({1: SNARK}), **change})
    assert rec.exit_code == 16 and why in rec.error, rec
    assert chain.sector(MINER, 1) is None


def test_a_ddo_sector_lands_with_the_deals_its_pieces_notify(chain):
    """Direct data onboarding, as builtin-actors b0a3bdd6: the PreCommit names no deals and
    declares the pieces' CommD; ProveCommitSectors3's manifests bring the deals, each piece
    notifying f05, and the market activates them."""
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
    precommit(chain, [1], deals={1: deal})
    pc = chain.precommit(MINER, 1)
    assert pc.deal_ids == [] and pc.unsealed_cid == commd_to_cid(comm_d_from_pieces([PIECE], 2048))
    assert chain.deal(deal)["sector"] is None                       # nothing claimed at PreCommit
    other_actor = {**market_piece(deal, PIECE_CID, PIECE.size), "Notify": [{"Address": "f06", "Payload": "AQ=="}]}
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK}, {1: [other_actor]}))
    assert rec.exit_code == 16 and "market actor f05" in rec.error, rec
    assert chain.deal(deal)["activated"] is None and chain.sector(MINER, 1) is None
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK}, {1: [market_piece(deal, PIECE_CID, PIECE.size)]}))
    assert rec.ok, rec
    assert chain.sector(MINER, 1).deal_ids == [deal]
    assert chain.sector(MINER, 1).unsealed_cid == pc.unsealed_cid
    assert (chain.deal(deal)["sector"], chain.deal(deal)["activated"]) == (1, rec.epoch)


def test_prove_commit_sectors3_refuses_a_precommit_that_named_deals(chain):
    """builtin-actors b0a3bdd6 lib.rs prove_commit_sectors3: validate_precommits(allow_deals =
    false), "precommit has deal ids which are disallowed"; the PreCommit itself is still taken.
    All or nothing: the CC sector in the same message is not proven either."""
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
    precommit(chain, [1, 2], deal_ids={1: [deal]})
    assert chain.precommit(MINER, 1).deal_ids == [deal] and chain.deal(deal)["sector"] == 1
    rec = land(chain, "ProveCommitSectors3",
               prove_commit({1: SNARK, 2: SNARK}, {1: [market_piece(deal, PIECE_CID, PIECE.size)]}))
    assert rec.exit_code == 16, rec
    assert "sector 1: precommit has deal ids which are disallowed" in rec.error, rec
    assert chain.sectors(MINER) == [] and chain.deal(deal)["activated"] is None
    assert chain.precommit(MINER, 1) is not None and chain.precommit(MINER, 2) is not None


OTHER = commp_bytes(bytes([4]) * 1016)             # another 1024-byte piece


@pytest.mark.parametrize("precommitted, manifest_pieces", [
    ([PIECE], []),                                 # a sector with data proven as if CC
    ([], [PIECE]),                                 # a CC sector (UnsealedCid null) given a piece
    ([PIECE], [OTHER]),                            # another piece than the PreCommit's CommD
    ([PIECE, OTHER], [OTHER, PIECE]),              # the right pieces in the wrong order
])
def test_the_manifests_commd_must_be_the_precommits_unsealed_cid(chain, precommitted, manifest_pieces):
    deals = {p.commitment: chain.publish_deal(MINER, commd_to_cid(p.commitment), p.size, 500, 180 * 2880)
             for p in (PIECE, OTHER)}
    precommit(chain, [1], pieces={1: precommitted})
    manifests = [market_piece(deals[p.commitment], commd_to_cid(p.commitment), p.size) for p in manifest_pieces]
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK}, {1: manifests}))
    declared = commd_to_cid(comm_d_from_pieces(precommitted, 2048))
    computed = commd_to_cid(comm_d_from_pieces(manifest_pieces, 2048))
    assert rec.exit_code == 16, rec
    assert f"unsealed CID does not match pieces for sector 1, computed {computed} declared {declared}" in rec.error
    assert chain.sector(MINER, 1) is None and all(chain.deal(d)["activated"] is None for d in deals.values())


def _refused_deal(chain, case):
    """A deal of PIECE that a DDO sector's manifest may not activate, and the words saying why."""
    head = chain.head()
    if case == "another provider's":
        chain.create_miner(MINER + 1, P2K.id)
        deal = chain.publish_deal(MINER + 1, PIECE_CID, PIECE.size, 500, 180 * 2880)
        return deal, 18, f"deal {deal} is for provider f0{MINER + 1}"
    if case == "already activated":
        deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
        precommit(chain, [5], deals={5: deal})
        assert land(chain, "ProveCommitSectors3", prove_commit({5: SNARK}, {5: [market_piece(deal, PIECE_CID, PIECE.size)]})).ok
        return deal, 16, f"sector 1: deal {deal} already activated (in sector 5)"
    if case == "started":
        deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, head + 2, 180 * 2880)
        return deal, 16, f"sector 1: deal {deal}: proposal start epoch {head + 2} has already elapsed"
    if case == "ending after the sector":
        deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 600 * 2880)
        return deal, 16, f"sector 1: deal {deal}: proposal expiration {600 * 2880} exceeds sector expiration"
    if case == "held by another PreCommit":
        deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
        precommit(chain, [6], deal_ids={6: [deal]})
        return deal, 16, f"sector 1: deal {deal} is held by the PreCommit of sector 6"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["another provider's", "already activated", "started", "ending after the sector",
                                  "held by another PreCommit"])
def test_a_manifest_naming_a_deal_the_market_cannot_activate_is_refused(chain, case):
    deal, code, why = _refused_deal(chain, case)
    before = chain.deal(deal)
    precommit(chain, [1], deals={1: deal})
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK}, {1: [market_piece(deal, PIECE_CID, PIECE.size)]}))
    assert rec.exit_code == code and why in rec.error, rec
    assert chain.sector(MINER, 1) is None and chain.deal(deal) == before


def test_one_deal_in_two_sectors_of_a_message_is_refused(chain):
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, 500, 180 * 2880)
    precommit(chain, [1, 2], deals={1: deal, 2: deal})
    piece = market_piece(deal, PIECE_CID, PIECE.size)
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK, 2: SNARK}, {1: [piece], 2: [piece]}))
    assert rec.exit_code == 16 and f"sector 2: deal {deal} already activated (in sector 1)" in rec.error, rec
    assert chain.sectors(MINER) == [] and chain.deal(deal)["activated"] is None


@pytest.mark.parametrize("method, params, field", [
    ("PreCommitSectorBatch2", {"Sectors": [{"SectorNumber": 1}]}, "Sectors[0].SealProof: missing"),
    ("ProveCommitSectors3", {**prove_commit({1: SNARK}), "Extra": 1}, "unknown field(s) Extra"),
    ("SubmitWindowedPoSt", {"Deadline": 0, "Partitions": [{"Index": 0, "Skipped": [0, 1, 0]}], "Proofs": [],
                            "ChainCommitEpoch": 1, "ChainCommitRand": ""}, "Partitions[0].Skipped[2]"),
    ("DeclareFaults", {"Faults": [{"Deadline": 0, "Partition": 0, "Sectors": [1, 0]}]}, "Faults[0].Sectors[1]: a zero-length run"),
    ("DeclareFaultsRecovered", {"Recoveries": [{"Deadline": 0, "Partition": 0, "Sectors": "1"}]},
     "Recoveries[0].Sectors: expected a list"),
    ("ProveReplicaUpdates3", {"SectorUpdates": []}, "SectorProofs: missing"),
])
def test_params_are_read_through_the_codec(chain, method, params, field):
    rec = land(chain, method, params)
    assert rec.exit_code == 21 and field in rec.error, rec


@pytest.mark.parametrize("method", ["PreCommitSector", "PreCommitSectorBatch", "ProveCommitSector",
                                    "ProveCommitAggregate", "ProveReplicaUpdates", "ProveReplicaUpdates2"])
def test_retired_methods_are_unhandled(chain, method):
    rec = land(chain, method, {})
    assert rec.exit_code == 22 and method in rec.error


def _live_cc_sector(chain):
    """Sector 1, proven CC, at an epoch where its deadline may be changed (deadlines.is_mutable)."""
    from appliance.chain import deadlines as dl
    precommit(chain, [1])
    assert land(chain, "ProveCommitSectors3", prove_commit({1: SNARK})).ok
    index, partition = chain.db.execute("SELECT deadline, partition FROM sector_deadlines WHERE miner = ? AND number = 1",
                                        (MINER,)).fetchone()
    start = chain.miner_info(MINER).proving_period_start
    while not dl.is_mutable(chain.policy, start, index, chain.head() + chain.policy.message_delay):
        chain.advance(1)
    return index, partition


def test_replica_update_takes_its_deals_from_piece_manifests(chain):
    from appliance.proofs.snap import update_proof_for_seal
    index, partition = _live_cc_sector(chain)
    deal = chain.publish_deal(MINER, PIECE_CID, PIECE.size, chain.head() + 500, 180 * 2880)
    upd = update_proof_for_seal(P2K)

    def update(pieces, **over):
        return {"SectorUpdates": [{"Sector": 1, "Deadline": index, "Partition": partition,
                                   "NewSealedCID": {"/": "bagboea4b5abcatlxechwbp7kjpjguna6r6q7ejrhe6mdp3lf34pmswn27pkkiekz"},
                                   "Pieces": pieces}],
                "SectorProofs": [base64.b64encode(SNARK * upd.partitions).decode()], "AggregateProof": "",
                "UpdateProofsType": upd.id, "AggregateProofType": None,
                "RequireActivationSuccess": True, "RequireNotificationSuccess": True, **over}

    rec = land(chain, "ProveReplicaUpdates3", update([]))
    assert rec.exit_code == 16 and "an update needs deals" in rec.error, rec
    rec = land(chain, "ProveReplicaUpdates3", update([market_piece(deal, PIECE_CID, PIECE.size)],
                                                      AggregateProof=base64.b64encode(b"x").decode()))
    assert rec.exit_code == 16 and "aggregation is not supported" in rec.error, rec
    rec = land(chain, "ProveReplicaUpdates3", update([market_piece(deal + 1, PIECE_CID, PIECE.size)]))
    assert rec.exit_code == 17 and f"deal {deal + 1} not found" in rec.error, rec
    rec = land(chain, "ProveReplicaUpdates3", update([market_piece(deal, PIECE_CID, PIECE.size)]))
    assert rec.ok, rec
    s = chain.sector(MINER, 1)
    assert s.deal_ids == [deal] and s.sector_key_cid is not None and chain.deal(deal)["activated"] is not None
