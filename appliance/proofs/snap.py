"""SnapDeals (ReplicaUpdate, "EmptySectorUpdate"): the update proof types and their parameters,
and the randomness the encoding and the challenges are drawn from, as rust-fil-proofs'
storage-proofs-update crate computes them (constants.rs, challenges.rs, vanilla.rs phi / rho).

- RegisteredUpdateProof: StackedDrg{2KiB,8MiB,512MiB,32GiB,64GiB}V1 = 0..4 (go-state-types abi,
  filecoin-proofs-api registry.rs); every seal proof type of a size maps to that size's type.
- phi = Poseidon_gen(comm_d_new, comm_r_old), rho(high) = Poseidon_gen(phi, high), where
  Poseidon_gen is neptune's arity-2 Poseidon with the custom domain tag
  HashType::Custom(CType::Arbitrary(1)) = 1·2^40 (same round constants as the tree hash).
- replica_new[i] = sector_key[i] + data[i] · rho(i >> (log2(nodes) - h))   (in Fr).
- Challenges of partition k: digests Poseidon_gen(comm_r_new, j) read as little-endian bits, cut
  into (log2(nodes) - log2(partitions))-bit challenges, with k in the high bits.

Encoding and decoding files: snap_encode.py; vanilla partition proofs: snap_proof.py."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

from ..core.proof_types import SealProofType, SectorSize, sector_size
from . import ProofError
from .field import MODULUS, fr_from_bytes
from .poseidon import PoseidonConstants, constants, hash_ints

# storage-proofs-update constants.rs: sector sizes in nodes
_8_KIB, _32_KIB, _16_MIB = 1 << 8, 1 << 10, 1 << 19
SINGLE_PARTITION_PROOF_LEN = 192    # one Groth16 proof, what a real prover outputs per partition
GEN_RANDOMNESS_DOMAIN_TAG = 1 << 40  # neptune CType::Arbitrary(1).domain_tag() = 1 * 2^40


def partition_count(nodes: int) -> int:
    if nodes <= _8_KIB:
        return 1
    if nodes <= _32_KIB:
        return 2
    if nodes <= _16_MIB:
        return 4
    return 16


def challenge_count(nodes: int) -> int:
    """Challenges per partition."""
    return 10 if nodes <= _16_MIB else 86


def hs(nodes: int) -> list[int]:
    """The h values the circuit allows (hard-coded at its trusted setup)."""
    return [1] * 6 if nodes <= _32_KIB else [7, 8, 9, 10, 11, 12]


def h_default(nodes: int) -> int:
    """The h used: index 3 of hs (10 for the production sizes, 1 for test sizes)."""
    return hs(nodes)[3]


def h_select(nodes: int, h: int) -> int:
    """The circuit's public input selecting h: 2^(index of h in hs)."""
    try:
        return 1 << hs(nodes).index(h)
    except ValueError:
        raise ProofError(f"h = {h} is not allowed for a sector of {nodes} nodes (allowed: {hs(nodes)})") from None


def apex_leaf_count(nodes: int) -> int:
    return 8 if nodes <= _8_KIB else 128


# ------------------------------------------------------------------------------------ types

_SIZE_ORDER = ["2KiB", "8MiB", "512MiB", "32GiB", "64GiB"]


@dataclass(frozen=True)
class UpdateProofType:
    """A RegisteredUpdateProof (ApiVersion 1.1.0). The sector size follows from the id."""
    id: int
    name: str

    @property
    def size(self) -> SectorSize:
        return sector_size(_SIZE_ORDER[self.id])

    @property
    def nodes(self) -> int:
        return self.size.nodes

    @property
    def partitions(self) -> int:
        return partition_count(self.nodes)

    @property
    def challenges_per_partition(self) -> int:
        return challenge_count(self.nodes)

    @property
    def h(self) -> int:
        return h_default(self.nodes)

    @property
    def apex_leaves(self) -> int:
        return apex_leaf_count(self.nodes)

    @property
    def snark_proof_bytes(self) -> int:
        """What rust-fil-proofs' update proof would weigh (192 bytes a partition)."""
        return SINGLE_PARTITION_PROOF_LEN * self.partitions


