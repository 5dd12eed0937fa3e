"""PreCommit phase 2: encode the replica (sealed = data + last layer label, mod r), build tree_c
over the column hashes and tree_r_last over the replica (Poseidon, arity 8, Filecoin's compound
shapes), comm_r = Poseidon(comm_c, comm_r_last), and write p_aux / t_aux as rust-fil-proofs
does (storage-proofs-porep stacked/vanilla/proof.rs transform_and_replicate_layers).

PC2 is Poseidon bound: the sector is cut into equal ranges that `procs` processes hash in
parallel (each reads its own slices of the layer and data files and writes its slice of the
sealed file); the parent stitches the partial rows and hashes the few rows on top."""

from __future__ import annotations

import multiprocessing
import os
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_output, atomic_write
from ..core.proof_types import SealProofType
from . import ProofError
from .field import MODULUS
from .merkle import Shape, build_rows, default_rows_to_discard, poseidon_hasher, split_nodes, tree_len
from .pc1 import layer_path
from .poseidon import constants, hash_ints, hash_nodes
from .store import shape_of, tree_c_path, tree_r_last_path

_PARALLEL_MIN_NODES = 1 << 12   # below this, process start-up costs more than it saves


def _read_range(path: Path, start_node: int, count: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start_node * 32)
        data = f.read(count * 32)
    if len(data) != count * 32:
        raise ProofError(f"{path}: truncated, cannot read nodes {start_node}..{start_node + count}")
    return data


# ---------------------------------------------------------------- work done in helper processes

def column_part(cache_dir: str, layers: int, start: int, stop: int) -> list[bytes]:
    """Column hashes of nodes start..stop and the oct rows above them; rows as joined bytes."""
    columns = [split_nodes(_read_range(layer_path(cache_dir, layer), start, stop - start)) for layer in range(1, layers + 1)]
    c = constants(layers)
    leaves = [hash_ints([int.from_bytes(x, "little") for x in col], c).to_bytes(32, "little") for col in zip(*columns)]
    return [b"".join(r) for r in build_rows(leaves, 8, poseidon_hasher, stop_at=0)]


def replica_part(staged: str, sealed_tmp: str, cache_dir: str, layers: int, start: int, stop: int) -> list[bytes]:
    """Encode nodes start..stop into the sealed file and return the oct rows above them."""
    data = _read_range(Path(staged), start, stop - start)
    key = _read_range(layer_path(cache_dir, layers), start, stop - start)
    p = MODULUS
    out = []
    for i in range(0, len(data), 32):
        v = int.from_bytes(data[i:i + 32], "little") + int.from_bytes(key[i:i + 32], "little")
        out.append((v - p if v >= p else v).to_bytes(32, "little"))
    fd = os.open(sealed_tmp, os.O_WRONLY)
    try:
        os.pwrite(fd, b"".join(out), start * 32)
    finally:
        os.close(fd)
    return [b"".join(r) for r in build_rows(out, 8, poseidon_hasher, stop_at=0)]


# ------------------------------------------------------------------------------------ driver

@dataclass
class PC2Output:
    comm_c: bytes
    comm_r_last: bytes
    comm_r: bytes


def mp_context():
    """Helpers are spawned (not forked): safe under threads and in the frozen executable."""
    return multiprocessing.get_context("spawn")


def _ranges(base_leaves: int, tree_count: int, procs: int) -> list[tuple[int, int]]:
    per_tree = 1
    while per_tree * tree_count < 2 * procs and base_leaves // (per_tree * 2) >= 64:
        per_tree *= 2
    size = base_leaves // per_tree
    return [(t * base_leaves + k * size, t * base_leaves + (k + 1) * size) for t in range(tree_count) for k in range(per_tree)]


