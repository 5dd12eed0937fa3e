"""SnapDeals on the manager (Damocles' snapup plan, manager side).

- `damocles util snap fetch --miner ID [--deadline N]` marks the miner's live CC sectors (those
  this manager sealed and persisted) as upgrade candidates; `damocles util snap candidates` lists
  them with their state.
- AllocateSanpUpSector (Damocles' spelling) hands a candidate to a snapup thread together with
  deals packed for it (as AcquireDeals does); no deals, no candidate. The caller's identity
  holds it: only it may submit, poll or give it up (SnapUpAborted, ours: a candidate again).
- SubmitSnapUpProof checks the update proof and that the `update/` files are in the store, then
  sends ProveReplicaUpdates through the nonce-journalled outbox; SnapUpState follows it until it
  lands, after which the sector's files for proving are its `update/` and `update-cache/`."""

from __future__ import annotations

import base64
import time

from ..core.proof_types import seal_proof
from ..core.protocol import OnChainState, SubmitResult
from ..core.sector import sector_name
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commr_to_cid
from ..proofs.commitment import comm_d_from_pieces
from ..proofs.snap import update_proof_for_seal
from ..proofs.snap_proof import verify_update_proof
from ..rpc import INVALID_PARAMS, RPCError
from .task_owner import check_holder, holder

