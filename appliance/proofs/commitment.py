"""Piece and data commitments: the sha256-trunc254 binary tree (CommP, CommD, tree_d), zero-piece
commitments, and the piece-stacking rule that turns piece commitments into a sector's CommD
(rust-fil-proofs filecoin-proofs/src/pieces.rs, go-commp-utils PieceAggregateCommP)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterable

from . import ProofError
from .fr32 import is_valid_padded_piece_size, pad

_sha256 = hashlib.sha256
# byte 31 of every node is masked to 254 bits; a table avoids an int round trip per hash
_MASK31 = [bytes([b & 0x3F]) for b in range(256)]


def sha254(data: bytes) -> bytes:
    """sha256 with the two most significant bits (of the little-endian field element) cleared."""
    d = _sha256(data).digest()
    return d[:31] + _MASK31[d[31]]


def hash_pair(left: bytes, right: bytes) -> bytes:
    return sha254(left + right)


def _zero_comms(count: int) -> list[bytes]:
    out = [bytes(32)]
    for _ in range(count - 1):
        out.append(hash_pair(out[-1], out[-1]))
    return out


ZERO_COMMS = _zero_comms(40)   # ZERO_COMMS[k] = root over 32·2^k zero bytes


def zero_comm(padded_size: int) -> bytes:
    if not is_valid_padded_piece_size(padded_size) and padded_size != 32 and padded_size != 64:
        raise ProofError(f"no zero commitment for size {padded_size}: not a power of two ≥ 32")
    return ZERO_COMMS[padded_size.bit_length() - 6]


def next_level(level: bytes) -> bytes:
    """One level up of the binary sha254 tree (level length a multiple of 64)."""
    view = memoryview(level)
    sha, mask = _sha256, _MASK31
    out = []
    append = out.append
    for i in range(0, len(level), 64):
        d = sha(view[i:i + 64]).digest()
        append(d[:31])
        append(mask[d[31]])
    return b"".join(out)


def tree_levels(leaves: bytes) -> list[bytes]:
    """All levels of the binary tree over 32-byte leaves (a power of two of them), leaves first."""
    n = len(leaves) // 32
    if n == 0 or n & (n - 1) or len(leaves) % 32:
        raise ProofError(f"merkle tree: {len(leaves)} bytes is not a power-of-two number of 32-byte nodes")
    levels = [bytes(leaves)]
    while len(levels[-1]) > 32:
        levels.append(next_level(levels[-1]))
    return levels


def root_of_padded(padded: bytes) -> bytes:
    return tree_levels(padded)[-1]


# ---------------------------------------------------------------------------------------------
# CommP of a payload


@dataclass(frozen=True)
class PieceInfo:
    """A piece as the sector sees it: its commitment and padded size."""
    size: int        # padded bytes, a power of two ≥ 128
    commitment: bytes

    def __post_init__(self) -> None:
        if not is_valid_padded_piece_size(self.size):
            raise ProofError(f"invalid piece size {self.size}: padded piece sizes are powers of two ≥ 128")
        if len(self.commitment) != 32:
            raise ProofError(f"invalid piece commitment: {len(self.commitment)} bytes, expected 32")


def payload_padded_size(payload_len: int) -> int:
    """go-padreader's rule: round the payload up to the next valid piece size, return padded size."""
    if payload_len <= 127:
        return 128
    padded = -(-payload_len // 127) * 128
    return 1 << (padded - 1).bit_length()


def padded_piece_bytes(payload: bytes) -> bytes:
    """The fr32-padded bytes of a payload zero-filled to its piece size (what AddPiece writes)."""
    padded_size = payload_padded_size(len(payload))
    unpadded = padded_size - padded_size // 128
    if len(payload) > unpadded:
        raise ProofError("payload larger than its piece")  # cannot happen by construction
    return pad(payload + bytes(unpadded - len(payload)))


def commp_stream(stream: BinaryIO, payload_len: int) -> PieceInfo:
    """CommP of a payload read from a stream in bounded memory (1 MiB of padded data at a time)."""
    padded_size = payload_padded_size(payload_len)
    unpadded = padded_size - padded_size // 128
    chunk_unpadded = 127 * 8192
    # roots of full chunks, combined like pieces of equal size
    stack: list[tuple[int, bytes]] = []
    remaining_payload = payload_len
    produced = 0
    while produced < unpadded:
        take = min(chunk_unpadded, unpadded - produced)
        want = min(take, remaining_payload)
        data = stream.read(want) if want else b""
        if len(data) != want:
            raise ProofError(f"piece payload truncated: expected {payload_len} bytes, got {payload_len - remaining_payload + len(data)}")
        remaining_payload -= want
        produced += take
        padded = pad(data + bytes(take - want))
        stack.append((len(padded), root_of_padded(padded)))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            (s, b), (_, a) = stack.pop(), stack.pop()
            stack.append((2 * s, hash_pair(a, b)))
    if len(stack) != 1 or stack[0][0] != padded_size:
        raise ProofError("internal error: piece tree did not reduce to one root")
    return PieceInfo(padded_size, stack[0][1])


def commp_bytes(payload: bytes) -> PieceInfo:
    import io
    return commp_stream(io.BytesIO(payload), len(payload))


def commp_file(path: str | os.PathLike) -> tuple[PieceInfo, int]:
    """CommP of a file's bytes; returns the piece and the payload size."""
    size = os.path.getsize(path)
    if size == 0:
        raise ProofError(f"piece file {os.fspath(path)!r} is empty")
    with open(path, "rb") as f:
        return commp_stream(f, size), size


# ---------------------------------------------------------------------------------------------
# CommD from pieces


def aggregate_comm(pieces: Iterable[PieceInfo]) -> PieceInfo:
    """Combine pieces in order with the alignment rule of rust-fil-proofs: each piece starts at a
    multiple of its own size, the gaps are zero pieces; the result is the smallest covering tree."""
    stack: list[tuple[int, bytes]] = []

    def reduce() -> None:
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            (s, b), (_, a) = stack.pop(), stack.pop()
            stack.append((2 * s, hash_pair(a, b)))

    for piece in pieces:
        if stack:
            while stack[-1][0] < piece.size:
                stack.append((stack[-1][0], zero_comm(stack[-1][0])))
                reduce()
        stack.append((piece.size, piece.commitment))
        reduce()
    if not stack:
        raise ProofError("no pieces to aggregate")
    while len(stack) > 1:
        stack.append((stack[-1][0], zero_comm(stack[-1][0])))
        reduce()
    return PieceInfo(*stack[0])


def piece_offsets(pieces: Iterable[PieceInfo], sector_bytes: int) -> list[int]:
    """Padded byte offset of every piece in the sector (aligned to its size), checking that they
    fit. Raises ProofError naming the piece that does not fit."""
    offsets, pos = [], 0
    for i, piece in enumerate(pieces):
        pos = -(-pos // piece.size) * piece.size
        if pos + piece.size > sector_bytes:
            raise ProofError(
                f"piece {i} ({piece.size} padded bytes at offset {pos}) does not fit in a {sector_bytes}-byte sector")
        offsets.append(pos)
        pos += piece.size
    return offsets


def comm_d_from_pieces(pieces: list[PieceInfo], sector_bytes: int) -> bytes:
    """CommD of a sector holding the pieces (zero pieces fill the rest); CC if no pieces."""
    if not pieces:
        return zero_comm(sector_bytes)
    piece_offsets(pieces, sector_bytes)
    agg = aggregate_comm(pieces)
    size, comm = agg.size, agg.commitment
    while size < sector_bytes:
        comm = hash_pair(comm, zero_comm(size))
        size *= 2
    return comm
