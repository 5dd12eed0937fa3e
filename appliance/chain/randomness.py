"""Filecoin's randomness draw (lotus chain/rand/rand.go DrawRandomnessFromDigest) and the domain
separation tags of go-state-types crypto/randomness.go."""

from __future__ import annotations

import hashlib
from enum import IntEnum

from ..core.sector import uvarint


class DST(IntEnum):
    TICKET_PRODUCTION = 1
    ELECTION_PROOF_PRODUCTION = 2
    WINNING_POST_CHALLENGE_SEED = 3
    WINDOWED_POST_CHALLENGE_SEED = 4
    SEAL_RANDOMNESS = 5
    INTERACTIVE_SEAL_CHALLENGE_SEED = 6
    WINDOWED_POST_DEADLINE_ASSIGNMENT = 7
    MARKET_DEAL_CRON_SEED = 8
    POST_CHAIN_COMMIT = 9


def blake2b256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def draw(tag: DST, digest: bytes, epoch: int, entropy: bytes) -> bytes:
    """blake2b-256(i64_be(tag) || digest || i64_be(epoch) || entropy)."""
    return blake2b256(int(tag).to_bytes(8, "big", signed=True) + digest + epoch.to_bytes(8, "big", signed=True) + entropy)


def miner_entropy(actor: int) -> bytes:
    """CBOR of the miner's ID address (protocol 0 || uvarint(id)) as a byte string: f01000 -> 43 00 e8 07."""
    addr = b"\x00" + uvarint(actor)
    return bytes([0x40 | len(addr)]) + addr
