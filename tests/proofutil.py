"""Helpers for tamper tests: every leaf field of a proof structure, mutated in turn."""

import copy
import dataclasses
import zlib

from appliance.core.proof_types import PoStProofType, SealProofType, post_proof, seal_proof
from appliance.core.sector import SectorID


def _leaves(obj, path=""):
    if isinstance(obj, (bytes, bytearray)):
        yield path
    elif isinstance(obj, bool):
        return
    elif isinstance(obj, (int, SectorID, SealProofType, PoStProofType)):
        yield path
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield from _leaves(x, f"{path}[{i}]")
    elif isinstance(obj, dict):
        return


def _get_parent(obj, path):
    import re
    parts = re.findall(r"\.?([A-Za-z_][A-Za-z_0-9]*)|\[(\d+)\]", path)
    for name, idx in parts[:-1]:
        obj = getattr(obj, name) if name else obj[int(idx)]
    return obj, parts[-1]


def _mutate(value):
    if isinstance(value, (bytes, bytearray)):
        b = bytearray(value)
        b[0] ^= 1
        return bytes(b)
    if isinstance(value, SectorID):
        return SectorID(value.miner, value.number + 1)
    if isinstance(value, PoStProofType):
        return post_proof(value.id + 1 if value.id % 5 < 4 else value.id - 1)
    if isinstance(value, SealProofType):
        return seal_proof(value.id + 1 if value.id % 5 < 4 else value.id - 1)
    return value + 1


def mutations(obj, keep=lambda path: True):
    """Yield (path, mutated deep copy) for every leaf field accepted by keep(path)."""
    for path in list(_leaves(obj)):
        if not keep(path):
            continue
        clone = copy.deepcopy(obj)
        parent, (name, idx) = _get_parent(clone, path)
        if name:
            object.__setattr__(parent, name, _mutate(getattr(parent, name)))
        else:
            parent[int(idx)] = _mutate(parent[int(idx)])
        yield path, clone


def envelope_flips(good: bytes, bit: int = 0x10):
    """Each sampled byte of a compressed proof envelope (magic, version, zlib body) with `bit`
    flipped, leaving out flips that do not change what the envelope holds: the last byte of a
    deflate stream carries padding bits that the decoder ignores, so such a flip is the same
    proof written differently, not a tampered one."""
    body = zlib.decompress(good[6:])
    for pos in list(range(0, 8)) + list(range(8, len(good), max(1, len(good) // 40))):
        bad = bytearray(good)
        bad[pos] ^= bit
        if pos >= 6:
            try:
                if zlib.decompress(bytes(bad[6:])) == body:
                    continue
            except zlib.error:
                pass
        yield pos, bytes(bad)
