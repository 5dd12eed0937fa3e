"""One SnapDeals partition's vanilla proof in rust-fil-proofs' byte form, both ways.

filecoin-proofs-api (src/update.rs generate_partition_proofs) hands each partition's proof on as
`PartitionProofBytes(bincode::serialize(&PartitionProof<Tree>))`, and its SNARK side
(generate_empty_sector_update_proof_with_vanilla) reads them back with `bincode::deserialize`.
These are the `vannilla_proofs` elements of Damocles' SnapProve task. The layout follows serde's
derive over (rust-fil-proofs storage-proofs-update/src/vanilla.rs, storage-proofs-core/src/merkle/
proof.rs, filecoin-hashers) with bincode 1's default functions (little-endian, fixed-width
integers, u64 sequence lengths, u32 enum variant index, fixed-size arrays bare):

    PartitionProof  = comm_c: PoseidonDomain, apex_leafs: Vec<Sha256Domain>,
                      challenge_proofs: Vec<ChallengeProof>
    ChallengeProof  = proof_r_old, proof_d_new, proof_r_new: MerkleProof
    MerkleProof     = data: ProofData, an enum: u32 0 Single {root, leaf, path}
                                                 u32 1 Sub {base_proof, sub_proof, root, leaf}
                                                 u32 2 Top {base_proof, sub_proof, top_proof, root, leaf}
    InclusionPath   = path: Vec<PathElement>;  PathElement = hashes: Vec<Domain>, index: usize (u64)
    PoseidonDomain  = Fr's repr, [u8; 32] little-endian;  Sha256Domain = [u8; 32]

Which ProofData variant is the tree's shape: tree_d is binary (Single); tree_r is the sector
size's (Single up to 512MiB, Sub for 32GiB, Top for 64GiB). Decoding is stricter than bincode:
every length must be the proof type's, every node canonical, nothing may follow the proof, and
the openings of one tree must all state the same root."""

from __future__ import annotations

from dataclasses import dataclass

from . import ProofError
from .codec import Reader, Writer
from .merkle import MerkleProof
from .snap import UpdateProofType
from .snap_proof import UpdateChallengeProof, UpdatePartitionProof, UpdateVanilla
from .store import shape_of

VARIANTS = ("Single", "Sub", "Top")     # ProofData's variants in declaration order


@dataclass(frozen=True)
class TreeLayout:
    """How the openings of one tree are written: the arity of every level, bottom-up, and how
    many of the top levels are a sub tree and a top tree."""
    name: str
    arities: tuple[int, ...]
    upper: int          # levels above the base trees, and the ProofData variant: 0 Single, 1 Sub, 2 Top
    sha: bool           # Sha256Domain nodes (tree_d) rather than PoseidonDomain


def tree_r_layout(proof: UpdateProofType) -> TreeLayout:
    shape = shape_of(proof)
    return TreeLayout("tree_r", tuple(shape.arities), 2 if shape.top else 1 if shape.sub else 0, sha=False)


def tree_d_layout(proof: UpdateProofType) -> TreeLayout:
    return TreeLayout("tree_d", (2,) * (proof.nodes.bit_length() - 1), 0, sha=True)


# ------------------------------------------------------------------------------------ encode

def _write_path(w: Writer, elems: list[tuple[list[bytes], int]]) -> None:
    w.u64(len(elems))
    for hashes, index in elems:
        w.u64(len(hashes))
        for h in hashes:
            w.node(h)
        w.u64(index)


def write_merkle(w: Writer, p: MerkleProof, root: bytes, layout: TreeLayout) -> None:
    if len(p.path) != len(layout.arities):
        raise ProofError(f"internal error: {layout.name} opening of {len(p.path)} levels, expected {len(layout.arities)}")
    elems, idx = [], p.index
    for arity, siblings in zip(layout.arities, p.path):
        elems.append((siblings, idx % arity))
        idx //= arity
    w.u32(layout.upper)
    if layout.upper == 0:
        w.node(root)
        w.node(p.leaf)
        _write_path(w, elems)
        return
    n_base = len(elems) - layout.upper
    _write_path(w, elems[:n_base])
    for e in elems[n_base:]:
        _write_path(w, [e])
    w.node(root)
    w.node(p.leaf)


def encode_partition(proof: UpdateProofType, comm_d_new: bytes, part: UpdatePartitionProof) -> bytes:
    """`bincode::serialize(&PartitionProof<Tree>)` of one partition."""
    r_layout, d_layout = tree_r_layout(proof), tree_d_layout(proof)
    w = Writer()
    w.node(part.comm_c)
    w.u64(len(part.apex_leaves))
    for leaf in part.apex_leaves:
        w.node(leaf)
    w.u64(len(part.challenges))
    for cp in part.challenges:
        write_merkle(w, cp.r_old, part.root_r_old, r_layout)
        write_merkle(w, cp.d_new, comm_d_new, d_layout)
        write_merkle(w, cp.r_new, part.root_r_new, r_layout)
    return w.bytes()


def encode_partitions(v: UpdateVanilla) -> list[bytes]:
    """Every partition's PartitionProofBytes, in partition order (what generate_partition_proofs returns)."""
    return [encode_partition(v.proof_type, v.comm_d_new, part) for part in v.partitions]


# ------------------------------------------------------------------------------------ decode

