"""Unseal: regenerate the key (the last SDR layer, PC1 again from replica_id) and subtract it
from the replica, then fr32-unpad the range asked for (rust-fil-proofs unseal_range)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from . import ProofError
from .field import MODULUS
from .fr32 import unpad
from .pc1 import generate_labels, replica_id


def unseal_range(proof: SealProofType, sector: SectorID, ticket: bytes, comm_d: bytes, sealed: Path,
                 offset: int, length: int, parent_cache_dir=None, scratch_dir=None) -> bytes:
    """Original piece bytes [offset, offset+length) in unpadded sector coordinates; offset and
    length must be multiples of 127 (whole fr32 quads). The key's layers are written under
    `scratch_dir` (default: the system's temporary directory) and removed."""
    size = proof.size
    if offset % 127 or length % 127 or length <= 0 or offset < 0 or offset + length > size.unpadded_bytes:
        raise ProofError(f"unseal range {offset}+{length} is not a whole number of 127-byte quads inside "
                         f"the {size.unpadded_bytes} unpadded bytes of a {size.name} sector")
    replica = Path(sealed).read_bytes()
    if len(replica) != size.bytes:
        raise ProofError(f"sealed file {sealed} has {len(replica)} bytes, expected {size.bytes}")
    rid = replica_id(sector, ticket, comm_d, proof)
    with tempfile.TemporaryDirectory(prefix="damocles-unseal-", dir=scratch_dir) as tmp:
        key = generate_labels(proof, rid, tmp, parent_cache_dir)
    start, stop = offset // 127 * 4, (offset + length) // 127 * 4
    out = []
    for i in range(start, stop):
        v = int.from_bytes(replica[32 * i:32 * i + 32], "little") - int.from_bytes(key[32 * i:32 * i + 32], "little")
        out.append((v % MODULUS).to_bytes(32, "little"))
    return unpad(b"".join(out))
