"""WindowPoSt and WinningPoSt vanilla proofs (storage-proofs-post fallback/vanilla.rs):
Filecoin's challenge derivation, tree_r_last openings with comm_c, verification. A sector whose
files are missing, short or inconsistent is reported as a fault, never as a crash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.proof_types import ApiVersion, PoStProofType, post_proof
from . import ProofError
from .codec import Reader, Writer, read_header, read_merkle, write_header, write_merkle
from .field import is_canonical
from .merkle import MerkleProof, poseidon_hasher
from .pc2 import read_p_aux, read_t_aux
from .poseidon import hash_nodes
from .store import open_tree_r_last, shape_of

POST_MAGIC = b"DMP1"
POST_VERSION = 1


@dataclass(frozen=True)
class PublicSector:
    number: int
    comm_r: bytes


@dataclass(frozen=True)
class PrivateSector:
    number: int
    comm_r: bytes
    cache_dir: Path
    sealed: Path


@dataclass
class SectorProof:
    number: int
    comm_c: bytes
    comm_r_last: bytes
    openings: list[MerkleProof]


@dataclass
class PoStResult:
    proof_type: PoStProofType
    partitions: list[list[SectorProof]]
    faults: dict[int, str] = field(default_factory=dict)   # sector number -> why


def check_post_randomness(randomness: bytes) -> None:
    if len(randomness) != 32:
        raise ProofError(f"PoSt randomness must be 32 bytes, got {len(randomness)}")
    if not is_canonical(randomness):
        raise ProofError("PoSt randomness is not a canonical field element (clear the top two bits of byte 31, as Lotus does)")


def challenge_index(proof_type: PoStProofType, sector_index: int, n: int) -> int:
    if proof_type.api_version == ApiVersion.V1_2_0:
        return n
    return sector_index * proof_type.challenge_count + n


def leaf_challenge(randomness: bytes, sector_number: int, index: int, nodes: int) -> int:
    h = hashlib.sha256(randomness + sector_number.to_bytes(8, "little") + index.to_bytes(8, "little")).digest()
    return int.from_bytes(h[:8], "little") % nodes


def winning_sector_indices(prover_id: bytes, randomness: bytes, sector_set_len: int, count: int = 1) -> list[int]:
    if sector_set_len == 0:
        raise ProofError("winning PoSt: the sector set is empty")
    return [int.from_bytes(hashlib.sha256(prover_id + randomness + n.to_bytes(8, "little")).digest()[:8], "little") % sector_set_len
            for n in range(count)]


def _prove_sector(proof_type: PoStProofType, seal_proof, sector: PrivateSector, randomness: bytes,
                  sector_index: int) -> SectorProof:
    comm_c, comm_r_last = read_p_aux(sector.cache_dir)
    if hash_nodes([comm_c, comm_r_last]) != sector.comm_r:
        raise ProofError("p_aux does not match the sector's comm_r")
    tree = open_tree_r_last(seal_proof, sector.cache_dir, sector.sealed)
    if tree.root() != comm_r_last:
        raise ProofError("tree_r_last root does not match p_aux")
    nodes = proof_type.size.nodes
    openings = []
    for n in range(proof_type.challenge_count):
        leaf = leaf_challenge(randomness, sector.number, challenge_index(proof_type, sector_index, n), nodes)
        p = tree.prove(leaf)
        if not p.verify(comm_r_last, tree.shape.arities, poseidon_hasher):
            raise ProofError(f"opening of node {leaf} does not reach comm_r_last")
        openings.append(p)
    return SectorProof(sector.number, comm_c, comm_r_last, openings)


def check_sector(seal_proof, sector: PrivateSector) -> None:
    """What a prover checks before proving (Lotus' CheckProvable): the sealed file is there with
    its size, p_aux matches comm_r, t_aux is whole and describes this sector size's trees (a
    Rust prover reads it), and tree_r_last's stored root matches p_aux; with a leaf read from the
    replica. Raises ProofError naming what is wrong."""
    try:
        comm_c, comm_r_last = read_p_aux(sector.cache_dir)
        if hash_nodes([comm_c, comm_r_last]) != sector.comm_r:
            raise ProofError("p_aux does not match the sector's comm_r")
        read_t_aux(sector.cache_dir, seal_proof)
        tree = open_tree_r_last(seal_proof, sector.cache_dir, sector.sealed)
        if tree.root() != comm_r_last:
            raise ProofError("tree_r_last root does not match p_aux")
        with open(sector.sealed, "rb") as f:
            if len(f.read(32)) != 32:
                raise ProofError(f"sealed file {sector.sealed} cannot be read")
    except OSError as exc:
        raise ProofError(f"{exc.strerror or exc}: {exc.filename or sector.cache_dir}") from None


def generate_window_post(proof_type: PoStProofType, seal_proof, sectors: list[PrivateSector],
                         randomness: bytes) -> PoStResult:
    """Partitions of `sectors_per_partition` sectors (ascending sector number); every sector that
    cannot be proven is returned in `faults` with the reason, and left out of the proof."""
    if proof_type.winning:
        raise ProofError(f"{proof_type.name} is a WinningPoSt type")
    check_post_randomness(randomness)
    sectors = sorted(sectors, key=lambda s: s.number)
    per = proof_type.sectors_per_partition
    result = PoStResult(proof_type, [])
    proven: list[SectorProof] = []
    for index, sector in enumerate(sectors):
        try:
            proven.append(_prove_sector(proof_type, seal_proof, sector, randomness, index))
        except (ProofError, OSError) as exc:
            result.faults[sector.number] = str(exc)
    if result.faults:
        # proofs are over the sectors that remain; indices shift, so prove them again in place
        good = [s for s in sectors if s.number not in result.faults]
        proven = [_prove_sector(proof_type, seal_proof, s, randomness, i) for i, s in enumerate(good)]
    result.partitions = [proven[i:i + per] for i in range(0, len(proven), per)]
    return result


def generate_winning_post(proof_type: PoStProofType, seal_proof, sector: PrivateSector, randomness: bytes) -> PoStResult:
    if not proof_type.winning:
        raise ProofError(f"{proof_type.name} is not a WinningPoSt type")
    check_post_randomness(randomness)
    result = PoStResult(proof_type, [])
    try:
        result.partitions = [[_prove_sector(proof_type, seal_proof, sector, randomness, 0)]]
    except (ProofError, OSError) as exc:
        result.faults[sector.number] = str(exc)
    return result


def verify_post(proof_type: PoStProofType, randomness: bytes, sectors: list[PublicSector], result: PoStResult) -> None:
    """Raises ProofError naming what did not match."""
    check_post_randomness(randomness)
    if result.proof_type.id != proof_type.id:
        raise ProofError(f"proof is of type {result.proof_type.name}, expected {proof_type.name}")
    sectors = sorted(sectors, key=lambda s: s.number)
    flat = [sp for part in result.partitions for sp in part]
    if len(flat) != len(sectors):
        raise ProofError(f"proof covers {len(flat)} sectors, expected {len(sectors)}")
    per = proof_type.sectors_per_partition
    if any(len(p) > per or not p for p in result.partitions) or len(result.partitions) != -(-len(sectors) // per):
        raise ProofError("partitions do not match the sectors per partition of the proof type")
    arities = shape_of(proof_type.size).arities
    nodes = proof_type.size.nodes
    for index, (pub, sp) in enumerate(zip(sectors, flat)):
        if sp.number != pub.number:
            raise ProofError(f"sector {index} of the proof is {sp.number}, expected {pub.number}")
        if hash_nodes([sp.comm_c, sp.comm_r_last]) != pub.comm_r:
            raise ProofError(f"sector {pub.number}: Poseidon(comm_c, comm_r_last) != comm_r")
        if len(sp.openings) != proof_type.challenge_count:
            raise ProofError(f"sector {pub.number}: {len(sp.openings)} openings, expected {proof_type.challenge_count}")
        for n, p in enumerate(sp.openings):
            leaf = leaf_challenge(randomness, pub.number, challenge_index(proof_type, index, n), nodes)
            if p.index != leaf:
                raise ProofError(f"sector {pub.number} challenge {n}: opened node {p.index}, challenged {leaf}")
            if not p.verify(sp.comm_r_last, arities, poseidon_hasher):
                raise ProofError(f"sector {pub.number} challenge {n}: opening of node {leaf} does not reach comm_r_last")


# ------------------------------------------------------------------------------ serialization

def encode_post(result: PoStResult) -> bytes:
    w = Writer()
    write_header(w, POST_MAGIC, POST_VERSION, result.proof_type.id)
    w.u32(len(result.partitions))
    for part in result.partitions:
        w.u32(len(part))
        for sp in part:
            w.u64(sp.number)
            w.node(sp.comm_c)
            w.node(sp.comm_r_last)
            for p in sp.openings:
                write_merkle(w, p)
    return w.bytes()


def decode_post(data: bytes, expected: PoStProofType | None = None) -> PoStResult:
    """Parse a PoSt proof; with `expected`, its proof type must be that one."""
    r = Reader(data, "PoSt proof")
    pt = read_header(r, POST_MAGIC, POST_VERSION, post_proof, expected)
    arities = shape_of(pt.size).arities
    nodes = pt.size.nodes
    n_parts = r.u32("partitions")
    parts = []
    for k in range(n_parts):
        count = r.u32(f"partition {k} sector count")
        if count > pt.sectors_per_partition:
            raise ProofError(f"PoSt proof: partition {k} has {count} sectors, at most {pt.sectors_per_partition} allowed")
        part = []
        for i in range(count):
            f = f"partition {k} sector {i}"
            number = r.u64(f"{f} number")
            comm_c, comm_r_last = r.fr(f"{f} comm_c"), r.fr(f"{f} comm_r_last")
            openings = [read_merkle(r, arities, nodes, f"{f} challenge {n}") for n in range(pt.challenge_count)]
            part.append(SectorProof(number, comm_c, comm_r_last, openings))
        parts.append(part)
    r.end()
    return PoStResult(pt, parts)
