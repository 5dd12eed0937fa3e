"""A sealing thread with `plan = "unseal"`: takes unseal tasks from the manager
(AllocateUnsealSector, Damocles' SectorUnsealInfo: Offset and Size in unpadded bytes, Size the
bytes that hold the piece's payload), regenerates the sector's key in its location (the `unseal`
stage: in its processor pool, or Damocles' Unseal task to an external `bin`), decodes the
piece, checks its CommP against the piece CID, asks where to write it (AcquireUnsealDest, as
Damocles' worker does), writes it there (the piece store, an attached store, or a file inside a
`[worker] unseal_output_dirs` directory, never replacing a file: see unseal_dest) and reports the
outcome (AchieveUnsealSector). A task that fails is reported with the reason; nothing
half-written is left at the destination. Journalled: a piece written before a crash is reported
at the next start, not unsealed again."""

from __future__ import annotations

import base64
import tempfile

from ..core.crash import crash_point
from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_name
from ..proofs.cid import commd_to_cid
from ..proofs.commitment import commp_bytes
from ..proofs.unseal import unseal_range
from ..rpc.client import HTTPStatusError
from .plan import Plan
from .stage_data import unseal_stage
from .steps import call
from .task_thread import TaskSteps, TaskThread
from .unseal_dest import resolve_destination, write_new_file

UNSEAL = Plan("unseal", ("Empty", "Unsealing", "Finished", "Aborted"), {
    ("Empty", "Allocate"): "Unsealing",
    ("Unsealing", "Unseal"): "Finished",        # Finished: AchieveUnsealSector is sent, then the journal clears
})


class UnsealSteps(TaskSteps):
    allocate_method = "Venus.AllocateUnsealSector"

    def on_Unsealing(self, rec):
        task = rec.task
        sid = task["Sector"]["ID"]
        proof = seal_proof(task["Sector"]["ProofType"])
        store_name = task["PrivateInfo"]["AccessInstance"]
        store = next((a for a in self.ctx.attached if a.name == store_name), None)
        if store is None:
            raise ValueError(f"the sector is in persist store {store_name!r}, which this worker has not attached")
        name = sector_name(sid["Miner"], sid["Number"])
        scratch = self.ctx.location / "data" / "unseal"
        scratch.mkdir(parents=True, exist_ok=True)
        offset, size = _unpadded_range(task)
        if offset % 127 or size <= 0:
            raise ValueError(f"unseal range {offset}+{size} does not start on a 127-byte quad or is empty")
        sector, ticket = SectorID(sid["Miner"], sid["Number"]), base64.b64decode(task["Ticket"]["Ticket"])
        if self.ctx.external("unseal"):      # Damocles' Unseal task: exactly `size` bytes come back
            payload = unseal_stage(self.ctx, proof, sector, ticket, bytes(task["CommD"]), store.location, name, offset, size,
                                   scratch)
        else:
            whole = -(-size // 127) * 127          # whole quads; the piece's payload is the first `size` bytes
            payload = self.ctx.run_stage("unseal", unseal_range, proof, sector, ticket, bytes(task["CommD"]),
                                         store.location / "sealed" / name, offset, whole, self.ctx.parent_cache, scratch)[:size]
        got = commd_to_cid(commp_bytes(payload).commitment)
        if got != task["PieceCid"]["/"]:
            raise ValueError(f"the unsealed bytes have piece CID {got}, not {task['PieceCid']['/']}: the replica or its ticket is wrong")
        dests = call(self.ctx.rpc, "Venus.AcquireUnsealDest", sid, task["PieceCid"])
        if not dests:
            raise ValueError("the manager gave no destination for the piece")
        for dest in dests:
            self._write(dest, task["PieceCid"]["/"], payload)
        crash_point("worker.unseal.written")
        return "Unseal"

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
        path, root = resolve_destination(dest, self.ctx.unseal_output_dirs, self.ctx.attached)
        try:
            write_new_file(path, root, payload, make_dirs=dest.startswith("store://"))   # an operator's directories are not made
        except OSError as exc:
            raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None


def _unpadded_range(task: dict) -> tuple[int, int]:
    """(offset, size) in unpadded bytes. A task journalled by an older worker had a padded
    Offset and Size and the payload's length as PayloadSize."""
    if "PayloadSize" in task:
        return task["Offset"] // 128 * 127, task["PayloadSize"]
    return task["Offset"], task["Size"]


class UnsealThread(TaskThread):
    plan, table, steps_class = "unseal", UNSEAL, UnsealSteps

    def done_call(self, task: dict) -> tuple[str, list]:
        return "Venus.AchieveUnsealSector", [task["Sector"]["ID"], task["PieceCid"], ""]   # the CID as {"/": ...}

    def aborted_call(self, task: dict, reason: str) -> tuple[str, list]:
        return "Venus.AchieveUnsealSector", [task["Sector"]["ID"], task["PieceCid"], reason]

    def _remove_files(self) -> None:
        """Nothing of an unseal stays in the location (the scratch is the stage's own)."""
