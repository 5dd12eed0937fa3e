"""The miner actor's sealing rules, as builtin-actors applies them (actors/miner/src/lib.rs):
PreCommitSectorBatch2 and ProveCommitSectors3 (the WindowPoSt methods are in proving.py). Params
are read in the Go JSON shape of go-state-types' structs (actor_params: what decode_params gives
for the message's CBOR); the retired methods (PreCommitSectorBatch, ProveCommitSector and, since
FIP-0101, ProveCommitAggregate) are unhandled. Each method runs inside the devnet's transaction
for the message; raising ActorError fails the message with that exit code and changes nothing.

Deals take the direct data onboarding path, as in builtin-actors (commit b0a3bdd6, lib.rs
`prove_commit_sectors3`): a sector with deals is pre-committed with no DealIDs and its CommD as
UnsealedCid; ProveCommitSectors3's piece manifests carry the deals, each piece notifying the
market actor (f05) of its deal, and their CommD must be the PreCommit's. A PreCommit that names
DealIDs is still accepted (its deals checked and claimed, market.check_precommit) but, as
builtin-actors' `validate_precommits(allow_deals = false)`, never proven.

Differences from builtin-actors (docs/devnet.md): a message is all-or-nothing whatever its
RequireActivationSuccess says; each piece must notify exactly the market actor of one deal (no
data without a deal, no verified allocations)."""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import replace

from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.c2 import verify_seal
from ..proofs.cid import cid_to_commitment, commd_to_cid
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from . import market, money
from .actor_params import MARKET_ACTOR, SNARK_PACK_V2, ParamsError, canonical, notified_deal
from .external_proofs import accept_unverified
from .types import ActorError, ExitCode, PreCommitOnChain, SectorOnChain

DEALS_DISALLOWED = "precommit has deal ids which are disallowed"    # builtin-actors' words

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


def read_params(method: str, params: dict) -> dict:
    """The params as the actor decodes them; a malformed message fails with a serialization error
    naming the field, as the chain fails a message whose CBOR does not decode."""
    try:
        return canonical(method, params)
    except ParamsError as exc:
        raise ActorError(ExitCode.SERIALIZATION, str(exc)) from None


def pre_commit_sector_batch2(state, miner: int, params: dict) -> None:
    info = state.miner_info(miner)
    sectors = read_params("PreCommitSectorBatch2", params)["Sectors"]
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
            kind, _ = cid_to_commitment(s["SealedCID"]["/"])
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
        commd = _precommit_commd(state, miner, number, proof_id, deal_ids, expiration, s["UnsealedCid"])
        _arg(not state.is_allocated(miner, number), f"sector number {number} already allocated")
        accepted.append(PreCommitOnChain(miner, number, proof_id, s["SealedCID"]["/"], commd_to_cid(commd),
                                         rand_epoch, expiration, epoch, list(deal_ids)))
    _lock_deposits(state, miner, accepted)
    for pc in accepted:
        state.allocate(miner, pc.number)
        state.put_precommit(pc)


def _precommit_commd(state, miner: int, number: int, proof_id: int, deal_ids: list, expiration: int, unsealed) -> bytes:
    """The CommD the PreCommit records. Without DealIDs (the DDO path) the UnsealedCid is taken as
    given, null meaning the zero CommD (CC); ProveCommitSectors3 checks it against the pieces.
    With DealIDs (an older manager's PreCommit) the deals are checked and claimed and the CID must
    be their pieces' CommD, as before; such a sector cannot be proven (DEALS_DISALLOWED)."""
    declared = None
    if unsealed is not None:
        try:
            kind, declared = cid_to_commitment(unsealed["/"])
        except ProofError as exc:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"sector {number}: {exc}") from None
        _arg(kind == "unsealed", f"sector {number}: unsealed CID had wrong prefix")
    if not deal_ids:
        return declared if declared is not None else comm_d_from_pieces([], seal_proof(proof_id).size.bytes)
    expected = market.check_precommit(state, miner, number, proof_id, deal_ids, expiration)
    _arg(declared is None or declared == expected,
         f"sector {number}: unsealed CID does not match the sector's deals (CommD mismatch)")
    return expected


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
    return SectorOnChain(miner, number, pc.seal_proof, pc.sealed_cid, pc.unsealed_cid, epoch, pc.expiration)


def _activate(state, sectors: list[SectorOnChain]) -> None:
    """Proven sectors, their deals activated, become live: each gets a WindowPoSt deadline and
    partition and has power from this epoch (proving.assign_sectors)."""
    _pledge(state, sectors)
    for s in sectors:
        state.delete_precommit(s.miner, s.number)
        state.put_sector(s)
    for miner in sorted({s.miner for s in sectors}):
        state.assign_deadlines(miner, [s.number for s in sectors if s.miner == miner])


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


