"""Crash points: named places where `DAMOCLES_CRASH_AT=<name>` makes the process exit at once
(no cleanup, no flush), so tests can kill a process exactly where it matters and show that a
restart loses nothing and repeats nothing. With `DAMOCLES_CRASH_SIGNAL=KILL` the process sends
itself SIGKILL there instead (the kernel ends it, as `kill -9` or the OOM killer would). Every
point is declared here with what it proves."""

from __future__ import annotations

import os
import signal

EXIT_CODE = 86
ENV = "DAMOCLES_CRASH_AT"
SIGNAL_ENV = "DAMOCLES_CRASH_SIGNAL"

POINTS = {
    "manager.allocate.after_commit": "a number is allocated and committed but the worker never hears of it",
    "manager.precommit.after_record": "a PreCommit is recorded but the worker never gets the answer",
    "manager.commit.before_push": "a batch is in the outbox with its nonce but not yet on the chain",
    "manager.commit.after_push": "a batch is on the chain but the outbox does not know its message id",
    # a sector's end, in the manager (tests/test_terminate_kill.py; "manager." points are reached while sealing)
    "lifecycle.terminate.after_send": "a TerminateSectors is journalled and pushed but the sectors' records do not name it yet",
    "lifecycle.remove.after_journal": "a removal is journalled on the sector's record but no file is deleted yet",
    "lifecycle.remove.mid_files": "a removal has deleted some of the sector's files, not all, and is not marked done",
    "manager.proof.after_record": "a proof is recorded but the worker never gets the answer",
    "worker.pc1.before": "the worker dies as PC1 starts (the step is redone from its start)",
    "worker.pc1.after": "PC1's layers are written but the transition is not journaled",
    "worker.pc2.after": "PC2's files are written but the transition is not journaled",
    "worker.submit_pc.after": "the manager has the PreCommit but the worker never journaled it",
    "worker.seed.waiting": "the worker dies while waiting for the seed",
    "worker.persist.before": "space is reserved in the persist store but nothing is copied",
    "worker.submit_proof.after": "the manager has the proof but the worker never journaled it",
    "worker.finish.before_clear": "Finished is journaled but the manager is not told and the files are not removed",
    "worker.abort.before_clear": "the abort is reported but the journal still holds the sector",
    "worker.unseal.written": "an unseal task's piece is written but the transition is not journaled",
    "worker.rebuild.persisted": "a rebuilt sector is persisted but the transition is not journaled",
    "worker.snapup.proved": "a snap upgrade's proof is written but the transition is not journaled",
    "worker.snapup.submitted": "the manager has the upgrade's proof but the worker never journaled it",
    "processor.before_ready": "a processor process dies before it reports ready (set in the worker's environment)",
}


def crash_point(name: str) -> None:
    if name not in POINTS:
        raise KeyError(f"undeclared crash point {name!r}")
    if os.environ.get(ENV) == name:
        if os.environ.get(SIGNAL_ENV) == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(EXIT_CODE)
