"""A sealing thread with `plan = "snapup"` (SnapDeals): takes a CC sector and deals from the
manager (AllocateSanpUpSector), copies the sector key (the CC replica and its cache) from the
persist store into its location, adds the pieces, encodes the new replica with Filecoin's
ReplicaUpdate encoding (the `snap_encode` stage), proves it (`snap_prove`), persists `update/`
and `update-cache/` into the store, submits the proof (SubmitSnapUpProof) and waits until
ProveReplicaUpdates lands. An interrupted upgrade starts again from the beginning."""

from __future__ import annotations

import base64
import shutil
import threading

from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_file_names
from ..proofs.addpiece import add_pieces
from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo
from ..proofs.snap import update_proof_for_seal
from ..proofs.snap_encode import encode_sector, sector_files
from ..proofs.snap_proof import generate_update_proof, prove_update_partitions
from .persist import PERSISTED_CACHE_FILES, persist
from .steps import Paths, SealerSteps
from .task_thread import TaskThread

LANDED, FAILED = 3, 5


class SnapUpThread(TaskThread):
    plan, working_state = "snapup", "SnapUp"
    allocate_method = "Venus.AllocateSanpUpSector"    # Damocles' spelling; the work reports through SubmitSnapUpProof

    def work(self, task: dict, stop: threading.Event) -> None:
        self._upgrade(task, stop)

    def cleanup(self) -> None:
        shutil.rmtree(self._root(), ignore_errors=True)
        Paths(self.ctx.location, self.rec["name"]).remove()

    def _root(self):
        return self.ctx.location / "data" / "snap"

    def _upgrade(self, task: dict, stop: threading.Event) -> None:
        sid = task["Sector"]["ID"]
        sector = SectorID(sid["Miner"], sid["Number"])
        sp = seal_proof(task["Sector"]["ProofType"])
        upd = update_proof_for_seal(sp)
        name = sector_file_names(sid["Miner"], sid["Number"])
        store = next((a for a in self.ctx.attached if a.name == task["Private"]["AccessInstance"]), None)
        if store is None:
            raise ValueError(f"the sector is in persist store {task['Private']['AccessInstance']!r}, not attached here")
        root = self._root()
        shutil.rmtree(root, ignore_errors=True)
        local = sector_files(root, sector)
        local.cache.mkdir(parents=True)
        local.sealed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.location / "sealed" / name, local.sealed)       # the sector key, read locally
        for f in [*sorted((store.location / "cache" / name).glob("sc-02-data-tree-r-last*.dat")),
                  *[store.location / "cache" / name / x for x in PERSISTED_CACHE_FILES]]:
            shutil.copyfile(f, local.cache / f.name)
        p = Paths(self.ctx.location, name)
        p.make()
        deals = [{"id": d["ID"], "piece_cid": d["PieceCID"]["/"], "piece_size": d["PieceSize"]} for d in task["Pieces"]]
        files = [SealerSteps(self.ctx)._piece_file(p, d) for d in deals]
        self.ctx.run_stage("add_pieces", add_pieces, sp.size, files, p.staged)
        pieces = [PieceInfo(d["piece_size"], cid_to_commitment(d["piece_cid"])[1]) for d in deals]
        enc = self.ctx.run_stage("snap_encode", encode_sector, upd, root, sector, p.staged, pieces, self.ctx.pc2_procs)
        if enc.comm_r_old != bytes(task["Public"]["CommR"]):
            raise ValueError("the sector key in the store does not have the sector's CommR on chain")
        vanilla = self.ctx.run_stage("snap_prove", prove_update_partitions, upd, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new,
                                     local.sealed, local.cache, local.update, local.update_cache)
        proof = generate_update_proof(vanilla)
        persist(p, store.location, name, local.update, local.update_cache, ("update", "update-cache"))
        res = self.ctx.rpc.call("Venus.SubmitSnapUpProof", sid, {"CommR": list(enc.comm_r_new),
                                                                 "Proof": base64.b64encode(proof).decode(),
                                                                 "AccessInstance": store.name})
        if res["Res"] != 1:
            raise ValueError(f"the manager refused the update: {res['Desc']}")
        while not stop.is_set():
            state = self.ctx.rpc.call("Venus.SnapUpState", sid)
            if state["State"] == LANDED:
                return
            if state["State"] == FAILED:
                raise ValueError(f"ProveReplicaUpdates failed: {state['Desc']}")
            stop.wait(self.ctx.sealing.rpc_polling_interval)
