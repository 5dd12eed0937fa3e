"""Merkle trees as rust-fil-proofs stores and opens them (merkletree crate 0.23):
the binary sha254 tree_d, and arity-8 Poseidon trees (tree_c, tree_r_last) with Filecoin's
compound shapes (8-0-0; 8-8-0 = 8 base trees under one arity-8 node; 8-8-2 = two of those under an
arity-2 node). Files hold rows bottom-up, root last; tree_r_last files drop the leaf row and
`rows_to_discard` rows above it (LevelCacheStore), which openings rebuild from the replica."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import ProofError
from .commitment import sha254
from .poseidon import hash_nodes

Hasher = Callable[[list[bytes]], bytes]


def poseidon_hasher(children: list[bytes]) -> bytes:
    return hash_nodes(children)


def sha_hasher(children: list[bytes]) -> bytes:
    return sha254(b"".join(children))


def split_nodes(data: bytes) -> list[bytes]:
    return [data[i:i + 32] for i in range(0, len(data), 32)]


def build_rows(leaves: list[bytes], arity: int, hasher: Hasher, stop_at: int = 1) -> list[list[bytes]]:
    """Rows of a tree from its leaves, bottom-up, while the top row is longer than stop_at and
    divides by the arity (stop_at > 1 builds a partial tree whose top row a caller continues)."""
    rows = [leaves]
    while len(rows[-1]) > stop_at and len(rows[-1]) % arity == 0:
        row = rows[-1]
        rows.append([hasher(row[i:i + arity]) for i in range(0, len(row), arity)])
    if stop_at == 1 and len(rows[-1]) != 1:
        raise ProofError(f"tree of {len(leaves)} leaves does not reduce to one root with arity {arity}")
    return rows


def tree_len(leaves: int, arity: int) -> int:
    """Nodes in a full tree (merkletree get_merkle_tree_len)."""
    total, row = 0, leaves
    while row > 1:
        total += row
        row //= arity
    return total + 1


def row_count(leaves: int, arity: int) -> int:
    n, row = 1, leaves
    while row > 1:
        row //= arity
        n += 1
    return n


def default_rows_to_discard(leaves: int, arity: int = 8) -> int:
    """rust-fil-proofs storage-proofs-core util.rs default_rows_to_discard (arity 8: at most 2)."""
    rc = row_count(leaves, arity)
    if rc <= 2:
        return 0
    if rc == 3:
        return 1
    limit = {2: 7, 4: 5}.get(arity, 2)
    return min(rc - 2, limit)


@dataclass(frozen=True)
class Shape:
    """Filecoin tree shape of a sector: base arity 8, optional sub (8) and top (2) levels."""
    leaves: int
    sub: int = 0
    top: int = 0

    @property
    def tree_count(self) -> int:
        return max(self.sub, 1) * max(self.top, 1)

    @property
    def base_leaves(self) -> int:
        return self.leaves // self.tree_count

    @property
    def arities(self) -> list[int]:
        """Arity of every level of an opening, bottom-up."""
        out = [8] * (row_count(self.base_leaves, 8) - 1)
        if self.sub:
            out.append(self.sub)
        if self.top:
            out.append(self.top)
        return out

    def combine_roots(self, roots: list[bytes]) -> bytes:
        """comm of a compound tree from its base trees' roots."""
        if len(roots) != self.tree_count:
            raise ProofError(f"expected {self.tree_count} base tree roots, got {len(roots)}")
        if not self.sub:
            return roots[0]
        subs = [hash_nodes(roots[i:i + self.sub]) for i in range(0, len(roots), self.sub)]
        return hash_nodes(subs) if self.top else subs[0]


@dataclass
class MerkleProof:
    """An opening of one leaf: the leaf, its index in the whole tree, and per level the arity-1
    siblings in order (the leaf's own position is derived from the index)."""
    index: int
    leaf: bytes
    path: list[list[bytes]]

    def root(self, arities: Sequence[int], hasher: Hasher) -> bytes:
        if len(self.path) != len(arities):
            raise ProofError(f"merkle path has {len(self.path)} levels, expected {len(arities)}")
        cur, idx = self.leaf, self.index
        for arity, siblings in zip(arities, self.path):
            if len(siblings) != arity - 1:
                raise ProofError(f"merkle path level has {len(siblings)} siblings, expected {arity - 1}")
            pos = idx % arity
            idx //= arity
            cur = hasher(siblings[:pos] + [cur] + siblings[pos:])
        if idx:
            raise ProofError(f"leaf index {self.index} is outside the tree")
        return cur

    def verify(self, root: bytes, arities: Sequence[int], hasher: Hasher) -> bool:
        return self.root(arities, hasher) == root