ACCEPTED, REJECTED, MISMATCHED, FILES_MISSED = (SubmitResult.ACCEPTED, SubmitResult.REJECTED,
                                                SubmitResult.MISMATCHED_SUBMISSION, SubmitResult.FILES_MISSED)
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
        rows = self.state.query("SELECT miner, number, state, worker, message, error FROM snap_candidates "
                                "WHERE ? IS NULL OR miner = ? ORDER BY miner, number", (miner, miner))
        return [{"Sector": {"Miner": r[0], "Number": r[1]}, "State": r[2], "Worker": r[3] or "", "Message": r[4],
                 "Error": r[5] or ""} for r in rows]

    def _set(self, miner: int, number: int, **cols) -> None:
        keys = ", ".join(f"{k} = ?" for k in cols)
        with self.state.tx() as db:
            db.execute(f"UPDATE snap_candidates SET {keys}, updated = ? WHERE miner = ? AND number = ?",
                       (*cols.values(), self._now(), miner, number))

    def allocate(self, spec: dict, caller=None) -> dict | None:
        """Damocles' AllocateSanpUpSector(AllocateSnapUpSpec {Sector, Deals}): a candidate with
        deals packed for it, held by the caller's identity from now on (not handed out again:
        the worker journals it)."""
        sector_spec, deals_spec = spec.get("Sector") or {}, spec.get("Deals") or {}
        miners, proofs = sector_spec.get("AllowedMiners"), sector_spec.get("AllowedProofTypes")
        rows = self.state.query("SELECT miner, number FROM snap_candidates WHERE state = 'candidate' ORDER BY miner, number")
        for miner, number in rows:
            rec = self.state.sector(miner, number)
            if (miners and miner not in miners) or (proofs and rec["proof"] not in proofs):
                continue
            deals = self.market.acquire(miner, number, seal_proof(rec["proof"]).size.bytes,
                                        deals_spec.get("MaxDeals"), deals_spec.get("MinUsedSpace"))
            if not deals:
                return None        # nothing to put into a sector yet
            with self.state.tx() as db:
                if not db.execute("UPDATE snap_candidates SET state = 'allocated', worker = ?, updated = ? WHERE miner = ? "
                                  "AND number = ? AND state = 'candidate'", (holder(caller), self._now(), miner, number)).rowcount:
                    continue       # another worker's call took it meanwhile
            s = self.chain.sector(miner, number)
            return {"Sector": {"ID": {"Miner": miner, "Number": number}, "ProofType": rec["proof"]}, "Pieces": deals,
                    "Public": {"CommR": list(cid_to_commitment(s.sealed_cid)[1])},
                    "Private": {"AccessInstance": rec["persisted"]}}
        return None

    def _check_holder(self, miner: int, number: int, held_by: str | None, caller) -> None:
        claimed = check_holder(held_by, caller, f"the snap-up of sector {miner}-{number}")
        if claimed is not None:
            self._set(miner, number, worker=claimed)

    def submit(self, sid: dict, info: dict, caller=None) -> dict:
        """Damocles' SubmitSnapUpProof(sid, SnapUpOnChainInfo), from the identity the upgrade is
        allocated to. The CommD and the piece CIDs must be those of the deals it was given."""
        miner, number = sid["Miner"], sid["Number"]
        row = self.state.one("SELECT state, message, worker FROM snap_candidates WHERE miner = ? AND number = ?",
                             (miner, number))
        if row is None or row[0] not in ("allocated", "submitted"):
            return {"Res": REJECTED, "Desc": f"sector {miner}-{number} is not being upgraded"}
        self._check_holder(miner, number, row[2], caller)
        if row[0] == "submitted":
            return {"Res": ACCEPTED, "Desc": f"already sent as {row[1]}"}
        rec = self.state.sector(miner, number)
        sp = seal_proof(rec["proof"])
        upd = update_proof_for_seal(sp)
        s = self.chain.sector(miner, number)
        comm_r_old = cid_to_commitment(s.sealed_cid)[1]
        comm_d_new = comm_d_from_pieces(self.market.pieces(miner, number), sp.size.bytes)
        comm_r_new = bytes(info["CommR"])
        if bytes(info["CommD"]) != comm_d_new:
            return {"Res": MISMATCHED, "Desc": f"CommD {bytes(info['CommD']).hex()} is not {comm_d_new.hex()}, "
                                               "the CommD of the deals given with the sector"}
        given = [d["PieceCID"] for d in self.market.deals(miner) if d["Sector"] == number]
        if info["Pieces"] != given:
            return {"Res": MISMATCHED, "Desc": f"pieces {info['Pieces']} are not {given}, the deals given with the sector"}
        try:
            verify_update_proof(upd, comm_r_old, comm_r_new, comm_d_new, base64.b64decode(info["Proof"]))
        except (ProofError, ValueError) as exc:
            return {"Res": MISMATCHED, "Desc": f"the update proof does not verify: {exc}"}
        store = self.sealer._store(info["AccessInstance"])
        name = sector_name(miner, number)
        if store is None or not (store.path / "update" / name).is_file() or not (store.path / "update-cache" / name / "p_aux").is_file():
            return {"Res": FILES_MISSED, "Desc": f"update/{name} and update-cache/{name} are not in store {info['AccessInstance']}"}
        where = self._locations(miner)[number]
        params = {"Updates": [{"SectorID": number, "Deadline": where[0], "Partition": where[1],
                               "NewSealedCID": commr_to_cid(comm_r_new), "Deals": rec.get("deals", []),
                               "UpdateProofType": upd.id, "ReplicaProof": info["Proof"]}]}
        message = self.committer.send(miner, "snap", "ProveReplicaUpdates", params, [])
        self.state.update(miner, number, snap_store=store.name)
        self._set(miner, number, state="submitted", message=message)
        return {"Res": ACCEPTED, "Desc": f"sent as {message}"}

    def aborted(self, sid: dict, reason: str, caller=None) -> None:
        """Ours: the worker that took the upgrade gave it up (its error). The sector is a candidate
        again, for any snapup thread; the deals packed for it stay with it for the next try."""
        miner, number = sid["Miner"], sid["Number"]
        row = self.state.one("SELECT state, worker FROM snap_candidates WHERE miner = ? AND number = ?", (miner, number))
        if row is None or row[0] != "allocated":
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not being upgraded ({row[0] if row else 'not a candidate'})")
        check_holder(row[1], caller, f"the snap-up of sector {miner}-{number}")
        error = self.sealer.limits.text(reason, self.config.max_text_length) or "given up by the worker"
        with self.state.tx() as db:
            db.execute("UPDATE snap_candidates SET state = 'candidate', worker = NULL, error = ?, updated = ? "
                       "WHERE miner = ? AND number = ? AND state = 'allocated' AND worker IS ?",
                       (error, self._now(), miner, number, row[1]))

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
