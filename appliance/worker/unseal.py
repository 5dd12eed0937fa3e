"""A sealing thread with `plan = "unseal"`: takes unseal tasks from the manager
(AllocateUnsealSector), regenerates the sector's key in its location (the `unseal` stage, in its
processor pool when configured), decodes the piece, checks its CommP against the piece CID,
writes it to the task's destination and reports the outcome (AchieveUnsealSector). A task that
fails is reported with the reason; nothing half-written is left at the destination."""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
from pathlib import Path

from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_file_names
from ..proofs.cid import commd_to_cid
from ..proofs.commitment import commp_bytes
from ..proofs.unseal import unseal_range
from ..rpc import RPCError
from ..rpc.client import HTTPStatusError, TransportError

log = logging.getLogger("damocles.worker")


class UnsealThread:
    def __init__(self, index: int, ctx, plan_config):
        self.index, self.ctx = index, ctx
        self.plan = "unseal"
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
        return {"index": self.index, "location": str(self.ctx.location), "plan": "unseal", "job_id": self.rec.get("name"),
                "job_state": self.rec.get("state"), "thread_state": {"state": self.status}, "last_error": self.last_error,
                "config_error": None, "unsealed": self.done}

    def run(self, stop: threading.Event) -> None:
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None, "AllowedProofTypes": None}
        name = f"{self.ctx.worker_name}-unseal-{self.index}"
        while not stop.is_set():
            if self.paused:
                self.status = "Paused"
                stop.wait(0.5)
                continue
            try:
                task = self.ctx.rpc.call("Venus.AllocateUnsealSector", spec, name)
            except (TransportError, RPCError) as exc:
                self.status, self.last_error = "Waiting", f"temp: AllocateUnsealSector: {exc}"
                stop.wait(s.recover_interval)
                continue
            if not task:
                self.status, self.rec = "Waiting", {"state": "Empty"}
                stop.wait(s.rpc_polling_interval)
                continue
            sid = task["Sector"]["ID"]
            cid = task["PieceCid"]["/"]
            self.status, self.rec = "Running", {"state": "Unsealing", "name": sector_file_names(sid["Miner"], sid["Number"])}
            try:
                self._unseal(task)
                error = ""
                self.done += 1
                log.info("thread %d: unsealed %s of %s to %s", self.index, cid, self.rec["name"], task["Dest"][0])
            except Exception as exc:         # reported to the manager as the task's error
                error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (OSError, ValueError)) else str(exc)
                log.error("thread %d: unsealing %s of %s failed: %s", self.index, cid, self.rec["name"], error)
            self._report(sid, cid, error, stop)

    def _report(self, sid: dict, cid: str, error: str, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ctx.rpc.call("Venus.AchieveUnsealSector", sid, cid, error)
                return
            except TransportError as exc:          # the manager must learn the outcome
                log.warning("thread %d: AchieveUnsealSector failed, retrying: %s", self.index, exc)
                stop.wait(self.ctx.sealing.recover_interval)
            except RPCError as exc:
                log.warning("thread %d: AchieveUnsealSector: %s", self.index, exc.message)
                return

    def _unseal(self, task: dict) -> None:
        sid = task["Sector"]["ID"]
        proof = seal_proof(task["Sector"]["ProofType"])
        store_name = task["PrivateInfo"]["AccessInstance"]
        store = next((a for a in self.ctx.attached if a.name == store_name), None)
        if store is None:
            raise ValueError(f"the sector is in persist store {store_name!r}, which this worker has not attached")
        name = sector_file_names(sid["Miner"], sid["Number"])
        scratch = self.ctx.location / "data" / "unseal"
        scratch.mkdir(parents=True, exist_ok=True)
        data = self.ctx.run_stage("unseal", unseal_range, proof, SectorID(sid["Miner"], sid["Number"]),
                                  base64.b64decode(task["Ticket"]["Ticket"]), bytes(task["CommD"]), store.location / "sealed" / name,
                                  task["Offset"] // 128 * 127, task["Size"] // 128 * 127, self.ctx.parent_cache, scratch)
        payload = data[: task["PayloadSize"]]
        got = commd_to_cid(commp_bytes(payload).commitment)
        if got != task["PieceCid"]["/"]:
            raise ValueError(f"the unsealed bytes have piece CID {got}, not {task['PieceCid']['/']}: the replica or its ticket is wrong")
        self._write(task["Dest"][0], task["PieceCid"]["/"], payload)

    def _write(self, dest: str, cid: str, payload: bytes) -> None:
        if dest == "piecestore":
            with tempfile.NamedTemporaryFile(dir=self.ctx.location / "data" / "unseal") as f:
                f.write(payload)
                f.flush()
                try:
                    self.ctx.rpc.upload(f"/piecestore/{cid}", f.name)
                except HTTPStatusError as exc:
                    raise ValueError(f"the piece store refused the piece: {exc}") from None
            return
        if dest.startswith("file://"):
            path = Path(dest[len("file://"):])
        else:
            store_name, _, rel = dest[len("store://"):].partition("/")
            store = next((a for a in self.ctx.attached if a.name == store_name), None)
            if store is None:
                raise ValueError(f"destination store {store_name!r} is not attached to this worker")
            path = store.location / rel
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
