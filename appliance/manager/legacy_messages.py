"""Messages journalled by a manager from before the chain messages took builtin-actors' current
methods and go-state-types' shapes, rewritten to those (the outbox is upgraded once, by the state's
schema migration, so that an unsent message is sent in the form the chain now takes):

  PreCommitSectorBatch   -> PreCommitSectorBatch2 (CIDs as {"/": cid}, UnsealedCid, no DealIDs)
  ProveCommitSector      -> ProveCommitSectors3 with one sector proof
  ProveCommitAggregate   -> ProveCommitSectors3 with the aggregate proof (SnarkPackV2)
  ProveReplicaUpdates    -> ProveReplicaUpdates3 (deals as piece manifests)
  SubmitWindowedPoSt, DeclareFaults, DeclareFaultsRecovered keep their names; their sector lists
  become bitfields (Go's run-length JSON).

`pieces(deal_ids)` gives each deal's (piece CID, padded size), in order: a deal's piece goes in the
proof's manifest, notifying the market actor of the deal.

Direct data onboarding (builtin-actors b0a3bdd6 refuses pre-committed deals in ProveCommitSectors3):
an unsent PreCommit, old method or PreCommitSectorBatch2 (schema version 5), is rewritten with
DealIDs empty and UnsealedCid the CommD of its deals' pieces; the deals go in the proof's manifests."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..chain.actor_params import SNARK_PACK_V2, market_piece
from ..chain.bitfield import json_from_numbers
from ..core.proof_types import seal_proof
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commd_to_cid
from ..proofs.commitment import PieceInfo, comm_d_from_pieces

PieceLookup = Callable[[list[int]], list[tuple[str, int]]]


class LegacyMessageError(ValueError):
    pass


def _cid(value) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    return {"/": value}


def manifests(deal_ids: list[int], pieces: PieceLookup) -> list[dict]:
    found = pieces(deal_ids)
    return [market_piece(d, cid, size) for d, (cid, size) in zip(deal_ids, found)]


def _precommit(params: dict, pieces: PieceLookup, sector_deals) -> dict:
    return without_deal_ids({"Sectors": [{"SealProof": s["SealProof"], "SectorNumber": s["SectorNumber"],
                                          "SealedCID": _cid(s["SealedCID"]), "SealRandEpoch": s["SealRandEpoch"],
                                          "DealIDs": s.get("DealIDs") or [], "Expiration": s["Expiration"],
                                          "UnsealedCid": _cid(s.get("UnsealedCID", s.get("UnsealedCid")))}
                                         for s in params["Sectors"]]}, pieces)


def without_deal_ids(params: dict, pieces: PieceLookup) -> dict:
    """PreCommitSectorBatch2 params with no DealIDs: a sector that named deals declares their
    pieces' CommD as its UnsealedCid instead (it did already when the manager sent one)."""
    sectors = []
    for s in params["Sectors"]:
        deal_ids = s.get("DealIDs") or []
        unsealed = s.get("UnsealedCid")
        if deal_ids and unsealed is None:
            try:
                size = seal_proof(s["SealProof"]).size.bytes
                infos = [PieceInfo(piece_size, cid_to_commitment(cid)[1]) for cid, piece_size in pieces(deal_ids)]
                unsealed = {"/": commd_to_cid(comm_d_from_pieces(infos, size))}
            except (ProofError, ValueError) as exc:
                raise LegacyMessageError(f"sector {s['SectorNumber']}: the CommD of deals {deal_ids}: {exc}") from None
        sectors.append({**s, "DealIDs": [], "UnsealedCid": unsealed})
    return {**params, "Sectors": sectors}


def _activations(numbers: list[int], pieces: PieceLookup, sector_deals) -> list[dict]:
    return [{"SectorNumber": n, "Pieces": manifests(sector_deals(n), pieces)} for n in numbers]


