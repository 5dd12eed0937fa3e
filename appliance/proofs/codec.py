"""Strict binary encoding helpers for proofs and intermediate outputs (see docs/formats.md).
Integers are little-endian and fixed-width; a reader refuses short input, trailing bytes,
out-of-range integers and non-canonical field elements, naming the field and offset."""

from __future__ import annotations

import struct
import zlib

from typing import Callable, TypeVar

from . import ProofError
from .field import MODULUS
from .merkle import MerkleProof

T = TypeVar("T")


class Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf += struct.pack("<B", v)

    def u16(self, v: int) -> None:
        self.buf += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack("<I", v)

    def u64(self, v: int) -> None:
        self.buf += struct.pack("<Q", v)

    def raw(self, b: bytes) -> None:
        self.buf += b

    def node(self, b: bytes) -> None:
        if len(b) != 32:
            raise ProofError(f"internal error: node of {len(b)} bytes")
        self.buf += b

    def bytes(self) -> bytes:
        return bytes(self.buf)


class Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = memoryview(data), 0, what

    def _take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ProofError(f"{self.what}: truncated at byte {self.pos} reading {field}")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        return struct.unpack("<H", self._take(2, field))[0]

    def u32(self, field: str) -> int:
        return struct.unpack("<I", self._take(4, field))[0]

    def u64(self, field: str, limit: int | None = None) -> int:
        at = self.pos
        v = struct.unpack("<Q", self._take(8, field))[0]
        if limit is not None and v >= limit:
            raise ProofError(f"{self.what}: {field} = {v} at byte {at} is out of range (must be < {limit})")
        return v

    def raw(self, n: int, field: str) -> bytes:
        return self._take(n, field)

    def fr(self, field: str) -> bytes:
        """A Poseidon-domain node: a canonical BLS12-381 field element."""
        at = self.pos
        b = self._take(32, field)
        if int.from_bytes(b, "little") >= MODULUS:
            raise ProofError(f"{self.what}: {field} at byte {at} is not a canonical field element")
        return b

    def sha_node(self, field: str) -> bytes:
        """A sha256-trunc254 node (tree_d): the top two bits are always clear."""
        at = self.pos
        b = self._take(32, field)
        if b[31] & 0xC0:
            raise ProofError(f"{self.what}: {field} at byte {at} is not a 254-bit sha256-trunc254 node")
        return b

    def expect(self, value: bytes, field: str) -> None:
        at = self.pos
        got = self._take(len(value), field)
        if got != value:
            raise ProofError(f"{self.what}: bad {field} at byte {at}: {got!r}, expected {value!r}")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProofError(f"{self.what}: {len(self.data) - self.pos} trailing bytes after byte {self.pos}")


def write_header(w: Writer, magic: bytes, version: int, type_id: int) -> None:
    w.raw(magic)
    w.u16(version)
    w.u16(type_id)


def read_header(r: Reader, magic: bytes, version: int, lookup: Callable[[int], T], expected=None) -> T:
    """Magic, version and proof type. With `expected` (what the verifier's public inputs say)
    the type must be that one and its parameters are used; otherwise `lookup` resolves the id."""
    r.expect(magic, "magic")
    got = r.u16("version")
    if got != version:
        raise ProofError(f"{r.what}: unknown version {got} (this build reads version {version})")
    type_id = r.u16("proof type")
    if expected is not None:
        if type_id != expected.id:
            raise ProofError(f"{r.what}: proof type {type_id}, expected {expected.id} ({expected.name})")
        return expected
    try:
        return lookup(type_id)
    except ValueError as exc:
        raise ProofError(f"{r.what}: {exc}") from None


def write_merkle(w: Writer, p: MerkleProof) -> None:
    w.u64(p.index)
    w.node(p.leaf)
    for level in p.path:
        for s in level:
            w.node(s)


def read_merkle(r: Reader, arities: list[int], leaves: int, field: str, sha: bool = False) -> MerkleProof:
    """An opening: u64 leaf index (< leaves), the leaf, then arity-1 siblings a level."""
    node = r.sha_node if sha else r.fr
    index = r.u64(f"{field} index", leaves)
    leaf = node(f"{field} leaf")
    path = [[node(f"{field} level {lv} sibling {j}") for j in range(a - 1)] for lv, a in enumerate(arities)]
    return MerkleProof(index, leaf, path)


# ---------------------------------------------------------------- compressed proof envelopes

MAX_COMPRESSED_BODY = 1 << 30   # refuse decompression bombs


def compress_envelope(magic: bytes, version: int, body: bytes) -> bytes:
    """The builtin engine's stand-in for a SNARK: magic, u16 version, zlib(vanilla proof)."""
    return magic + version.to_bytes(2, "little") + zlib.compress(body, 6)


def open_envelope(proof: bytes, magic: bytes, version: int, what: str, kind: str) -> bytes:
    """The vanilla proof inside `compress_envelope`; ProofError naming what is wrong."""
    if len(proof) < 6 or proof[:4] != magic:
        raise ProofError(f"{what}: bad magic (not a builtin-engine {kind})")
    got = int.from_bytes(proof[4:6], "little")
    if got != version:
        raise ProofError(f"{what}: unknown version {got} (this build reads version {version})")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(proof[6:], MAX_COMPRESSED_BODY)
    except zlib.error as exc:
        raise ProofError(f"{what}: corrupt compressed body ({exc})") from None
    if d.unconsumed_tail or not d.eof or d.unused_data:
        raise ProofError(f"{what}: compressed body is truncated, oversized or followed by extra bytes")
    return raw
