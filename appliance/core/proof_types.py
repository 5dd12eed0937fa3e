"""Sector sizes and Filecoin's RegisteredSealProof / RegisteredPoStProof, with the per-size
parameters of rust-fil-proofs (filecoin-proofs/src/constants.rs, parameters.rs) and the numbers
of go-state-types abi/sector.go."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .units import format_bytes, parse_bytes

NODE_SIZE = 32
BASE_DEGREE = 6
EXPANSION_DEGREE = 8
WINDOW_POST_CHALLENGE_COUNT = 10
WINNING_POST_CHALLENGE_COUNT = 66
WINNING_POST_SECTOR_COUNT = 1


class ApiVersion(Enum):
    V1_0_0 = "1.0.0"
    V1_1_0 = "1.1.0"
    V1_2_0 = "1.2.0"


@dataclass(frozen=True)
class SectorSize:
    name: str                  # "2KiB"
    bytes: int                 # padded size
    layers: int                # SDR layers
    porep_partitions: int      # interactive / synthetic
    porep_min_challenges: int
    tree_shape: tuple[int, int, int]   # (base, sub, top) arity; 0 = none
    wpost_sectors_per_partition: int

    @property
    def nodes(self) -> int:
        return self.bytes // NODE_SIZE

    @property
    def unpadded_bytes(self) -> int:
        return self.bytes - self.bytes // 128

    @property
    def porep_challenges_per_partition(self) -> int:
        return -(-self.porep_min_challenges // self.porep_partitions)

    @property
    def tree_count(self) -> int:
        """How many base trees tree_c / tree_r_last are split into (files -0 .. -N)."""
        _, sub, top = self.tree_shape
        return max(sub, 1) * max(top, 1)


SECTOR_SIZES: dict[int, SectorSize] = {
    s.bytes: s
    for s in (
        SectorSize("2KiB", 2 << 10, 2, 1, 2, (8, 0, 0), 2),
        SectorSize("8MiB", 8 << 20, 2, 1, 2, (8, 0, 0), 2),
        SectorSize("512MiB", 512 << 20, 2, 1, 2, (8, 0, 0), 2),
        SectorSize("32GiB", 32 << 30, 11, 10, 176, (8, 8, 0), 2349),
        SectorSize("64GiB", 64 << 30, 11, 10, 176, (8, 8, 2), 2300),
    )
}


def sector_size(value: str | int) -> SectorSize:
    """Look up a supported sector size by text ("2KiB", "32GiB") or bytes."""
    try:
        n = parse_bytes(value)
    except ValueError as exc:
        raise ValueError(f"unknown sector size {value!r}: {exc}") from None
    if n not in SECTOR_SIZES:
        names = ", ".join(s.name for s in SECTOR_SIZES.values())
        raise ValueError(f"unknown sector size {value!r}: supported sizes are {names}")
    return SECTOR_SIZES[n]


_SIZE_ORDER = ["2KiB", "8MiB", "512MiB", "32GiB", "64GiB"]
# (first id, name suffix, api version, kind)
_SEAL_FAMILIES = [
    (0, "V1", ApiVersion.V1_0_0, "interactive"),
    (5, "V1_1", ApiVersion.V1_1_0, "interactive"),
    (10, "V1_1_Feat_SyntheticPoRep", ApiVersion.V1_2_0, "synthetic"),
    (15, "V1_2_Feat_NiPoRep", ApiVersion.V1_2_0, "non-interactive"),
]


@dataclass(frozen=True)
class SealProofType:
    id: int
    name: str
    size: SectorSize
    api_version: ApiVersion
    kind: str   # interactive | synthetic | non-interactive

    @property
    def porep_id(self) -> bytes:
        """u64_le(id) || u64_le(nonce=0) || 16 zero bytes."""
        return self.id.to_bytes(8, "little") + bytes(24)

    @property
    def window_post(self) -> "PoStProofType":
        """The WindowPoSt type sectors of this seal type are proven with (V1_1 / api 1.2)."""
        return POST_PROOFS[10 + _SIZE_ORDER.index(self.size.name)]

    @property
    def winning_post(self) -> "PoStProofType":
        return POST_PROOFS[_SIZE_ORDER.index(self.size.name)]


SEAL_PROOFS: dict[int, SealProofType] = {}
for _first, _suffix, _api, _kind in _SEAL_FAMILIES:
    for _i, _size in enumerate(_SIZE_ORDER):
        _id = _first + _i
        SEAL_PROOFS[_id] = SealProofType(_id, f"StackedDrg{_size}{_suffix}", sector_size(_size), _api, _kind)

# rust-filecoin-proofs-api spells the NI types differently; accept both, print Go's.
_SEAL_ALIASES = {
    p.name.replace("V1_2_Feat_NiPoRep", "V1_2_Feat_NonInteractivePoRep"): p
    for p in SEAL_PROOFS.values() if p.kind == "non-interactive"
}


@dataclass(frozen=True)
class PoStProofType:
    id: int
    name: str
    size: SectorSize
    api_version: ApiVersion
    winning: bool

    @property
    def challenge_count(self) -> int:
        return WINNING_POST_CHALLENGE_COUNT if self.winning else WINDOW_POST_CHALLENGE_COUNT

    @property
    def sectors_per_partition(self) -> int:
        return WINNING_POST_SECTOR_COUNT if self.winning else self.size.wpost_sectors_per_partition


POST_PROOFS: dict[int, PoStProofType] = {}
for _i, _size in enumerate(_SIZE_ORDER):
    POST_PROOFS[_i] = PoStProofType(_i, f"StackedDrgWinning{_size}V1", sector_size(_size), ApiVersion.V1_0_0, True)
    POST_PROOFS[5 + _i] = PoStProofType(5 + _i, f"StackedDrgWindow{_size}V1", sector_size(_size), ApiVersion.V1_0_0, False)
    POST_PROOFS[10 + _i] = PoStProofType(10 + _i, f"StackedDrgWindow{_size}V1_1", sector_size(_size), ApiVersion.V1_2_0, False)


def seal_proof(value: str | int) -> SealProofType:
    """Look up a RegisteredSealProof by number or name (e.g. 5 or 'StackedDrg2KiBV1_1')."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n in SEAL_PROOFS:
            return SEAL_PROOFS[n]
        raise ValueError(f"unknown seal proof type {value!r}: valid numbers are 0..19")
    for p in SEAL_PROOFS.values():
        if p.name == value:
            return p
    if value in _SEAL_ALIASES:
        return _SEAL_ALIASES[value]
    raise ValueError(f"unknown seal proof type {value!r}: expected a name such as StackedDrg2KiBV1_1")


