"""AddPiece and TreeD: lay pieces into the staged (unsealed, fr32-padded) sector file, each at a
multiple of its own padded size with zero pieces between (rust-fil-proofs add_piece and
pieces.rs alignment), and build tree_d (`sc-02-data-tree-d.dat`, rows bottom-up, root last)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_output, atomic_write
from ..core.proof_types import SectorSize
from . import ProofError
from .commitment import PieceInfo, comm_d_from_pieces, commp_file, padded_piece_bytes, piece_offsets, tree_levels
from .store import TREE_D


@dataclass
class StagedPiece:
    info: PieceInfo
    payload_size: int
    offset: int          # padded bytes from the start of the sector


def add_pieces(size: SectorSize, piece_files: list[Path], staged: Path) -> list[StagedPiece]:
    """Write the staged sector file (atomically). No pieces: a CC sector of zeros."""
    infos = []
    for path in piece_files:
        path = Path(path)
        if not path.is_file():
            raise ProofError(f"piece file {path} does not exist")
        payload = path.stat().st_size
        if payload > size.unpadded_bytes:
            raise ProofError(f"piece {path} has {payload} bytes, more than the {size.unpadded_bytes} a {size.name} sector holds")
        info, _ = commp_file(path)
        infos.append((info, payload, path))
    offsets = piece_offsets([i for i, _, _ in infos], size.bytes)
    staged = Path(staged)
    with atomic_output(staged) as tmp, open(tmp, "wb") as f:
        f.truncate(size.bytes)
        for (info, _, path), off in zip(infos, offsets):
            f.seek(off)
            f.write(padded_piece_bytes(path.read_bytes()))
    return [StagedPiece(info, payload, off) for (info, payload, _), off in zip(infos, offsets)]


def build_tree_d(size: SectorSize, staged: Path, cache_dir: Path, pieces: list[PieceInfo] | None = None) -> bytes:
    """Write tree_d and return comm_d; when the pieces are given, comm_d must agree with them."""
    data = Path(staged).read_bytes()
    if len(data) != size.bytes:
        raise ProofError(f"staged file {staged} has {len(data)} bytes, expected {size.bytes}")
    levels = tree_levels(data)
    comm_d = levels[-1]
    if pieces is not None and comm_d != comm_d_from_pieces(pieces, size.bytes):
        raise ProofError(f"comm_d of {staged} does not match the commitments of its pieces")
    atomic_write(Path(cache_dir) / TREE_D, b"".join(levels))
    return comm_d