def _assemble(parts: list[list[bytes]], shape: Shape) -> list[list[list[bytes]]]:
    """Per base tree, full rows (lists of nodes) from the parts' partial rows."""
    per_tree = len(parts) // shape.tree_count
    trees = []
    for t in range(shape.tree_count):
        mine = parts[t * per_tree:(t + 1) * per_tree]
        depth = min(len(p) for p in mine)
        rows = [split_nodes(b"".join(p[r] for p in mine)) for r in range(depth)]
        upper = build_rows(rows[-1], 8, poseidon_hasher)
        trees.append(rows[:-1] + upper)
    return trees


def run_parts(fn, args_list: list[tuple], procs: int) -> list:
    if procs <= 1 or len(args_list) == 1:
        return [fn(*a) for a in args_list]
    with ProcessPoolExecutor(max_workers=procs, mp_context=mp_context()) as pool:
        futures = [pool.submit(fn, *a) for a in args_list]
        return [f.result() for f in futures]


def seal_pre_commit_phase2(proof: SealProofType, staged: Path, cache_dir: Path, sealed: Path, procs: int = 1,
                           final_cache_dir: Path | None = None) -> PC2Output:
    """final_cache_dir: where the cache directory will live once moved into place (t_aux records
    it, as rust-fil-proofs records the cache path it sealed in)."""
    size = proof.size
    shape = shape_of(proof)
    layers = size.layers
    if os.path.getsize(staged) != size.bytes:
        raise ProofError(f"staged file {staged} has {os.path.getsize(staged)} bytes, expected {size.bytes}")
    for layer in range(1, layers + 1):
        lp = layer_path(cache_dir, layer)
        if not lp.exists() or lp.stat().st_size != size.bytes:
            raise ProofError(f"layer file {lp} is missing or not {size.bytes} bytes: run PC1 first")
    if size.nodes < _PARALLEL_MIN_NODES:
        procs = 1
    ranges = _ranges(shape.base_leaves, shape.tree_count, procs)

    with atomic_output(sealed) as sealed_tmp:      # helper processes write their ranges into it
        with open(sealed_tmp, "wb") as f:
            f.truncate(size.bytes)
        col_parts = run_parts(column_part, [(str(cache_dir), layers, a, b) for a, b in ranges], procs)
        rep_parts = run_parts(replica_part, [(str(staged), str(sealed_tmp), str(cache_dir), layers, a, b) for a, b in ranges], procs)

    count = shape.tree_count
    rtd = default_rows_to_discard(shape.base_leaves, 8)
    c_roots, r_roots = [], []
    for i, rows in enumerate(_assemble(col_parts, shape)):
        atomic_write(tree_c_path(cache_dir, i, count), b"".join(b"".join(r) for r in rows))
        c_roots.append(rows[-1][0])
    for i, rows in enumerate(_assemble(rep_parts, shape)):
        atomic_write(tree_r_last_path(cache_dir, i, count), b"".join(b"".join(r) for r in rows[1 + rtd:]))
        r_roots.append(rows[-1][0])
    comm_c = shape.combine_roots(c_roots)
    comm_r_last = shape.combine_roots(r_roots)
    comm_r = hash_nodes([comm_c, comm_r_last])
    atomic_write(Path(cache_dir) / "p_aux", comm_c + comm_r_last)
    atomic_write(Path(cache_dir) / "t_aux", t_aux_bytes(proof, final_cache_dir or cache_dir))
    return PC2Output(comm_c, comm_r_last, comm_r)


# ----------------------------------------------------------------------------- p_aux / t_aux

def read_p_aux(cache_dir: Path) -> tuple[bytes, bytes]:
    path = Path(cache_dir) / "p_aux"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProofError(f"{path} is missing") from None
    if len(data) != 64:
        raise ProofError(f"{path} has {len(data)} bytes, expected 64 (comm_c || comm_r_last)")
    for what, part in (("comm_c", data[:32]), ("comm_r_last", data[32:])):
        if int.from_bytes(part, "little") >= MODULUS:
            raise ProofError(f"{path}: {what} {part.hex()} is not a field element (the file is not a p_aux)")
    return data[:32], data[32:]