def default_seal_proof(size: SectorSize) -> SealProofType:
    """The V1_1 type of a size, as `--proof` defaults to."""
    return SEAL_PROOFS[5 + _SIZE_ORDER.index(size.name)]


def post_proof(value: str | int) -> PoStProofType:
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n in POST_PROOFS:
            return POST_PROOFS[n]
        raise ValueError(f"unknown PoSt proof type {value!r}: valid numbers are 0..14")
    for p in POST_PROOFS.values():
        if p.name == value or p.name.replace("V1_1", "V1_2") == value:
            return p
    raise ValueError(f"unknown PoSt proof type {value!r}: expected a name such as StackedDrgWindow2KiBV1_1")


def api_post_name(pt: PoStProofType) -> str:
    """The name rust-fil-proofs' RegisteredPoStProof serializes (filecoin-proofs-api): the chain's
    WindowPoSt V1_1 types are the proofs API's V1_2 (api version 1.2, the grinding fix), as
    Damocles' stage.ProofType2String maps them; every other type keeps its name."""
    return pt.name.replace("V1_1", "V1_2") if pt.name.endswith("V1_1") else pt.name


__all__ = [
    "NODE_SIZE", "SectorSize", "SECTOR_SIZES", "sector_size", "SealProofType", "SEAL_PROOFS",
    "seal_proof", "default_seal_proof", "PoStProofType", "POST_PROOFS", "post_proof", "api_post_name", "ApiVersion",
    "format_bytes",
]
