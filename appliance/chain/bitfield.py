"""Filecoin RLE+ bitfields (the byte form actors store and messages carry) and the JSON form
Lotus prints: a list of run lengths that always starts with a run of zeros ("[0, 3, 5, 2]" is
the set {0, 1, 2, 8, 9}; the empty set is "[0]").

RLE+ (version 0), bits packed least-significant first within each byte:
  2 bits version (00), 1 bit value of the first run, then one block per run:
  "1" = a run of 1; "01" + 4 bits = a run of 2..15; "00" + LEB128 varint = a run of 16 or more.
A trailing run of zeros is not written and trailing zero bytes are trimmed.

Work stays in runs so a bitfield over 2^63 never expands into a list of numbers.
"""

from __future__ import annotations

from ..core.sector import uvarint  # unsigned LEB128, as go-varint

from collections.abc import Iterable

MAX_UINT64 = (1 << 64) - 1


class BitfieldError(ValueError):
    pass


# ---- runs <-> bytes ---------------------------------------------------------------------------

class _BitWriter:
    def __init__(self) -> None:
        self.value = 0
        self.nbits = 0

    def put(self, val: int, count: int) -> None:
        self.value |= val << self.nbits
        self.nbits += count

    def bytes(self) -> bytes:
        raw = self.value.to_bytes((self.nbits + 7) // 8, "little")
        return raw.rstrip(b"\x00")


def encode_runs(runs: list[tuple[bool, int]]) -> bytes:
    """Alternating (value, length) runs -> RLE+ bytes. Runs of length 0 are not allowed."""
    runs = [r for r in runs]
    if runs and not runs[-1][0]:
        runs.pop()                      # a trailing zero run is implied
    w = _BitWriter()
    w.put(0, 2)
    if not runs:
        return w.bytes()                # b"": the empty set
    w.put(1 if runs[0][0] else 0, 1)
    prev = None
    for val, length in runs:
        if prev is not None and val == prev:
            raise BitfieldError("two consecutive runs with the same value")
        if not (0 < length <= MAX_UINT64):
            raise BitfieldError(f"run length {length} out of range 1..2^64-1")
        prev = val
        if length == 1:
            w.put(1, 1)
        elif length < 16:
            w.put(2, 2)
            w.put(length, 4)
        else:
            w.put(0, 2)
            for byte in uvarint(length):
                w.put(byte, 8)
    return w.bytes()


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "little")
        self.pos = 0

    def get(self, count: int) -> int:
        v = (self.value >> self.pos) & ((1 << count) - 1)
        self.pos += count
        return v        # past the end reads the trimmed zero bits: a run's tail, then the end (length 0)


def decode_runs(data: bytes) -> list[tuple[bool, int]]:
    """RLE+ bytes -> alternating (value, length) runs (no trailing zero run)."""
    data = bytes(data)
    if not data:
        return []
    if data[-1] == 0:
        raise BitfieldError("RLE+ not minimally encoded (trailing zero byte)")
    r = _BitReader(data)
    if r.get(2) != 0:
        raise BitfieldError("RLE+ version is not 0")
    val = bool(r.get(1))
    runs: list[tuple[bool, int]] = []
    total = 0
    while True:
        if r.get(1):
            length = 1
        elif r.get(1):
            length = r.get(4)
        else:
            length = _read_varint(r)
        if length == 0:
            break
        total += length
        if total > MAX_UINT64:
            raise BitfieldError("RLE+ runs overflow 2^64 bits")
        runs.append((val, length))
        val = not val
    return runs


def _read_varint(r: _BitReader) -> int:
    x = 0
    shift = 0
    for i in range(10):
        b = r.get(8)
        if b < 0x80:
            if i == 9 and b > 1:
                raise BitfieldError("RLE+ run too long (varint over 64 bits)")
            if b == 0 and shift > 0:
                raise BitfieldError("RLE+ varint not minimally encoded")
            return x | (b << shift)
        x |= (b & 0x7F) << shift
        shift += 7
    raise BitfieldError("RLE+ run too long (varint over 10 bytes)")


# ---- numbers <-> runs -------------------------------------------------------------------------

def runs_from_numbers(numbers: Iterable[int]) -> list[tuple[bool, int]]:
    runs: list[tuple[bool, int]] = []
    nxt = 0                              # the first number not yet covered by runs
    for n in sorted(set(numbers)):
        if not isinstance(n, int) or isinstance(n, bool) or not (0 <= n <= MAX_UINT64 - 1):
            raise BitfieldError(f"bit {n!r} is not an integer in 0..2^64-2")
        if n == nxt and runs and runs[-1][0]:
            runs[-1] = (True, runs[-1][1] + 1)
        else:
            if n > nxt:
                runs.append((False, n - nxt))
            runs.append((True, 1))
        nxt = n + 1
    return runs


def numbers_from_runs(runs: list[tuple[bool, int]]) -> list[int]:
    out: list[int] = []
    pos = 0
    for val, length in runs:
        if val:
            out.extend(range(pos, pos + length))
        pos += length
    return out


def encode(numbers: Iterable[int]) -> bytes:
    """Set of sector numbers -> RLE+ bytes."""
    return encode_runs(runs_from_numbers(numbers))


def decode(data: bytes) -> list[int]:
    """RLE+ bytes -> sorted sector numbers (expands every run: use decode_runs for huge sets)."""
    return numbers_from_runs(decode_runs(data))


# ---- the JSON run-list form (go-bitfield's MarshalJSON) ---------------------------------------

def runs_to_json(runs: list[tuple[bool, int]]) -> list[int]:
    if not runs:
        return [0]
    out = [0] if runs[0][0] else []
    out.extend(length for _, length in runs)
    return out


def runs_from_json(lengths, field: str = "bitfield") -> list[tuple[bool, int]]:
    """Go's bitfield JSON -> runs. Only the first length may be 0 (a leading run of ones)."""
    if not isinstance(lengths, list):
        raise BitfieldError(f"{field}: expected a list of run lengths, got {type(lengths).__name__}")
    runs: list[tuple[bool, int]] = []
    val = False
    for i, length in enumerate(lengths):
        if not isinstance(length, int) or isinstance(length, bool) or not (0 <= length <= MAX_UINT64):
            raise BitfieldError(f"{field}[{i}]: run length {length!r} is not an integer in 0..2^64-1")
        if length == 0:
            if i != 0:
                raise BitfieldError(f"{field}[{i}]: a zero-length run is only allowed first")
        else:
            runs.append((val, length))
        val = not val
    return runs


def json_from_numbers(numbers: Iterable[int]) -> list[int]:
    return runs_to_json(runs_from_numbers(numbers))


def numbers_from_json(lengths, field: str = "bitfield") -> list[int]:
    return numbers_from_runs(runs_from_json(lengths, field))
