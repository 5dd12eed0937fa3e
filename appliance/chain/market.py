"""The devnet's storage market (builtin-actors' market actor, reduced to what sealing needs):
a published deal names a provider (miner), a piece (CID and padded size) and its start and end
epochs. Deals are activated by ProveCommitSectors3's piece manifests, each notifying this actor
of its deal (direct data onboarding; builtin-actors' sector_content_changed, actors/market/src/
lib.rs, commit b0a3bdd6): the deal must be this provider's, not active, not started, and end by
the sector's expiration (`activate_notified`). A deal that reaches its start epoch without being
activated has expired. A PreCommit that names DealIDs (as older managers sent) still has them
checked and claimed (`check_precommit`), but ProveCommitSectors3 refuses such a PreCommit, so
they go back when it expires; ProveReplicaUpdates3 claims and activates in one message.

Simplification: deals are published by an admin call (the embedded market, `damocles util piece
import`), not by a client's signed PublishStorageDeals message; there is no collateral or
payment."""

from __future__ import annotations

from ..core.proof_types import seal_proof
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from .types import ActorError, ChainError, ExitCode

SCHEMA = """
CREATE TABLE IF NOT EXISTS deals (id INTEGER PRIMARY KEY AUTOINCREMENT, miner INTEGER NOT NULL, piece_cid TEXT NOT NULL,
    piece_size INTEGER NOT NULL, client TEXT NOT NULL, start_epoch INTEGER NOT NULL, end_epoch INTEGER NOT NULL,
    sector INTEGER, activated INTEGER, published INTEGER NOT NULL);
"""


def _row(r) -> dict:
    deal_id, miner, cid, size, client, start, end, sector, activated, published = r
    return {"id": deal_id, "miner": miner, "piece_cid": cid, "piece_size": size, "client": client, "start_epoch": start,
            "end_epoch": end, "sector": sector, "activated": activated, "published": published}


_COLS = "id, miner, piece_cid, piece_size, client, start_epoch, end_epoch, sector, activated, published"


def publish(state, miner: int, piece_cid: str, piece_size: int, start_epoch: int, end_epoch: int, client: str) -> int:
    info = state.miner_info(miner)
    try:
        kind, _ = cid_to_commitment(piece_cid)
        PieceInfo(piece_size, cid_to_commitment(piece_cid)[1])
    except ProofError as exc:
        raise ChainError(f"deal: {exc}") from None
    if kind != "unsealed":
        raise ChainError(f"deal: {piece_cid} is not a piece CID")
    if piece_size > info.sector_size:
        raise ChainError(f"deal: a piece of {piece_size} padded bytes does not fit a {info.sector_size}-byte sector")
    if start_epoch <= state.epoch:
        raise ChainError(f"deal: start epoch {start_epoch} is not after the current epoch {state.epoch}")
    if end_epoch <= start_epoch:
        raise ChainError(f"deal: end epoch {end_epoch} is not after its start epoch {start_epoch}")
    cur = state.db.execute("INSERT INTO deals (miner, piece_cid, piece_size, client, start_epoch, end_epoch, published) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (miner, piece_cid, piece_size, client, start_epoch, end_epoch, state.epoch))
    return cur.lastrowid


def get(state, deal_id: int) -> dict | None:
    r = state.db.execute(f"SELECT {_COLS} FROM deals WHERE id = ?", (deal_id,)).fetchone()
    return _row(r) if r else None


def listing(state, miner: int | None) -> list[dict]:
    rows = state.db.execute(f"SELECT {_COLS} FROM deals WHERE ? IS NULL OR miner = ? ORDER BY id", (miner, miner)).fetchall()
    out = []
    for r in rows:
        d = _row(r)
        d["state"] = "active" if d["activated"] is not None else (
            "expired" if d["start_epoch"] < state.epoch else ("precommitted" if d["sector"] is not None else "published"))
        out.append(d)
    return out


def check_precommit(state, miner: int, number: int, proof_id: int, deal_ids: list, expiration: int) -> bytes:
    """The CommD the sector's deals require (ActorError naming the deal otherwise), and claim
    the deals for the sector."""
    if not isinstance(deal_ids, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in deal_ids):
        raise ActorError(ExitCode.SERIALIZATION, f"sector {number}: DealIDs must be a list of deal ids")
    if len(set(deal_ids)) != len(deal_ids):
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: a deal is listed twice")
    size = seal_proof(proof_id).size.bytes
    pieces = []
    for deal_id in deal_ids:
        d = get(state, deal_id)
        if d is None:
            raise ActorError(ExitCode.NOT_FOUND, f"sector {number}: deal {deal_id} not found")
        if d["miner"] != miner:
            raise ActorError(ExitCode.FORBIDDEN, f"sector {number}: deal {deal_id} is for provider f0{d['miner']}")
        if d["activated"] is not None or (d["sector"] is not None and d["sector"] != number):
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: deal {deal_id} is already in sector {d['sector']}")
        if d["start_epoch"] <= state.epoch:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: deal {deal_id} started at {d['start_epoch']}")
        if d["end_epoch"] > expiration:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT,
                             f"sector {number}: deal {deal_id} ends at {d['end_epoch']}, after the sector expires at {expiration}")
        pieces.append(PieceInfo(d["piece_size"], cid_to_commitment(d["piece_cid"])[1]))
    try:
        comm_d = comm_d_from_pieces(pieces, size)
    except ProofError as exc:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: the deals' pieces do not fit: {exc}") from None
    for deal_id in deal_ids:
        state.db.execute("UPDATE deals SET sector = ? WHERE id = ?", (number, deal_id))
    return comm_d


