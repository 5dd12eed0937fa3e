"""Rebuild tasks (Damocles' rebuild plan, manager side): a sector whose persisted files are lost
is marked for rebuild (`damocles util sectors rebuild ID`); a worker thread with
`plan = "rebuild"` takes it (AllocateRebuildSector: the ticket and the deals recorded at sealing
time; a snap-upgraded sector's sector key), seals it again (a snap-upgraded one: checks its
sector key's CommR before applying the update again), persists it (SubmitPersistedEx) and
reports as Damocles' worker does (ReportFinalized; ReportAborted with its error), after which the
rebuilt files must pass the proving check against the chain's CommR (`Venus.RebuildDone`, ours,
reports either outcome directly).

Refused without side effects: a sector that is not proven on chain, and a sector that is not
lost (its files pass the poster's pre-check)."""

from __future__ import annotations

import time

from ..core.proof_types import seal_proof
from ..rpc import INVALID_PARAMS, RPCError
from .task_owner import check_holder, holder
from .task_rehand import allowed, asking_thread
from .task_shapes import allocated_sector, public_info, sector_pieces


class Rebuilder:
    def __init__(self, state, chain, market, poster, now=time.time):
        self.state, self.chain, self.market, self.poster, self._now = state, chain, market, poster, now

    def request(self, sid: dict) -> dict:
        miner, number = sid["Miner"], sid["Number"]
        on_chain = self.chain.sector(miner, number)
        rec = self.state.sector(miner, number)
        if on_chain is None or rec is None or "ticket" not in rec:
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not a sector this manager sealed and proved on chain")
        bad = self.poster.check(miner, self.poster.targets(miner, [number]))
        if number not in bad:
            raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is not lost: its files pass the proving check")
        now = self._now()
        with self.state.tx() as db:
            if db.execute("SELECT 1 FROM rebuild_tasks WHERE miner = ? AND number = ? AND state IN ('pending', 'allocated')"
                          f"{self.state.sql.for_update}", (miner, number)).fetchone():
                raise RPCError(INVALID_PARAMS, f"sector {miner}-{number} is already being rebuilt")
            task_id = db.execute("INSERT INTO rebuild_tasks (miner, number, state, reason, created, updated) "
                                 "VALUES (?, ?, 'pending', ?, ?, ?) RETURNING id",
                                 (miner, number, bad[number], now, now)).fetchone()[0]
        return self.task(task_id)

    def task(self, task_id: int) -> dict:
        r = self.state.one("SELECT id, miner, number, state, worker, reason, error FROM rebuild_tasks WHERE id = ?",
                           (task_id,))
        if r is None:
            raise RPCError(INVALID_PARAMS, f"no rebuild task {task_id}")
        return {"ID": r[0], "Sector": {"Miner": r[1], "Number": r[2]}, "State": r[3], "Worker": r[4] or "",
                "Reason": r[5] or "", "ErrorInfo": r[6] or ""}

    def tasks(self) -> list[dict]:
        with self.state.read():      # every task from one snapshot
            return [self.task(r[0]) for r in self.state.query("SELECT id FROM rebuild_tasks ORDER BY id")]

    def allocate(self, spec: dict, caller=None) -> dict | None:
        """Damocles' AllocateRebuildSector: Go's SectorRebuildInfo {Sector, Ticket, Pieces (legacy
        deals: none here), PiecesV2, IsSnapUp, UpgradePublic (a snap-upgraded sector's CC
        replica: the sector key to reseal before the update is applied again)}, held by the
        caller's identity (and the asking thread, when our worker names it) from now on; the
        worker journals it and resumes it after a restart, so it is not handed out again, except
        to the same thread that lost it before journalling it (task_rehand)."""
        lost = asking_thread(spec, caller)
        if lost is not None:
            for task_id, miner, number in self.state.query(
                    "SELECT id, miner, number FROM rebuild_tasks WHERE state = 'allocated' AND worker = ? AND thread = ? "
                    "ORDER BY id", lost):
                rec = self.state.sector(miner, number)
                if allowed(miner, rec["proof"], spec):
                    return self._answer(miner, number, rec)
                with self.state.tx() as db:      # the thread takes no such task now: it is another's to take
                    db.execute("UPDATE rebuild_tasks SET state = 'pending', worker = NULL, thread = NULL, updated = ? "
                               "WHERE id = ? AND state = 'allocated'", (self._now(), task_id))
        rows = self.state.query("SELECT id, miner, number FROM rebuild_tasks WHERE state = 'pending' ORDER BY id")
        for task_id, miner, number in rows:
            rec = self.state.sector(miner, number)
            if not allowed(miner, rec["proof"], spec):
                continue
            with self.state.tx() as db:
                if not db.execute("UPDATE rebuild_tasks SET state = 'allocated', worker = ?, thread = ?, updated = ? "
                                  "WHERE id = ? AND state = 'pending'",
                                  (holder(caller), lost and lost[1], self._now(), task_id)).rowcount:
                    continue           # another worker's call took it meanwhile
            return self._answer(miner, number, rec)
        return None

    def _answer(self, miner: int, number: int, rec: dict) -> dict:
        deals = [d for d in self.market.deals(miner) if d["Sector"] == number]
        on_chain = self.chain.sector(miner, number)
        key = on_chain.sector_key_cid      # snap-upgraded: reseal the CC sector key, then apply the update again
        return {"Sector": allocated_sector(miner, number, rec["proof"]), "Ticket": rec["ticket"], "Pieces": None,
                "PiecesV2": sector_pieces(deals, seal_proof(rec["proof"]).size.bytes) if deals else None,
                "IsSnapUp": bool(key),
                "UpgradePublic": public_info(key, on_chain.activation, on_chain.expiration) if key else None}

    def held(self, sid: dict, caller) -> bool:
        """Whether `caller` holds a running rebuild of the sector (its reports are the rebuild's)."""
        row = self.state.one("SELECT worker FROM rebuild_tasks WHERE miner = ? AND number = ? AND state = 'allocated'",
                             (sid["Miner"], sid["Number"]))
        return row is not None and caller is not None and (not row[0] or row[0] == caller.identity)

    def finalized(self, sid: dict, caller=None) -> None:
        """ReportFinalized from the rebuild thread, after SubmitPersistedEx, as Damocles' worker
        ends a rebuild. The rebuilt files must pass the proving check against the chain's CommR
        (Damocles' worker is not told the CommR; this manager checks it here), else the task
        fails with the check's reason."""
        miner, number = sid["Miner"], sid["Number"]
        rec = self.state.sector(miner, number)
        if self.chain.sector(miner, number).sector_key_cid and rec.get("persisted"):
            self.state.update(miner, number, upgraded=rec["persisted"])    # update/ was persisted beside sealed/
        bad = self.poster.check(miner, self.poster.targets(miner, [number]))
        self.done(sid, f"the rebuilt files do not pass the proving check: {bad[number]}" if number in bad else "", caller)

    def aborted(self, sid: dict, reason: str, caller=None) -> None:
        """ReportAborted from the rebuild thread: the rebuild failed with the worker's reason."""
        self.done(sid, reason or "given up by the worker", caller)

    def done(self, sid: dict, error: str, caller=None) -> None:
        """The rebuild's outcome, from the identity the task is allocated to."""
        miner, number = sid["Miner"], sid["Number"]
        error = self.state.limits.long_text(error)      # cut at [Sealing] MaxTextLength
        with self.state.tx() as db:
            row = db.execute("SELECT id, worker FROM rebuild_tasks WHERE miner = ? AND number = ? AND state = 'allocated'"
                             f"{self.state.sql.for_update}", (miner, number)).fetchone()
            if row is None:
                raise RPCError(INVALID_PARAMS, f"no rebuild of sector {miner}-{number} is running")
            claimed = check_holder(row[1], caller, f"the rebuild of sector {miner}-{number}")
            db.execute("UPDATE rebuild_tasks SET state = ?, error = ?, worker = COALESCE(?, worker), updated = ? WHERE id = ?",
                       ("failed" if error else "done", error or None, claimed, self._now(), row[0]))
        if not error:      # persisted again (SubmitPersistedEx): the sector is what it was, Finished
            self.state.update(sid["Miner"], sid["Number"], state="Finished")
            self.state.release(sid["Miner"], sid["Number"])
