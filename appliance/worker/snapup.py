"""A sealing thread with `plan = "snapup"` (SnapDeals): takes a CC sector and deals from the
manager (AllocateSanpUpSector), copies the sector key (the CC replica and its cache) from the
persist store into its location, adds the pieces, encodes the new replica with Filecoin's
ReplicaUpdate encoding (the `snap_encode` stage), proves it (`snap_prove`), persists `update/`
and `update-cache/` into the store, submits the proof (SubmitSnapUpProof) and waits until
ProveReplicaUpdates lands. An interrupted upgrade starts again from the beginning."""

from __future__ import annotations

import base64
import logging
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
from ..rpc import RPCError
from ..rpc.client import TransportError
from .rebuild import RebuildThread
from .steps import PERSISTED_CACHE_FILES, Paths, SealerSteps, persist

log = logging.getLogger("damocles.worker")
LANDED, FAILED = 3, 5


class SnapUpThread(RebuildThread):
    """The same loop as a rebuild thread: take a task, do it, report; only the work differs."""

    def __init__(self, index: int, ctx, plan_config=None):
        super().__init__(index, ctx, plan_config)
        self.plan = "snapup"

    def summary(self) -> dict:
        out = super().summary()
        out.update(plan="snapup", upgraded=out.pop("rebuilt"))
        return out

    def run(self, stop: threading.Event) -> None:
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None, "AllowedProofTypes": None}
        name = f"{self.ctx.worker_name}-snapup-{self.index}"
        while not stop.is_set():
            if self.paused:
                self.status = "Paused"
                stop.wait(0.5)
                continue
            try:
                task = self.ctx.rpc.call("Venus.AllocateSanpUpSector", spec, name)
            except (TransportError, RPCError) as exc:
                self.status, self.last_error = "Waiting", f"temp: AllocateSanpUpSector: {exc}"
                stop.wait(s.recover_interval)
                continue
            if not task:
                self.status, self.rec = "Waiting", {"state": "Empty"}
                stop.wait(s.rpc_polling_interval)
                continue
            sid = task["Sector"]["ID"]
            self.status, self.rec = "Running", {"state": "SnapUp", "name": sector_file_names(sid["Miner"], sid["Number"])}
            try:
                self._upgrade(task, stop)
                self.done += 1
                self.last_error = None
                log.info("thread %d: upgraded %s", self.index, self.rec["name"])
            except Exception as exc:         # the candidate stays with this worker; the next turn retries
                self.last_error = f"temp: {exc}"
                log.error("thread %d: upgrading %s failed: %s", self.index, self.rec["name"], exc)
                stop.wait(s.recover_interval)
            finally:
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