UPDATE_PROOFS: dict[int, UpdateProofType] = {
    i: UpdateProofType(i, f"StackedDrg{name}V1") for i, name in enumerate(_SIZE_ORDER)}


def update_proof(value: str | int) -> UpdateProofType:
    """Look up a RegisteredUpdateProof by number or name (e.g. 0 or 'StackedDrg2KiBV1')."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n in UPDATE_PROOFS:
            return UPDATE_PROOFS[n]
        raise ValueError(f"unknown update proof type {value!r}: valid numbers are 0..4")
    for p in UPDATE_PROOFS.values():
        if p.name == value:
            return p
    raise ValueError(f"unknown update proof type {value!r}: expected a name such as StackedDrg2KiBV1")


def update_proof_for_seal(seal: SealProofType) -> UpdateProofType:
    """go-state-types SealProofInfos[p].UpdateProof: every seal type of a size maps to one type."""
    return UPDATE_PROOFS[_SIZE_ORDER.index(seal.size.name)]


# ------------------------------------------------------------------------------- randomness

@lru_cache(maxsize=None)
def gen_randomness_constants() -> PoseidonConstants:
    """Arity-2 Poseidon constants with the custom "gen randomness" domain tag (only the tag in
    state[0] differs from the Merkle-tree hash: same round constants and MDS)."""
    c = copy.copy(constants(2))
    c.domain_tag = GEN_RANDOMNESS_DOMAIN_TAG
    c.fast = (type(c.fast[0])(GEN_RANDOMNESS_DOMAIN_TAG),) + tuple(c.fast[1:])
    return c


def gen_randomness(a: int, b: int) -> int:
    return hash_ints([a, b], gen_randomness_constants())


def phi(comm_d_new: bytes, comm_r_old: bytes) -> bytes:
    """phi = H_gen(comm_d_new, comm_r_old), a 32-byte field element."""
    d = fr_from_bytes(comm_d_new, "comm_d_new")
    r = fr_from_bytes(comm_r_old, "comm_r_old")
    return gen_randomness(d, r).to_bytes(32, "little")


def rho(phi_value: bytes, high: int) -> int:
    """rho = H_gen(phi, high), high = the h high bits of a node index."""
    return gen_randomness(fr_from_bytes(phi_value, "phi"), high)


def high_shift(nodes: int, h: int) -> int:
    """Right shift that takes the h high bits of a node index."""
    return nodes.bit_length() - 1 - h


def rhos(phi_value: bytes, h: int) -> list[int]:
    """rho for every high value 0 .. 2^h - 1 (index = node >> high_shift)."""
    return [rho(phi_value, high) for high in range(1 << h)]


def rho_inverses(phi_value: bytes, h: int) -> list[int]:
    out = []
    for r in rhos(phi_value, h):
        if r == 0:   # probability 2^-255; rust-fil-proofs panics ("rho inversion should not fail")
            raise ProofError("rho is zero: cannot decode")
        out.append(pow(r, -1, MODULUS))
    return out


def challenges(proof: UpdateProofType, comm_r_new: bytes, k: int) -> list[int]:
    """The challenged nodes of partition k (storage-proofs-update challenges.rs); all lie in the
    k-th of `partitions` equal chunks of the sector."""
    nodes, parts = proof.nodes, proof.partitions
    if not 0 <= k < parts:
        raise ProofError(f"partition {k} out of range: {proof.name} has {parts} partitions")
    comm = fr_from_bytes(comm_r_new, "comm_r_new")
    bits = nodes.bit_length() - 1 - (parts.bit_length() - 1)
    per_digest = 254 // bits                     # Fr::CAPACITY / random bits per challenge
    count = challenge_count(nodes)
    digest_index = k * -(-count // per_digest)   # digests are numbered across all partitions
    mask, high = (1 << bits) - 1, k << bits
    out: list[int] = []
    while len(out) < count:
        digest = gen_randomness(comm, digest_index)
        for i in range(min(per_digest, count - len(out))):
            out.append(((digest >> (i * bits)) & mask) | high)
        digest_index += 1
    return out
