"""The BLS12-381 scalar field Fr, in which Poseidon and the replica encoding compute.
Elements travel as 32-byte little-endian canonical integers (Filecoin's commitment bytes)."""

from __future__ import annotations

from . import ProofError

MODULUS = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


def fr_from_bytes(b: bytes, what: str = "field element") -> int:
    """Parse a canonical element; refuse wrong lengths and values ≥ r."""
    if len(b) != 32:
        raise ProofError(f"{what}: {len(b)} bytes, expected 32")
    v = int.from_bytes(b, "little")
    if v >= MODULUS:
        raise ProofError(f"{what}: {b.hex()} is not a canonical field element (≥ r)")
    return v


def fr_to_bytes(v: int) -> bytes:
    return v.to_bytes(32, "little")


def is_canonical(b: bytes) -> bool:
    return len(b) == 32 and int.from_bytes(b, "little") < MODULUS


def inverse(v: int) -> int:
    return pow(v, -1, MODULUS)