def activate(state, miner: int, number: int, deal_ids: list[int]) -> None:
    """ProveReplicaUpdates3: the deals `check_precommit` claimed for the sector in the same message."""
    for deal_id in deal_ids:
        d = get(state, deal_id)
        if d is None or d["sector"] != number or d["miner"] != miner:
            raise ActorError(ExitCode.ILLEGAL_STATE, f"sector {number}: deal {deal_id} is not pre-committed to it")
        if d["start_epoch"] < state.epoch:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT,
                             f"sector {number}: deal {deal_id} started at {d['start_epoch']} before the sector was proven")
        state.db.execute("UPDATE deals SET activated = ? WHERE id = ?", (state.epoch, deal_id))


def activate_notified(state, miner: int, number: int, deal_ids: list[int], expiration: int) -> None:
    """Activate the deals a sector's piece manifests notified this actor of, in the sector
    (ActorError naming the deal otherwise: the whole message fails, as RequireNotificationSuccess
    asks). Each deal's provider, piece CID and size were checked against its manifest
    (miner_actor.deals_of_pieces)."""
    for i, deal_id in enumerate(deal_ids):
        where = f"sector {number}: deal {deal_id}"
        if deal_id in deal_ids[:i]:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where}: duplicated deal")
        d = get(state, deal_id)
        if d is None:
            raise ActorError(ExitCode.NOT_FOUND, f"{where} not found")
        if d["miner"] != miner:
            raise ActorError(ExitCode.FORBIDDEN, f"{where}: proposal has provider f0{d['miner']}, must be f0{miner}")
        if d["activated"] is not None:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where} already activated (in sector {d['sector']})")
        if d["sector"] is not None and d["sector"] != number:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where} is held by the PreCommit of sector {d['sector']}")
        if state.epoch > d["start_epoch"]:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT,
                             f"{where}: proposal start epoch {d['start_epoch']} has already elapsed at {state.epoch}")
        if d["end_epoch"] > expiration:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT,
                             f"{where}: proposal expiration {d['end_epoch']} exceeds sector expiration {expiration}")
        state.db.execute("UPDATE deals SET sector = ?, activated = ? WHERE id = ?", (number, state.epoch, deal_id))


def release(state, miner: int, number: int) -> None:
    """A PreCommit that expired gives its deals back."""
    state.db.execute("UPDATE deals SET sector = NULL WHERE miner = ? AND sector = ? AND activated IS NULL", (miner, number))
