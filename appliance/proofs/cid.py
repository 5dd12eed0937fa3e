"""Commitment CIDs (go-fil-commcid): CommP/CommD as fil-commitment-unsealed with
sha2-256-trunc254-padded, CommR as fil-commitment-sealed with poseidon-bls12_381-a2-fc1, CIDv1
in multibase base32 lower ('b' prefix)."""

from __future__ import annotations

import base64

from . import ProofError

_UNSEALED = bytes.fromhex("0181e203922020")   # v1, 0xf101, 0x1012, len 32
_SEALED = bytes.fromhex("0182e20381e80220")   # v1, 0xf102, 0xb401, len 32


def _b32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def commd_to_cid(comm: bytes) -> str:
    _check32(comm)
    return _b32(_UNSEALED + comm)


def commr_to_cid(comm: bytes) -> str:
    _check32(comm)
    return _b32(_SEALED + comm)


def cid_to_commitment(cid: str) -> tuple[str, bytes]:
    """Parse a commitment CID; returns ('unsealed' | 'sealed', 32 bytes)."""
    if not isinstance(cid, str) or not cid.startswith("b"):
        raise ProofError(f"invalid commitment CID {cid!r}: expected base32 multibase ('b…')")
    body = cid[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise ProofError(f"invalid commitment CID {cid!r}: not base32") from None
    for kind, prefix in (("unsealed", _UNSEALED), ("sealed", _SEALED)):
        if raw.startswith(prefix):
            if len(raw) != len(prefix) + 32:
                raise ProofError(f"invalid commitment CID {cid!r}: digest is not 32 bytes")
            return kind, raw[len(prefix):]
    raise ProofError(f"invalid commitment CID {cid!r}: not a Filecoin commitment (codec/multihash)")


def _check32(comm: bytes) -> None:
    if len(comm) != 32:
        raise ProofError(f"commitment must be 32 bytes, got {len(comm)}")
