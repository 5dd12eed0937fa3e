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
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from . import ProofError
from .graph import DEGREE, load_parents

_MASK31 = [bytes([b & 0x3F]) for b in range(256)]
_CHUNK = 1 << 14          # nodes whose parents are turned into Python ints at a time


def replica_id(sector: SectorID, ticket: bytes, comm_d: bytes, proof: SealProofType) -> bytes:
    if len(ticket) != 32:
        raise ProofError(f"ticket must be 32 bytes, got {len(ticket)}")
    if len(comm_d) != 32:
        raise ProofError(f"comm_d must be 32 bytes, got {len(comm_d)}")
    d = hashlib.sha256(sector.prover_id + sector.number.to_bytes(8, "big") + ticket + comm_d + proof.porep_id).digest()
    return d[:31] + _MASK31[d[31]]


def layer_path(cache_dir: str | os.PathLike, layer: int) -> Path:
    return Path(cache_dir) / f"sc-02-data-layer-{layer}.dat"


def label_layer(rid: bytes, layer: int, parents: np.ndarray, prev: list[bytes] | None) -> list[bytes]:
    """Labels of one layer (a list of 32-byte values). `prev` is the previous layer's labels
    (None for layer 1)."""
    n_nodes = parents.shape[0]
    sha = hashlib.sha256
    mask = _MASK31
    z20 = bytes(20)
    head = rid + layer.to_bytes(4, "big")
    labels: list[bytes] = [b""] * n_nodes
    d = sha(head + bytes(8) + z20).digest()
    last = labels[0] = d[:31] + mask[d[31]]
    prev_np = None
    if prev is not None:
        prev_np = np.frombuffer(b"".join(prev), dtype=np.uint8).reshape(-1, 32)
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
        # base parents 1..5 of this chunk as Python ints (parent 0 is the predecessor)
        bp = parents[first:stop, 1:6].ravel().tolist()
        if prev_np is None:
            i = 0
            for n in range(first, stop):
                b = last + labels[bp[i]] + labels[bp[i + 1]] + labels[bp[i + 2]] + labels[bp[i + 3]] + labels[bp[i + 4]]
                d = sha(head + n.to_bytes(8, "big") + z20 + b * 6 + last).digest()
                last = labels[n] = d[:31] + mask[d[31]]
                i += 5
        else:
            exp = prev_np[parents[first:stop, 6:DEGREE]].tobytes()   # 8 expander labels per node
            i = k = 0
            for n in range(first, stop):
                b = last + labels[bp[i]] + labels[bp[i + 1]] + labels[bp[i + 2]] + labels[bp[i + 3]] + labels[bp[i + 4]]
                j = b + exp[k:k + 256]
                d = sha(head + n.to_bytes(8, "big") + z20 + j + j + j[:288]).digest()
                last = labels[n] = d[:31] + mask[d[31]]
                i += 5
                k += 256
    return labels


def _label_chunk_general(labels: list[bytes], head: bytes, parents: np.ndarray, prev_np, first: int, stop: int) -> None:
    sha, mask, z20 = hashlib.sha256, _MASK31, bytes(20)
    for n in range(first, stop):
        row = parents[n].tolist()
        b = b"".join(labels[p] for p in row[:6])
        if prev_np is None:
            msg = b * 6 + b[:32]
        else:
            j = b + prev_np[row[6:DEGREE]].tobytes()
            msg = j + j + j[:288]
        d = sha(head + n.to_bytes(8, "big") + z20 + msg).digest()
        labels[n] = d[:31] + mask[d[31]]


def generate_labels(proof: SealProofType, rid: bytes, cache_dir: str | os.PathLike,
                    parent_cache_dir: str | os.PathLike | None = None,
                    on_layer: Callable[[int], None] | None = None) -> list[bytes]:
    """PC1: write sc-02-data-layer-1..L.dat into cache_dir (each atomically) and return the
    last layer's labels. At most two layers are held in memory."""
    parents = load_parents(proof, parent_cache_dir)
    prev: list[bytes] | None = None
    for layer in range(1, proof.size.layers + 1):
        labels = label_layer(rid, layer, parents, prev)
        write_atomic(layer_path(cache_dir, layer), b"".join(labels))
        prev = labels
        if on_layer:
            on_layer(layer)
    assert prev is not None
    return prev


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
