"""A sealing thread with `plan = "rebuild"`: takes a lost sector from the manager
(AllocateRebuildSector, Damocles' SectorRebuildInfo), seals it again in its location from the
recorded ticket and deals (pieces fetched as for sealing; a snap-upgraded sector: its sector key
first, checked against UpgradePublic.CommR, then its deals encoded again), persists it into a
reserved store (SubmitPersistedEx) and reports as Damocles' worker does: ReportFinalized (the
manager then checks the files against the chain's CommR), or ReportAborted with the reason. Journalled with
the sealer's states and steps from DealsAcquired to PC2Done: a restart resumes at the step that
was interrupted (a finished PC1 is never labelled again)."""

from __future__ import annotations

from ..core.crash import crash_point
from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_name
from .plan import Event, Plan
from .persist import persist
from .stage_data import add_pieces_stage
from .steps import Paths, SealerSteps, call, deal_pieces
from .task_thread import TaskSteps, TaskThread, task_deals

REBUILD = Plan("rebuild", ("Empty", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done", "PC2Done",
                           "Persisted", "Finished", "Aborted"), {
    ("Empty", "Allocate"): "DealsAcquired",
    ("DealsAcquired", "AddPiece"): "PieceAdded",
    ("PieceAdded", "BuildTreeD"): "TreeDBuilt",
    ("TreeDBuilt", "AssignTicket"): "TicketAssigned",
    ("TicketAssigned", "PC1"): "PC1Done",
    ("PC1Done", "PC2"): "PC2Done",
    ("PC2Done", "Persist"): "Persisted",
    ("Persisted", "SubmitPersistance"): "Finished",      # Finished: ReportFinalized is sent, then the journal clears
})


class RebuildSteps(TaskSteps, SealerSteps):
    """The sealer's steps where a rebuild does the same; the ticket and deals come from the task."""
    allocate_method = "Venus.AllocateRebuildSector"

    def allocated(self, task: dict) -> dict:
        sid = task["Sector"]["ID"]
        Paths(self.ctx.location, sector_name(sid["Miner"], sid["Number"])).remove()     # nothing of an earlier attempt is reused
        if task["Pieces"]:
            raise ValueError("the manager sent legacy deals (SectorRebuildInfo.Pieces): this worker reads PiecesV2 only")
        # a snap-upgraded sector's sector key is a CC sector: its deals are the update's (_reapply_update)
        return {"ticket": task["Ticket"], "deals": [] if task["IsSnapUp"] else task_deals(task["PiecesV2"])}

    def on_TreeDBuilt(self, rec):
        return "AssignTicket"            # the ticket is the recorded one

    def on_PC2Done(self, rec):
        task = rec.task
        expected = _resealed_comm_r(task)
        if expected is not None and bytes.fromhex(rec.comm_r) != expected:
            raise ValueError(f"the resealed CommR {rec.comm_r} is not the chain's {expected.hex()}: "
                             "not persisted (wrong ticket or pieces?)")
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        update = self._reapply_update(task, p, SectorID(rec.miner, rec.number), proof) if task.get("IsSnapUp") else None
        store = call(self.ctx.rpc, "Venus.StoreReserveSpace", self.sid(rec), 4 * proof.size.bytes,
                     [s.name for s in self.ctx.attached])
        local = next((s for s in self.ctx.attached if store and s.name == store["Name"]), None)
        if local is None:
            raise ValueError("no attached persist store has room for the rebuilt sector")
        persist(p, local.location, rec.name, ctx=self.ctx)
        if update is not None:
            persist(p, local.location, rec.name, update.update, update.update_cache, ("update", "update-cache"), ctx=self.ctx)
        crash_point("worker.rebuild.persisted")
        return Event("Persist", {"persist_store": local.name})

    def on_Persisted(self, rec):
        if not call(self.ctx.rpc, "Venus.SubmitPersistedEx", self.sid(rec), rec.persist_store, False):
            raise ValueError(f"the manager does not find the persisted files in {rec.persist_store}")
        return "SubmitPersistance"

    def _reapply_update(self, task: dict, p: Paths, sector: SectorID, proof):
        """A snap-upgraded sector: encode its deals into the resealed sector key again (the
        manager checks the new replica against the chain's CommR at ReportFinalized)."""
        from ..proofs.snap import update_proof_for_seal
        from ..proofs.snap_encode import SectorFiles, encode_files
        deals = _update_deals(task)
        staged = p.data / "update-staged" / p.name
        staged.parent.mkdir(parents=True, exist_ok=True)
        files = [self._piece_file(p, d) for d in deals]
        add_pieces_stage(self.ctx, proof, files, deals, staged)
        pieces = deal_pieces(deals)
        out = SectorFiles(p.sealed, p.cache, p.data / "update" / p.name, p.data / "update-cache" / p.name)
        try:
            if self.ctx.external("snap_encode"):      # Damocles' SnapEncode task to the external processor
                from .stage_snap_post import external_encoder
                encode_files(update_proof_for_seal(proof), out, staged, pieces, self.ctx.pc2_procs,
                             external_encoder(self.ctx.run_task))
            else:
                self.ctx.run_stage("snap_encode", encode_files, update_proof_for_seal(proof), out, staged, pieces,
                                   self.ctx.pc2_procs)
        finally:
            staged.unlink(missing_ok=True)
        return out


def _resealed_comm_r(task: dict) -> bytes | None:
    """The CommR the resealed replica must have, where the task names it: a snap-upgraded
    sector's sector key (UpgradePublic.CommR); a task journalled by an older worker carried it
    as `CommR`."""
    if "PiecesV2" not in task:
        return bytes(task["CommR"])
    return bytes(task["UpgradePublic"]["CommR"]) if task["IsSnapUp"] else None


def _update_deals(task: dict) -> list[dict]:
    """The deals of a snap-upgraded sector's update (an older worker's journal: UpgradePublic.Pieces)."""
    if "PiecesV2" not in task:
        return [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]}
                for d in task["UpgradePublic"]["Pieces"]]
    return task_deals(task["PiecesV2"])


class RebuildThread(TaskThread):
    plan, table, steps_class = "rebuild", REBUILD, RebuildSteps
