"""The shapes Damocles' manager answers on its task methods (AllocateSanpUpSector,
AllocateRebuildSector, AllocateUnsealSector), as Go's encoding/json writes them from its core
types: `[32]byte` as an array of numbers, `cid.Cid` as {"/": ...}, nil pointers and slices as
null, field names as written in Go.

A piece of a sector is Go's SectorPieceV2: {Piece: abi.PieceInfo {Size, PieceCID}, DealInfo:
{the fields of venus' market DealInfoV2, flattened, plus IsBuiltinMarket and IsCompatible}}. The
Rust worker reads Piece.Size, Piece.PieceCID and DealInfo.{DealID, AllocationID, PayloadSize,
IsBuiltinMarket}; the rest is there because Go writes it."""

from __future__ import annotations

from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo, piece_offsets

UNDEF_ADDRESS = "<empty>"        # go-address' JSON for address.Undef: the devnet's deals have no client address


def sector_pieces(deals: list[dict], sector_bytes: int) -> list[dict]:
    """Go's SectorPieces for the deals of one sector (rows of Market.deals, in sector order)."""
    offsets = piece_offsets([PieceInfo(d["PieceSize"], cid_to_commitment(d["PieceCID"])[1]) for d in deals], sector_bytes)
    return [{"Piece": {"Size": d["PieceSize"], "PieceCID": {"/": d["PieceCID"]}},
             "DealInfo": {"DealID": d["DealID"], "PublishCid": None, "AllocationID": 0,
                          "PieceCID": {"/": d["PieceCID"]}, "PieceSize": d["PieceSize"], "Client": UNDEF_ADDRESS,
                          "Provider": f"f0{d['Miner']}", "Offset": offset, "Length": d["PieceSize"],
                          "PayloadSize": d["PayloadSize"], "StartEpoch": d["StartEpoch"], "EndEpoch": d["EndEpoch"],
                          "IsBuiltinMarket": True, "IsCompatible": False}}
            for d, offset in zip(deals, offsets)]


def public_info(sealed_cid: str, activation: int, expiration: int) -> dict:
    """Go's SectorPublicInfo {CommR [32]byte, SealedCID, Activation, Expiration}."""
    return {"CommR": list(cid_to_commitment(sealed_cid)[1]), "SealedCID": {"/": sealed_cid},
            "Activation": activation, "Expiration": expiration}


def allocated_sector(miner: int, number: int, proof: int) -> dict:
    """Go's AllocatedSector {ID abi.SectorID, ProofType}."""
    return {"ID": {"Miner": miner, "Number": number}, "ProofType": proof}

