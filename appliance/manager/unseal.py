"""Unseal tasks (Damocles' unseal plan, manager side): an operator asks for a piece of a sealed
sector to be unsealed to a destination (`damocles util sectors unseal`); a worker thread with
`plan = "unseal"` takes the task (AllocateUnsealSector), regenerates the key, decodes the piece,
checks its CommP, writes it to the destination and reports (AchieveUnsealSector).

Destinations: `file:///abs/path` (on the worker's machine), `store://<store name>/<relative
path>` (a persist store the worker has attached), or `piecestore` (back into the manager's piece
store). The manager refuses a request it can see is wrong (unknown sector or piece, a store it
does not know or that is read-only, a relative file path); what only the worker can see (a path
it cannot write) fails the task with the worker's error, and nothing is left behind."""

from __future__ import annotations

import time

from ..proofs.cid import cid_to_commitment
from ..proofs.commitment import PieceInfo, piece_offsets
from ..rpc import INVALID_PARAMS, RPCError
from .task_owner import check_holder, holder
from .task_rehand import allowed, asking_thread
from .task_shapes import allocated_sector


class Unsealer:
    def __init__(self, config, state, chain, market, sealer, now=time.time):
        self.config, self.state, self.chain, self.market, self.sealer, self._now = config, state, chain, market, sealer, now

    def _dest(self, dest: str) -> str:
        if dest == "piecestore":
            return dest
        if dest.startswith("file://"):
            if not dest[len("file://"):].startswith("/"):
                raise RPCError(INVALID_PARAMS, f"dest: {dest!r} must be an absolute path, file:///dir/name")
            return dest
        if dest.startswith("store://"):
            name, _, rel = dest[len("store://"):].partition("/")
            store = next((s for s in self.config.persist_stores if s.name == name), None)
            if store is None:
                raise RPCError(INVALID_PARAMS, f"dest: no persist store named {name!r}")
            if store.read_only:
                raise RPCError(INVALID_PARAMS, f"dest: persist store {name!r} is read-only")
            if not rel or rel.startswith("/") or ".." in rel.split("/"):
                raise RPCError(INVALID_PARAMS, f"dest: {dest!r} needs a relative path inside the store, store://{name}/dir/file")
            return dest
        raise RPCError(INVALID_PARAMS, f"dest: {dest!r} is not file:///path, store://name/path or piecestore")

    def request(self, sid: dict, piece_cid: str, dest: str) -> dict:
        """Queue an unseal of `piece_cid` from sector `sid` to `dest`."""
        miner, number = sid["Miner"], sid["Number"]
        if self.chain.sector(miner, number) is None:
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not a proven sector on chain")
        if piece_cid not in [d["PieceCID"] for d in self.market.deals(miner) if d["Sector"] == number]:
            raise RPCError(INVALID_PARAMS, f"piece {piece_cid} is not in sector {miner}-{number}")
        dest = self._dest(dest)
        now = self._now()
        with self.state.tx() as db:
            task_id = db.execute("INSERT INTO unseal_tasks (miner, number, piece_cid, dest, state, created, updated) "
                                 "VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
                                 (miner, number, piece_cid, dest, now, now)).fetchone()[0]
        return self.task(task_id)

    def task(self, task_id: int) -> dict:
        r = self.state.one("SELECT id, miner, number, piece_cid, dest, state, worker, error FROM unseal_tasks WHERE id = ?",
                           (task_id,))
        if r is None:
            raise RPCError(INVALID_PARAMS, f"no unseal task {task_id}")
        return {"ID": r[0], "Sector": {"Miner": r[1], "Number": r[2]}, "PieceCid": r[3], "Dest": r[4], "State": r[5],
                "Worker": r[6], "ErrorInfo": r[7] or ""}

    def tasks(self) -> list[dict]:
        with self.state.read():      # every task from one snapshot
            return [self.task(r[0]) for r in self.state.query("SELECT id FROM unseal_tasks ORDER BY id")]

    def allocate(self, spec: dict, caller=None) -> dict | None:
        """Damocles' AllocateUnsealSector: the oldest pending task, in SectorUnsealInfo's shape,
        held by the caller's identity (and the asking thread, when our worker names it) from now
        on. A task once allocated is not handed out again (the worker journals it and resumes it
        after a restart), except to the same thread that lost it before journalling it (task_rehand)."""
        lost = asking_thread(spec, caller)
        if lost is not None:
            for task_id, miner, number, cid, dest in self.state.query(
                    "SELECT id, miner, number, piece_cid, dest FROM unseal_tasks WHERE state = 'allocated' AND worker = ? "
                    "AND thread = ? ORDER BY id", lost):
                rec = self.state.sector(miner, number) or {}
                if allowed(miner, rec.get("proof"), spec):
                    return self._answer(miner, number, cid, dest, rec)
                with self.state.tx() as db:      # the thread takes no such task now: it is another's to take
                    db.execute("UPDATE unseal_tasks SET state = 'pending', worker = NULL, thread = NULL, updated = ? "
                               "WHERE id = ? AND state = 'allocated'", (self._now(), task_id))
        rows = self.state.query("SELECT id, miner, number, piece_cid, dest FROM unseal_tasks WHERE state = 'pending' ORDER BY id")
        for task_id, miner, number, cid, dest in rows:
            rec = self.state.sector(miner, number) or {}
            if not allowed(miner, rec.get("proof"), spec):
                continue
            answer = self._answer(miner, number, cid, dest, rec)      # before it is taken: a task is never taken unanswered
            with self.state.tx() as db:
                taken = db.execute("UPDATE unseal_tasks SET state = 'allocated', worker = ?, thread = ?, updated = ? "
                                   "WHERE id = ? AND state = 'pending'",
                                   (holder(caller), lost and lost[1], self._now(), task_id)).rowcount
            if not taken:          # another worker's call took it meanwhile
                continue
            return answer
        return None

    def _answer(self, miner: int, number: int, cid: str, dest: str, rec: dict) -> dict:
        """Go's SectorUnsealInfo of a task; Offset and Size are unpadded bytes: Size is the
        piece's payload, what is written."""
        deals = [d for d in self.market.deals(miner) if d["Sector"] == number]
        offsets = piece_offsets([PieceInfo(d["PieceSize"], cid_to_commitment(d["PieceCID"])[1]) for d in deals],
                                self.chain.miner_info(miner).sector_size)
        deal, offset = next((d, o) for d, o in zip(deals, offsets) if d["PieceCID"] == cid)
        where = self.sealer.sector_indexer_find("normal", {"Miner": miner, "Number": number})
        return {"Sector": allocated_sector(miner, number, rec.get("proof")), "PieceCid": {"/": cid},
                "Offset": offset // 128 * 127, "Size": deal["PayloadSize"],
                "PrivateInfo": {"AccessInstance": where["Instance"]["Name"] if where["Found"] else ""},
                "Ticket": rec.get("ticket"), "CommD": list(bytes.fromhex(rec["pre"]["CommD"])) if rec.get("pre") else None,
                "Dest": [dest], "State": "unsealing", "ErrorInfo": ""}

    def achieve(self, sid: dict, piece_cid: str, error: str, caller=None) -> None:
        """Damocles' AchieveUnsealSector: the worker's outcome (an empty error is success), from
        the identity the task is allocated to."""
        miner, number = sid["Miner"], sid["Number"]
        error = self.state.limits.long_text(error)      # cut at [Sealing] MaxTextLength
        with self.state.tx() as db:
            rows = db.execute("SELECT id, worker FROM unseal_tasks WHERE miner = ? AND number = ? AND piece_cid = ? "
                              f"AND state = 'allocated' ORDER BY id{self.state.sql.for_update}",
                              (miner, number, piece_cid)).fetchall()
            if not rows:
                raise RPCError(INVALID_PARAMS, f"no unseal task of {piece_cid} from sector {miner}-{number} is running")
            # the same piece may be asked for twice and taken by two workers: the caller's own first
            task_id, held_by = next((r for r in rows if caller is not None and r[1] == caller.identity), rows[0])
            claimed = check_holder(held_by, caller, f"the unseal of {piece_cid} from sector {miner}-{number}")
            db.execute("UPDATE unseal_tasks SET state = ?, error = ?, worker = COALESCE(?, worker), updated = ? WHERE id = ?",
                       ("failed" if error else "done", error or None, claimed, self._now(), task_id))

    def _held(self, sid: dict, piece_cid: str | None, caller, states=("allocated",)) -> tuple | None:
        """(id, dest) of the caller's newest unseal task of the sector (and piece) in `states`."""
        marks = ",".join("?" * len(states))
        for task_id, cid, dest, held_by in self.state.query(
                f"SELECT id, piece_cid, dest, worker FROM unseal_tasks WHERE miner = ? AND number = ? AND state IN ({marks}) "
                "ORDER BY id DESC", (sid["Miner"], sid["Number"], *states)):
            if (piece_cid is None or cid == piece_cid) and caller is not None and (not held_by or held_by == caller.identity):
                return task_id, cid, dest
        return None

    def acquire_dest(self, sid: dict, piece_cid: str, caller=None) -> list[str]:
        """Damocles' AcquireUnsealDest: where the worker writes the piece it unsealed."""
        held = self._held(sid, piece_cid, caller)
        if held is None:
            raise RPCError(INVALID_PARAMS, f"no unseal task of {piece_cid} from sector {sid['Miner']}-{sid['Number']} "
                                           "is running for this worker")
        return [held[2]]

    # ReportFinalized / ReportAborted from the unseal thread, as Damocles' worker sends them (see api.register_unseal)

    def held(self, sid: dict, caller) -> bool:
        return self._held(sid, None, caller, ("allocated", "done", "failed")) is not None

    def finalized(self, sid: dict, caller=None) -> None:
        """After AchieveUnsealSector the task is done: nothing more to record."""

    def aborted(self, sid: dict, reason: str, caller=None) -> None:
        """The thread gave its task up: the caller's running unseal of the sector fails with the reason."""
        held = self._held(sid, None, caller)
        if held is not None:
            self.achieve(sid, held[1], reason or "given up by the worker", caller)
