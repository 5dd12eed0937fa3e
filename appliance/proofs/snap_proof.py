"""SnapDeals vanilla partition proofs and their verification (rust-fil-proofs
storage-proofs-update vanilla.rs prove_inner / verify, filecoin-proofs api/update.rs
generate_partition_proofs / verify_partition_proofs), and the builtin update proof.

A partition proof holds comm_c, the partition's apex leaves (a row of tree_d: 8 or 128 nodes per
partition) and, per challenge, the openings of the challenged node in tree_r_old (the sector
key's tree_r_last), tree_d_new and tree_r_new. Verification checks comm_r_old = H(comm_c,
root_r_old) and comm_r_new = H(comm_c, root_r_new), re-derives the challenges from comm_r_new,
hashes every path to its root, checks replica_new = sector_key + data · rho at each challenged
node, and checks the tree_d paths against the apex tree. It is stricter than rust-fil-proofs'
vanilla check there (which only asks that each apex sibling occurs in its apex-tree row): the
path's node at the apex row must be the partition's apex leaf, and its siblings above must be
the apex tree's — what the circuit enforces.

Filecoin's update proof is a Groth16 proof of each partition (192 bytes each). The builtin
engine cannot make one: its update proof is the vanilla partition proofs, zlib-compressed behind
a magic and version tag, like its C2 (c2.py). Complete and checkable, NOT succinct."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import ProofError
from .codec import (Reader, Writer, compress_envelope, open_envelope, read_header, read_merkle, write_header,
                    write_merkle)
from .commitment import sha254
from .field import MODULUS, is_canonical
from .merkle import MerkleProof, poseidon_hasher, read_nodes, sha_hasher
from .pc2 import read_p_aux
from .poseidon import hash_nodes
from .snap import UpdateProofType, challenges, high_shift, phi, rho, update_proof
from .store import TREE_D, open_tree_d, open_tree_r_last, shape_of

VANILLA_MAGIC = b"DMU1"
VANILLA_VERSION = 1
PROOF_MAGIC = b"DMU2"
PROOF_VERSION = 1


@dataclass
class UpdateChallengeProof:
    r_old: MerkleProof     # tree_r_old (sector key's tree_r_last), root_r_old
    d_new: MerkleProof     # tree_d_new, comm_d_new
    r_new: MerkleProof     # tree_r_new (new replica's tree_r_last), root_r_new


@dataclass
class UpdatePartitionProof:
    comm_c: bytes
    root_r_old: bytes      # comm_r_last of the sector key
    root_r_new: bytes      # comm_r_last of the new replica
    apex_leaves: list[bytes]
    challenges: list[UpdateChallengeProof]


@dataclass
class UpdateVanilla:
    proof_type: UpdateProofType
    comm_r_old: bytes
    comm_d_new: bytes
    comm_r_new: bytes
    h: int
    partitions: list[UpdatePartitionProof]


def _levels(proof: UpdateProofType) -> tuple[list[int], list[int]]:
    """Arities of a tree_r opening and of a tree_d opening."""
    return shape_of(proof).arities, [2] * (proof.nodes.bit_length() - 1)


def apex_height(proof: UpdateProofType) -> int:
    """The tree_d row (levels above the leaves) holding the apex leaves."""
    return ((proof.nodes.bit_length() - 1) - (proof.partitions.bit_length() - 1)
            - (proof.apex_leaves.bit_length() - 1))


def check_public_inputs(comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes) -> None:
    for name, v in (("comm_r_old", comm_r_old), ("comm_r_new", comm_r_new)):
        if not isinstance(v, (bytes, bytearray)) or not is_canonical(v):
            raise ProofError(f"{name} must be 32 bytes, a canonical field element")
    if not isinstance(comm_d_new, (bytes, bytearray)) or len(comm_d_new) != 32 or comm_d_new[31] & 0xC0:
        raise ProofError("comm_d_new must be 32 bytes, a sha256-trunc254 node")


# ------------------------------------------------------------------------------------ prove

def prove_update_partitions(proof: UpdateProofType, comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes,
                            sector_key_path: Path, sector_key_cache_path: Path, replica_path: Path,
                            replica_cache_path: Path) -> UpdateVanilla:
    """All partitions' vanilla proofs. Reads the sector key and its cache (p_aux, tree_r_last),
    the new replica and its cache (p_aux, tree_d, tree_r_last); writes nothing."""
    check_public_inputs(comm_r_old, comm_r_new, comm_d_new)
    comm_c, root_r_old = read_p_aux(sector_key_cache_path)
    comm_c_new, root_r_new = read_p_aux(replica_cache_path)
    if comm_c_new != comm_c:
        raise ProofError("comm_c of the update cache differs from the sector key's")
    if hash_nodes([comm_c, root_r_old]) != comm_r_old:
        raise ProofError("comm_r_old != Poseidon(comm_c, comm_r_last) of the sector key cache")
    if hash_nodes([comm_c, root_r_new]) != comm_r_new:
        raise ProofError("comm_r_new != Poseidon(comm_c, comm_r_last) of the update cache")
    tree_r_old = open_tree_r_last(proof, sector_key_cache_path, sector_key_path)
    tree_r_new = open_tree_r_last(proof, replica_cache_path, replica_path)
    tree_d = open_tree_d(proof, replica_cache_path)
    for name, got, want in (("tree_r_last of the sector key", tree_r_old.root(), root_r_old),
                            ("tree_r_last of the new replica", tree_r_new.root(), root_r_new),
                            ("tree_d of the new data", tree_d.root(), comm_d_new)):
        if got != want:
            raise ProofError(f"{name} does not match its commitment")
    n_apex = proof.apex_leaves
    height = apex_height(proof)
    row_start = sum(proof.nodes >> r for r in range(height))
    parts = []
    for k in range(proof.partitions):
        apex = read_nodes(Path(replica_cache_path) / TREE_D, row_start + k * n_apex, n_apex)
        cps = [UpdateChallengeProof(tree_r_old.prove(c), tree_d.prove(c), tree_r_new.prove(c))
               for c in challenges(proof, comm_r_new, k)]
        parts.append(UpdatePartitionProof(comm_c, root_r_old, root_r_new, apex, cps))
    return UpdateVanilla(proof, comm_r_old, comm_d_new, comm_r_new, proof.h, parts)


# ----------------------------------------------------------------------------------- verify

def _path_nodes(p: MerkleProof, arities: list[int], hasher) -> list[bytes]:
    """The node of the path at every level, leaf first, root last."""
    if len(p.path) != len(arities):
        raise ProofError(f"merkle path has {len(p.path)} levels, expected {len(arities)}")
    cur, idx, out = p.leaf, p.index, [p.leaf]
    for arity, siblings in zip(arities, p.path):
        if len(siblings) != arity - 1:
            raise ProofError(f"merkle path level has {len(siblings)} siblings, expected {arity - 1}")
        pos = idx % arity
        idx //= arity
        cur = hasher(siblings[:pos] + [cur] + siblings[pos:])
        out.append(cur)
    return out


def verify_update_partitions(proof_type: UpdateProofType, comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes,
                             vanilla: UpdateVanilla) -> None:
    """Check all partition proofs against the public inputs; raises ProofError naming what did not
    match, returns None when they are valid."""
    check_public_inputs(comm_r_old, comm_r_new, comm_d_new)
    if vanilla.proof_type != proof_type:
        raise ProofError(f"proof type of the proof does not match the public inputs ({proof_type.name})")
    for name, got, want in (("comm_r_old", vanilla.comm_r_old, comm_r_old), ("comm_r_new", vanilla.comm_r_new, comm_r_new),
                            ("comm_d_new", vanilla.comm_d_new, comm_d_new), ("h", vanilla.h, proof_type.h)):
        if got != want:
            raise ProofError(f"{name} of the proof does not match the public inputs")
    if len(vanilla.partitions) != proof_type.partitions:
        raise ProofError(f"{len(vanilla.partitions)} partition proofs, {proof_type.name} has {proof_type.partitions}")
    phi_value = phi(comm_d_new, comm_r_old)
    shift = high_shift(proof_type.nodes, proof_type.h)
    rhos: dict[int, int] = {}
    r_arities, d_arities = _levels(proof_type)
    n_apex = proof_type.apex_leaves
    apex_bits = n_apex.bit_length() - 1
    height = apex_height(proof_type)
    for k, part in enumerate(vanilla.partitions):
        where = f"partition {k}"
        if len(part.apex_leaves) != n_apex:
            raise ProofError(f"{where}: {len(part.apex_leaves)} apex leaves, expected {n_apex}")
        if len(part.challenges) != proof_type.challenges_per_partition:
            raise ProofError(f"{where}: {len(part.challenges)} challenge proofs, expected {proof_type.challenges_per_partition}")
        if hash_nodes([part.comm_c, part.root_r_old]) != comm_r_old:
            raise ProofError(f"{where}: comm_r_old != Poseidon(comm_c, root of tree_r_old)")
        if hash_nodes([part.comm_c, part.root_r_new]) != comm_r_new:
            raise ProofError(f"{where}: comm_r_new != Poseidon(comm_c, root of tree_r_new)")
        apex_tree = [list(part.apex_leaves)]
        for _ in range(apex_bits):
            row = apex_tree[-1]
            apex_tree.append([sha254(row[i] + row[i + 1]) for i in range(0, len(row), 2)])
        for i, (cp, c) in enumerate(zip(part.challenges, challenges(proof_type, comm_r_new, k))):
            w = f"{where} challenge {i} (node {c})"
            for name, p, root, arities, hasher in (("tree_r_old", cp.r_old, part.root_r_old, r_arities, poseidon_hasher),
                                                   ("tree_d_new", cp.d_new, comm_d_new, d_arities, sha_hasher),
                                                   ("tree_r_new", cp.r_new, part.root_r_new, r_arities, poseidon_hasher)):
                if p.index != c:
                    raise ProofError(f"{w}: {name} opening is of node {p.index}")
                if p.root(arities, hasher) != root:
                    raise ProofError(f"{w}: {name} opening does not reach its root")
            high = c >> shift
            if high not in rhos:
                rhos[high] = rho(phi_value, high)
            key, data, new = (int.from_bytes(x.leaf, "little") for x in (cp.r_old, cp.d_new, cp.r_new))
            if (key + data * rhos[high]) % MODULUS != new:
                raise ProofError(f"{w}: replica_new != sector_key + data * rho")
            # the path through the apex tree: its node at the apex row is this partition's apex leaf,
            # its siblings above are the apex tree's
            nodes = _path_nodes(cp.d_new, d_arities, sha_hasher)
            pos = (c >> height) - k * n_apex
            if not 0 <= pos < n_apex or nodes[height] != part.apex_leaves[pos]:
                raise ProofError(f"{w}: tree_d_new path does not pass through the partition's apex leaf")
            for j in range(apex_bits):
                if cp.d_new.path[height + j][0] != apex_tree[j][(pos >> j) ^ 1]:
                    raise ProofError(f"{w}: tree_d_new path is not consistent with the apex tree")


# ------------------------------------------------------------------------------ serialization

def encode_vanilla(v: UpdateVanilla) -> bytes:
    """Update vanilla proofs, version 1 (docs/formats.md)."""
    w = Writer()
    write_header(w, VANILLA_MAGIC, VANILLA_VERSION, v.proof_type.id)
    for x in (v.comm_r_old, v.comm_d_new, v.comm_r_new):
        w.node(x)
    w.u8(v.h)
    w.u16(len(v.partitions))
    w.u16(len(v.partitions[0].challenges) if v.partitions else 0)
    w.u16(len(v.partitions[0].apex_leaves) if v.partitions else 0)
    for part in v.partitions:
        for x in (part.comm_c, part.root_r_old, part.root_r_new, *part.apex_leaves):
            w.node(x)
        for cp in part.challenges:
            for p in (cp.r_old, cp.d_new, cp.r_new):
                write_merkle(w, p)
    return w.bytes()


def decode_vanilla(data: bytes, expected: UpdateProofType | None = None) -> UpdateVanilla:
    """Parse update vanilla proofs; with `expected` (the verifier's proof type), the type must be
    that one. Counts and h must be the type's."""
    r = Reader(data, "update vanilla proofs")
    proof = read_header(r, VANILLA_MAGIC, VANILLA_VERSION, update_proof, expected)
    comm_r_old, comm_d_new, comm_r_new = r.fr("comm_r_old"), r.sha_node("comm_d_new"), r.fr("comm_r_new")
    h = r.u8("h")
    n_parts, per, n_apex = r.u16("partitions"), r.u16("challenges per partition"), r.u16("apex leaves")
    if (h, n_parts, per, n_apex) != (proof.h, proof.partitions, proof.challenges_per_partition, proof.apex_leaves):
        raise ProofError(f"update vanilla proofs: h={h}, {n_parts} partitions x {per} challenges, {n_apex} apex leaves; "
                         f"{proof.name} has h={proof.h}, {proof.partitions} x {proof.challenges_per_partition}, "
                         f"{proof.apex_leaves}")
    n = proof.nodes
    r_arities, d_arities = _levels(proof)
    parts = []
    for k in range(n_parts):
        f = f"partition {k}"
        comm_c, root_old, root_new = r.fr(f"{f} comm_c"), r.fr(f"{f} root_r_old"), r.fr(f"{f} root_r_new")
        apex = [r.sha_node(f"{f} apex leaf {j}") for j in range(n_apex)]
        cps = []
        for i in range(per):
            g = f"{f} challenge {i}"
            cps.append(UpdateChallengeProof(read_merkle(r, r_arities, n, f"{g} tree_r_old"),
                                            read_merkle(r, d_arities, n, f"{g} tree_d_new", sha=True),
                                            read_merkle(r, r_arities, n, f"{g} tree_r_new")))
        parts.append(UpdatePartitionProof(comm_c, root_old, root_new, apex, cps))
    r.end()
    return UpdateVanilla(proof, comm_r_old, comm_d_new, comm_r_new, h, parts)


def generate_update_proof(v: UpdateVanilla) -> bytes:
    """The builtin stand-in for the update SNARK: "DMU2", u16 version, zlib(vanilla proofs)."""
    return compress_envelope(PROOF_MAGIC, PROOF_VERSION, encode_vanilla(v))


def decode_update_proof(proof: bytes, expected: UpdateProofType | None = None) -> UpdateVanilla:
    return decode_vanilla(open_envelope(proof, PROOF_MAGIC, PROOF_VERSION, "update proof", "update proof"), expected)


def verify_update_proof(proof_type: UpdateProofType, comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes,
                        proof: bytes) -> None:
    """Raises ProofError saying what did not match; returns None when the proof is valid."""
    check_public_inputs(comm_r_old, comm_r_new, comm_d_new)
    verify_update_partitions(proof_type, comm_r_old, comm_r_new, comm_d_new, decode_update_proof(proof, proof_type))
