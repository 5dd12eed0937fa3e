"""Lotus' JSON shapes (build/openrpc/full.json, Lotus commit b835fab7) to and from the Chain
interface's values, both ways: LotusChain reads them, the devnet's API server writes them.

Go's encoding/json rendering: CIDs as {"/": "..."}, bytes as base64, big integers as decimal
strings, bitfields as go-bitfield's run list (go-bitfield rle/rleplus.go MarshalJSON: run
lengths, the first a run of zeros; an empty set is [0]), addresses as strings."""

from __future__ import annotations

import base64
import binascii
import re

from .. import bitfield as _bitfield
from ..address import MAX_ID
from ..types import (ChainError, DeadlineInfo, MinerPower, PartitionInfo, PreCommitOnChain, Receipt, SectorExpiration,
                     SectorLocation, SectorOnChain)

_ID_ADDRESS = re.compile(r"^[ft]0(0|[1-9][0-9]{0,19})$")


def id_address(actor: int, network: str = "f") -> str:
    return f"{network}0{actor}"


def actor_id(address, what: str = "address") -> int:
    """The actor number of an ID address (f01234 / t01234)."""
    if not isinstance(address, str) or not _ID_ADDRESS.match(address):
        raise ChainError(f"{what}: expected an ID address such as f01234, got {address!r}")
    actor = int(address[2:])
    if actor > MAX_ID:         # go-address: an ID is below 2^63
        raise ChainError(f"{what}: {address!r} is not an ID address: the ID must be below 2^63")
    return actor


def cid(value: str) -> dict:
    return {"/": value}


