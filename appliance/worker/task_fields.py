"""Strict readers of the values in vc-processors tasks and outputs, as serde_json writes
filecoin-proofs-api's types: objects, arrays, u64 numbers, paths as strings, `[u8; 32]` and
`Vec<u8>` as arrays of numbers, proof types by variant name, `PieceInfo` with an UNPADDED size.
Every error names the field. Shared by the stage modules (stage_seal, c2_stage, stage_data,
stage_snap_post)."""

from __future__ import annotations

from pathlib import Path

from ..core.proof_types import SealProofType, seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.commitment import PieceInfo
from ..proofs.fr32 import is_valid_unpadded_piece_size, unpadded_size


class TaskError(ValueError):
    """A task or an output that does not have the expected shape; names the field."""


def obj(v, field: str) -> dict:
    if not isinstance(v, dict):
        raise TaskError(f"{field}: expected an object, got {type(v).__name__}")
    return v


def array(v, field: str) -> list:
    if not isinstance(v, list):
        raise TaskError(f"{field}: expected an array, got {type(v).__name__}")
    return v


def u64(v, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
        raise TaskError(f"{field}: expected an unsigned 64-bit integer, got {v!r}")
    return v


def boolean(v, field: str) -> bool:
    if not isinstance(v, bool):
        raise TaskError(f"{field}: expected true or false, got {v!r}")
    return v


def string(v, field: str) -> str:
    if not isinstance(v, str) or not v:
        raise TaskError(f"{field}: expected a non-empty string, got {v!r}")
    return v


def path(v, field: str) -> Path:
    if not isinstance(v, str) or not v:
        raise TaskError(f"{field}: expected a path, got {v!r}")
    return Path(v)


def _is_byte(x) -> bool:
    return type(x) is int and 0 <= x <= 255


def b32(v, field: str) -> bytes:
    """`[u8; 32]` (commitments, tickets, seeds, prover ids)."""
    if not isinstance(v, list) or len(v) != 32 or not all(_is_byte(x) for x in v):
        raise TaskError(f"{field}: expected an array of 32 integers 0..255")
    return bytes(v)


def byte_array(v, field: str) -> bytes:
    """`Vec<u8>` as serde_json writes it: an array of numbers 0..255."""
    if not isinstance(v, list) or not all(_is_byte(x) for x in v):
        raise TaskError(f"{field}: expected an array of integers 0..255")
    return bytes(v)


def seal_proof_name(v, field: str) -> SealProofType:
    if not isinstance(v, str):
        raise TaskError(f"{field}: expected a RegisteredSealProof name such as \"StackedDrg2KiBV1_1\", got {v!r}")
    try:
        return seal_proof(v)
    except ValueError as exc:
        raise TaskError(f"{field}: {exc}") from None


def sector_of(prover_id: bytes, number: int, field: str) -> SectorID:
    """The SectorID whose prover_id (the miner's ID address payload: uvarint, zero-filled) this is."""
    miner, shift = 0, 0
    for b in prover_id[:10]:
        miner |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            sector = SectorID(miner, number)
            if sector.prover_id == prover_id:
                return sector
            break
    raise TaskError(f"{field}: not the payload of an ID address (f0...) zero-filled to 32 bytes")


def piece_infos_json(pieces: list[PieceInfo]) -> list[dict]:
    """filecoin-proofs PieceInfo: the size is UNPADDED (a 2KiB piece is 2032)."""
    return [{"commitment": list(p.commitment), "size": unpadded_size(p.size)} for p in pieces]


def piece_infos(v, field: str) -> list[PieceInfo]:
    """`Vec<PieceInfo>` back, with padded sizes; a size that is not 127·2^k is refused."""
    out = []
    for i, p in enumerate(array(v, field)):
        p = obj(p, f"{field}[{i}]")
        size = u64(p.get("size"), f"{field}[{i}].size")
        if not is_valid_unpadded_piece_size(size):
            raise TaskError(f"{field}[{i}].size: {size} is not an unpadded piece size (127·2^k bytes, e.g. 2032)")
        try:
            out.append(PieceInfo(size // 127 * 128, b32(p.get("commitment"), f"{field}[{i}].commitment")))
        except (ValueError, ProofError) as exc:       # a PieceInfo the engine refuses
            raise TaskError(f"{field}[{i}]: {exc}") from None
    return out
