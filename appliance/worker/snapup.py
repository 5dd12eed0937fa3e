"""A sealing thread with `plan = "snapup"` (SnapDeals): takes a CC sector and deals from the
manager (AllocateSanpUpSector), copies the sector key (the CC replica and its cache) from the
persist store into its location, adds the pieces, encodes the new replica with Filecoin's
ReplicaUpdate encoding (the `snap_encode` stage), proves it (`snap_prove`; either stage may be an
external processor, given Damocles' SnapEncode / SnapProve task), persists `update/`
and `update-cache/` into the store and submits the proof (SubmitSnapUpProof). As in Damocles, the
thread is done once the manager accepts the proof (Accepted, or DuplicateSubmit when it had
accepted it before a restart): ReportFinalized, and the manager follows ProveReplicaUpdates3
itself. FilesMissed persists again; a refusal or any other task error gives the sector back
(ReportAborted: a candidate again). Journalled: a restart resumes at the step that was
interrupted."""

from __future__ import annotations

import base64
import shutil

from ..core.crash import crash_point
from ..core.files import atomic_write
from ..core.proof_types import seal_proof
from ..core.protocol import SubmitResult
from ..core.sector import SectorID
from ..proofs.snap import update_proof_for_seal
from ..proofs.snap_encode import encode_files, encode_sector, sector_files
from ..proofs.snap_proof import generate_update_proof, prove_update_partitions
from . import stage_snap_post
from .plan import Event, Plan
from .persist import PERSISTED_CACHE_FILES, persist
from .stage_data import add_pieces_stage
from .steps import Paths, SealerSteps, call, deal_pieces
from .task_thread import TaskSteps, TaskThread, task_deals

SNAPUP = Plan("snapup", ("Empty", "Allocated", "PieceAdded", "Encoded", "Proved", "Persisted", "Submitted",
                         "Finished", "Aborted"), {
    ("Persisted", "RePersist"): "Proved",        # the manager did not find the files: persist again
    ("Empty", "Allocate"): "Allocated",
    ("Allocated", "AddPiece"): "PieceAdded",
    ("PieceAdded", "Encode"): "Encoded",
    ("Encoded", "Prove"): "Proved",
    ("Proved", "Persist"): "Persisted",
    ("Persisted", "Submit"): "Finished",
    ("Submitted", "CheckLanded"): "Finished",      # a journal of an older worker that still waited for the message
})


