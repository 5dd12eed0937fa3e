"""Sector records re-created from the chain when the manager's state is rebuilt from it
(`damocles manager run --rebuild-from-chain`).

A state restored from an older backup lacks the sectors sealed after it; the chain still has
them (a PreCommit that landed, or an active sector). Each one gets its record back from what the
chain keeps: proof type, CommR/CommD, ticket, seed, deals, the messages (and nonces) that carried
its PreCommit and proof, so that nothing is sent again; and the persist store its files are in,
found by looking in `sealed/` and `cache/` (or `update/` for a snap-upgraded replica) of each
configured store. An active sector is finished (WindowPoSt proves it); a PreCommit waiting for its
proof is `PCLanded`, so the worker still holding it carries on. A record the state has but that
is older than the chain (no PreCommit or proof message where the chain took one) gets the
chain's messages recorded on it, so that they are not sent again.

A sector's deals (direct data onboarding: a PreCommit names none) are those its
ProveCommitSectors3 manifests notified the market actor of; for messages of managers from before
DDO, those its PreCommit named (DealIDs); else the chain's record of the sector's deals, else the
manager's deals table (a PreCommit still waiting for its proof has no deals on chain)."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

from ..chain.actor_params import MARKET_ACTOR, ParamsError, notified_deal
from ..chain.miner_actor import decode_aggregate
from ..core.sector import sector_name
from ..proofs.cid import cid_to_commitment
from .state import ManagerState

log = logging.getLogger("damocles.manager")

PRECOMMIT_METHODS = ("PreCommitSector", "PreCommitSectorBatch", "PreCommitSectorBatch2")


def _sealed_in(store_path: Path, miner: int, number: int, sealed: str = "sealed", cache: str = "cache") -> bool:
    name = sector_name(miner, number)
    cache_dir = store_path / cache / name
    return ((store_path / sealed / name).is_file() and (cache_dir / "p_aux").is_file() and (cache_dir / "t_aux").is_file()
            and any(cache_dir.glob("sc-02-data-tree-r-last*.dat")))


def find_files(stores, miner: int, number: int, sealed: str = "sealed", cache: str = "cache") -> str | None:
    """The name of the first persist store holding the sector's sealed file and cache."""
    return next((s.name for s in stores if _sealed_in(Path(s.path), miner, number, sealed, cache)), None)


def _messages_by_sector(chain, miner: int) -> tuple[dict, dict, dict]:
    """number -> (PreCommit params of the sector, message), number -> (proof as base64, message)
    and number -> the deals its ProveCommitSectors3 manifests notified the market actor of."""
    pre, proof, proof_deals = {}, {}, {}
    for msg in chain.executed_messages(miner):
        method, params = msg["method"], msg["params"]
        if method in PRECOMMIT_METHODS:
            for s in params.get("Sectors", [params]):
                pre[s["SectorNumber"]] = (s, msg)
        elif method == "ProveCommitSectors3":
            numbers = [a["SectorNumber"] for a in params["SectorActivations"]]
            for a in params["SectorActivations"]:
                proof_deals[a["SectorNumber"]] = _notified_deals(a.get("Pieces") or [])
            if params["SectorProofs"]:
                for number, p in zip(numbers, params["SectorProofs"]):
                    proof[number] = (p, msg)
            else:
                for number, p in decode_aggregate(base64.b64decode(params["AggregateProof"])).items():
                    proof[number] = (base64.b64encode(p).decode(), msg)
        elif method == "ProveCommitSector":              # taken by the chain before the upgrade
            proof[params["SectorNumber"]] = (params["Proof"], msg)
        elif method == "ProveCommitAggregate":           # taken by the chain before the upgrade
            for number, p in decode_aggregate(base64.b64decode(params["AggregateProof"])).items():
                proof[number] = (base64.b64encode(p).decode(), msg)
    return pre, proof, proof_deals


