"""The SDR parent graph: base DRG parents (BucketGraph, ChaCha8 bucket sampling) and expander
parents (3-round Feistel permutation), generated vectorised with numpy, and the parent cache in
rust-fil-proofs' file format (storage-proofs-core drgraph.rs and crypto/feistel.rs,
storage-proofs-porep stacked/vanilla/graph.rs and cache.rs).

Node by node in pure Python ChaCha8 and Feistel cost ~100 µs a node; here every node of a chunk
goes through each ChaCha8 round as one numpy operation, and the Feistel round function, which only
ever sees 2^half_bits distinct inputs, is a precomputed table."""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.files import atomic_output
from ..core.proof_types import BASE_DEGREE, EXPANSION_DEGREE, ApiVersion, SealProofType


@dataclass(frozen=True)
class GraphSpec:
    """What the graph depends on: porep_id, number of nodes, api version (predecessor slot)."""
    porep_id: bytes
    nodes: int
    api_version: ApiVersion

    @classmethod
    def of(cls, proof: "SealProofType | GraphSpec") -> "GraphSpec":
        if isinstance(proof, GraphSpec):
            return proof
        return cls(proof.porep_id, proof.size.nodes, proof.api_version)

DEGREE = BASE_DEGREE + EXPANSION_DEGREE   # 14 parents a node in the cache
CACHE_VERSION = 28
_CHUNK = 1 << 16                          # nodes generated per numpy pass (bounds memory)
_U32 = np.uint32
_U64 = np.uint64


# ------------------------------------------------------------------------------------- ChaCha8

def _rotl(x: np.ndarray, n: int) -> np.ndarray:
    return (x << _U32(n)) | (x >> _U32(32 - n))


def _quarter(s: list, a: int, b: int, c: int, d: int) -> None:
    s[a] += s[b]; s[d] ^= s[a]; s[d] = _rotl(s[d], 16)
    s[c] += s[d]; s[b] ^= s[c]; s[b] = _rotl(s[b], 12)
    s[a] += s[b]; s[d] ^= s[a]; s[d] = _rotl(s[d], 8)
    s[c] += s[d]; s[b] ^= s[c]; s[b] = _rotl(s[b], 7)


def chacha8_blocks(key_words: list[np.ndarray], n_blocks: int) -> np.ndarray:
    """rand_chacha's ChaCha8Rng keystream (counter from 0, stream 0) for many keys at once.
    key_words: 8 arrays (or scalars broadcast) of u32. Returns u32 words, shape (n, 16*n_blocks)."""
    n = max(np.size(k) for k in key_words)
    out = []
    with np.errstate(over="ignore"):
        for block in range(n_blocks):
            init = [np.full(n, c, dtype=_U32) for c in (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)]
            init += [np.broadcast_to(np.asarray(k, dtype=_U32), (n,)).copy() for k in key_words]
            init += [np.full(n, block, dtype=_U32), np.zeros(n, _U32), np.zeros(n, _U32), np.zeros(n, _U32)]
            s = [x.copy() for x in init]
            for _ in range(4):   # 8 rounds = 4 double rounds
                _quarter(s, 0, 4, 8, 12); _quarter(s, 1, 5, 9, 13)
                _quarter(s, 2, 6, 10, 14); _quarter(s, 3, 7, 11, 15)
                _quarter(s, 0, 5, 10, 15); _quarter(s, 1, 6, 11, 12)
                _quarter(s, 2, 7, 8, 13); _quarter(s, 3, 4, 9, 14)
            out.append(np.stack([x + y for x, y in zip(s, init)], axis=1))
    return np.concatenate(out, axis=1)


# ----------------------------------------------------------------------------------- base DRG

def drg_seed(porep_id: bytes) -> bytes:
    return hashlib.sha256(b"Filecoin_DRSample" + porep_id).digest()[:28]


