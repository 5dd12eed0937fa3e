"""A sealing thread with `plan = "rebuild"`: takes a lost sector from the manager
(AllocateRebuildSector), seals it again in its location from the recorded ticket and deals
(pieces fetched as for sealing), refuses to persist unless the CommR is the one on chain,
persists it into a reserved store (SubmitPersistedEx) and reports (RebuildDone). A rebuild that
is interrupted starts again from the beginning: every step is a pure function of the task."""

from __future__ import annotations

import base64
import logging
import threading

from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_file_names
from ..proofs.addpiece import add_pieces, build_tree_d
from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo
from ..proofs.pc1 import generate_labels, replica_id
from ..proofs.pc2 import seal_pre_commit_phase2
from ..rpc import RPCError
from ..rpc.client import TransportError
from .steps import Paths, SealerSteps, persist

log = logging.getLogger("damocles.worker")


class RebuildThread:
    def __init__(self, index: int, ctx, plan_config=None):
        self.index, self.ctx = index, ctx
        self.plan = "rebuild"
        self.rec: dict = {"state": "Empty"}
        self.status = "Idle"
        self.last_error: str | None = None
        self.paused = False
        self.done = 0

    def pause(self) -> bool:
        if self.paused:
            return False
        self.paused, self.last_error = True, "paused by the operator"
        return True

    def resume(self, state: str | None = None) -> bool:
        if not self.paused:
            return False
        self.paused, self.last_error = False, None
        return True

    def summary(self) -> dict:
        return {"index": self.index, "location": str(self.ctx.location), "plan": "rebuild", "job_id": self.rec.get("name"),
                "job_state": self.rec.get("state"), "thread_state": {"state": self.status}, "last_error": self.last_error,
                "config_error": None, "rebuilt": self.done}

    def run(self, stop: threading.Event) -> None:
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None, "AllowedProofTypes": None}
        name = f"{self.ctx.worker_name}-rebuild-{self.index}"
        while not stop.is_set():
            if self.paused:
                self.status = "Paused"
                stop.wait(0.5)
                continue
            try:
                task = self.ctx.rpc.call("Venus.AllocateRebuildSector", spec, name)
            except (TransportError, RPCError) as exc:
                self.status, self.last_error = "Waiting", f"temp: AllocateRebuildSector: {exc}"
                stop.wait(s.recover_interval)
                continue
            if not task:
                self.status, self.rec = "Waiting", {"state": "Empty"}
                stop.wait(s.rpc_polling_interval)
                continue
            sid = task["Sector"]["ID"]
            self.status, self.rec = "Running", {"state": "Rebuilding", "name": sector_file_names(sid["Miner"], sid["Number"])}
            try:
                self._rebuild(task)
                error = ""
                self.done += 1
                log.info("thread %d: rebuilt %s", self.index, self.rec["name"])
            except Exception as exc:         # reported to the manager as the task's error
                error = str(exc)
                log.error("thread %d: rebuilding %s failed: %s", self.index, self.rec["name"], error)
            finally:
                Paths(self.ctx.location, self.rec["name"]).remove()
            self._report(sid, error, stop)

    def _report(self, sid: dict, error: str, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ctx.rpc.call("Venus.RebuildDone", sid, error)
                return
            except TransportError as exc:
                log.warning("thread %d: RebuildDone failed, retrying: %s", self.index, exc)
                stop.wait(self.ctx.sealing.recover_interval)
            except RPCError as exc:
                log.warning("thread %d: RebuildDone: %s", self.index, exc.message)
                return

    def _rebuild(self, task: dict) -> None:
        sid = task["Sector"]["ID"]
        sector = SectorID(sid["Miner"], sid["Number"])
        proof = seal_proof(task["Sector"]["ProofType"])
        name = sector_file_names(sid["Miner"], sid["Number"])
        p = Paths(self.ctx.location, name)
        p.remove()
        p.make()
        deals = [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]} for d in task["Pieces"] or []]
        steps = SealerSteps(self.ctx)
        files = [steps._piece_file(p, d) for d in deals]
        self.ctx.run_stage("add_pieces", add_pieces, proof.size, files, p.staged)
        pieces = [PieceInfo(d["piece_size"], cid_to_commitment(d["piece_cid"])[1]) for d in deals]
        comm_d = self.ctx.run_stage("tree_d", build_tree_d, proof.size, p.staged, p.cache, pieces)
        rid = replica_id(sector, base64.b64decode(task["Ticket"]["Ticket"]), comm_d, proof)
        self.ctx.run_stage("pc1", generate_labels, proof, rid, p.cache, self.ctx.parent_cache)
        out = self.ctx.run_stage("pc2", seal_pre_commit_phase2, proof, p.staged, p.cache, p.sealed, self.ctx.pc2_procs)
        if out.comm_r != bytes(task["CommR"]):
            raise ValueError(f"the rebuilt CommR {out.comm_r.hex()} is not the chain's {bytes(task['CommR']).hex()}: "
                             "not persisted (wrong ticket or pieces?)")
        update = self._reapply_update(task, p, sector, proof) if task.get("IsSnapUp") else None
        store = self.ctx.rpc.call("Venus.StoreReserveSpace", sid, 4 * proof.size.bytes, [s.name for s in self.ctx.attached])
        local = next((s for s in self.ctx.attached if store and s.name == store["Name"]), None)
        if local is None:
            raise ValueError("no attached persist store has room for the rebuilt sector")
        persist(p, local.location, name)
        if update is not None:
            persist(p, local.location, name, update.update, update.update_cache, ("update", "update-cache"))
        if not self.ctx.rpc.call("Venus.SubmitPersistedEx", sid, local.name, False):
            raise ValueError(f"the manager does not find the persisted files in {local.name}")

    def _reapply_update(self, task: dict, p: Paths, sector: SectorID, proof):
        """A snap-upgraded sector: encode its deals into the resealed sector key again; the new
        CommR must be the chain's."""
        from ..proofs.snap import update_proof_for_seal
        from ..proofs.snap_encode import SectorFiles, encode_files
        up = task["UpgradePublic"]
        deals = [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]} for d in up["Pieces"]]
        staged = p.data / "update-staged" / p.name
        staged.parent.mkdir(parents=True, exist_ok=True)
        files = [SealerSteps(self.ctx)._piece_file(p, d) for d in deals]
        self.ctx.run_stage("add_pieces", add_pieces, proof.size, files, staged)
        pieces = [PieceInfo(d["piece_size"], cid_to_commitment(d["piece_cid"])[1]) for d in deals]
        out = SectorFiles(p.sealed, p.cache, p.data / "update" / p.name, p.data / "update-cache" / p.name)
        try:
            enc = self.ctx.run_stage("snap_encode", encode_files, update_proof_for_seal(proof), out, staged, pieces,
                                     self.ctx.pc2_procs)
        finally:
            staged.unlink(missing_ok=True)
        if enc.comm_r_new != bytes(up["CommR"]):
            raise ValueError(f"the re-applied update's CommR {enc.comm_r_new.hex()} is not the chain's "
                             f"{bytes(up['CommR']).hex()}: not persisted")
        return out
