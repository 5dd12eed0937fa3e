"""SnapDeals encoding and decoding (rust-fil-proofs storage-proofs-update vanilla.rs
encode_into / decode_from / remove_encoded_data, filecoin-proofs api/update.rs):

    replica_new = sector_key + data · rho        data = (replica_new - sector_key) / rho

in Fr, node by node, rho chosen by the h high bits of the node index (snap.py). The new cache
directory gets what rust-fil-proofs writes there: `sc-02-data-tree-d.dat` (tree_d of the new
data), `sc-02-data-tree-r-last[-i].dat` (tree_r_last of the new replica, same shape and
rows_to_discard as PC2's), `p_aux` (the sector key's comm_c ‖ comm_r_last_new) and `t_aux` (the
sector key's, recording the sector key cache path as rust-fil-proofs does).

In Damocles' stores a sector's files are `sealed/s-t0M-N` (the sector key, i.e. the CC replica),
`cache/s-t0M-N/`, and after the upgrade `update/s-t0M-N` and `update-cache/s-t0M-N/`
(`sector_files`, `encode_sector`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_write
from ..core.proof_types import default_seal_proof
from ..core.sector import SectorID, sector_name
from . import ProofError
from .addpiece import build_tree_d
from .commitment import PieceInfo
from .field import MODULUS
from .fr32 import unpad
from .merkle import build_rows, default_rows_to_discard, poseidon_hasher
from .pc2 import _assemble, _ranges, read_p_aux, run_parts, t_aux_bytes   # PC2's range splitting and stitching
from .poseidon import hash_nodes
from .snap import UpdateProofType, high_shift, phi, rho_inverses, rhos
from .store import open_tree_r_last, shape_of, tree_r_last_path

_PARALLEL_MIN_NODES = 1 << 12


@dataclass(frozen=True)
class SectorFiles:
    """A sector's files in a Damocles store (sealing store `data/` or persist store root)."""
    sealed: Path          # the sector key (the CC replica)
    cache: Path
    update: Path          # the updated replica
    update_cache: Path


def sector_files(root: Path, sector: SectorID) -> SectorFiles:
    name = sector_name(sector.miner, sector.number)
    root = Path(root)
    return SectorFiles(root / "sealed" / name, root / "cache" / name, root / "update" / name,
                       root / "update-cache" / name)


@dataclass
class UpdateEncoded:
    """filecoin-proofs EmptySectorUpdateEncoded, plus the sector key's commitments."""
    comm_r_new: bytes
    comm_r_last_new: bytes
    comm_d_new: bytes
    comm_r_old: bytes
    comm_c: bytes


# ---------------------------------------------------------------- work done in helper processes

def _nodes(path: str, start: int, count: int, what: str) -> list[int]:
    with open(path, "rb") as f:
        f.seek(start * 32)
        data = f.read(count * 32)
    if len(data) != count * 32:
        raise ProofError(f"{what} {path}: truncated, cannot read nodes {start}..{start + count}")
    out = [int.from_bytes(data[i:i + 32], "little") for i in range(0, len(data), 32)]
    for i, v in enumerate(out):
        if v >= MODULUS:
            raise ProofError(f"{what} {path}: node {start + i} is not a canonical field element")
    return out


def combine_part(mode: str, a_path: str, b_path: str, out_path: str, factors: list[int], shift: int,
                 start: int, stop: int, tree: bool) -> list[bytes]:
    """Nodes start..stop of out_path from a and b, factor f = factors[node >> shift]:
    encode: a + b·f (sector key, data, rho); remove: a - b·f (replica, data, rho);
    decode: (a - b)·f (replica, sector key, 1/rho). With `tree`, returns the oct rows above them."""
    p = MODULUS
    a = _nodes(a_path, start, stop - start, {"encode": "sector key", "remove": "replica", "decode": "replica"}[mode])
    b = _nodes(b_path, start, stop - start, {"encode": "staged data", "remove": "data", "decode": "sector key"}[mode])
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        f = factors[(start + i) >> shift]
        if mode == "encode":
            v = (x + y * f) % p
        elif mode == "remove":
            v = (x - y * f) % p
        else:
            v = (x - y) * f % p
        out.append(v.to_bytes(32, "little"))
    fd = os.open(out_path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"".join(out), start * 32)
    finally:
        os.close(fd)
    return [b"".join(r) for r in build_rows(out, 8, poseidon_hasher, stop_at=0)] if tree else []


# ------------------------------------------------------------------------------------ helpers

