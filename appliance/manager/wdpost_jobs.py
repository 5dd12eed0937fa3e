"""WindowPoSt jobs for dedicated provers: Damocles' WorkerWdPoStAPI (WdPoStAllocateJobs,
WdPoStHeartbeatJobs, WdPoStFinishJob, WdPoStResetJob, WdPoStRemoveJob, WdPoStAllJobs) over the
manager's database. A job is one deadline's partitions of one miner; the poster creates it, a
prover takes it, heartbeats while proving and finishes it with the proof or an error.
Housekeeping gives a job whose prover went silent (HeartbeatTimeout) or failed to another
prover until JobMaxTry, after which it stays visible as failed; jobs older than JobLifetime
are removed. The job ID is derived from its input, so creating the same job twice is one job.

Shapes are Damocles' (damocles-manager core/types_wdpost.go): a job's Input is the `WdPoStInput`
the Rust worker deserializes, its ProofType spelled as rust-fil-proofs' `RegisteredPoStProof`
serializes it (the chain's V1_1 WindowPoSt types are `..._V1_2` there, as Damocles'
stage.ProofType2String maps them); timestamps are whole Unix seconds; WdPoStAllJobs answers
`AllWdPoStJob` (briefs, newest first)."""

from __future__ import annotations

import hashlib
import json
import time

from ..core.proof_types import api_post_name, post_proof
from .config import WorkerProverConfig
from .identity import bound
from .state import ManagerState
from .task_owner import ForeignTask

READY, RUNNING, FINISHED = "ready2run", "running", "finished"


class JobNotFound(LookupError):
    pass


def proofs_api_name(proof_type: str | int) -> str:
    """The name rust-fil-proofs' RegisteredPoStProof serializes for a PoSt proof type (a name of
    either spelling, or its number): the chain's WindowPoSt V1_1 types are the proofs API's V1_2
    (api version 1.2, the grinding fix); every other type keeps its name. A name we do not know
    is kept as it is (it then matches only itself, as in Damocles)."""
    try:
        return api_post_name(post_proof(proof_type))
    except ValueError:
        return str(proof_type)


def _with_api_proof_type(job_input: dict) -> dict:
    return {**job_input, "ProofType": proofs_api_name(job_input["ProofType"])}


