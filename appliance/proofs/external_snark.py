"""Proofs the builtin engine did not make: the Groth16 SNARKs of an external processor (a
rust-fil-proofs c2, snap_prove, window_post or winning_post). The builtin engine's proofs are
envelopes that start with their magic (docs/formats.md: "DMC2" seal, "DMP1" PoSt, "DMU2" replica
update) and are verified here; a Groth16 proof is 192 bytes per partition (rust-fil-proofs
`SINGLE_PARTITION_PROOF_LEN`, filecoin-proofs src/constants.rs), which this project cannot
verify: it is passed on as it is, and the chain decides."""

from __future__ import annotations

from . import ProofError

GROTH16_PARTITION_BYTES = 192
KINDS = {"seal": b"DMC2", "window_post": b"DMP1", "winning_post": b"DMP1", "update": b"DMU2"}
BUILTIN, GROTH16 = "builtin", "groth16"


def is_builtin_proof(kind: str, proof: bytes) -> bool:
    """Whether `proof` is the builtin engine's envelope for `kind` (seal, window_post,
    winning_post, update): then the builtin verifier judges it."""
    return bytes(proof[:4]) == _magic(kind)


def claims_groth16(kind: str, proof: bytes) -> bool:
    """Not the builtin envelope, and a whole number of 192-byte partitions: what an external
    processor's SNARK looks like (anything else is left to the builtin verifier, which names
    what is wrong with it)."""
    return not is_builtin_proof(kind, proof) and len(proof) > 0 and len(proof) % GROTH16_PARTITION_BYTES == 0


def proof_form(kind: str, proof: bytes, partitions: int | None = None) -> str:
    """BUILTIN or GROTH16; ProofError naming the size for anything else (and for a Groth16 proof
    whose partition count is not `partitions`, where the proof type fixes it)."""
    if is_builtin_proof(kind, proof):
        return BUILTIN
    n = len(proof)
    if n == 0 or n % GROTH16_PARTITION_BYTES:
        raise ProofError(f"{kind} proof of {n} bytes is neither the builtin engine's ({_magic(kind).decode()}...) nor "
                         f"Groth16 SNARKs ({GROTH16_PARTITION_BYTES} bytes a partition)")
    if partitions is not None and n != partitions * GROTH16_PARTITION_BYTES:
        raise ProofError(f"{kind} proof of {n} bytes: a Groth16 proof of this type has {partitions} partition(s), "
                         f"{partitions * GROTH16_PARTITION_BYTES} bytes")
    return GROTH16


def describe(kind: str, proof: bytes) -> str:
    parts = len(proof) // GROTH16_PARTITION_BYTES
    return f"a Groth16 {kind} proof of {len(proof)} bytes ({parts} partition{'s' if parts != 1 else ''})"


def _magic(kind: str) -> bytes:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"proof kind {kind!r} is not one of {', '.join(KINDS)}") from None
