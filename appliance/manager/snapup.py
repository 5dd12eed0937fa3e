"""SnapDeals on the manager (Damocles' snapup plan, manager side).

- `damocles util snap fetch --miner ID [--deadline N]` marks the miner's live CC sectors (those
  this manager sealed and persisted) as upgrade candidates; `damocles util snap candidates` lists
  them with their state.
- AllocateSanpUpSector (Damocles' spelling) hands a candidate to a snapup thread together with
  deals packed for it (as AcquireDeals does), in Go's AllocatedSnapUpSector shape; no deals, no
  candidate. The caller's identity holds it: only it may submit or give it up (ReportAborted:
  a candidate again).
- SubmitSnapUpProof checks the update proof and that the `update/` files are in the store, then
  sends ProveReplicaUpdates3 through the nonce-journalled outbox; the worker is done then
  (ReportFinalized changes nothing, as in Damocles). Housekeeping (settle) follows the message
  until it lands, after which the sector's files for proving are its `update/` and
  `update-cache/`; `Venus.SnapUpState` (ours) shows where it is."""

from __future__ import annotations

import base64
import time

from ..core.proof_types import seal_proof
from ..core.protocol import OnChainState, SubmitResult
from ..core.sector import sector_name
from ..chain.external_proofs import precheck
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commr_to_cid
from ..proofs.commitment import comm_d_from_pieces
from ..proofs.snap import update_proof_for_seal
from ..proofs.snap_proof import verify_update_proof
from ..rpc import INVALID_PARAMS, RPCError
from .legacy_messages import manifests
from .task_owner import check_holder, holder
from .task_rehand import allowed, asking_thread
from .task_shapes import allocated_sector, public_info, sector_pieces


def _resp(res: int, desc: str | None) -> dict:
    """Go's SubmitSnapUpProofResp {Res SubmitResult, Desc *string}."""
    return {"Res": res, "Desc": desc}

ACCEPTED, DUPLICATE, REJECTED, MISMATCHED, FILES_MISSED = (
    SubmitResult.ACCEPTED, SubmitResult.DUPLICATE_SUBMIT, SubmitResult.REJECTED, SubmitResult.MISMATCHED_SUBMISSION,
    SubmitResult.FILES_MISSED)
PENDING, LANDED, FAILED = OnChainState.PENDING, OnChainState.LANDED, OnChainState.FAILED