class SnapUpSteps(TaskSteps):
    allocate_method = "Venus.AllocateSanpUpSector"    # Damocles' spelling

    def allocate_spec(self, spec: dict) -> dict:
        s = self.ctx.sealing          # Damocles' AllocateSnapUpSpec, its Deals from the thread's sealing config
        return {"Sector": spec, "Deals": {"MaxDeals": s.max_deals, "MinUsedSpace": s.min_deal_space}}

    def _root(self):
        return self.ctx.location / "data" / "snap"

    def _store(self, rec):
        name = rec.task["Private"]["AccessInstance"]
        store = next((a for a in self.ctx.attached if a.name == name), None)
        if store is None:
            raise ValueError(f"the sector is in persist store {name!r}, not attached here")
        return store

    def _local(self, rec):
        return sector_files(self._root(), SectorID(rec.miner, rec.number))

    def allocated(self, task: dict) -> dict:
        shutil.rmtree(self._root(), ignore_errors=True)      # nothing of an earlier attempt is reused
        if not task["Pieces"] or not task["Private"]["AccessInstance"]:
            raise ValueError("the manager allocated an upgrade without deals or without the store of its sector key")
        return {"deals": task_deals(task["Pieces"])}

    def on_Allocated(self, rec):
        """The sector key copied from the store (read locally from then on) and the pieces added."""
        store, local, name = self._store(rec), self._local(rec), rec.name
        local.cache.mkdir(parents=True, exist_ok=True)
        local.sealed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.location / "sealed" / name, local.sealed)
        for f in [*sorted((store.location / "cache" / name).glob("sc-02-data-tree-r-last*.dat")),
                  *[store.location / "cache" / name / x for x in PERSISTED_CACHE_FILES]]:
            shutil.copyfile(f, local.cache / f.name)
        p = Paths(self.ctx.location, name)
        p.make()
        files = [SealerSteps(self.ctx)._piece_file(p, d) for d in rec.deals]
        add_pieces_stage(self.ctx, seal_proof(rec.proof), files, rec.deals, p.staged)
        return "AddPiece"

    def on_PieceAdded(self, rec):
        upd = update_proof_for_seal(seal_proof(rec.proof))
        pieces = deal_pieces(rec.deals)
        sector, staged = SectorID(rec.miner, rec.number), Paths(self.ctx.location, rec.name).staged
        if self.ctx.external("snap_encode"):      # Damocles' SnapEncode task to the external processor
            enc = encode_files(upd, self._local(rec), staged, pieces, self.ctx.pc2_procs,
                               stage_snap_post.external_encoder(self.ctx.run_task))
        else:
            enc = self.ctx.run_stage("snap_encode", encode_sector, upd, self._root(), sector, staged, pieces,
                                     self.ctx.pc2_procs)
        if enc.comm_r_old != bytes(rec.task["Public"]["CommR"]):
            raise ValueError("the sector key in the store does not have the sector's CommR on chain")
        return Event("Encode", {"comm_r_old": enc.comm_r_old.hex(), "comm_r_new": enc.comm_r_new.hex(),
                                "comm_d_new": enc.comm_d_new.hex()})

    def on_Encoded(self, rec):
        local, upd = self._local(rec), update_proof_for_seal(seal_proof(rec.proof))
        comms = bytes.fromhex(rec.comm_r_old), bytes.fromhex(rec.comm_r_new), bytes.fromhex(rec.comm_d_new)
        # the vanilla partition proofs: in the snap_prove pool, or (an external processor makes the
        # proof from them, as in Damocles) in this thread
        vanilla = self.ctx.run_stage("snap_prove", prove_update_partitions, upd, *comms, local.sealed, local.cache,
                                     local.update, local.update_cache)
        if self.ctx.external("snap_prove"):
            proof = stage_snap_post.read_snap_prove_output(
                self.ctx.run_task("snap_prove", stage_snap_post.snap_prove_task(vanilla)), upd, *comms)
        else:
            proof = generate_update_proof(vanilla)
        atomic_write(self._root() / "update-proof", proof)
        crash_point("worker.snapup.proved")
        return "Prove"

    def on_Proved(self, rec):
        local = self._local(rec)
        persist(Paths(self.ctx.location, rec.name), self._store(rec).location, rec.name, local.update,
                local.update_cache, ("update", "update-cache"), ctx=self.ctx)
        return "Persist"

    def on_Persisted(self, rec):
        proof = (self._root() / "update-proof").read_bytes()
        res = call(self.ctx.rpc, "Venus.SubmitSnapUpProof", rec.task["Sector"]["ID"],
                   {"CommR": list(bytes.fromhex(rec.comm_r_new)), "CommD": list(bytes.fromhex(rec.comm_d_new)),
                    "AccessInstance": self._store(rec).name, "Pieces": [{"/": d["piece_cid"]} for d in rec.deals],
                    "Proof": base64.b64encode(proof).decode()})
        if res["Res"] == SubmitResult.FILES_MISSED:
            return "RePersist"
        if res["Res"] not in (SubmitResult.ACCEPTED, SubmitResult.DUPLICATE_SUBMIT):
            raise ValueError(f"the manager refused the update ({SubmitResult(res['Res']).name}): {res.get('Desc')}")
        crash_point("worker.snapup.submitted")
        return "Submit"

    def on_Submitted(self, rec):
        return "CheckLanded"        # accepted by the manager, which follows the message itself


class SnapUpThread(TaskThread):
    plan, table, steps_class = "snapup", SNAPUP, SnapUpSteps

    def _remove_files(self) -> None:
        shutil.rmtree(self.ctx.location / "data" / "snap", ignore_errors=True)
        Paths(self.ctx.location, self.rec.name).remove()
