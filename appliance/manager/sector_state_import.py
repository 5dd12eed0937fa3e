"""Damocles' `ImportSector(ws, state, override) -> bool`: a sector's state, as `util sealer sectors
state export-json` prints it (Damocles' SectorState JSON, core/types_sector_state.go, with our
own keys after it), written into this manager's state. `state import-json` calls it, so sector
states move between managers, ours or Damocles'.

What a SectorState carries is kept: proof type, ticket, seed, PreCommit commitments, proof,
message ids, the latest state change (worker, failure), Finalized, Removed, AbortReason, the
snap-upgrade's store, Imported, and ours (State, Persisted). What it does not carry stays out:
where a Damocles manager's sector files are is its sector index, not its state (`util storage
attach` indexes them here); the deals of Pieces are the other manager's market's.

Only finalized sectors (Damocles' offline store) are taken: a sector still in flight has chain
messages journalled in the other manager's outbox under that manager's nonces, which this one
cannot take over without sending something twice. As Damocles answers, false means the sector
exists and `override` was not set."""

from __future__ import annotations

import base64
import json
import time

from ..core.proof_types import seal_proof
from ..core.sector import sector_name
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..rpc import INVALID_PARAMS, RPCError
from ..rpc.wire import b64, boolean, cid, i64, optional, sector_id, string, struct
from .sector_import import NOT_SENT_HERE


def _bad(field: str, why: str) -> RPCError:
    return RPCError(INVALID_PARAMS, f"{field}: {why}")


def _randomness(key: str):
    def convert(v, field):
        t = struct({key: b64, "Epoch": i64})(v, field)
        if len(t[key]) != 32:
            raise _bad(f"{field}.{key}", f"expected 32 bytes, got {len(t[key])}")
        return {key: base64.b64encode(t[key]).decode(), "Epoch": t["Epoch"]}
    return convert


def _commitment(kind: str):
    def convert(v, field):
        c = cid(v, field)
        try:
            got, comm = cid_to_commitment(c)
        except ProofError as exc:
            raise _bad(field, str(exc)) from None
        if got != kind:
            raise _bad(field, f"{c} is a {got} commitment, expected a {kind} one")
        return comm.hex()
    return convert


_pre = struct({"CommR": _commitment("sealed"), "CommD": _commitment("unsealed")})
_proof = struct({"Proof": b64})
_messages = struct({"PreCommitCid": optional(cid), "CommitCid": optional(cid)}, optional_keys=("PreCommitCid", "CommitCid"))
_latest = struct({"Worker": struct({"Instance": string, "Location": string}),
                  "StateChange": struct({"Prev": string, "Next": string, "Event": string}),
                  "Failure": optional(struct({"Level": string, "Desc": string}))}, optional_keys=("Failure",))
_upgraded_info = struct({"AccessInstance": string}, optional_keys=())


