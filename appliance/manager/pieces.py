"""A sector's deals as Damocles' `SectorPieces` (a list of `SectorPieceV2`), the shape AcquireDeals
answers and the Rust worker reads as `DealsV2`.

Each entry is {"Piece": abi.PieceInfo, "DealInfo": DealInfoV2}: `Piece` is {Size, PieceCID}; `DealInfo`
carries the fields of venus' market DealInfoV2 (embedded, so flattened by encoding/json) and
Damocles' own IsBuiltinMarket and IsCompatible. The embedded market publishes deals without a
client's message, so `PublishCid` is null and `Client` is Go's undefined address ("<empty>")."""

from __future__ import annotations

from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo, piece_offsets

UNDEF_ADDRESS = "<empty>"      # how go-address writes address.Undef


def sector_pieces(deals: list[dict] | None, sector_bytes: int) -> list[dict] | None:
    """`deals` in the market's order (Market._deal_info entries) as SectorPieces; None stays None
    (a CC sector: Go answers null). Offsets are where each piece lands in the sector, with
    Filecoin's alignment, as the worker places them."""
    if deals is None:
        return None
    offsets = piece_offsets([PieceInfo(d["PieceSize"], cid_to_commitment(d["PieceCID"]["/"])[1]) for d in deals],
                            sector_bytes)
    return [_piece(d, offset) for d, offset in zip(deals, offsets)]


def _piece(d: dict, offset: int) -> dict:
    proposal = d.get("Proposal") or {}
    return {
        "Piece": {"Size": d["PieceSize"], "PieceCID": d["PieceCID"]},
        "DealInfo": {
            "DealID": d["ID"],
            "PublishCid": None,
            "AllocationID": 0,                  # a builtin-market deal, not a DDO allocation
            "PieceCID": d["PieceCID"],
            "PieceSize": d["PieceSize"],
            "Client": UNDEF_ADDRESS,
            "Provider": proposal.get("Provider", UNDEF_ADDRESS),
            "Offset": offset,
            "Length": d["PieceSize"],
            "PayloadSize": d["PayloadSize"],
            "StartEpoch": proposal.get("StartEpoch", 0),
            "EndEpoch": proposal.get("EndEpoch", 0),
            "IsBuiltinMarket": True,
            "IsCompatible": False,              # the worker pads the piece itself
        },
    }
