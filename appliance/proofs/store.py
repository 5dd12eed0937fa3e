"""A sector's files under Filecoin's names, and the trees over them opened for proving:
`sealed`, `cache/sc-02-data-tree-d.dat`, `cache/sc-02-data-layer-N.dat`,
`cache/sc-02-data-tree-c[-i].dat`, `cache/sc-02-data-tree-r-last[-i].dat`, `p_aux`, `t_aux`."""

from __future__ import annotations

from pathlib import Path

from ..core.proof_types import SealProofType, SectorSize
from . import ProofError
from .merkle import (CompoundTree, Shape, StoredTree, default_rows_to_discard, poseidon_hasher, read_nodes,
                     sha_hasher)
from .pc1 import layer_path

TREE_D = "sc-02-data-tree-d.dat"


def shape_of(proof_or_size: SealProofType | SectorSize) -> Shape:
    size = getattr(proof_or_size, "size", proof_or_size)
    _, sub, top = size.tree_shape
    return Shape(size.nodes, sub, top)


def tree_c_path(cache_dir: Path, i: int, count: int) -> Path:
    return Path(cache_dir) / (f"sc-02-data-tree-c-{i}.dat" if count > 1 else "sc-02-data-tree-c.dat")


def tree_r_last_path(cache_dir: Path, i: int, count: int) -> Path:
    return Path(cache_dir) / (f"sc-02-data-tree-r-last-{i}.dat" if count > 1 else "sc-02-data-tree-r-last.dat")


def open_tree_d(proof: SealProofType, cache_dir: Path) -> StoredTree:
    return StoredTree(Path(cache_dir) / TREE_D, proof.size.nodes, 2, sha_hasher)


def open_tree_c(proof: SealProofType, cache_dir: Path) -> CompoundTree:
    shape = shape_of(proof)
    n = shape.tree_count
    return CompoundTree(shape, [StoredTree(tree_c_path(cache_dir, i, n), shape.base_leaves, 8, poseidon_hasher)
                                for i in range(n)])


def open_tree_r_last(proof: SealProofType, cache_dir: Path, sealed: Path) -> CompoundTree:
    shape = shape_of(proof)
    n = shape.tree_count
    rtd = default_rows_to_discard(shape.base_leaves, 8)
    if not Path(sealed).exists():
        raise ProofError(f"sealed file {sealed} is missing")
    if Path(sealed).stat().st_size != proof.size.bytes:
        raise ProofError(f"sealed file {sealed} has {Path(sealed).stat().st_size} bytes, expected {proof.size.bytes}")
    return CompoundTree(shape, [
        StoredTree(tree_r_last_path(cache_dir, i, n), shape.base_leaves, 8, poseidon_hasher, first_row=1 + rtd,
                   leaf_path=sealed, leaf_offset=i * shape.base_leaves)
        for i in range(n)])


def read_column(proof: SealProofType, cache_dir: Path, node: int) -> list[bytes]:
    return [read_nodes(layer_path(cache_dir, layer), node, 1)[0] for layer in range(1, proof.size.layers + 1)]
