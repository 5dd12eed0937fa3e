"""C2: the builtin stand-in for the SNARK.

Filecoin's C2 is a Groth16 proof (192 bytes a partition) that the C1 vanilla proof is valid.
The builtin engine cannot make Groth16 proofs; its C2 output is the C1 vanilla proof itself,
zlib-compressed behind a magic and version tag. It is complete and checkable by anyone with this
document (docs/formats.md), but it is NOT succinct (tens of KiB for 2KiB sectors, far more for
32GiB) and no real Filecoin chain accepts it. Real SNARKs come from external processors."""

from __future__ import annotations


from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from .codec import compress_envelope, open_envelope
from .porep import C1Output, decode_c1, encode_c1, verify_c1

C2_MAGIC = b"DMC2"
C2_VERSION = 1


def seal_commit_phase2(c1: C1Output) -> bytes:
    return compress_envelope(C2_MAGIC, C2_VERSION, encode_c1(c1))


def decode_c2(proof: bytes, expected: SealProofType | None = None) -> C1Output:
    return decode_c1(open_envelope(proof, C2_MAGIC, C2_VERSION, "C2 proof", "proof"), expected)


def verify_seal(proof_type: SealProofType, sector: SectorID, comm_d: bytes, comm_r: bytes, ticket: bytes,
                seed: bytes, proof: bytes) -> None:
    """Raises ProofError saying what did not match; returns None when the proof is valid."""
    verify_c1(decode_c2(proof, proof_type), proof_type, sector, comm_d, comm_r, ticket, seed)