def open_rows(rows: list[list[bytes]], index: int, arity: int) -> list[list[bytes]]:
    """Sibling lists for a leaf from a tree's full rows (leaves first)."""
    path = []
    for row in rows[:-1]:
        g = index - index % arity
        path.append(row[g:index] + row[index + 1:g + arity])
        index //= arity
    return path


# ------------------------------------------------------------------------- stored trees


def read_nodes(path, start: int, count: int) -> list[bytes]:
    with open(path, "rb") as f:
        f.seek(start * 32)
        data = f.read(count * 32)
    if len(data) != count * 32:
        raise ProofError(f"{path}: truncated (cannot read nodes {start}..{start + count})")
    return split_nodes(data)


class StoredTree:
    """One base tree on disk: rows `first_row`.. in `path` (root last); rows below come from
    rebuilding a segment of leaves read from `leaf_path` at `leaf_offset` (nodes)."""

    def __init__(self, path, leaves: int, arity: int, hasher: Hasher, first_row: int = 0,
                 leaf_path=None, leaf_offset: int = 0):
        self.path, self.leaves, self.arity, self.hasher = path, leaves, arity, hasher
        self.first_row, self.leaf_path, self.leaf_offset = first_row, leaf_path, leaf_offset
        self.rows = row_count(leaves, arity)
        self.row_lengths = [leaves // arity ** r for r in range(self.rows)]
        expected = sum(self.row_lengths[first_row:]) * 32
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ProofError(f"tree file {path} is missing") from None
        if size != expected:
            raise ProofError(f"tree file {path} has {size} bytes, expected {expected}")

    def _row_offset(self, row: int) -> int:
        return sum(self.row_lengths[self.first_row:row])

    def root(self) -> bytes:
        return read_nodes(self.path, self._row_offset(self.rows - 1), 1)[0]

    def prove(self, index: int) -> MerkleProof:
        if not 0 <= index < self.leaves:
            raise ProofError(f"leaf {index} outside a tree of {self.leaves} leaves")
        a = self.arity
        path: list[list[bytes]] = []
        idx = index
        if self.first_row:
            # rebuild the discarded rows for the segment that holds the leaf
            seg = a ** self.first_row
            seg_start = index - index % seg
            rows = build_rows(read_nodes(self.leaf_path, self.leaf_offset + seg_start, seg), a, self.hasher)
            stored = read_nodes(self.path, self._row_offset(self.first_row) + seg_start // seg, 1)[0]
            if rows[-1][0] != stored:
                raise ProofError(f"{self.leaf_path}: replica nodes {self.leaf_offset + seg_start}.. do not hash to the "
                                 f"cached row of {self.path}")
            path += open_rows(rows, index - seg_start, a)
            leaf = rows[0][index - seg_start]
            idx = index // seg
        for row in range(self.first_row, self.rows - 1):
            g = idx - idx % a
            nodes = read_nodes(self.path, self._row_offset(row) + g, a)
            if row == 0:
                leaf = nodes[idx - g]
            path.append(nodes[:idx - g] + nodes[idx - g + 1:])
            idx //= a
        return MerkleProof(index, leaf, path)


class CompoundTree:
    """Base trees under Filecoin's sub/top levels; openings span the whole sector."""

    def __init__(self, shape: Shape, trees: list[StoredTree]):
        if len(trees) != shape.tree_count:
            raise ProofError(f"expected {shape.tree_count} tree files, found {len(trees)}")
        self.shape, self.trees = shape, trees
        self.roots = [t.root() for t in trees]

    def root(self) -> bytes:
        return self.shape.combine_roots(self.roots)

    def prove(self, index: int) -> MerkleProof:
        bl = self.shape.base_leaves
        t, leaf_index = divmod(index, bl)
        p = self.trees[t].prove(leaf_index)
        path = p.path
        if self.shape.sub:
            s = self.shape.sub
            g = t - t % s
            path.append(self.roots[g:t] + self.roots[t + 1:g + s])
        if self.shape.top:
            subs = [hash_nodes(self.roots[i:i + self.shape.sub]) for i in range(0, len(self.roots), self.shape.sub)]
            k = t // self.shape.sub
            path.append(subs[:k] + subs[k + 1:])
        return MerkleProof(index, p.leaf, path)
