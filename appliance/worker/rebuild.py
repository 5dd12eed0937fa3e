"""A sealing thread with `plan = "rebuild"`: takes a lost sector from the manager
(AllocateRebuildSector), seals it again in its location from the recorded ticket and deals
(pieces fetched as for sealing), refuses to persist unless the CommR is the one on chain,
persists it into a reserved store (SubmitPersistedEx) and reports (RebuildDone). Journalled with
the sealer's states and steps from DealsAcquired to PC2Done: a restart resumes at the step that
was interrupted (a finished PC1 is never labelled again)."""

from __future__ import annotations

from ..core.crash import crash_point
from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_name
from ..proofs.addpiece import add_pieces
from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo
from .plan import Event, Plan
from .persist import persist
from .steps import Paths, SealerSteps, call
from .task_thread import TaskSteps, TaskThread

REBUILD = Plan("rebuild", ("Empty", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done", "PC2Done",
                           "Persisted", "Finished", "Aborted"), {
    ("Empty", "Allocate"): "DealsAcquired",
    ("DealsAcquired", "AddPiece"): "PieceAdded",
    ("PieceAdded", "BuildTreeD"): "TreeDBuilt",
    ("TreeDBuilt", "AssignTicket"): "TicketAssigned",
    ("TicketAssigned", "PC1"): "PC1Done",
    ("PC1Done", "PC2"): "PC2Done",
    ("PC2Done", "Persist"): "Persisted",
    ("Persisted", "SubmitPersistance"): "Finished",      # Finished: RebuildDone is sent, then the journal clears
})


class RebuildSteps(TaskSteps, SealerSteps):
    """The sealer's steps where a rebuild does the same; the ticket and deals come from the task."""
    allocate_method = "Venus.AllocateRebuildSector"

    def allocated(self, task: dict) -> dict:
        sid = task["Sector"]["ID"]
        Paths(self.ctx.location, sector_name(sid["Miner"], sid["Number"])).remove()     # nothing of an earlier attempt is reused
        return {"ticket": task["Ticket"],
                "deals": [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]}
                          for d in task["Pieces"] or []]}

    def on_TreeDBuilt(self, rec):
        return "AssignTicket"            # the ticket is the recorded one

    def on_PC2Done(self, rec):
        task = rec.task
        if bytes.fromhex(rec.comm_r) != bytes(task["CommR"]):
            raise ValueError(f"the rebuilt CommR {rec.comm_r} is not the chain's {bytes(task['CommR']).hex()}: "
                             "not persisted (wrong ticket or pieces?)")
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        update = self._reapply_update(task, p, SectorID(rec.miner, rec.number), proof) if task.get("IsSnapUp") else None
        store = call(self.ctx.rpc, "Venus.StoreReserveSpace", self.sid(rec), 4 * proof.size.bytes,
                     [s.name for s in self.ctx.attached])
        local = next((s for s in self.ctx.attached if store and s.name == store["Name"]), None)
        if local is None:
            raise ValueError("no attached persist store has room for the rebuilt sector")
        persist(p, local.location, rec.name)
        if update is not None:
            persist(p, local.location, rec.name, update.update, update.update_cache, ("update", "update-cache"))
        crash_point("worker.rebuild.persisted")
        return Event("Persist", {"persist_store": local.name})

    def on_Persisted(self, rec):
        if not call(self.ctx.rpc, "Venus.SubmitPersistedEx", self.sid(rec), rec.persist_store, False):
            raise ValueError(f"the manager does not find the persisted files in {rec.persist_store}")
        return "SubmitPersistance"

    def _reapply_update(self, task: dict, p: Paths, sector: SectorID, proof):
        """A snap-upgraded sector: encode its deals into the resealed sector key again; the new
        CommR must be the chain's."""
        from ..proofs.snap import update_proof_for_seal
        from ..proofs.snap_encode import SectorFiles, encode_files
        up = task["UpgradePublic"]
        deals = [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]} for d in up["Pieces"]]
        staged = p.data / "update-staged" / p.name
        staged.parent.mkdir(parents=True, exist_ok=True)
        files = [self._piece_file(p, d) for d in deals]
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


class RebuildThread(TaskThread):
    plan, table, steps_class = "rebuild", REBUILD, RebuildSteps
    report_method = "Venus.RebuildDone"