class WdPoStJobs:
    def __init__(self, state: ManagerState, config: WorkerProverConfig, now=time.time):
        self.state, self.config, self._now = state, config, now

    # ----------------------------------------------------------------- the poster's side

    def create(self, miner: int, deadline: int, period_start: int, partitions: list[int], job_input: dict) -> str:
        body = json.dumps(_with_api_proof_type(job_input), sort_keys=True)
        job_id = hashlib.sha256(f"{miner}:{period_start}:{deadline}:{body}".encode()).hexdigest()[:24]
        now = self._now()
        with self.state.tx() as db:
            db.execute("INSERT INTO wdpost_jobs (id, miner, deadline, period_start, partitions, input, state, tries, created, updated) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT(id) DO NOTHING",
                       (job_id, miner, deadline, period_start, json.dumps(partitions), body, READY, now, now))
        return job_id

    def get(self, job_id: str) -> dict:
        row = self.state.one(f"SELECT {_COLUMNS} FROM wdpost_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(f"WindowPoSt job {job_id} not found")
        return self._job(row)

    def drop_stale(self, miner: int, period_start: int, deadline: int) -> int:
        """Jobs of the miner's deadlines that closed before (period_start, deadline) will never be
        used: finish them as stale so no prover works on them and they never block a later one."""
        now = self._now()
        with self.state.tx() as db:
            cur = db.execute("UPDATE wdpost_jobs SET state = ?, error = 'stale: the deadline closed', finished = ?, updated = ? "
                             "WHERE miner = ? AND state != ? AND (period_start < ? OR (period_start = ? AND deadline < ?))",
                             (FINISHED, now, now, miner, FINISHED, period_start, period_start, deadline))
            return cur.rowcount

    def provers_seen(self, within: float) -> list[str]:
        cutoff = self._now() - within
        return [r[0] for r in self.state.query("SELECT name FROM provers WHERE last_seen >= ? ORDER BY name", (cutoff,))]

    # ------------------------------------------------------------------ the prover's side

    def allocate(self, allowed_miners: list[int] | None, allowed_proof_types: list[str] | None, num: int, worker: str) -> list[dict]:
        now = self._now()
        out = []
        allowed_proof_types = {proofs_api_name(t) for t in allowed_proof_types or ()}
        with self.state.tx() as db:
            db.execute("INSERT INTO provers (name, last_seen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen",
                       (worker, now))
            for row in db.execute(f"SELECT {_COLUMNS} FROM wdpost_jobs WHERE state = ? ORDER BY created, id"
                                  f"{self.state.sql.for_update}", (READY,)).fetchall():
                if len(out) >= num:
                    break
                job = self._job(row)
                if allowed_miners and job["Input"]["MinerId"] not in allowed_miners:
                    continue
                if allowed_proof_types and job["Input"]["ProofType"] not in allowed_proof_types:
                    continue
                db.execute("UPDATE wdpost_jobs SET state = ?, tries = tries + 1, worker = ?, started = ?, heartbeat = ?, "
                           "output = NULL, error = NULL, finished = NULL, updated = ? WHERE id = ?",
                           (RUNNING, worker, now, now, now, job["Id"]))
                out.append({"Id": job["Id"], "Input": job["Input"]})
        return out

    def heartbeat(self, job_ids: list[str], worker: str) -> None:
        """As Damocles' kvJobManager.Heartbeat: a job running under `worker` is kept alive, and a
        job waiting in ready2run (given back after a missed heartbeat, say) is taken by the prover
        that heartbeats it, which is what WdPoStAllocateJobs would give it. Unlike Damocles, a job
        running under another prover's name is left alone: a write token must not take a live job
        from the prover proving it."""
        now = self._now()
        with self.state.tx() as db:
            db.execute("INSERT INTO provers (name, last_seen) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen",
                       (worker, now))
            for job_id in job_ids:
                db.execute("UPDATE wdpost_jobs SET heartbeat = ?, updated = ? WHERE id = ? AND state = ? AND worker = ?",
                           (now, now, job_id, RUNNING, worker))
                db.execute("UPDATE wdpost_jobs SET state = ?, worker = ?, tries = CASE WHEN tries < 1 THEN 1 ELSE tries END, "
                           "started = COALESCE(started, ?), heartbeat = ?, updated = ? WHERE id = ? AND state = ?",
                           (RUNNING, worker, now, now, now, job_id, READY))

    def finish(self, job_id: str, output: dict | None, error: str, caller=None) -> None:
        """A prover's result, from the identity that holds the name the job runs (or last ran)
        under. A late answer is taken, as Damocles takes it, while the job waits for another try
        or ended without a proof: a valid proof that arrives after a missed heartbeat is not thrown
        away. Refused: a job now running under another prover, one that already has its proof
        (the first result stays), and one dropped because its deadline closed."""
        error = self.state.limits.long_text(error)      # cut at [Sealing] MaxTextLength
        row = self.state.one("SELECT state, worker, output, error FROM wdpost_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(f"WindowPoSt job {job_id} not found")
        state, worker, had_output, had_error = row
        if state == FINISHED and (had_output is not None or (had_error or "").startswith("stale:")):
            why = "has its result already" if had_output is not None else "was dropped: its deadline closed"
            raise JobNotFound(f"WindowPoSt job {job_id} {why}; this answer is not needed")
        if worker is None:
            raise JobNotFound(f"WindowPoSt job {job_id} is {state} and no prover has taken it: there is nothing to finish")
        if bound(caller):
            owner = self.state.worker_owner(worker) or self.state.claim_worker(worker, caller.identity, self.state.limits.max_worker_names)
            if owner != caller.identity:
                raise ForeignTask(f"WindowPoSt job {job_id} is {state} on prover {worker!r}, whose name another "
                                  "credential holds; this one may not finish it")
        now = self._now()
        with self.state.tx() as db:
            cur = db.execute("UPDATE wdpost_jobs SET state = ?, output = ?, error = ?, finished = ?, updated = ? "
                             "WHERE id = ? AND state = ? AND worker = ? AND output IS NULL",      # worker: not None here
                             (FINISHED, json.dumps(output) if output is not None else None, error or None, now, now,
                              job_id, state, worker))
            if cur.rowcount == 0:        # given to another prover or finished since the read above
                raise JobNotFound(f"WindowPoSt job {job_id} is no longer {state} on {worker!r}")

    def reset(self, job_id: str) -> None:
        """An operator's retry: back to ready2run with its tries counted from zero, created anew
        (as Damocles: its JobLifetime starts again)."""
        now = self._now()
        with self.state.tx() as db:
            cur = db.execute("UPDATE wdpost_jobs SET state = ?, tries = 0, worker = NULL, output = NULL, error = NULL, "
                             "started = NULL, heartbeat = NULL, finished = NULL, created = ?, updated = ? WHERE id = ?",
                             (READY, now, now, job_id))
            if cur.rowcount == 0:
                raise JobNotFound(f"WindowPoSt job {job_id} not found")

    def remove(self, job_id: str) -> None:
        """Removing a job that is not there is done already (Damocles answers it without error)."""
        with self.state.tx() as db:
            db.execute("DELETE FROM wdpost_jobs WHERE id = ?", (job_id,))

    def all(self) -> dict:
        """Damocles' AllWdPoStJob: every job as a WdPoStJobBrief, newest first. As Damocles'
        WdPoStJobBrief.MarshalJSON writes it, a brief's Input keeps only MinerId (the other fields
        at their zero values), its Output is empty, and Sectors / Faults count them instead."""
        rows = self.state.query(f"SELECT {_COLUMNS} FROM wdpost_jobs ORDER BY created DESC, id")
        return {"Jobs": [_brief(self._job(r)) for r in rows], "MaxTry": self.config.job_max_try}

    # -------------------------------------------------------------------- housekeeping

    def housekeeping(self) -> list[str]:
        """Retry jobs whose prover went silent or failed (until JobMaxTry); remove old jobs.
        Returns what it did, one line each, for the log."""
        now, cfg, done = self._now(), self.config, []
        with self.state.tx() as db:
            for job_id, worker, tries in db.execute("SELECT id, worker, tries FROM wdpost_jobs WHERE state = ? AND heartbeat < ?"
                                                    f"{self.state.sql.for_update}",
                                                    (RUNNING, now - cfg.heartbeat_timeout)).fetchall():
                why = f"no heartbeat from prover {worker} for {cfg.heartbeat_timeout:g}s"
                if tries < cfg.job_max_try:
                    db.execute("UPDATE wdpost_jobs SET state = ?, error = ?, updated = ? WHERE id = ?",   # WorkerName kept,
                               (READY, why, now, job_id))                                          # as Damocles
                    done.append(f"job {job_id}: {why}; retrying (try {tries + 1} of {cfg.job_max_try})")
                else:
                    db.execute("UPDATE wdpost_jobs SET state = ?, error = ?, finished = ?, updated = ? WHERE id = ?",
                               (FINISHED, f"{why}; failed after {tries} tries", now, now, job_id))
                    done.append(f"job {job_id}: {why}; failed after {tries} tries")
            for job_id, tries, error in db.execute("SELECT id, tries, error FROM wdpost_jobs WHERE state = ? AND output IS NULL "
                                                   "AND error IS NOT NULL AND error NOT LIKE 'stale:%' AND tries < ?"
                                                   f"{self.state.sql.for_update}",
                                                   (FINISHED, cfg.job_max_try)).fetchall():
                db.execute("UPDATE wdpost_jobs SET state = ?, updated = ? WHERE id = ?", (READY, now, job_id))
                done.append(f"job {job_id} failed ({error}); retrying (try {tries + 1} of {cfg.job_max_try})")
            removed = db.execute("DELETE FROM wdpost_jobs WHERE created < ?", (now - cfg.job_lifetime,)).rowcount
            if removed:
                done.append(f"removed {removed} WindowPoSt jobs older than {cfg.job_lifetime:g}s")
        return done

    # ------------------------------------------------------------------------- shapes

    def _job(self, row) -> dict:
        (job_id, miner, deadline, period_start, partitions, job_input, state, tries, worker, output, error,
         created, started, heartbeat, finished, updated) = row
        failed = state == FINISHED and output is None and error is not None
        return {"Id": job_id, "State": state, "DeadlineIdx": deadline, "Partitions": json.loads(partitions),
                "Input": _with_api_proof_type(json.loads(job_input)),      # rows written before kept the chain's name
                "Output": json.loads(output) if output else None, "TryNum": tries,
                "ErrorReason": error or "", "WorkerName": worker or "", "StartedAt": started or 0,
                "HeartbeatAt": heartbeat or 0, "FinishedAt": finished or 0, "CreatedAt": created, "UpdatedAt": updated,
                # ours, for the poster (never on the wire): which proving period, whether it ended without a proof
                "MinerId": miner, "PeriodStart": period_start, "Failed": failed}


_TIMES = ("StartedAt", "HeartbeatAt", "FinishedAt", "CreatedAt", "UpdatedAt")


def _unix(t: float | None) -> int:
    """Whole Unix seconds, 0 for never: Go's uint64 from time.Now().Unix()."""
    return int(t) if t else 0


def _brief(job: dict) -> dict:
    output = job["Output"] or {}
    brief = {k: v for k, v in job.items() if k not in ("MinerId", "PeriodStart", "Failed")}
    for key in _TIMES:
        brief[key] = _unix(job[key])
    brief["Input"] = {"Sectors": None, "MinerId": job["Input"]["MinerId"], "ProofType": "", "Seed": [0] * 32}
    brief["Output"] = {"proofs": None, "faults": None}
    brief["Sectors"] = len(job["Input"].get("Sectors") or ())
    brief["Faults"] = len(output.get("faults") or ())
    return brief


_COLUMNS = ("id, miner, deadline, period_start, partitions, input, state, tries, worker, output, error, "
            "created, started, heartbeat, finished, updated")
