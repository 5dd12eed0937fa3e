"""PreCommit phase 1: replica_id and the SDR labels of every layer
(storage-proofs-porep stacked/vanilla/create_label/single.rs, params.rs generate_replica_id).

label(L, n) = sha256(replica_id || u32_be(L) || u64_be(n) || 0^20 || parents)[31] &= 0x3f
  layer 1:  parents = [b0..b5] x 6 + b0                      (base parents, this layer)
  layer >1: parents = [b0..b5, e0..e7] x 2 + [b0..b5, e0..e2] (e*: expander parents, previous layer)

The loop is the hot path of sealing: it is written so that each node costs one hashlib call plus
a handful of bytes concatenations (see `damocles bench pc1` for its ratio to hashlib alone)."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from ..core.files import atomic_write
from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from . import ProofError
from .graph import DEGREE
from .parent_cache import load_parents

_MASK31 = [bytes([b & 0x3F]) for b in range(256)]
_CHUNK = 1 << 12          # nodes whose parents are turned into Python ints at a time
_NODE_BUF = struct.Struct(">Q20x")


def replica_id(sector: SectorID, ticket: bytes, comm_d: bytes, proof: SealProofType) -> bytes:
    if len(ticket) != 32:
        raise ProofError(f"ticket must be 32 bytes, got {len(ticket)}")
    if len(comm_d) != 32:
        raise ProofError(f"comm_d must be 32 bytes, got {len(comm_d)}")
    d = hashlib.sha256(sector.prover_id + sector.number.to_bytes(8, "big") + ticket + comm_d + proof.porep_id).digest()
    return d[:31] + _MASK31[d[31]]


def layer_path(cache_dir: str | os.PathLike, layer: int) -> Path:
    return Path(cache_dir) / f"sc-02-data-layer-{layer}.dat"


def label_layer(rid: bytes, layer: int, parents: np.ndarray, prev: bytes | None) -> bytes:
    """Labels of one layer, as the layer file's bytes. `prev` is the previous layer's bytes
    (None for layer 1). The current layer is a list of 32-byte labels while it is built
    (indexing a list is the cheapest parent fetch Python has), then joined."""
    n_nodes = parents.shape[0]
    sha = hashlib.sha256
    mask = _MASK31
    join = b"".join
    node_buf = _NODE_BUF.pack          # u64_be(node) || 20 zero bytes
    head = rid + layer.to_bytes(4, "big")
    labels: list[bytes] = [b""] * n_nodes
    d = sha(head + node_buf(0)).digest()
    last = labels[0] = d[:31] + mask[d[31]]
    # one 32-byte item per label: gathering whole items with np.take is ~6x faster than rows
    prev_np = None if prev is None else np.frombuffer(prev, dtype="V32")
    # V1_1 and later put the predecessor first (the fast loops below use `last` for it);
    # V1_0 graphs put it last and take the general loop
    predecessor_first = bool(np.all(parents[1:, 0].astype(np.int64) == np.arange(n_nodes - 1)))
    for start in range(0, n_nodes, _CHUNK):
        stop = min(n_nodes, start + _CHUNK)
        first = max(start, 1)
        if not predecessor_first:
            _label_chunk_general(labels, head, parents, prev_np, first, stop)
            last = labels[stop - 1]
            continue
        rows = parents[first:stop, 1:6].tolist()     # base parents 1..5 (0 is the predecessor)
        if prev_np is None:
            for n, (a, b, c, e, f) in zip(range(first, stop), rows):
                p = join((last, labels[a], labels[b], labels[c], labels[e], labels[f]))
                d = sha(join((head, node_buf(n), p, p, p, p, p, p, last))).digest()
                last = labels[n] = d[:31] + mask[d[31]]
        else:
            # the 8 expander labels of each node as one 256-byte value, and its first 3 as 96 bytes
            exp = np.take(prev_np, parents[first:stop, 6:DEGREE])
            x8 = exp.view("V256").ravel().tolist()
            x3 = np.ascontiguousarray(exp[:, :3]).view("V96").ravel().tolist()
            for n, (a, b, c, e, f), x, y in zip(range(first, stop), rows, x8, x3):
                p = join((last, labels[a], labels[b], labels[c], labels[e], labels[f]))
                d = sha(join((head, node_buf(n), p, x, p, x, p, y))).digest()
                last = labels[n] = d[:31] + mask[d[31]]
    return _join_releasing(labels)


def _join_releasing(labels: list[bytes]) -> bytes:
    """b"".join(labels), releasing the label objects chunk by chunk as they are copied, so the
    layer is never held twice over (the list costs ~2.3x the layer's size)."""
    out = bytearray()
    for i in range(0, len(labels), _CHUNK):
        out += b"".join(labels[i:i + _CHUNK])
        labels[i:i + _CHUNK] = [b""] * len(labels[i:i + _CHUNK])
    return bytes(out)


def _label_chunk_general(labels: list[bytes], head: bytes, parents: np.ndarray, prev_np, first: int, stop: int) -> None:
    sha, mask, node_buf = hashlib.sha256, _MASK31, _NODE_BUF.pack
    for n in range(first, stop):
        row = parents[n].tolist()
        b = b"".join(labels[q] for q in row[:6])
        if prev_np is None:
            msg = b * 6 + b[:32]
        else:
            j = b + np.take(prev_np, row[6:DEGREE]).tobytes()
            msg = j + j + j[:288]
        d = sha(head + node_buf(n) + msg).digest()
        labels[n] = d[:31] + mask[d[31]]


@dataclass
class PC1Stats:
    label_seconds: float = 0.0      # hashing only
    total_seconds: float = 0.0      # with the parent cache load and the layer files' writes


def generate_labels(proof: SealProofType, rid: bytes, cache_dir: str | os.PathLike,
                    parent_cache_dir: str | os.PathLike | None = None,
                    stats: PC1Stats | None = None) -> bytes:
    """PC1: write sc-02-data-layer-1..L.dat into cache_dir (each atomically) and return the
    last layer's bytes (the key). At most two layers are held in memory."""
    t0 = time.perf_counter()
    parents = load_parents(proof, parent_cache_dir)
    prev: bytes | None = None
    for layer in range(1, proof.size.layers + 1):
        t = time.perf_counter()
        prev = label_layer(rid, layer, parents, prev)
        if stats:
            stats.label_seconds += time.perf_counter() - t
        atomic_write(layer_path(cache_dir, layer), prev)
    if stats:
        stats.total_seconds = time.perf_counter() - t0
    assert prev is not None
    return prev


