"""The miner actor's sealing rules, as builtin-actors applies them (actors/miner/src/lib.rs):
PreCommitSectorBatch2, ProveCommitSector and ProveCommitAggregate (the WindowPoSt methods are in
proving.py). Each method runs inside the devnet's transaction for the message; raising ActorError
fails the message with that exit code and changes nothing (batches are all-or-nothing, as on
chain)."""

from __future__ import annotations

import base64
import binascii
import struct

from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.c2 import verify_seal
from ..proofs.cid import cid_to_commitment, commd_to_cid
from . import market, money
from .external_proofs import accept_unverified
from .types import ActorError, ExitCode, PreCommitOnChain, SectorOnChain

MAX_SECTOR_NUMBER = (1 << 63) - 1
AGGREGATE_MAGIC = b"DMA1"


def _arg(cond: bool, message: str, code: ExitCode = ExitCode.ILLEGAL_ARGUMENT) -> None:
    if not cond:
        raise ActorError(code, message)


def _int(params: dict, key: str, where: str) -> int:
    v = params.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ActorError(ExitCode.SERIALIZATION, f"{where}.{key}: expected an integer, got {v!r}")
    return v


def _bytes(params: dict, key: str, where: str) -> bytes:
    v = params.get(key)
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ActorError(ExitCode.SERIALIZATION, f"{where}.{key}: expected base64 bytes") from None


def pre_commit_sector_batch(state, miner: int, params: dict) -> None:
    info = state.miner_info(miner)
    sectors = params.get("Sectors")
    if not isinstance(sectors, list):
        raise ActorError(ExitCode.SERIALIZATION, "PreCommitSectorBatch: Sectors must be a list")
    policy, epoch = state.policy, state.epoch
    _arg(len(sectors) > 0, "batch empty")
    _arg(len(sectors) <= policy.precommit_batch_max, f"batch of {len(sectors)} too large, max {policy.precommit_batch_max}")
    seen: set[int] = set()
    accepted = []
    for i, s in enumerate(sectors):
        where = f"Sectors[{i}]"
        if not isinstance(s, dict):
            raise ActorError(ExitCode.SERIALIZATION, f"{where}: expected an object")
        number = _int(s, "SectorNumber", where)
        proof_id = _int(s, "SealProof", where)
        rand_epoch = _int(s, "SealRandEpoch", where)
        expiration = _int(s, "Expiration", where)
        deal_ids = s.get("DealIDs") or []
        _arg(0 <= number <= MAX_SECTOR_NUMBER, f"sector number {number} out of range")
        _arg(number not in seen, f"duplicate sector number {number} in batch")
        seen.add(number)
        _arg(proof_id == info.seal_proof, f"sector {number}: seal proof {proof_id} is not the miner's type {info.seal_proof}")
        try:
            kind, _ = cid_to_commitment(s.get("SealedCID"))
        except ProofError as exc:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: {exc}") from None
        _arg(kind == "sealed", f"sector {number}: SealedCID is not a sealed commitment")
        _arg(rand_epoch < epoch, f"sector {number}: seal challenge epoch {rand_epoch} must be before now {epoch}")
        _arg(epoch - rand_epoch <= policy.max_precommit_randomness_lookback,
             f"sector {number}: seal challenge epoch {rand_epoch} too old, must be after {epoch - policy.max_precommit_randomness_lookback}")
        _arg(expiration - epoch >= policy.min_sector_expiration,
             f"sector {number}: expiration {expiration} is less than {policy.min_sector_expiration} epochs after now")
        _arg(expiration <= epoch + policy.max_sector_expiration_extension,
             f"sector {number}: expiration {expiration} is more than {policy.max_sector_expiration_extension} epochs after now")
        # CommD must be that of the sector's deals; with no deals (CC) it is the zero commitment
        expected_commd = market.check_precommit(state, miner, number, proof_id, deal_ids, expiration)
        unsealed = s.get("UnsealedCID")
        if unsealed is not None:
            try:
                kind, commd = cid_to_commitment(unsealed)
            except ProofError as exc:
                raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: {exc}") from None
            _arg(kind == "unsealed" and commd == expected_commd,
                 f"sector {number}: unsealed CID does not match the sector's deals (CommD mismatch)")
        _arg(not state.is_allocated(miner, number), f"sector number {number} already allocated")
        accepted.append(PreCommitOnChain(miner, number, proof_id, s["SealedCID"], commd_to_cid(expected_commd),
                                         rand_epoch, expiration, epoch, list(deal_ids)))
    _lock_deposits(state, miner, accepted)
    for pc in accepted:
        state.allocate(miner, pc.number)
        state.put_precommit(pc)


def _lock_deposits(state, miner: int, accepted: list[PreCommitOnChain]) -> None:
    """The batch's PreCommit deposits, from the miner's available balance (chain/money.py)."""
    money.lock_precommit_deposits(state, miner, [pc.number for pc in accepted])


