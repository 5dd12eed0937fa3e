"""A sealing thread with `plan = "rebuild"`: takes a lost sector from the manager
(AllocateRebuildSector), seals it again in its location from the recorded ticket and deals
(pieces fetched as for sealing), refuses to persist unless the CommR is the one on chain,
persists it into a reserved store (SubmitPersistedEx) and reports (RebuildDone). A rebuild that
is interrupted starts again from the beginning: every step is a pure function of the task."""

from __future__ import annotations

import base64
import threading

from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_file_names
from ..proofs.addpiece import add_pieces, build_tree_d
from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo
from ..proofs.pc1 import generate_labels, replica_id
from ..proofs.pc2 import seal_pre_commit_phase2
from .persist import persist
from .steps import Paths, SealerSteps
from .task_thread import TaskThread



class RebuildThread(TaskThread):
    plan, working_state = "rebuild", "Rebuilding"
    allocate_method, report_method = "Venus.AllocateRebuildSector", "Venus.RebuildDone"

    def work(self, task: dict, stop: threading.Event) -> None:
        self._rebuild(task)

    def cleanup(self) -> None:
        Paths(self.ctx.location, self.rec["name"]).remove()

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