def _notified_deals(pieces: list[dict]) -> list[int]:
    """The deal ids a sector's piece manifests notify the market actor of, in piece order (a
    message the chain executed: its payloads decoded when it landed)."""
    out = []
    for piece in pieces:
        for n in piece.get("Notify") or []:
            if n.get("Address") == MARKET_ACTOR:
                try:
                    out.append(notified_deal(n["Payload"], "Notify.Payload"))
                except ParamsError:
                    continue
    return out


def _sector_deals(state: ManagerState, miner: int, number: int, pre_msg, proof_deals: list[int] | None,
                  on_chain: list[int]) -> list[int]:
    """The sector's deals, from the first that has them: its ProveCommitSectors3 manifests, its
    PreCommit's DealIDs (a manager from before DDO), the chain's record, the manager's deals."""
    if proof_deals:
        return list(proof_deals)
    named = (pre_msg[0].get("DealIDs") or []) if pre_msg is not None else []
    if named or on_chain:
        return list(named or on_chain)
    return [r[0] for r in state.query("SELECT id FROM deals WHERE miner = ? AND sector = ? ORDER BY id", (miner, number))]


def _cid(value) -> str:
    """A CID in a message's params: {"/": cid} (go-state-types JSON) or, before the upgrade, a string."""
    return value["/"] if isinstance(value, dict) else value


def _record(chain, miner: int, number: int, seal_proof: int, sealed_cid: str, unsealed_cid: str, pre_msg,
            proof_msg, precommit_epoch: int | None) -> dict:
    info: dict = {"allocated_at": time.time(), "recovered_from_chain": True,
                  "pre": {"CommR": cid_to_commitment(sealed_cid)[1].hex(), "CommD": cid_to_commitment(unsealed_cid)[1].hex()}}
    if pre_msg is not None:
        params, msg = pre_msg
        epoch = params["SealRandEpoch"]
        info.update(ticket={"Ticket": base64.b64encode(chain.seal_randomness(miner, epoch)).decode(), "Epoch": epoch},
                    pre_msg=msg["id"], pre_nonce=msg["nonce"])
        precommit_epoch = msg["executed_epoch"] if precommit_epoch is None else precommit_epoch
    if precommit_epoch is not None and proof_msg is not None:
        seed_epoch = chain.policy.seed_epoch(precommit_epoch)
        info["seed"] = {"Seed": base64.b64encode(chain.interactive_seed(miner, seed_epoch)).decode(), "Epoch": seed_epoch}
    if proof_msg is not None:
        proof, msg = proof_msg
        info.update(commit_proof=proof, proof_msg=msg["id"], proof_nonce=msg["nonce"])
    return info


def _deals(chain, deal_ids: list[int], piece_stores) -> list[dict]:
    """The chain's deals, with the payload size and store of the piece file (in the manager's
    piece stores, the piece CID as its name) when it is there; else the piece's unpadded size."""
    out = []
    for deal_id in deal_ids:
        d = chain.deal(deal_id)
        if d is None:
            continue
        path = next((Path(s.path) / d["piece_cid"] for s in piece_stores if (Path(s.path) / d["piece_cid"]).is_file()), None)
        payload = path.stat().st_size if path else d["piece_size"] - d["piece_size"] // 128
        out.append({**d, "payload_size": payload, "store": str(path.parent) if path else ""})
    return out