def _check_size(path: Path, proof: UpdateProofType, what: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise ProofError(f"{what} {path} is missing or not a file")
    if path.stat().st_size != proof.size.bytes:
        raise ProofError(f"{what} {path} has {path.stat().st_size} bytes, expected {proof.size.bytes} ({proof.name})")


def _combine_file(proof: UpdateProofType, mode: str, a: Path, b: Path, out: Path, factors: list[int],
                  procs: int, tree: bool) -> tuple[Path, list | None]:
    """Write `out`'s content to `out`.tmp (the caller renames it once everything else succeeded)
    and, with `tree`, return the full rows of tree_r_last's base trees over it."""
    shape = shape_of(proof)
    shift = high_shift(proof.nodes, proof.h)
    if proof.nodes < _PARALLEL_MIN_NODES:
        procs = 1
    ranges = _ranges(shape.base_leaves, shape.tree_count, max(1, procs))
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.truncate(proof.size.bytes)
    try:
        parts = run_parts(combine_part, [(mode, str(a), str(b), str(tmp), factors, shift, lo, hi, tree)
                                         for lo, hi in ranges], procs)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, (_assemble(parts, shape) if tree else None)


def _write_tree_r_last(proof: UpdateProofType, cache_dir: Path, trees) -> bytes:
    shape = shape_of(proof)
    rtd = default_rows_to_discard(shape.base_leaves, 8)
    roots = []
    for i, rows in enumerate(trees):
        atomic_write(tree_r_last_path(cache_dir, i, shape.tree_count), b"".join(b"".join(r) for r in rows[1 + rtd:]))
        roots.append(rows[-1][0])
    return shape.combine_roots(roots)


def _sector_key_commitments(proof: UpdateProofType, sector_key_path: Path, sector_key_cache: Path) -> tuple[bytes, bytes]:
    """comm_c and comm_r_last of the sector key (p_aux), checked against its tree_r_last files."""
    comm_c, comm_r_last = read_p_aux(sector_key_cache)
    tree = open_tree_r_last(proof, sector_key_cache, sector_key_path)
    if tree.root() != comm_r_last:
        raise ProofError(f"tree_r_last in {sector_key_cache} does not match the comm_r_last of its p_aux")
    return comm_c, comm_r_last


# ------------------------------------------------------------------------------------- encode

def encode_into(proof: UpdateProofType, new_replica_path: Path, new_cache_path: Path, sector_key_path: Path,
                sector_key_cache_path: Path, staged_data_path: Path, pieces: list[PieceInfo] | None = None,
                procs: int = 1) -> UpdateEncoded:
    """Encode the staged (fr32-padded, sector-sized) data into the sector key. Reads
    sector_key_path and its cache (p_aux, t_aux, tree_r_last); writes new_replica_path and, in
    new_cache_path (created if missing), tree_d, tree_r_last, p_aux and t_aux. With `pieces`,
    comm_d_new must match them (rust-fil-proofs verify_pieces)."""
    new_replica_path, new_cache_path = Path(new_replica_path), Path(new_cache_path)
    _check_size(sector_key_path, proof, "sector key")
    _check_size(staged_data_path, proof, "staged data")
    if not Path(sector_key_cache_path).is_dir():
        raise ProofError(f"sector key cache {sector_key_cache_path} is not a directory")
    comm_c, comm_r_last_old = _sector_key_commitments(proof, sector_key_path, sector_key_cache_path)
    new_cache_path.mkdir(exist_ok=True)
    comm_d_new = build_tree_d(proof.size, staged_data_path, new_cache_path, pieces)
    if comm_d_new == bytes(32):
        raise ProofError("invalid all-zero commitment (comm_d_new)")
    comm_r_old = hash_nodes([comm_c, comm_r_last_old])
    factors = rhos(phi(comm_d_new, comm_r_old), proof.h)
    tmp, trees = _combine_file(proof, "encode", sector_key_path, staged_data_path, new_replica_path, factors, procs, True)
    try:
        comm_r_last_new = _write_tree_r_last(proof, new_cache_path, trees)
        comm_r_new = hash_nodes([comm_c, comm_r_last_new])
        atomic_write(new_cache_path / "p_aux", comm_c + comm_r_last_new)
        atomic_write(new_cache_path / "t_aux", t_aux_bytes(default_seal_proof(proof.size), sector_key_cache_path))
        os.replace(tmp, new_replica_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return UpdateEncoded(comm_r_new, comm_r_last_new, comm_d_new, comm_r_old, comm_c)


def encode_sector(proof: UpdateProofType, root: Path, sector: SectorID, staged_data_path: Path,
                  pieces: list[PieceInfo] | None = None, procs: int = 1) -> UpdateEncoded:
    """encode_into with Damocles' layout under `root`: reads `sealed/s-t0M-N` and
    `cache/s-t0M-N/`, writes `update/s-t0M-N` and `update-cache/s-t0M-N/`."""
    return encode_files(proof, sector_files(root, sector), staged_data_path, pieces, procs)


def encode_files(proof: UpdateProofType, files: SectorFiles, staged_data_path: Path,
                 pieces: list[PieceInfo] | None = None, procs: int = 1, encoder=None) -> UpdateEncoded:
    """encode_into (or `encoder`, with its signature: an external processor) from files.sealed /
    files.cache into files.update / files.update_cache, both built under temporary names and
    renamed only when everything succeeded; existing ones are refused and nothing is left behind
    on failure."""
    f = files
    for p in (f.update, f.update_cache):
        if p.exists():
            raise ProofError(f"{p} already exists: the sector was updated already")
    f.update.parent.mkdir(parents=True, exist_ok=True)
    f.update_cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_replica = f.update.with_name(f".{f.update.name}.tmp")
    tmp_cache = f.update_cache.with_name(f".{f.update_cache.name}.tmp")
    shutil.rmtree(tmp_cache, ignore_errors=True)
    try:
        out = (encoder or encode_into)(proof, tmp_replica, tmp_cache, f.sealed, f.cache, staged_data_path, pieces, procs)
        tmp_cache.rename(f.update_cache)
        tmp_replica.rename(f.update)
        return out
    except BaseException:
        shutil.rmtree(tmp_cache, ignore_errors=True)
        if f.update_cache.exists() and not f.update.exists():
            shutil.rmtree(f.update_cache, ignore_errors=True)
        tmp_replica.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------- decode

def decode_range(proof: UpdateProofType, comm_r_old: bytes, comm_d_new: bytes, replica_path: Path,
                 sector_key_path: Path, node_offset: int, num_nodes: int) -> bytes:
    """Padded data nodes node_offset .. +num_nodes (rust-fil-proofs decode_from_range)."""
    if node_offset < 0 or num_nodes <= 0 or node_offset + num_nodes > proof.nodes:
        raise ProofError(f"decode range {node_offset}+{num_nodes} is outside the {proof.nodes} nodes of {proof.name}")
    _check_size(replica_path, proof, "replica")
    _check_size(sector_key_path, proof, "sector key")
    inv = rho_inverses(phi(comm_d_new, comm_r_old), proof.h)
    shift = high_shift(proof.nodes, proof.h)
    a = _nodes(str(replica_path), node_offset, num_nodes, "replica")
    b = _nodes(str(sector_key_path), node_offset, num_nodes, "sector key")
    return b"".join(((x - y) * inv[(node_offset + i) >> shift] % MODULUS).to_bytes(32, "little")
                    for i, (x, y) in enumerate(zip(a, b)))


def unseal_update_range(proof: UpdateProofType, comm_r_old: bytes, comm_d_new: bytes, replica_path: Path,
                        sector_key_path: Path, offset: int, length: int) -> bytes:
    """Piece bytes [offset, offset+length) in unpadded sector coordinates (multiples of 127)."""
    if offset % 127 or length % 127 or length <= 0 or offset < 0 or offset + length > proof.size.unpadded_bytes:
        raise ProofError(f"unseal range {offset}+{length} is not a whole number of 127-byte quads inside "
                         f"the {proof.size.unpadded_bytes} unpadded bytes of a {proof.size.name} sector")
    start, stop = offset // 127 * 4, (offset + length) // 127 * 4
    return unpad(decode_range(proof, comm_r_old, comm_d_new, replica_path, sector_key_path, start, stop - start))


def decode_from(proof: UpdateProofType, out_data_path: Path, replica_path: Path, sector_key_path: Path,
                sector_key_cache_path: Path, comm_d_new: bytes, procs: int = 1) -> None:
    """Write the whole padded data of the updated replica to out_data_path (rust-fil-proofs
    decode_from: comm_r_old from the sector key's p_aux)."""
    _check_size(replica_path, proof, "replica")
    _check_size(sector_key_path, proof, "sector key")
    comm_c, comm_r_last_old = read_p_aux(sector_key_cache_path)
    inv = rho_inverses(phi(comm_d_new, hash_nodes([comm_c, comm_r_last_old])), proof.h)
    out = Path(out_data_path)
    tmp, _ = _combine_file(proof, "decode", replica_path, sector_key_path, out, inv, procs, False)
    os.replace(tmp, out)


def remove_encoded_data(proof: UpdateProofType, sector_key_path: Path, sector_key_cache_path: Path,
                        replica_path: Path, replica_cache_path: Path, data_path: Path, comm_r_old: bytes,
                        comm_d_new: bytes, procs: int = 1) -> bytes:
    """Recover the sector key from the updated replica and its data (sector_key = replica -
    data · rho): writes sector_key_path and, in sector_key_cache_path, tree_r_last, p_aux and
    t_aux. comm_c comes from the replica's p_aux; comm_r_old is the on-chain SectorKeyCID's
    commitment and the result must reproduce it. Returns the sector key's comm_r_last."""
    _check_size(replica_path, proof, "replica")
    _check_size(data_path, proof, "data")
    comm_c, _ = read_p_aux(replica_cache_path)
    factors = rhos(phi(comm_d_new, comm_r_old), proof.h)
    key_cache = Path(sector_key_cache_path)
    key_cache.mkdir(exist_ok=True)
    tmp, trees = _combine_file(proof, "remove", replica_path, data_path, Path(sector_key_path), factors, procs, True)
    try:
        shape = shape_of(proof)
        comm_r_last = shape.combine_roots([rows[-1][0] for rows in trees])
        if hash_nodes([comm_c, comm_r_last]) != comm_r_old:
            raise ProofError("the recovered sector key does not reproduce comm_r_old (wrong data, comm_d_new or comm_r_old)")
        _write_tree_r_last(proof, key_cache, trees)
        atomic_write(key_cache / "p_aux", comm_c + comm_r_last)
        atomic_write(key_cache / "t_aux", t_aux_bytes(default_seal_proof(proof.size), replica_cache_path))
        os.replace(tmp, sector_key_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return comm_r_last