def _length(r: Reader, field: str, want: int, why: str) -> None:
    at = r.pos
    got = r.u64(f"{field} length")
    if got != want:
        raise ProofError(f"{r.what}: {field} has length {got} at byte {at}, expected {want} ({why})")


def _read_path(r: Reader, field: str, arities: tuple[int, ...], node) -> tuple[list[list[bytes]], int]:
    """An InclusionPath: the siblings per level and the index it opens within these levels."""
    _length(r, f"{field}.path", len(arities), "levels of this tree")
    path, index, scale = [], 0, 1
    for lv, arity in enumerate(arities):
        f = f"{field}.path[{lv}]"
        _length(r, f"{f}.hashes", arity - 1, f"arity {arity}")
        path.append([node(f"{f}.hashes[{j}]") for j in range(arity - 1)])
        index += r.u64(f"{f}.index", arity) * scale
        scale *= arity
    return path, index


def read_merkle(r: Reader, field: str, layout: TreeLayout) -> tuple[MerkleProof, bytes]:
    """One MerkleProof: (the opening, the root it states)."""
    node = r.sha_node if layout.sha else r.fr
    at = r.pos
    variant = r.u32(f"{field}.data variant")
    if variant != layout.upper:
        got = VARIANTS[variant] if variant < len(VARIANTS) else f"variant {variant} (ProofData has 0..2)"
        raise ProofError(f"{r.what}: {field}.data at byte {at} is {got}; {layout.name} of this proof type is "
                         f"{VARIANTS[layout.upper]} (levels of arity {list(layout.arities)})")
    f = f"{field}.data.{VARIANTS[variant]}"
    if variant == 0:
        root, leaf = node(f"{f}.root"), node(f"{f}.leaf")
        path, index = _read_path(r, f"{f}.path", layout.arities, node)
        return MerkleProof(index, leaf, path), root
    n_base = len(layout.arities) - layout.upper
    path, index = _read_path(r, f"{f}.base_proof", layout.arities[:n_base], node)
    scale = 1
    for a in layout.arities[:n_base]:
        scale *= a
    for name, arity in zip(("sub_proof", "top_proof"), layout.arities[n_base:]):
        more, i = _read_path(r, f"{f}.{name}", (arity,), node)
        path += more
        index += i * scale
        scale *= arity
    root, leaf = node(f"{f}.root"), node(f"{f}.leaf")
    return MerkleProof(index, leaf, path), root


@dataclass
class DecodedPartition:
    part: UpdatePartitionProof
    comm_d_new: bytes      # the root every proof_d_new states


def decode_partition(data: bytes, proof: UpdateProofType, what: str = "PartitionProof") -> DecodedPartition:
    """Parse one partition's PartitionProofBytes of `proof`'s type. Raises ProofError naming the
    field (as rust-fil-proofs names it) and the byte offset of what is wrong."""
    r = Reader(bytes(data), what)
    r_layout, d_layout = tree_r_layout(proof), tree_d_layout(proof)
    comm_c = r.fr("comm_c")
    _length(r, "apex_leafs", proof.apex_leaves, f"{proof.name} has {proof.apex_leaves} apex leaves")
    apex = [r.sha_node(f"apex_leafs[{j}]") for j in range(proof.apex_leaves)]
    per = proof.challenges_per_partition
    _length(r, "challenge_proofs", per, f"{proof.name} has {per} challenges per partition")
    roots: dict[str, bytes] = {}
    cps = []
    for i in range(per):
        f = f"challenge_proofs[{i}]"
        opened = {}
        for name, layout in (("proof_r_old", r_layout), ("proof_d_new", d_layout), ("proof_r_new", r_layout)):
            at = r.pos
            opened[name], root = read_merkle(r, f"{f}.{name}", layout)
            first = roots.setdefault(name, root)
            if root != first:
                raise ProofError(f"{what}: {f}.{name} (byte {at}) states root {root.hex()}, "
                                 f"challenge_proofs[0].{name} states {first.hex()}")
        cps.append(UpdateChallengeProof(opened["proof_r_old"], opened["proof_d_new"], opened["proof_r_new"]))
    r.end()
    part = UpdatePartitionProof(comm_c, roots["proof_r_old"], roots["proof_r_new"], apex, cps)
    return DecodedPartition(part, roots["proof_d_new"])


def vanilla_from_partitions(proof: UpdateProofType, comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes,
                            elements: list[bytes], what: str = "vanilla proofs") -> UpdateVanilla:
    """All partitions' PartitionProofBytes (one per partition, in order) as our UpdateVanilla, for
    verify_update_partitions. Each partition's tree_d openings must state comm_d_new."""
    if len(elements) != proof.partitions:
        raise ProofError(f"{what}: {len(elements)} partition proofs, {proof.name} has {proof.partitions} "
                         f"partition{'s' if proof.partitions != 1 else ''}")
    parts = []
    for k, data in enumerate(elements):
        d = decode_partition(data, proof, f"{what}[{k}] (bincode PartitionProof)")
        if d.comm_d_new != comm_d_new:
            raise ProofError(f"{what}[{k}]: proof_d_new openings state root {d.comm_d_new.hex()}, not comm_d_new")
        parts.append(d.part)
    return UpdateVanilla(proof, comm_r_old, comm_d_new, comm_r_new, proof.h, parts)
