"""Interactive PoRep: challenges from the seed, C1 vanilla proofs, and their verification
(storage-proofs-porep stacked/vanilla/challenges.rs, proof.rs, params.rs).

A vanilla proof holds, per challenge, the tree_d opening of the data node, the tree_r_last
opening of the replica node, and the columns (all layers' labels + tree_c opening) of the node,
its 6 base parents and its 8 expander parents. Verification is stricter than rust-fil-proofs'
vanilla check: every Merkle path is hashed, and the labels are recomputed from the parents'
columns (what the SNARK circuit checks), not from a separate list of parent labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..core.proof_types import SealProofType, seal_proof
from ..core.sector import SectorID
from . import ProofError
from .codec import Reader, Writer, read_header, read_merkle, write_header, write_merkle
from .field import MODULUS
from .graph import base_parents, expander_parents
from .merkle import MerkleProof, poseidon_hasher, sha_hasher
from .pc1 import replica_id
from .pc2 import read_t_aux
from .poseidon import hash_nodes
from .store import open_tree_c, open_tree_d, open_tree_r_last, read_column, shape_of

C1_MAGIC = b"DMC1"
C1_VERSION = 1
_MASK31 = [bytes([b & 0x3F]) for b in range(256)]


def interactive_challenges(proof: SealProofType, rid: bytes, seed: bytes) -> list[list[int]]:
    """Challenged nodes per partition: sha256(replica_id || seed || u32_le(j)) mod (N-1) + 1."""
    if proof.kind != "interactive":
        raise ProofError(f"{proof.name}: {proof.kind} PoRep is not supported by the builtin engine yet")
    n = proof.size.nodes
    per = proof.size.porep_challenges_per_partition
    out = []
    for k in range(proof.size.porep_partitions):
        part = []
        for i in range(per):
            h = hashlib.sha256(rid + seed + (per * k + i).to_bytes(4, "little")).digest()
            part.append(int.from_bytes(h, "little") % (n - 1) + 1)
        out.append(part)
    return out


def parents_of(proof: SealProofType, node: int) -> list[int]:
    """The 14 parents (6 base, 8 expander) of one node."""
    return base_parents(proof, node, node + 1)[0].tolist() + expander_parents(proof, node, node + 1)[0].tolist()


def create_label(rid: bytes, layer: int, node: int, parents37: list[bytes]) -> bytes:
    d = hashlib.sha256(rid + layer.to_bytes(4, "big") + node.to_bytes(8, "big") + bytes(20) + b"".join(parents37)).digest()
    return d[:31] + _MASK31[d[31]]


def label_parents(layer: int, base: list[bytes], exp: list[bytes]) -> list[bytes]:
    """The 37 hashed parents: the 6 (layer 1) or 14 parents repeated cyclically."""
    ps = base if layer == 1 else base + exp
    return (ps * 7)[:37]


@dataclass
class Column:
    rows: list[bytes]          # label of the node in layers 1..L
    proof: MerkleProof         # tree_c opening; proof.index is the node


@dataclass
class ChallengeProof:
    challenge: int
    data: MerkleProof          # tree_d (comm_d)
    replica: MerkleProof       # tree_r_last (comm_r_last)
    node: Column
    drg_parents: list[Column]
    exp_parents: list[Column]


@dataclass
class C1Output:
    proof_type: SealProofType
    sector: SectorID
    ticket: bytes
    seed: bytes
    comm_d: bytes
    comm_r: bytes
    comm_c: bytes
    comm_r_last: bytes
    partitions: list[list[ChallengeProof]]


# ------------------------------------------------------------------------------------ prove

def seal_commit_phase1(proof: SealProofType, sector: SectorID, ticket: bytes, seed: bytes, comm_d: bytes,
                       comm_c: bytes, comm_r_last: bytes, cache_dir: Path, sealed: Path) -> C1Output:
    check_randomness(ticket, "ticket")
    check_randomness(seed, "seed")
    read_t_aux(cache_dir, proof)          # a Rust C2 or PoSt reads it: refuse a broken one now, naming it
    rid = replica_id(sector, ticket, comm_d, proof)
    tree_d = open_tree_d(proof, cache_dir)
    tree_c = open_tree_c(proof, cache_dir)
    tree_r = open_tree_r_last(proof, cache_dir, sealed)
    if tree_d.root() != comm_d:
        raise ProofError(f"tree_d root {tree_d.root().hex()} does not match comm_d {comm_d.hex()}")
    if tree_c.root() != comm_c:
        raise ProofError("tree_c root does not match comm_c of p_aux")
    if tree_r.root() != comm_r_last:
        raise ProofError("tree_r_last root does not match comm_r_last of p_aux")

    def column(node: int) -> Column:
        return Column(read_column(proof, cache_dir, node), tree_c.prove(node))

    parts = []
    for part in interactive_challenges(proof, rid, seed):
        proofs = []
        for c in part:
            ps = parents_of(proof, c)
            proofs.append(ChallengeProof(c, tree_d.prove(c), tree_r.prove(c), column(c),
                                         [column(p) for p in ps[:6]], [column(p) for p in ps[6:]]))
        parts.append(proofs)
    return C1Output(proof, sector, ticket, seed, comm_d, hash_nodes([comm_c, comm_r_last]), comm_c, comm_r_last, parts)


def check_randomness(value: bytes, what: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ProofError(f"{what} must be 32 bytes, got {len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__}")


# ----------------------------------------------------------------------------------- verify

def verify_c1(out: C1Output, proof: SealProofType, sector: SectorID, comm_d: bytes, comm_r: bytes,
              ticket: bytes, seed: bytes) -> None:
    """Check a vanilla PoRep against the public inputs; raises ProofError naming what did not match."""
    for name, got, want in (("proof type", out.proof_type.id, proof.id), ("sector", out.sector, sector),
                            ("comm_d", out.comm_d, comm_d), ("comm_r", out.comm_r, comm_r),
                            ("ticket", out.ticket, ticket), ("seed", out.seed, seed)):
        if got != want:
            raise ProofError(f"{name} of the proof does not match the public inputs")
    if hash_nodes([out.comm_c, out.comm_r_last]) != comm_r:
        raise ProofError("comm_r != Poseidon(comm_c, comm_r_last)")
    rid = replica_id(sector, ticket, comm_d, proof)
    expected = interactive_challenges(proof, rid, seed)
    if [len(p) for p in out.partitions] != [len(p) for p in expected]:
        raise ProofError("number of partitions or challenges does not match the proof type")
    shape = shape_of(proof)
    r_arities = shape.arities
    d_arities = [2] * (proof.size.nodes.bit_length() - 1)
    layers = proof.size.layers
    for k, (part, challenges) in enumerate(zip(out.partitions, expected)):
        for i, (cp, c) in enumerate(zip(part, challenges)):
            where = f"partition {k} challenge {i}"
            if cp.challenge != c:
                raise ProofError(f"{where}: challenged node {cp.challenge}, expected {c}")
            if cp.data.index != c or not cp.data.verify(comm_d, d_arities, sha_hasher):
                raise ProofError(f"{where}: tree_d opening of node {c} does not reach comm_d")
            if cp.replica.index != c or not cp.replica.verify(out.comm_r_last, r_arities, poseidon_hasher):
                raise ProofError(f"{where}: tree_r_last opening of node {c} does not reach comm_r_last")
            ps = parents_of(proof, c)
            for name, col, node in ([("column", cp.node, c)] + [(f"base parent {j} column", col, p) for j, (col, p) in enumerate(zip(cp.drg_parents, ps[:6]))]
                                    + [(f"expander parent {j} column", col, p) for j, (col, p) in enumerate(zip(cp.exp_parents, ps[6:]))]):
                if col.proof.index != node:
                    raise ProofError(f"{where}: {name} is of node {col.proof.index}, expected {node}")
                if len(col.rows) != layers or col.proof.leaf != hash_nodes(col.rows):
                    raise ProofError(f"{where}: {name} (node {node}) does not hash to its tree_c leaf")
                if not col.proof.verify(out.comm_c, r_arities, poseidon_hasher):
                    raise ProofError(f"{where}: tree_c opening of {name} (node {node}) does not reach comm_c")
            for layer in range(1, layers + 1):
                base = [col.rows[layer - 1] for col in cp.drg_parents]
                exp = [col.rows[layer - 2] for col in cp.exp_parents] if layer > 1 else []
                if create_label(rid, layer, c, label_parents(layer, base, exp)) != cp.node.rows[layer - 1]:
                    raise ProofError(f"{where}: label of node {c} in layer {layer} does not match its parents")
            key = int.from_bytes(cp.node.rows[-1], "little")
            data = int.from_bytes(cp.data.leaf, "little")
            if (key + data) % MODULUS != int.from_bytes(cp.replica.leaf, "little"):
                raise ProofError(f"{where}: replica node {c} is not data + last-layer label")


# ------------------------------------------------------------------------------ serialization

def encode_c1(out: C1Output) -> bytes:
    """C1 output, version 1 (docs/formats.md): header, public inputs, then per challenge the
    challenged node, the tree_d and tree_r_last openings and 15 columns."""
    w = Writer()
    write_header(w, C1_MAGIC, C1_VERSION, out.proof_type.id)
    w.u64(out.sector.miner)
    w.u64(out.sector.number)
    for v in (out.ticket, out.seed, out.comm_d, out.comm_r, out.comm_c, out.comm_r_last):
        w.node(v)
    w.u16(len(out.partitions))
    w.u16(len(out.partitions[0]) if out.partitions else 0)
    for part in out.partitions:
        for cp in part:
            w.u64(cp.challenge)
            write_merkle(w, cp.data)
            write_merkle(w, cp.replica)
            for col in [cp.node, *cp.drg_parents, *cp.exp_parents]:
                for row in col.rows:
                    w.node(row)
                write_merkle(w, col.proof)
    return w.bytes()


def decode_c1(data: bytes, expected: SealProofType | None = None) -> C1Output:
    """Parse a C1 output; with `expected`, its proof type must be that one (a verifier knows
    the type from the public inputs and parses with its parameters)."""
    r = Reader(data, "C1 output")
    proof = read_header(r, C1_MAGIC, C1_VERSION, seal_proof, expected)
    sector = SectorID(r.u64("miner"), r.u64("sector number"))
    ticket, seed = r.raw(32, "ticket"), r.raw(32, "seed")
    comm_d = r.sha_node("comm_d")
    comm_r, comm_c, comm_r_last = r.fr("comm_r"), r.fr("comm_c"), r.fr("comm_r_last")
    n_parts, per = r.u16("partitions"), r.u16("challenges per partition")
    if n_parts != proof.size.porep_partitions or per != proof.size.porep_challenges_per_partition:
        raise ProofError(f"C1 output: {n_parts}x{per} challenges, {proof.name} has "
                         f"{proof.size.porep_partitions}x{proof.size.porep_challenges_per_partition}")
    n = proof.size.nodes
    layers = proof.size.layers
    r_arities = shape_of(proof).arities
    d_arities = [2] * (n.bit_length() - 1)
    parts = []
    for k in range(n_parts):
        part = []
        for i in range(per):
            f = f"challenge {k}.{i}"
            c = r.u64(f"{f} node", n)
            d = read_merkle(r, d_arities, n, f"{f} tree_d", sha=True)
            rep = read_merkle(r, r_arities, n, f"{f} tree_r_last")
            cols = []
            for j in range(15):
                rows = [r.fr(f"{f} column {j} layer {lv + 1}") for lv in range(layers)]
                cols.append(Column(rows, read_merkle(r, r_arities, n, f"{f} column {j} tree_c")))
            part.append(ChallengeProof(c, d, rep, cols[0], cols[1:7], cols[7:]))
        parts.append(part)
    r.end()
    return C1Output(proof, sector, ticket, seed, comm_d, comm_r, comm_c, comm_r_last, parts)