def base_parents(proof: SealProofType | GraphSpec, start: int, stop: int) -> np.ndarray:
    """Base parents (uint32, shape (stop-start, 6)) of nodes start..stop-1."""
    proof = GraphSpec.of(proof)
    nodes = np.arange(start, stop, dtype=_U64)
    seed_words = list(struct.unpack("<7I", drg_seed(proof.porep_id)))
    words = chacha8_blocks([*seed_words, nodes.astype(_U32)], 2).astype(_U64)
    m_prime = _U64(BASE_DEGREE - 1)
    meta = nodes * m_prime
    # (meta as f64).log2().ceil(), as rust; nodes 0 and 1 get parents 0 below, keep them defined
    n_buckets = np.ceil(np.log2(np.maximum(meta, _U64(2)).astype(np.float64))).astype(_U64)
    drawn = []
    for k in range(BASE_DEGREE - 1):
        r1 = words[:, 4 * k] | (words[:, 4 * k + 1] << _U64(32))
        r2 = words[:, 4 * k + 2] | (words[:, 4 * k + 3] << _U64(32))
        bucket = r1 % n_buckets + _U64(1)
        largest = np.minimum(meta, _U64(1) << bucket)
        smallest = np.maximum(_U64(2), largest >> _U64(1))
        distance = smallest + r2 % (largest - smallest + _U64(1))
        drawn.append((meta - distance) // m_prime)
    predecessor = nodes - _U64(1)
    if proof.api_version == ApiVersion.V1_0_0:
        cols = drawn + [predecessor]
    else:
        cols = [predecessor] + drawn
    out = np.stack(cols, axis=1)
    out[nodes < 2] = 0
    return out.astype(_U32)


# ---------------------------------------------------------------------------------- expander

def feistel_keys(porep_id: bytes) -> tuple[int, int, int, int]:
    return struct.unpack("<4Q", hashlib.sha256(b"Filecoin_Feistel" + porep_id).digest())


@dataclass(frozen=True)
class _Feistel:
    half_bits: int
    right_mask: int
    tables: tuple[np.ndarray, ...]   # F_k[R] for the 3 round keys


def _feistel(num_elements: int, keys: tuple[int, ...]) -> _Feistel:
    log4, pow4 = 1, 4
    while pow4 < num_elements:
        pow4 *= 4
        log4 += 1
    mask = (1 << log4) - 1
    tables = []
    for key in keys[:3]:
        key_be = key.to_bytes(8, "big")
        table = np.empty(1 << log4, dtype=_U64)
        for r in range(1 << log4):
            d = hashlib.blake2b(r.to_bytes(8, "big") + key_be).digest()
            table[r] = int.from_bytes(d[:8], "big") & mask
        tables.append(table)
    return _Feistel(log4, mask, tuple(tables))


def _feistel_encode(x: np.ndarray, f: _Feistel) -> np.ndarray:
    hb = _U64(f.half_bits)
    left = (x >> hb) & _U64(f.right_mask)
    right = x & _U64(f.right_mask)
    for table in f.tables:
        left, right = right, left ^ table[right]
    return (left << hb) | right


def _permute(x: np.ndarray, num_elements: int, f: _Feistel) -> np.ndarray:
    u = _feistel_encode(x, f)
    walk = np.nonzero(u >= _U64(num_elements))[0]
    while walk.size:   # cycle-walk the few values that fall outside the domain
        u[walk] = _feistel_encode(u[walk], f)
        walk = walk[u[walk] >= _U64(num_elements)]
    return u


def expander_parents(proof: SealProofType | GraphSpec, start: int, stop: int, f: _Feistel | None = None) -> np.ndarray:
    proof = GraphSpec.of(proof)
    nodes_total = proof.nodes
    f = f or _feistel(nodes_total * EXPANSION_DEGREE, feistel_keys(proof.porep_id))
    idx = (np.arange(start, stop, dtype=_U64)[:, None] * _U64(EXPANSION_DEGREE)
           + np.arange(EXPANSION_DEGREE, dtype=_U64)[None, :])
    out = _permute(idx.ravel(), nodes_total * EXPANSION_DEGREE, f) // _U64(EXPANSION_DEGREE)
    return out.reshape(-1, EXPANSION_DEGREE).astype(_U32)


def iter_parent_chunks(proof: SealProofType | GraphSpec, chunk: int = _CHUNK):
    """Yield (start, parents[uint32, (n, 14)]) chunks covering every node in order."""
    proof = GraphSpec.of(proof)
    n = proof.nodes
    f = _feistel(n * EXPANSION_DEGREE, feistel_keys(proof.porep_id))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        yield start, np.concatenate([base_parents(proof, start, stop), expander_parents(proof, start, stop, f)], axis=1)


# ------------------------------------------------------------------------------- parent cache

def cache_id(proof: SealProofType) -> str:
    nodes = proof.size.nodes
    name = "poseidon_hasher"
    identifier = (f"stacked_graph::StackedGraph{{expansion_degree: {EXPANSION_DEGREE} base_graph: "
                  f"drgraph::BucketGraph{{size: {nodes}; degree: {BASE_DEGREE}; hasher: {name}}} }}")
    h = hashlib.sha256(name.encode() + identifier.encode())
    for key in feistel_keys(proof.porep_id):
        h.update(key.to_bytes(8, "little"))
    h.update(nodes.to_bytes(4, "little"))
    return f"v{CACHE_VERSION}-sdr-parent-{h.hexdigest()}"


def default_cache_dir() -> Path:
    """As rust-fil-proofs: FIL_PROOFS_PARENT_CACHE, else /var/tmp/filecoin-parents."""
    return Path(os.environ.get("FIL_PROOFS_PARENT_CACHE") or "/var/tmp/filecoin-parents")


def cache_path(proof: SealProofType, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir(), f"{cache_id(proof)}.cache"


def cache_file(proof: SealProofType, cache_dir: str | os.PathLike | None = None) -> Path:
    d, name = cache_path(proof, cache_dir)
    return d / name


def write_parent_cache(proof: SealProofType, cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Generate the cache file (atomically: temp file then rename) and return (path, sha256)."""
    path = cache_file(proof, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        for _, chunk in iter_parent_chunks(proof):
            data = chunk.astype("<u4").tobytes()
            digest.update(data)
            f.write(data)
    return path, digest.hexdigest()


def load_parents(proof: SealProofType, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The whole parent table, from a cache file checked against its digest (parent_cache.py)."""
    from .parent_cache import load_parents as load_checked     # parent_cache builds on this module
    return load_checked(proof, cache_dir)