def _pledge(state, sectors: list[SectorOnChain]) -> None:
    """Proven sectors: deposits released, initial pledge locked (chain/money.py)."""
    for miner in sorted({s.miner for s in sectors}):
        money.pledge_on_prove(state, miner, [s.number for s in sectors if s.miner == miner])


def _prove_one(state, miner: int, number: int, proof: bytes) -> SectorOnChain:
    policy, epoch = state.policy, state.epoch
    pc = state.get_precommit(miner, number)
    _arg(pc is not None, f"no pre-committed sector {number}", ExitCode.NOT_FOUND)
    seed_epoch = policy.seed_epoch(pc.precommit_epoch)
    _arg(epoch > seed_epoch, f"too early to prove sector {number}: seed epoch {seed_epoch}, now {epoch}", ExitCode.FORBIDDEN)
    deadline = policy.prove_commit_deadline(pc.precommit_epoch)
    _arg(epoch <= deadline, f"commitment proof for sector {number} too late at {epoch}, due {deadline}")
    ticket = state.draw_ticket(miner, pc.seal_rand_epoch)
    seed = state.draw_seed(miner, seed_epoch)
    _, comm_r = cid_to_commitment(pc.sealed_cid)
    _, comm_d = cid_to_commitment(pc.unsealed_cid)
    sp = seal_proof(pc.seal_proof)
    try:
        trusted = accept_unverified(policy, "seal", proof, f"sector {number}", sp.size.porep_partitions)
    except ProofError as exc:      # a Groth16 proof the devnet cannot verify: refused, saying so
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, str(exc)) from None
    try:
        if not trusted:
            verify_seal(sp, SectorID(miner, number), comm_d, comm_r, ticket, seed, proof)
    except ProofError as exc:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"invalid seal proof for sector {number}: {exc}") from None
    return SectorOnChain(miner, number, pc.seal_proof, pc.sealed_cid, pc.unsealed_cid, epoch, pc.expiration, pc.deal_ids)


def _activate(state, sectors: list[SectorOnChain]) -> None:
    """Proven sectors become live: each gets a WindowPoSt deadline and partition and has power
    from this epoch (proving.assign_sectors)."""
    _pledge(state, sectors)
    for s in sectors:
        market.activate(state, s.miner, s.number, s.deal_ids)
        state.delete_precommit(s.miner, s.number)
        state.put_sector(s)
    for miner in sorted({s.miner for s in sectors}):
        state.assign_deadlines(miner, [s.number for s in sectors if s.miner == miner])


def prove_commit_sector(state, miner: int, params: dict) -> None:
    number = _int(params, "SectorNumber", "ProveCommitSector")
    _activate(state, [_prove_one(state, miner, number, _bytes(params, "Proof", "ProveCommitSector"))])


def encode_aggregate(proofs: dict[int, bytes]) -> bytes:
    """The builtin engine's stand-in for a SnarkPack aggregate: the sectors' C2 proofs side by
    side ("DMA1", u16 version 1, u32 count, then u64 sector number, u32 length, proof)."""
    out = AGGREGATE_MAGIC + struct.pack("<HI", 1, len(proofs))
    for number, proof in sorted(proofs.items()):
        out += struct.pack("<QI", number, len(proof)) + proof
    return out


def decode_aggregate(data: bytes) -> dict[int, bytes]:
    if len(data) < 10 or data[:4] != AGGREGATE_MAGIC:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, "aggregate proof: bad magic")
    version, count = struct.unpack_from("<HI", data, 4)
    _arg(version == 1, f"aggregate proof: unknown version {version}")
    pos, out = 10, {}
    for _ in range(count):
        _arg(pos + 12 <= len(data), "aggregate proof: truncated")
        number, length = struct.unpack_from("<QI", data, pos)
        pos += 12
        _arg(pos + length <= len(data), "aggregate proof: truncated")
        _arg(number not in out, f"aggregate proof: sector {number} twice")
        out[number] = data[pos:pos + length]
        pos += length
    _arg(pos == len(data), "aggregate proof: trailing bytes")
    return out


def prove_commit_aggregate(state, miner: int, params: dict) -> None:
    numbers = params.get("SectorNumbers")
    if not isinstance(numbers, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        raise ActorError(ExitCode.SERIALIZATION, "ProveCommitAggregate.SectorNumbers: expected a list of integers")
    policy = state.policy
    _arg(policy.aggregate_min <= len(numbers) <= policy.aggregate_max,
         f"aggregate of {len(numbers)} sectors, must be {policy.aggregate_min}..{policy.aggregate_max}")
    proofs = decode_aggregate(_bytes(params, "AggregateProof", "ProveCommitAggregate"))
    _arg(sorted(proofs) == sorted(numbers) and len(set(numbers)) == len(numbers),
         "aggregate proof does not cover exactly the sectors listed")
    _activate(state, [_prove_one(state, miner, n, proofs[n]) for n in numbers])


METHODS = {
    "PreCommitSectorBatch": pre_commit_sector_batch,
    "ProveCommitSector": prove_commit_sector,
    "ProveCommitAggregate": prove_commit_aggregate,
}