def cid_str(value, what: str) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("/"), str):
        raise ChainError(f'{what}: expected a CID {{"/": "..."}}, got {value!r}')
    return value["/"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(value, what: str) -> bytes:
    if not isinstance(value, str):
        raise ChainError(f"{what}: expected base64 bytes, got {value!r}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ChainError(f"{what}: not valid base64") from None


def integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChainError(f"{what}: expected an integer, got {value!r}")
    return value


def big(value, what: str) -> int:
    """A Go big.Int (TokenAmount, power) as Lotus writes it: a decimal string."""
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
        raise ChainError(f"{what}: expected a decimal string, got {value!r}")
    return int(value)


def field(obj, key: str, what: str):
    if not isinstance(obj, dict):
        raise ChainError(f"{what}: expected an object, got {obj!r}")
    if key not in obj:
        raise ChainError(f"{what}.{key} is missing")
    return obj[key]


# ------------------------------------------------------------------------------ bitfields

def runs(numbers) -> list[int]:
    """go-bitfield's JSON run list of a set of non-negative integers."""
    return _bitfield.json_from_numbers(numbers)


def numbers(run_list, what: str) -> tuple[int, ...]:
    try:
        return tuple(_bitfield.numbers_from_json(run_list, what))
    except ValueError as exc:
        raise ChainError(str(exc)) from None


# ------------------------------------------------------------------------ Lotus -> ours

def deadline_info(d: dict, what: str = "StateMinerProvingDeadline") -> DeadlineInfo:
    g = lambda k: integer(field(d, k, what), f"{what}.{k}")
    return DeadlineInfo(g("CurrentEpoch"), g("PeriodStart"), g("Index"), g("Open"), g("Close"), g("Challenge"), g("FaultCutoff"))


def partition(index: int, p: dict, proven: bool, what: str) -> PartitionInfo:
    g = lambda k: numbers(field(p, k, what), f"{what}.{k}")
    live, faulty, recovering = g("LiveSectors"), g("FaultySectors"), g("RecoveringSectors")
    is_live = set(live)       # once per partition (a partition holds up to 2,349 sectors), not once per sector
    ended = tuple(n for n in g("AllSectors") if n not in is_live)       # the partition's Terminated set
    return PartitionInfo(index, live, tuple(n for n in faulty if n in is_live), recovering, proven, ended)


def sector(miner: int, s: dict, what: str = "StateSectorGetInfo") -> SectorOnChain:
    key = s.get("SectorKeyCID")
    return SectorOnChain(
        miner, integer(field(s, "SectorNumber", what), f"{what}.SectorNumber"),
        integer(field(s, "SealProof", what), f"{what}.SealProof"), cid_str(field(s, "SealedCID", what), f"{what}.SealedCID"),
        _unsealed(s, what), integer(field(s, "Activation", what), f"{what}.Activation"),
        integer(field(s, "Expiration", what), f"{what}.Expiration"), _deal_ids(s, what),
        None if key is None else cid_str(key, f"{what}.SectorKeyCID"))


def _unsealed(s: dict, what: str) -> str:
    """Lotus' SectorOnChainInfo has no unsealed CID (ours carries it): the devnet's API adds it
    as `UnsealedCid`; from a real node it is unknown ("")."""
    u = s.get("UnsealedCid")
    return "" if u is None else cid_str(u, f"{what}.UnsealedCid")


def _deal_ids(s: dict, what: str) -> list[int]:
    ids = s.get("DealIDs") or []
    if not isinstance(ids, list):
        raise ChainError(f"{what}.DealIDs: expected a list, got {ids!r}")
    return [integer(i, f"{what}.DealIDs[]") for i in ids]


def precommit(miner: int, p: dict, what: str = "StateSectorPreCommitInfo") -> PreCommitOnChain:
    info = field(p, "Info", what)
    w = f"{what}.Info"
    unsealed = info.get("UnsealedCid")
    return PreCommitOnChain(
        miner, integer(field(info, "SectorNumber", w), f"{w}.SectorNumber"), integer(field(info, "SealProof", w), f"{w}.SealProof"),
        cid_str(field(info, "SealedCID", w), f"{w}.SealedCID"), "" if unsealed is None else cid_str(unsealed, f"{w}.UnsealedCid"),
        integer(field(info, "SealRandEpoch", w), f"{w}.SealRandEpoch"), integer(field(info, "Expiration", w), f"{w}.Expiration"),
        integer(field(p, "PreCommitEpoch", what), f"{what}.PreCommitEpoch"), _deal_ids(info, w))


def power(p: dict, active: int, faulty: int, what: str = "StateMinerPower") -> MinerPower:
    mp = field(p, "MinerPower", what)
    return MinerPower(big(field(mp, "RawBytePower", what), f"{what}.MinerPower.RawBytePower"),
                      big(field(mp, "QualityAdjPower", what), f"{what}.MinerPower.QualityAdjPower"), active, faulty)


def receipt(message: str, lookup: dict, what: str = "StateSearchMsg") -> Receipt:
    r = field(lookup, "Receipt", what)
    """The message executed is lookup.Message: a replacement's CID when one replaced `message`."""
    code = integer(field(r, "ExitCode", f"{what}.Receipt"), f"{what}.Receipt.ExitCode")
    executed = cid_str(lookup["Message"], f"{what}.Message") if lookup.get("Message") is not None else message
    returned = lookup.get("ReturnDec")      # the decoded return Lotus adds (MsgLookup.ReturnDec)
    return Receipt(executed, code, None if code == 0 else f"exit code {code}", integer(field(lookup, "Height", what), f"{what}.Height"),
                   integer(r.get("GasUsed") or 0, f"{what}.Receipt.GasUsed"), returned if isinstance(returned, dict) else None)


def sector_expiration(e: dict, what: str = "StateSectorExpiration") -> SectorExpiration:
    return SectorExpiration(integer(field(e, "OnTime", what), f"{what}.OnTime"), integer(field(e, "Early", what), f"{what}.Early"))


def sector_location(loc: dict, what: str = "StateSectorPartition") -> SectorLocation:
    return SectorLocation(integer(field(loc, "Deadline", what), f"{what}.Deadline"),
                          integer(field(loc, "Partition", what), f"{what}.Partition"))


# ------------------------------------------------------------------------ ours -> Lotus

def deadline_json(d: DeadlineInfo, policy) -> dict:
    return {"CurrentEpoch": d.current_epoch, "PeriodStart": d.period_start, "Index": d.index, "Open": d.open,
            "Close": d.close, "Challenge": d.challenge, "FaultCutoff": d.fault_cutoff,
            "WPoStPeriodDeadlines": policy.wpost_period_deadlines, "WPoStProvingPeriod": policy.wpost_proving_period,
            "WPoStChallengeWindow": policy.wpost_challenge_window, "WPoStChallengeLookback": policy.wpost_challenge_lookback,
            "FaultDeclarationCutoff": policy.fault_declaration_cutoff}


def partition_json(p: PartitionInfo) -> dict:
    faulty = set(p.faulty)
    return {"AllSectors": runs((*p.sectors, *p.terminated)), "FaultySectors": runs(p.faulty), "RecoveringSectors": runs(p.recovering),
            "LiveSectors": runs(p.sectors), "ActiveSectors": runs(n for n in p.sectors if n not in faulty)}


def sector_json(s: SectorOnChain) -> dict:
    return {"SectorNumber": s.number, "SealProof": s.seal_proof, "SealedCID": cid(s.sealed_cid), "DealIDs": list(s.deal_ids),
            "Activation": s.activation, "Expiration": s.expiration, "DealWeight": "0", "VerifiedDealWeight": "0",
            "InitialPledge": "0", "ExpectedDayReward": "0", "ExpectedStoragePledge": "0", "PowerBaseEpoch": s.activation,
            "ReplacedDayReward": "0", "SectorKeyCID": None if s.sector_key_cid is None else cid(s.sector_key_cid),
            "Flags": 0, "DailyFee": "0",
            "UnsealedCid": cid(s.unsealed_cid)}      # not in Lotus' shape: the devnet's extra, ignored by Go clients


def precommit_json(p: PreCommitOnChain) -> dict:
    return {"Info": {"SealProof": p.seal_proof, "SectorNumber": p.number, "SealedCID": cid(p.sealed_cid),
                     "SealRandEpoch": p.seal_rand_epoch, "DealIDs": list(p.deal_ids), "Expiration": p.expiration,
                     "UnsealedCid": cid(p.unsealed_cid)},
            "PreCommitDeposit": "0", "PreCommitEpoch": p.precommit_epoch}


def sector_expiration_json(e: SectorExpiration) -> dict:
    return {"OnTime": e.on_time, "Early": e.early}


def sector_location_json(loc: SectorLocation) -> dict:
    return {"Deadline": loc.deadline, "Partition": loc.partition}


def return_cbor(method: str, returned: dict | None) -> str | None:
    """A receipt's Return as Lotus writes it (base64 CBOR): TerminateSectorsReturn is the tuple
    [Done]; methods returning nothing have no Return (null)."""
    if returned is None:
        return None
    if method == "TerminateSectors":
        return b64(bytes([0x81, 0xF5 if returned["Done"] else 0xF4]))
    raise ChainError(f"no CBOR form for the return of {method}")
