"""The threads that take tasks rather than allocate sectors (`plan = "unseal"`, `"rebuild"`,
`"snapup"`) run on the same journalled runner as the sealer: the task the manager handed out is
journaled with the first transition, every step after it is journaled too, and a restart resumes
the task at the step that was interrupted (the manager is not asked again).

A task ends as Damocles' worker ends it, with methods of Damocles' SealerAPI only: done, the
manager hears ReportFinalized(sid); a task that cannot be done (a step raises a task error: a
wrong CommR, a missing store) ends as aborted, reported with ReportAborted(sid, reason), and the
thread takes the next task (the unseal plan reports both through AchieveUnsealSector). Task
threads never send ReportState: the sector's sealing state at the manager is not theirs."""

from __future__ import annotations

import threading

from ..core.sector import sector_name
from ..rpc.client import TransportError
from .failure import Abort, StepFailure, Unreachable, Wait
from .plan import Event
from .steps import Paths, call
from .thread import PlannerThread


class TaskSteps:
    """exec(state) for a task plan: `on_<State>` methods; an error that is not a classified
    failure is the task's error (reported to the manager, the thread goes on)."""
    allocate_method = ""

    def __init__(self, ctx, thread_name: str):
        self.ctx, self.thread_name = ctx, thread_name

    def exec(self, rec) -> Event | str:
        handler = getattr(self, "on_" + rec.state, None)
        if handler is None:
            raise Abort(f"no step for state {rec.state}")
        try:
            return handler(rec)
        except (Wait, StepFailure):
            raise
        except TransportError as exc:
            raise Unreachable(f"{rec.state}: {exc}") from None
        except Exception as exc:       # the task's own error: reported with the task's outcome
            raise Abort(str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}") from None

    def on_Empty(self, rec):
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None, "AllowedProofTypes": None}
        # the manager knows us by our token; Thread (ours, Go's manager ignores it) names this thread by its
        # location, whose journal holds the task: a task the manager handed us and a restart lost before it was
        # journalled is handed back, not left allocated forever
        task = call(self.ctx.rpc, self.allocate_method, {**self.allocate_spec(spec), "Thread": str(self.ctx.location)})
        if not task:
            raise Wait("no task (idle)", polling=True)
        sid = task["Sector"]["ID"]
        return Event("Allocate", {"task": task, "miner": sid["Miner"], "number": sid["Number"],
                                  "proof": task["Sector"]["ProofType"],
                                  "name": sector_name(sid["Miner"], sid["Number"]), **self.allocated(task)})

    def allocate_spec(self, spec: dict) -> dict:
        """The allocate call's one parameter: Damocles' AllocateSectorSpec, unless the plan's differs
        (on_Empty adds our Thread to it)."""
        return spec

    def allocated(self, task: dict) -> dict:
        """Fields of the record that come from the task (besides the task itself)."""
        return {}


def task_deals(pieces: list[dict] | None) -> list[dict]:
    """What the journal keeps of Damocles' SectorPieces (SectorPieceV2: Piece {Size, PieceCID},
    DealInfo {DealID, ...}): the pieces to fetch and add, in order."""
    return [{"id": (p.get("DealInfo") or {}).get("DealID", 0), "piece_cid": p["Piece"]["PieceCID"]["/"],
             "piece_size": p["Piece"]["Size"]} for p in pieces or []]


class TaskThread(PlannerThread):
    steps_class = TaskSteps

    def __init__(self, index: int, ctx, config=None):
        super().__init__(index, ctx, config)
        self.done = 0

    def make_steps(self):
        return self.steps_class(self.ctx, f"{self.ctx.worker_name}-{self.plan}-{self.index}")

    def done_call(self, task: dict) -> tuple[str, list]:
        """The call that tells the manager the task is done."""
        return "Venus.ReportFinalized", [task["Sector"]["ID"]]

    def aborted_call(self, task: dict, reason: str) -> tuple[str, list]:
        """The call that tells the manager the task was given up, and why."""
        return "Venus.ReportAborted", [task["Sector"]["ID"], reason]

    def _report(self, prev: str, event: str, failure: dict | None = None) -> None:
        """Not for tasks: ReportState is the sealer's."""

    def _report_done(self, stop: threading.Event) -> bool:
        method, args = self.done_call(self.rec.task)
        if not self._call_until_answered(stop, method, *args):
            return False
        self.done += 1
        return True

    def _report_aborted(self, stop: threading.Event) -> bool:
        if self.rec.task is not None:
            method, args = self.aborted_call(self.rec.task, self.rec.abort_reason or "")
            return self._call_until_answered(stop, method, *args)
        self._sleep(stop, self.ctx.sealing.recover_interval)    # the manager keeps the task for us: later
        return not stop.is_set()

    def _end(self, stop: threading.Event) -> None:
        reason = self.rec.abort_reason if self.rec.state == "Aborted" else None
        super()._end(stop)
        if self.rec.state == "Empty" and reason:
            self.last_error = f"{self.plan}: {reason}"       # `worker list` shows why the last task failed

    def _remove_files(self) -> None:
        Paths(self.ctx.location, self.rec.name).remove()

    def _summary_extra(self) -> dict:
        return {"tasks_done": self.done}