def _catch_up(state: ManagerState, chain, miner: int, rec: dict, pre_msg, proof_msg) -> list[tuple[int, int, str]]:
    """A record the state has but older than the chain (the copy was taken before its PreCommit
    or proof was journalled): the messages the chain took are recorded on it, so that they are
    not sent again (a second PreCommit of a number fails, and the sector would be aborted)."""
    number, changes = rec["number"], {}
    if "pre_nonce" not in rec and pre_msg is not None:
        params, msg = pre_msg
        changes.update(pre_msg=msg["id"], pre_nonce=msg["nonce"])
        if "ticket" not in rec:
            epoch = params["SealRandEpoch"]
            changes["ticket"] = {"Ticket": base64.b64encode(chain.seal_randomness(miner, epoch)).decode(), "Epoch": epoch}
        if "pre" not in rec:
            unsealed = params.get("UnsealedCid") or params.get("UnsealedCID")
            if unsealed is None:       # a CC PreCommit may leave it out: the chain's record has it
                unsealed = (chain.precommit(miner, number) or chain.sector(miner, number)).unsealed_cid
            changes["pre"] = {"CommR": cid_to_commitment(_cid(params["SealedCID"]))[1].hex(),
                              "CommD": cid_to_commitment(_cid(unsealed))[1].hex()}
    if "proof_nonce" not in rec and proof_msg is not None:
        proof, msg = proof_msg
        changes.update(proof_msg=msg["id"], proof_nonce=msg["nonce"])
        changes.setdefault("commit_proof", rec.get("commit_proof") or proof)
    if not changes:
        return []
    state.update(miner, number, **changes)
    log.warning("sector %s: its record caught up with the chain (%s)", sector_name(miner, number),
                ", ".join(f"{k} {v}" for k, v in changes.items() if k.endswith("_msg")),
                extra={"sector": sector_name(miner, number), "state": rec.get("state")})
    return [(miner, number, rec.get("state"))]


def recover_sectors(state: ManagerState, chain, stores, miners: list[int], piece_stores=()) -> list[tuple[int, int, str]]:
    """Re-create the record of every sector the chain has (active, or PreCommitted) and `state`
    does not, its files looked for in the persist `stores`, and catch up the records older than
    the chain. Returns [(miner, number, state)] of those changed."""
    done = []
    for miner in miners:
        active = {s.number: s for s in chain.sectors(miner)}
        waiting = {p.number: p for p in chain.precommits(miner) if p.number not in active}
        records = {n: state.sector(miner, n) for n in sorted({*active, *waiting})}
        missing = [n for n, rec in records.items() if rec is None]
        behind = [n for n, rec in records.items() if rec is not None and not rec.get("abort_reason")
                  and ("pre_nonce" not in rec or (n in active and "proof_nonce" not in rec))]
        if not missing and not behind:
            continue
        pre_msgs, proof_msgs, proof_deals = _messages_by_sector(chain, miner)
        for number in behind:
            done += _catch_up(state, chain, miner, records[number], pre_msgs.get(number),
                              proof_msgs.get(number) if number in active else None)
        for number in missing:
            if number in active:
                s = active[number]
                info = _record(chain, miner, number, s.seal_proof, s.sealed_cid, s.unsealed_cid, pre_msgs.get(number),
                               proof_msgs.get(number), None)
                info.update(state="Finished", finalized=True,
                            deals=_sector_deals(state, miner, number, pre_msgs.get(number), proof_deals.get(number),
                                                list(s.deal_ids)))
                upgraded = s.sector_key_cid and find_files(stores, miner, number, "update", "update-cache")
                if upgraded:
                    info["upgraded"] = upgraded
                proof = s.seal_proof
            else:
                p = waiting[number]
                info = _record(chain, miner, number, p.seal_proof, p.sealed_cid, p.unsealed_cid, pre_msgs.get(number), None,
                               p.precommit_epoch)
                info.update(state="PCLanded", deals=_sector_deals(state, miner, number, pre_msgs.get(number), None,
                                                                  list(p.deal_ids)))
                proof = p.seal_proof
            persisted = find_files(stores, miner, number)
            if persisted is not None:
                info["persisted"] = persisted
            state.recover_sector(miner, number, proof, info, _deals(chain, info["deals"], piece_stores))
            where = f"its files in persist store {info['persisted']}" if "persisted" in info else "its files in no persist store"
            log.warning("sector %s: re-created from the chain as %s (%s)", sector_name(miner, number), info["state"], where,
                        extra={"sector": sector_name(miner, number), "state": info["state"]})
            done.append((miner, number, info["state"]))
    return done