def state_record(state: dict, limits) -> tuple[dict, int, dict, dict | None]:
    """(sector id, proof type, our record, the latest state change or None) of a SectorState;
    RPCError naming the field that is wrong."""
    if not isinstance(state, dict):
        raise _bad("state", f"expected a SectorState object, got {state!r}")
    sid = sector_id(state.get("ID"), "state.ID")
    proof = state.get("SectorType")
    try:
        proof = seal_proof(proof).id if isinstance(proof, int) and not isinstance(proof, bool) else None
    except ValueError:
        proof = None
    if proof is None:
        raise _bad("state.SectorType", f"{state.get('SectorType')!r} is not a RegisteredSealProof number")
    finalized = boolean(state.get("Finalized", False), "state.Finalized")
    abort = optional(string)(state.get("AbortReason"), "state.AbortReason") or ""
    rec: dict = {"allocated_at": time.time(), **({"finalized": True} if finalized else {})}
    if state.get("Ticket") is not None:
        rec["ticket"] = _randomness("Ticket")(state["Ticket"], "state.Ticket")
    if state.get("Seed") is not None:
        rec["seed"] = _randomness("Seed")(state["Seed"], "state.Seed")
    if state.get("Pre") is not None:
        rec["pre"] = _pre(state["Pre"], "state.Pre")
    if state.get("Proof") is not None:
        rec["commit_proof"] = base64.b64encode(_proof(state["Proof"], "state.Proof")["Proof"]).decode()
    msgs = _messages(state.get("MessageInfo") or {}, "state.MessageInfo")
    if msgs.get("PreCommitCid"):
        rec["pre_msg"] = msgs["PreCommitCid"]
    if msgs.get("CommitCid"):
        rec["proof_msg"] = msgs["CommitCid"]
    latest = None
    if state.get("LatestState") is not None:
        latest = _latest(state["LatestState"], "state.LatestState")
        for part in ("Prev", "Next"):        # Prev is "" where no change was reported before
            if latest["StateChange"][part] or part == "Next":
                limits.state(latest["StateChange"][part], f"state.LatestState.StateChange.{part}")
        rec.update(worker=latest["Worker"]["Instance"], location=latest["Worker"]["Location"],
                   state=latest["StateChange"]["Next"])
        if latest.get("Failure"):
            rec["failure"] = {"Level": limits.level(latest["Failure"]["Level"], "state.LatestState.Failure.Level"),
                              "Desc": limits.long_text(latest["Failure"]["Desc"])}
    if abort:
        rec.update(abort_reason=abort, state="Aborted")
    elif finalized and "state" not in rec:
        rec["state"] = "Finished"
    ours = optional(string)(state.get("State"), "state.State")
    if ours:
        rec["state"] = limits.state(ours, "state.State")
    if boolean(state.get("Removed", False), "state.Removed"):
        rec["removed"] = True
    if boolean(state.get("Imported", False), "state.Imported"):
        rec["imported"] = True
    if boolean(state.get("Upgraded", False), "state.Upgraded") and state.get("UpgradedInfo") is not None:
        store = _upgraded_info(state["UpgradedInfo"], "state.UpgradedInfo").get("AccessInstance")
        if store:
            rec["upgraded"] = store
    persisted = optional(string)(state.get("Persisted"), "state.Persisted")
    if persisted:
        rec["persisted"] = persisted
    return sid, proof, rec, latest


class SectorStateImport:
    def __init__(self, state, limits, now=time.time):
        self.state, self.limits, self._now = state, limits, now

    def import_sector(self, ws: str, state: dict | None, override: bool) -> bool:
        if state is None:                 # Damocles: a nil state imports nothing
            return False
        sid, proof, rec, latest = state_record(state, self.limits)
        name = sector_name(sid["Miner"], sid["Number"])
        if not rec.get("finalized"):
            raise RPCError(INVALID_PARAMS, f"state.Finalized: sector {name} is not finalized: only finished or aborted "
                           "(offline) sectors move between managers; one in flight has chain messages journalled in the "
                           "other manager's outbox")
        if ws == "online":
            raise RPCError(INVALID_PARAMS, f"ws: sector {name} is finalized, its state is offline (\"offline\" or \"\")")
        now = self._now()
        rec.update(NOT_SENT_HERE, entered_at=now)     # its messages were sent by the other manager
        with self.state.tx() as db:
            exists = db.execute(f"SELECT 1 FROM sectors WHERE miner = ? AND number = ?{self.state.sql.for_update}",
                                (sid["Miner"], sid["Number"])).fetchone()
            if exists and not override:
                return False
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(miner, number) "
                       "DO UPDATE SET proof = excluded.proof, info = excluded.info, updated = excluded.updated",
                       (sid["Miner"], sid["Number"], proof, json.dumps(rec), now))
            change = latest["StateChange"] if latest else {"Prev": None, "Next": rec["state"], "Event": "ImportSector"}
            failure = rec.get("failure") or {}
            db.execute("INSERT INTO sector_history (miner, number, at, prev, next, event, worker, level, error) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (sid["Miner"], sid["Number"], now, change["Prev"] or None, change["Next"], change["Event"], rec.get("worker"),
                        failure.get("Level"), failure.get("Desc")))
            db.execute("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE "
                       "SET next = CASE WHEN excluded.next > counters.next THEN excluded.next ELSE counters.next END",
                       (sid["Miner"], sid["Number"] + 1))
        return True