class SnapUp:
    def __init__(self, config, state, chain, market, sealer, committer, now=time.time):
        self.config, self.state, self.chain, self.market, self.sealer, self.committer = config, state, chain, market, sealer, committer
        self._now = now

    def _locations(self, miner: int) -> dict[int, tuple[int, int]]:
        """Every live sector's (deadline, partition), read once."""
        return {n: (d, p.index) for d in range(self.chain.policy.wpost_period_deadlines)
                for p in self.chain.deadline_partitions(miner, d) for n in p.sectors}

    def fetch(self, miner: int, deadline: int | None) -> dict:
        if self.config.miner(miner) is None:
            raise RPCError(INVALID_PARAMS, f"miner: {miner} is not a miner of this manager")
        added = []
        known = {r[0] for r in self.state.query("SELECT number FROM snap_candidates WHERE miner = ?", (miner,))}
        locations = self._locations(miner)
        for s in self.chain.sectors(miner):
            rec = self.state.sector(miner, s.number)
            if s.deal_ids or s.sector_key_cid or s.number in known or not rec or not rec.get("persisted"):
                continue
            if rec.get("deals"):      # onboarded with deals by direct data onboarding: a node's sector info names none
                continue
            where = locations.get(s.number)
            if where is None or (deadline is not None and where[0] != deadline):
                continue
            added.append(s.number)
        now = self._now()
        with self.state.tx() as db:
            for n in added:
                db.execute("INSERT INTO snap_candidates (miner, number, state, created, updated) VALUES (?, ?, 'candidate', ?, ?)",
                           (miner, n, now, now))
        return {"Added": added}

    def candidates(self, miner: int | None) -> list[dict]:
        which, params = ("", ()) if miner is None else ("WHERE miner = ? ", (miner,))
        rows = self.state.query(f"SELECT miner, number, state, worker, message, error FROM snap_candidates "
                                f"{which}ORDER BY miner, number", params)
        return [{"Sector": {"Miner": r[0], "Number": r[1]}, "State": r[2], "Worker": r[3] or "", "Message": r[4],
                 "Error": r[5] or ""} for r in rows]

    def _set(self, miner: int, number: int, **cols) -> None:
        keys = ", ".join(f"{k} = ?" for k in cols)
        with self.state.tx() as db:
            db.execute(f"UPDATE snap_candidates SET {keys}, updated = ? WHERE miner = ? AND number = ?",
                       (*cols.values(), self._now(), miner, number))

    def allocate(self, spec: dict, caller=None) -> dict | None:
        """Damocles' AllocateSanpUpSector(AllocateSnapUpSpec {Sector, Deals}): a candidate with
        deals packed for it, held by the caller's identity (and the asking thread, when our
        worker names it: the spec's optional Thread) from now on; not handed out again (the
        worker journals it), except to the same thread that lost it before journalling it
        (task_rehand): the same sector with the same deals."""
        sector_spec, deals_spec = spec.get("Sector") or {}, spec.get("Deals") or {}
        lost = asking_thread(spec, caller)
        if lost is not None:
            for miner, number in self.state.query("SELECT miner, number FROM snap_candidates WHERE state = 'allocated' "
                                                  "AND worker = ? AND thread = ? ORDER BY miner, number", lost):
                rec = self.state.sector(miner, number)
                if allowed(miner, rec["proof"], sector_spec):
                    return self._answer(miner, number, rec)
                with self.state.tx() as db:      # the thread takes no such sector now: a candidate again, with its deals
                    db.execute("UPDATE snap_candidates SET state = 'candidate', worker = NULL, thread = NULL, updated = ? "
                               "WHERE miner = ? AND number = ? AND state = 'allocated'", (self._now(), miner, number))
        rows = self.state.query("SELECT miner, number FROM snap_candidates WHERE state = 'candidate' ORDER BY miner, number")
        for miner, number in rows:
            rec = self.state.sector(miner, number)
            if not allowed(miner, rec["proof"], sector_spec):
                continue
            deals = self.market.acquire(miner, number, seal_proof(rec["proof"]).size.bytes,
                                        deals_spec.get("MaxDeals"), deals_spec.get("MinUsedSpace"))
            if not deals:
                return None        # nothing to put into a sector yet
            with self.state.tx() as db:
                if not db.execute("UPDATE snap_candidates SET state = 'allocated', worker = ?, thread = ?, updated = ? "
                                  "WHERE miner = ? AND number = ? AND state = 'candidate'",
                                  (holder(caller), lost and lost[1], self._now(), miner, number)).rowcount:
                    continue       # another worker's call took it meanwhile
            return self._answer(miner, number, rec)
        return None

    def _answer(self, miner: int, number: int, rec: dict) -> dict:
        """Go's AllocatedSnapUpSector of a sector allocated for an upgrade, with the deals packed for it."""
        s = self.chain.sector(miner, number)
        mine = [d for d in self.market.deals(miner) if d["Sector"] == number]
        return {"Sector": allocated_sector(miner, number, rec["proof"]),
                "Pieces": sector_pieces(mine, seal_proof(rec["proof"]).size.bytes),
                "Public": public_info(s.sealed_cid, s.activation, s.expiration),
                "Private": {"AccessInstance": rec["persisted"]}}

    def _check_holder(self, miner: int, number: int, held_by: str | None, caller) -> None:
        claimed = check_holder(held_by, caller, f"the snap-up of sector {miner}-{number}")
        if claimed is not None:
            self._set(miner, number, worker=claimed)

    def submit(self, sid: dict, info: dict, caller=None) -> dict:
        """Damocles' SubmitSnapUpProof(sid, SnapUpOnChainInfo) -> SubmitSnapUpProofResp {Res, Desc},
        from the identity the upgrade is allocated to. The CommD and the piece CIDs must be those
        of the deals it was given. Idempotent: the same CommR again, after it was accepted (a
        worker that restarted before it heard the answer), is DuplicateSubmit, which Damocles'
        worker takes as accepted; another CommR is MismatchedSubmission."""
        miner, number = sid["Miner"], sid["Number"]
        row = self.state.one("SELECT state, message, worker FROM snap_candidates WHERE miner = ? AND number = ?",
                             (miner, number))
        if row is None or row[0] not in ("allocated", "submitted", "landed"):
            return _resp(REJECTED, f"sector {miner}-{number} is not being upgraded")
        self._check_holder(miner, number, row[2], caller)
        comm_r_new = bytes(info["CommR"])
        if row[0] != "allocated":
            sent = self.state.sector(miner, number).get("snap_comm_r")
            if sent is not None and sent != comm_r_new.hex():
                return _resp(MISMATCHED, f"an update with CommR {sent} was accepted already (message {row[1]}), "
                                         f"not {comm_r_new.hex()}")
            return _resp(DUPLICATE, f"already sent as {row[1]}")
        if not info["Proof"]:
            return _resp(REJECTED, "empty proof is invalid")
        rec = self.state.sector(miner, number)
        sp = seal_proof(rec["proof"])
        upd = update_proof_for_seal(sp)
        s = self.chain.sector(miner, number)
        comm_r_old = cid_to_commitment(s.sealed_cid)[1]
        comm_d_new = comm_d_from_pieces(self.market.pieces(miner, number), sp.size.bytes)
        given = [d["PieceCID"] for d in self.market.deals(miner) if d["Sector"] == number]
        if (info["Pieces"] or []) != given:
            return _resp(REJECTED, f"pieces {info['Pieces']} are not {given}, the deals given with the sector")
        if bytes(info["CommD"]) != comm_d_new:
            return _resp(REJECTED, f"CommD {bytes(info['CommD']).hex()} is not {comm_d_new.hex()}, "
                                   "the CommD of the deals given with the sector")
        try:
            replica_proof = base64.b64decode(info["Proof"])
        except ValueError as exc:
            return _resp(REJECTED, f"the update proof does not verify: {exc}")
        try:   # a Groth16 proof of an external snap_prove: the chain decides
            external, check = precheck(self.chain, "update", replica_proof, f"sector {number}", upd.partitions)
        except ProofError as exc:
            return _resp(REJECTED, str(exc))
        try:
            if not external:
                verify_update_proof(upd, comm_r_old, comm_r_new, comm_d_new, replica_proof)
        except (ProofError, ValueError) as exc:
            return _resp(REJECTED, f"the update proof does not verify: {exc}")
        store = self.sealer._store(info["AccessInstance"])
        name = sector_name(miner, number)
        if store is None or not (store.path / "update" / name).is_file() or not (store.path / "update-cache" / name / "p_aux").is_file():
            return _resp(FILES_MISSED, f"update/{name} and update-cache/{name} are not in store {info['AccessInstance']}")
        where = self._locations(miner)[number]
        deal_ids = list(rec.get("deals") or [])
        params = {"SectorUpdates": [{"Sector": number, "Deadline": where[0], "Partition": where[1],
                                     "NewSealedCID": {"/": commr_to_cid(comm_r_new)},
                                     "Pieces": manifests(deal_ids, self.state.deal_pieces)}],
                  "SectorProofs": [info["Proof"]], "AggregateProof": "", "UpdateProofsType": upd.id,
                  "AggregateProofType": None, "RequireActivationSuccess": True, "RequireNotificationSuccess": True}
        message = self.committer.send(miner, "snap", "ProveReplicaUpdates3", params, [])
        self.state.update(miner, number, snap_store=store.name, snap_comm_r=comm_r_new.hex(), snap_proof_check=check)
        self._set(miner, number, state="submitted", message=message)
        return _resp(ACCEPTED, None)

    def aborted(self, sid: dict, reason: str, caller=None) -> None:
        """ReportAborted from the worker that took the upgrade (its error); `Venus.SnapUpAborted`,
        ours, for the CLI. The sector is a candidate again, for any snapup thread; the deals
        packed for it stay with it for the next try. An upgrade already submitted cannot be given
        up (its message is on its way)."""
        miner, number = sid["Miner"], sid["Number"]
        row = self.state.one("SELECT state, worker FROM snap_candidates WHERE miner = ? AND number = ?", (miner, number))
        if row is None or row[0] != "allocated":
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not being upgraded ({row[0] if row else 'not a candidate'}):"
                                           " nothing to give up")
        check_holder(row[1], caller, f"the snap-up of sector {miner}-{number}")
        error = self.sealer.limits.text(reason, self.config.max_text_length) or "given up by the worker"
        held_by, params = ("worker IS NULL", ()) if row[1] is None else ("worker = ?", (row[1],))
        with self.state.tx() as db:
            db.execute(f"UPDATE snap_candidates SET state = 'candidate', worker = NULL, error = ?, updated = ? "
                       f"WHERE miner = ? AND number = ? AND state = 'allocated' AND {held_by}",
                       (error, self._now(), miner, number, *params))

    def poll(self, sid: dict, caller=None) -> dict:
        """Where the upgrade's message is (ours, after SubmitSnapUpProof), for the identity the
        upgrade is allocated to."""
        miner, number = sid["Miner"], sid["Number"]
        row = self.state.one("SELECT state, message, error, worker FROM snap_candidates WHERE miner = ? AND number = ?",
                             (miner, number))
        if row is None:
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not a snap-up candidate")
        state, message, error, held_by = row
        if state != "candidate":          # not allocated yet: held by no one
            self._check_holder(miner, number, held_by, caller)
        if state == "landed":
            return {"State": LANDED, "Desc": ""}
        if state == "failed":
            return {"State": FAILED, "Desc": error or ""}
        if state != "submitted":
            return {"State": PENDING, "Desc": f"not submitted ({state})"}
        return self._settle(miner, number, message)

    def _settle(self, miner: int, number: int, message: str) -> dict:
        """Follow a submitted upgrade's message: landed, the sector proves its `update/` files
        from then on; failed, its deals go back."""
        receipt = self.chain.receipt(message)
        if receipt is None:
            return {"State": PENDING, "Desc": f"message {message} not executed yet"}
        if not receipt.ok:
            self._set(miner, number, state="failed", error=receipt.error)
            self.market.release(miner, number)
            return {"State": FAILED, "Desc": receipt.error}
        rec = self.state.sector(miner, number)
        self.state.update(miner, number, upgraded=rec.get("snap_store"))
        self._set(miner, number, state="landed")
        return {"State": LANDED, "Desc": ""}

    def settle(self) -> list[tuple[int, int, str]]:
        """Housekeeping: follow every submitted upgrade (Damocles' worker does not wait for its
        message: it is done once SubmitSnapUpProof accepts). Returns (miner, number, state) of
        those that landed or failed in this pass."""
        out = []
        for miner, number, message in self.state.query("SELECT miner, number, message FROM snap_candidates "
                                                       "WHERE state = 'submitted' ORDER BY miner, number"):
            state = self._settle(miner, number, message)["State"]
            if state != PENDING:
                out.append((miner, number, "landed" if state == LANDED else "failed"))
        return out

    # ReportFinalized / ReportAborted from the snapup thread that holds the upgrade (see api.register_snapup)

    def held_state(self, sid: dict, caller) -> str | None:
        """The upgrade's state when `caller` holds it (None when the sector is no upgrade it took).
        A rebuild or an unseal of the sector claims its reports first (api._TASK_ORDER)."""
        row = self.state.one("SELECT state, worker FROM snap_candidates WHERE miner = ? AND number = ?",
                             (sid["Miner"], sid["Number"]))
        if row is None or row[0] == "candidate" or caller is None or (row[1] and row[1] != caller.identity):
            return None
        return row[0]

    def finalized(self, sid: dict, caller=None) -> None:
        """Damocles: "upgrading sectors are not finalized via api calls": the worker is done with
        an upgrade that was accepted; its message is followed here (settle)."""
        state = self.held_state(sid, caller)
        if state == "allocated":
            raise RPCError(INVALID_PARAMS, f"the upgrade of sector {sid['Miner']}-{sid['Number']} was not submitted "
                                           "(SubmitSnapUpProof) yet: it cannot be finished")