def _store_config(path: str, ident: str, size: int, rows_to_discard: int) -> bytes:
    p, i = path.encode(), ident.encode()
    return struct.pack("<Q", len(p)) + p + struct.pack("<Q", len(i)) + i + b"\x01" + struct.pack("<QQ", size, rows_to_discard)


def t_aux_bytes(proof: SealProofType, cache_dir: Path) -> bytes:
    """bincode(TemporaryAux) as rust-fil-proofs writes it: the label configs, then tree_d,
    tree_r_last and tree_c store configs (path, id, Some(size), rows_to_discard)."""
    size = proof.size
    shape = shape_of(proof)
    path = str(cache_dir)
    base_len = tree_len(shape.base_leaves, 8)
    out = struct.pack("<Q", size.layers)
    for layer in range(1, size.layers + 1):
        out += _store_config(path, f"layer-{layer}", size.nodes, 0)
    out += _store_config(path, "tree-d", 2 * size.nodes - 1, 0)
    out += _store_config(path, "tree-r-last", base_len, default_rows_to_discard(shape.base_leaves, 8))
    out += _store_config(path, "tree-c", base_len, 0)
    return out


_PATH_MAX = 4096     # bytes a recorded cache path may have; more is garbage, not a path


class _TAuxReader:
    """bincode fields read from a t_aux, each short read or odd value named with the file."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise ProofError(f"{self.path} is truncated: {len(self.data)} bytes, it ends inside {what} (at byte {self.pos})")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def text(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        if n > _PATH_MAX:
            raise ProofError(f"{self.path} is not a t_aux: {what} would be {n} bytes long")
        try:
            return self.take(n, what).decode()
        except UnicodeDecodeError:
            raise ProofError(f"{self.path} is not a t_aux: {what} is not UTF-8") from None

    def store_config(self, index: int) -> tuple[str, str, int | None, int]:
        where = f"store config {index}"
        path, ident = self.text(f"the path of {where}"), self.text(f"the id of {where}")
        tag = self.take(1, f"the size of {where}")[0]
        if tag not in (0, 1):
            raise ProofError(f"{self.path} is not a t_aux: the size of {where} ({ident!r}) has option tag {tag}")
        size = self.u64(f"the size of {where}") if tag else None
        return path, ident, size, self.u64(f"rows_to_discard of {where}")


def read_t_aux(cache_dir: Path, proof: SealProofType) -> list[tuple[str, str, int | None, int]]:
    """Read and check a t_aux (bincode TemporaryAux): the label layers' store configs, then
    tree_d, tree_r_last and tree_c; each id, size and rows_to_discard as `proof` has them (the
    recorded path is informational). Raises ProofError naming the file and what is wrong."""
    path = Path(cache_dir) / "t_aux"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProofError(f"{path} is missing") from None
    r = _TAuxReader(path, data)
    layers = r.u64("the number of label layers")
    if layers != proof.size.layers:
        raise ProofError(f"{path} records {layers} label layers, {proof.name} has {proof.size.layers}"
                         + (" (the file is not a t_aux)" if layers > 64 else ""))
    configs = [r.store_config(i) for i in range(layers + 3)]
    if r.pos != len(data):
        raise ProofError(f"{path} has {len(data) - r.pos} bytes after its last store config ({len(data)} bytes, expected {r.pos})")
    want = _TAuxReader(path, t_aux_bytes(proof, Path(configs[0][0])))
    want.u64("the number of label layers")
    expected = [want.store_config(i) for i in range(layers + 3)]
    for (_, ident, size, rtd), (_, ident_w, size_w, rtd_w) in zip(configs, expected):
        if (ident, size, rtd) != (ident_w, size_w, rtd_w):
            raise ProofError(f"{path}: store config {ident!r} (size {size}, rows_to_discard {rtd}) is not {proof.name}'s "
                             f"{ident_w!r} (size {size_w}, rows_to_discard {rtd_w})")
    return configs

