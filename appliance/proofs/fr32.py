"""Fr32 padding: every 127 bytes become four 254-bit field elements of 32 bytes each
(rust-fil-proofs fr32/src/padding.rs). Vectorised with numpy bit unpacking."""

from __future__ import annotations

import numpy as np

from . import ProofError

_CHUNK_QUADS = 8192  # quads (127 bytes in, 128 out) processed per numpy pass


def padded_size(unpadded: int) -> int:
    return unpadded + unpadded // 127


def unpadded_size(padded: int) -> int:
    return padded - padded // 128


def is_valid_unpadded_piece_size(n: int) -> bool:
    """127·2^k, k ≥ 0."""
    return n >= 127 and n % 127 == 0 and (n // 127) & (n // 127 - 1) == 0


def is_valid_padded_piece_size(n: int) -> bool:
    return n >= 128 and n & (n - 1) == 0


def pad(data: bytes) -> bytes:
    """fr32-pad data whose length is a multiple of 127."""
    if len(data) % 127:
        raise ProofError(f"fr32 pad: input length {len(data)} is not a multiple of 127")
    out = bytearray()
    view = memoryview(data)
    step = 127 * _CHUNK_QUADS
    for off in range(0, len(data), step):
        out += _pad_chunk(view[off:off + step])
    return bytes(out)


def _pad_chunk(chunk) -> bytes:
    quads = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, 127)
    bits = np.unpackbits(quads, axis=1, bitorder="little").reshape(-1, 4, 254)
    bits = np.concatenate([bits, np.zeros((bits.shape[0], 4, 2), dtype=np.uint8)], axis=2)
    return np.packbits(bits.reshape(-1, 1024), axis=1, bitorder="little").tobytes()


def unpad(data: bytes) -> bytes:
    """Inverse of pad: data length a multiple of 128. Refuses nodes with the top bits set."""
    if len(data) % 128:
        raise ProofError(f"fr32 unpad: input length {len(data)} is not a multiple of 128")
    out = bytearray()
    view = memoryview(data)
    step = 128 * _CHUNK_QUADS
    for off in range(0, len(data), step):
        out += _unpad_chunk(view[off:off + step], off)
    return bytes(out)


def _unpad_chunk(chunk, base_offset: int) -> bytes:
    nodes = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, 32)
    bad = np.nonzero(nodes[:, 31] & 0xC0)[0]
    if bad.size:
        raise ProofError(f"fr32 unpad: node at byte offset {base_offset + int(bad[0]) * 32} is not fr32-padded (top bits set)")
    bits = np.unpackbits(nodes.reshape(-1, 4, 32), axis=2, bitorder="little")[:, :, :254]
    return np.packbits(bits.reshape(-1, 1016), axis=1, bitorder="little").tobytes()