def deals_of_pieces(state, miner: int, pieces: list[dict], where: str) -> list[int]:
    """The deals a sector's piece manifests notify the market actor of, in piece order. Each piece
    must carry exactly one notification, to f05, of a deal of this miner with that piece."""
    out = []
    for j, piece in enumerate(pieces):
        here = f"{where}.Pieces[{j}]"
        notify = piece["Notify"]
        _arg(len(notify) == 1 and notify[0]["Address"] == MARKET_ACTOR,
             f"{here}: the devnet needs exactly one notification, to the market actor {MARKET_ACTOR}")
        _arg(piece["VerifiedAllocationKey"] is None, f"{here}: verified (FIL+) allocations are not supported by the devnet")
        try:
            deal_id = notified_deal(notify[0]["Payload"], f"{here}.Notify[0].Payload")
        except ParamsError as exc:
            raise ActorError(ExitCode.SERIALIZATION, str(exc)) from None
        d = market.get(state, deal_id)
        _arg(d is not None, f"{here}: deal {deal_id} not found", ExitCode.NOT_FOUND)
        _arg(d["miner"] == miner, f"{here}: deal {deal_id} is for provider f0{d['miner']}", ExitCode.FORBIDDEN)
        _arg((d["piece_cid"], d["piece_size"]) == (piece["CID"]["/"], piece["Size"]),
             f"{here}: piece {piece['CID']['/']} of {piece['Size']} bytes is not deal {deal_id}'s "
             f"({d['piece_cid']}, {d['piece_size']} bytes)")
        out.append(deal_id)
    return out


def prove_commit_sectors3(state, miner: int, params: dict) -> None:
    where = "ProveCommitSectors3"
    p = read_params(where, params)
    activations, proofs, aggregate = p["SectorActivations"], p["SectorProofs"], p["AggregateProof"]
    _arg(bool(activations), "no sectors to prove")
    _arg(bool(proofs) != bool(aggregate), "exactly one of sector proofs or aggregate proof must be non-empty")
    numbers = [a["SectorNumber"] for a in activations]
    _arg(len(set(numbers)) == len(numbers), "a sector is listed twice")
    if proofs:
        _arg(p["AggregateProofType"] is None, "aggregate proof type must be null with batched proofs")
        _arg(len(proofs) == len(activations),
             f"mismatched lengths: {len(activations)} sector activations, {len(proofs)} proofs")
        by_sector = {n: base64.b64decode(pr) for n, pr in zip(numbers, proofs)}
    else:
        policy = state.policy
        _arg(p["AggregateProofType"] == SNARK_PACK_V2, "aggregate proof type must be SnarkPackV2")
        _arg(policy.aggregate_min <= len(numbers) <= policy.aggregate_max,
             f"aggregate of {len(numbers)} sectors, must be {policy.aggregate_min}..{policy.aggregate_max}")
        by_sector = decode_aggregate(base64.b64decode(aggregate))
        _arg(sorted(by_sector) == sorted(numbers), "aggregate proof does not cover exactly the sectors listed")
    proven = []
    for i, a in enumerate(activations):
        number = a["SectorNumber"]
        pc = state.get_precommit(miner, number)
        _arg(pc is not None, f"no pre-committed sector {number}", ExitCode.NOT_FOUND)
        # builtin-actors b0a3bdd6 lib.rs: validate_precommits(allow_deals = false), "New onboarding
        # entry point does not allow pre-committed deals"; all or nothing, the message fails
        _arg(not pc.deal_ids, f"invalid pre-commit {i} while requiring activation success: sector {number}: "
                              f"{DEALS_DISALLOWED} ({list(pc.deal_ids)}; its deals go in the piece manifests)")
        where_i = f"{where}.SectorActivations[{i}]"
        sector = _prove_one(state, miner, number, by_sector[number])       # seed, proof window, proof
        _check_pieces_commd(pc, a["Pieces"], where_i)
        deal_ids = deals_of_pieces(state, miner, a["Pieces"], where_i)
        # the market's sector_content_changed, one sector after the other: a deal twice fails
        market.activate_notified(state, miner, number, deal_ids, pc.expiration)
        proven.append(replace(sector, deal_ids=deal_ids))
    _activate(state, proven)


def _check_pieces_commd(pc: PreCommitOnChain, pieces: list[dict], where: str) -> None:
    """The CommD of the manifests' pieces (in order, aligned and zero-padded to the sector, the
    zero CommD for none) must be the PreCommit's unsealed CID (builtin-actors'
    activate_sectors_pieces)."""
    size = seal_proof(pc.seal_proof).size.bytes
    try:
        infos = [PieceInfo(p["Size"], _piece_commitment(p["CID"]["/"])) for p in pieces]
        computed = commd_to_cid(comm_d_from_pieces(infos, size))
    except ProofError as exc:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where}: failed to compute unsealed sector CID: {exc}") from None
    _arg(computed == pc.unsealed_cid, f"{where}: unsealed CID does not match pieces for sector {pc.number}, "
                                      f"computed {computed} declared {pc.unsealed_cid}")


def _piece_commitment(cid: str) -> bytes:
    kind, comm = cid_to_commitment(cid)
    if kind != "unsealed":
        raise ProofError(f"{cid} is not a piece CID")
    return comm


METHODS = {
    "PreCommitSectorBatch2": pre_commit_sector_batch2,
    "ProveCommitSectors3": prove_commit_sectors3,
}