def _prove_one(params: dict, pieces: PieceLookup, sector_deals) -> dict:
    return {"SectorActivations": _activations([params["SectorNumber"]], pieces, sector_deals),
            "SectorProofs": [params["Proof"]], "AggregateProof": "", "AggregateProofType": None,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": True}


def _prove_aggregate(params: dict, pieces: PieceLookup, sector_deals) -> dict:
    return {"SectorActivations": _activations(sorted(params["SectorNumbers"]), pieces, sector_deals),
            "SectorProofs": [], "AggregateProof": params["AggregateProof"], "AggregateProofType": SNARK_PACK_V2,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": True}


def _replica_updates(params: dict, pieces: PieceLookup, sector_deals) -> dict:
    updates = params["Updates"]
    kinds = {u["UpdateProofType"] for u in updates}
    if len(kinds) != 1:
        raise LegacyMessageError(f"ProveReplicaUpdates with {len(kinds)} update proof types cannot be one ProveReplicaUpdates3")
    return {"SectorUpdates": [{"Sector": u["SectorID"], "Deadline": u["Deadline"], "Partition": u["Partition"],
                               "NewSealedCID": _cid(u["NewSealedCID"]), "Pieces": manifests(u.get("Deals") or [], pieces)}
                              for u in updates],
            "SectorProofs": [u["ReplicaProof"] for u in updates], "AggregateProof": "", "UpdateProofsType": kinds.pop(),
            "AggregateProofType": None, "RequireActivationSuccess": True, "RequireNotificationSuccess": True}


def _bitfields(key: str, field: str):
    def convert(params: dict, pieces, sector_deals) -> dict:
        return {**params, key: [{**e, field: json_from_numbers(e[field] or [])} for e in params[key]]}
    return convert


RENAMED = {
    "PreCommitSectorBatch": ("PreCommitSectorBatch2", _precommit),
    "ProveCommitSector": ("ProveCommitSectors3", _prove_one),
    "ProveCommitAggregate": ("ProveCommitSectors3", _prove_aggregate),
    "ProveReplicaUpdates": ("ProveReplicaUpdates3", _replica_updates),
    "SubmitWindowedPoSt": ("SubmitWindowedPoSt", _bitfields("Partitions", "Skipped")),
    "DeclareFaults": ("DeclareFaults", _bitfields("Faults", "Sectors")),
    "DeclareFaultsRecovered": ("DeclareFaultsRecovered", _bitfields("Recoveries", "Sectors")),
}


def translate(method: str, params: dict, pieces: PieceLookup, sector_deals: Callable[[int], list[int]]) -> tuple[str, dict]:
    """An outbox message from before the upgrade -> (method, params) as the chain takes them now.
    `sector_deals(number)` gives a sector's deal ids (for a proof's piece manifests)."""
    if method not in RENAMED:
        return method, params
    new_name, convert = RENAMED[method]
    try:
        return new_name, convert(params, pieces, sector_deals)
    except (KeyError, TypeError) as exc:
        raise LegacyMessageError(f"{method} params from before the upgrade lack {exc}") from None


def _db_pieces(db, deal_ids: list[int]) -> list[tuple[str, int]]:
    """(piece CID, padded size) of each deal in manager.db's deals (an sqlite3 connection)."""
    out = []
    for d in deal_ids:
        row = db.execute("SELECT piece_cid, piece_size FROM deals WHERE id = ?", (d,)).fetchone()
        if row is None:
            raise LegacyMessageError(f"deal {d} is not in manager.db's deals: its piece is unknown")
        out.append((row[0], row[1]))
    return out


def upgrade_outbox(db) -> int:
    """Rewrite every unsent outbox row of manager.db (an sqlite3 connection, inside the
    migration's transaction) to the current methods and shapes; returns how many changed."""
    def pieces(deal_ids: list[int]) -> list[tuple[str, int]]:
        return _db_pieces(db, deal_ids)

    changed = 0
    rows = db.execute("SELECT miner, nonce, method, params FROM outbox WHERE message IS NULL ORDER BY miner, nonce").fetchall()
    for miner, nonce, method, params in rows:
        if method not in RENAMED:
            continue

        def sector_deals(number: int, miner=miner) -> list[int]:
            row = db.execute("SELECT info FROM sectors WHERE miner = ? AND number = ?", (miner, number)).fetchone()
            return list(json.loads(row[0]).get("deals") or []) if row else []

        try:
            new_method, new_params = translate(method, json.loads(params), pieces, sector_deals)
        except LegacyMessageError as exc:
            raise LegacyMessageError(f"outbox message of f0{miner} at nonce {nonce} ({method}): {exc}") from None
        db.execute("UPDATE outbox SET method = ?, params = ? WHERE miner = ? AND nonce = ?",
                   (new_method, json.dumps(new_params), miner, nonce))
        changed += 1
    return changed


def drop_precommit_deals(db) -> int:
    """Schema version 5: every unsent PreCommitSectorBatch2 row of manager.db that names deals is
    rewritten without them (`without_deal_ids`); returns how many changed."""
    changed = 0
    rows = db.execute("SELECT miner, nonce, params FROM outbox WHERE message IS NULL AND method = 'PreCommitSectorBatch2' "
                      "ORDER BY miner, nonce").fetchall()
    for miner, nonce, params in rows:
        old = json.loads(params)
        try:
            if not any(s.get("DealIDs") for s in old["Sectors"]):
                continue
            new = without_deal_ids(old, lambda deal_ids: _db_pieces(db, deal_ids))
        except (LegacyMessageError, KeyError, TypeError) as exc:
            raise LegacyMessageError(f"outbox message of f0{miner} at nonce {nonce} (PreCommitSectorBatch2): {exc}") from None
        db.execute("UPDATE outbox SET params = ? WHERE miner = ? AND nonce = ?", (json.dumps(new), miner, nonce))
        changed += 1
    return changed


def is_old_form(state, miner: int, on_chain: dict, method: str, params: dict) -> bool:
    """Whether the chain's message (method, params) is this journalled one as a manager from
    before the upgrade wrote it (the journal row having been rewritten since): an old method, or
    a PreCommitSectorBatch2 that named deals."""
    if on_chain["method"] == method and on_chain["params"] == params:
        return False

    def pieces(deal_ids: list[int]) -> list[tuple[str, int]]:
        try:
            return state.deal_pieces(deal_ids)
        except ValueError as exc:
            raise LegacyMessageError(str(exc)) from None

    try:
        if on_chain["method"] == "PreCommitSectorBatch2":
            return method == on_chain["method"] and without_deal_ids(on_chain["params"], pieces) == params
        if on_chain["method"] not in RENAMED:
            return False
        return translate(on_chain["method"], on_chain["params"], pieces,
                         lambda n: list((state.sector(miner, n) or {}).get("deals") or [])) == (method, params)
    except (LegacyMessageError, KeyError, TypeError):
        return False
