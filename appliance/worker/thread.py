"""The planner runner (Damocles' CommonSealer<P>): one loop for every journalled plan.

Each turn: exec the current state's step, which returns an Event carrying its outputs (a step
never writes the record); plan the next state from the event; commit the transition and the
outputs to the journal in one transaction; only then take the new record and report it to the
manager. A restart resumes from the journaled state, so an interrupted step is redone from its
start and a completed one never. A journal left in a terminal state finishes its clean-up at
start-up (Finished: ReportFinalized, files removed, cleared; Aborted: reported, cleared).

A journal that cannot be written (a full disk) is a temp failure: the transition is kept in
memory and written again every `recover_interval`, the step is not redone.

Between sectors a thread re-reads `<location>/config.toml` (plan and `[sealing]` over
worker.toml's) when its mtime changed; a bad file is reported and ignored. A new `plan` is taken
only between sectors: the thread ends its run with `switch_to` set and the worker starts the
plan's thread on the same location (Damocles' SwitchPlanner). A sector in the journal always
finishes under the plan that started it (the record keeps it), after a restart too."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import traceback
from dataclasses import replace

from ..config import ConfigError, load_toml
from ..core.crash import crash_point
from ..core.protocol import TERMINAL_STATES
from ..rpc import RPCError
from ..rpc.client import TransportError
from .config import ThreadConfig, parse_hot_config
from .control import ThreadControl
from .failure import Abort, Crit, NoSpace, StepFailure, Wait, no_space
from .journal import Journal, JournalError, JournalWriteError
from .plan import SEALER, Event, Plan, PlanError, as_event
from .record import EMPTY, RecordError, SectorRecord
from .steps import Paths, SealerSteps

log = logging.getLogger("damocles.worker")


def _device_full(location) -> bool:
    """Whether the device holding the location has (almost) no space left."""
    try:
        st = os.statvfs(location)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


class PlannerThread(ThreadControl):
    """Runs one plan in one location. A plan's thread names its table (`table`), makes its
    steps (`make_steps`), and says how a finished sector is reported (`_report_done`)."""
    table: Plan = SEALER

    def __init__(self, index: int, ctx, config: ThreadConfig | None = None):
        super().__init__(index, ctx.location)
        self.ctx = ctx
        self.base = config or ThreadConfig(ctx.location, self.table.name, ctx.sealing)   # from worker.toml
        self.plan = self.base.plan
        self._hot = self.base                 # the settings in force: worker.toml's, with config.toml over them
        self._hot_mtime: int | None = None
        self.switch_to: str | None = None     # a plan to hand the location to (set between sectors only)
        self.journal: Journal | None = None
        self.rec = EMPTY
        self.errors: dict[str, int] = {}     # failures per level since start (the worker's metrics)
        self._pending: tuple[SectorRecord, str, str] | None = None    # a transition the journal could not take yet
        self._aborted_by_manager: str | None = None

    # ------------------------------------------------------------ a plan's part

    def make_steps(self):
        return SealerSteps(self.ctx)

    def _sid(self) -> dict:
        return {"Miner": self.rec.miner, "Number": self.rec.number}

    def _report_done(self, stop: threading.Event) -> bool:
        """Tell the manager the sector is done; False when stopped before it answered."""
        return self._call_until_answered(stop, "Venus.ReportFinalized", self._sid())

    def _report_aborted(self, stop: threading.Event) -> bool:
        """Tell the manager the sector was given up, with the reason; False when stopped first."""
        return self._call_until_answered(stop, "Venus.ReportAborted", self._sid(), self.rec.abort_reason or "")

    def _remove_files(self) -> None:
        Paths(self.ctx.location, self.rec.name).remove()

    def _before_new_sector(self) -> None:
        """Between two sectors (and at start): re-read the hot config, then switch plans if the
        location should now run another one."""
        self.reload_hot_config()
        want = (self.rec.plan or self.plan) if self.rec.name else self._hot.plan
        if want != self.plan:
            log.info("thread %d: plan %s -> %s%s", self.index, self.plan, want,
                     f" (sector {self.rec.name} was started by it)" if self.rec.name else "")
            self.switch_to = want

    def adopt(self, previous: "PlannerThread") -> None:
        """Take over from the thread that ran this location under another plan."""
        self.base, self._hot, self._hot_mtime = previous.base, previous._hot, previous._hot_mtime
        self.config_error, self.errors = previous.config_error, previous.errors

    def reload_hot_config(self) -> bool:
        """Apply `<location>/config.toml` if it changed since the last look; True if it did. Its
        `[sealing]` applies at once, its `plan` at the next sector (`_before_new_sector`)."""
        path = self.ctx.location / "config.toml"
        mtime = self._hot_file_mtime()
        if mtime == self._hot_mtime:
            return False
        self._hot_mtime = mtime
        if mtime is None:
            cfg = self.base
        else:
            warnings: list[str] = []
            try:
                cfg = parse_hot_config(load_toml(path), str(path), self.base, warnings)
            except (ConfigError, OSError) as exc:
                self.config_error = f"{exc}; keeping the previous settings"
                log.error("thread %d: %s", self.index, self.config_error)
                return False
            for w in warnings:
                log.warning("thread %d: %s", self.index, w)
        self.config_error = None
        self._hot, self.ctx.sealing = cfg, cfg.sealing
        log.info("thread %d: settings %s", self.index, f"reloaded from {path}" if mtime else "from worker.toml")
        return True

    def _hot_file_mtime(self) -> int | None:
        try:
            return (self.ctx.location / "config.toml").stat().st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return None

    # ------------------------------------------------------------------- loop

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        stop.wait(max(0.0, seconds))

    def _idle_sleep(self, stop: threading.Event, seconds: float) -> None:
        """The wait of a thread with no sector: it ends early when config.toml changes, so that a
        new plan or new settings do not wait for the next poll (Damocles' wait does the same)."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not stop.is_set() and self._hot_file_mtime() == self._hot_mtime:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, 1.0))

    def _open_journal(self, stop: threading.Event) -> bool:
        """Open the journal; on a full device wait (temp) until it opens, otherwise a journal that
        cannot be read is a crit error naming the file."""
        while not stop.is_set():
            try:
                self.journal = Journal(self.ctx.location)
                current = self.journal.current()
                self.rec = SectorRecord.from_json(current, str(self.journal.path)) if current else EMPTY
                return True
            except RecordError as exc:
                self.status, self.last_error = "Paused", f"crit: journal {exc}"
                log.error("thread %d: %s", self.index, self.last_error)
                return False
            except JournalError as exc:
                if not _device_full(self.ctx.location):
                    self.status, self.last_error = "Paused", f"crit: {exc}"
                    log.error("thread %d: %s", self.index, exc)
                    return False
                self.status, self.last_error = "Waiting", f"temp: {exc} (no space left on the device: ENOSPC)"
                log.warning("thread %d: %s", self.index, self.last_error)
                self._sleep(stop, self.ctx.sealing.recover_interval)
        return False

    def run(self, stop: threading.Event) -> None:
        if not self._open_journal(stop):
            return
        self.last_error = None
        self._before_new_sector()
        steps = self.make_steps()
        while not stop.is_set() and self.switch_to is None:
            try:
                self._turn(steps, stop)
            except JournalWriteError as exc:
                self._journal_unwritable(exc, stop)
        if self.switch_to is not None:
            self.journal.close()         # the next plan's thread opens it again
        self.status = "Idle"

    def _turn(self, steps, stop: threading.Event) -> None:
        if self._pending is not None:                 # written before anything else happens
            self._commit(*self._pending)
        if self._aborted_by_manager is not None:
            reason, self._aborted_by_manager = self._aborted_by_manager, None
            self._abort(reason, stop, report=False)
            return
        if self.rec.state in TERMINAL_STATES:
            self._end(stop)
            return
        if self._pause_requested:
            self._pause_requested = False
            self.last_error = "paused by the operator"
            self.rec = replace(self.rec, paused=True, last_error=self.last_error)
            self._journal_quietly(self.journal.failure, self.rec.to_json(), "perm", "paused by the operator")
            self.journal.save(self.rec.to_json())
            self._report_failure("perm", "paused by the operator")
        if self.rec.paused:
            self.status = "Paused"
            self._resume.wait(timeout=0.5)
            if self._resume.is_set():
                self._resumed()
            return
        if self.rec.state == "Empty":
            self._before_new_sector()
            if self.switch_to is not None:
                return
        s = self.ctx.sealing
        self.status = "Running"
        try:
            event = as_event(steps.exec(self.rec))
            self._transition(event)
        except Wait as w:
            self.status = "Waiting"
            delay = w.delay if w.delay is not None else (s.rpc_polling_interval if w.polling else s.recover_interval)
            (self._sleep if self.rec.name else self._idle_sleep)(stop, delay)
        except Abort as exc:
            self._abort(str(exc), stop)
            self._idle_sleep(stop, s.seal_interval)      # between sectors
        except StepFailure as exc:
            self._fail(exc, stop)
        except PlanError as exc:
            self._fail(Crit(str(exc)), stop)
        except JournalWriteError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._fail(NoSpace(f"{self.location}: no space left on the device (ENOSPC): {exc}"), stop)
            else:
                self._fail(StepFailure(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"), stop)
        except Exception as exc:   # an unexpected error: the thread pauses, nothing is lost
            self._fail(StepFailure(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"), stop)

    def _resumed(self) -> None:
        self._resume.clear()
        self.rec = replace(self.rec, paused=False, last_error=None, retry=0)
        self.last_error = None
        state, self._resume_state = self._resume_state, None
        if state:
            self._transition(Event("SetState:" + state))
            return
        self.journal.save(self.rec.to_json())
        if self.rec.name:          # the manager clears the failure it showed
            self._report(self.rec.state, "Resume")

    # ------------------------------------------------------------ transitions

    def _transition(self, event: Event) -> None:
        """Plan, then journal the new record with the step's outputs, then report: nothing of
        the step reaches the record unless the plan accepted its event and the journal has it."""
        prev = self.rec.state
        new = self.rec.with_outputs(event.outputs, state=self.table.next(prev, event.name), retry=0, last_error=None,
                                    plan=self.rec.plan or self.plan)      # the plan that finishes this sector
        self._commit(new, prev, event.name)

    def _commit(self, new: SectorRecord, prev: str, event: str) -> None:
        self._pending = (new, prev, event)
        self.journal.transition(new.to_json(), prev, event)
        self._pending = None
        self.rec, self.last_error = new, None
        log.info("thread %d: %s %s -%s-> %s", self.index, new.name or "-", prev, event, new.state,
                 extra={"sector": new.name, "state": new.state, "prev": prev, "event": event, "sealing_thread": self.index})
        if new.name and new.state != "Aborted":      # an abort is told by ReportAborted
            self._report(prev, event)

    def _report(self, prev: str, event: str, failure: dict | None = None) -> None:
        req = {"Worker": {"Instance": self.ctx.worker_name, "Location": str(self.ctx.location)},
               "StateChange": {"Prev": prev, "Next": self.rec.state, "Event": event}, "Failure": failure}
        try:
            resp = self.ctx.rpc.call("Venus.ReportState", self._sid(), req)
        except (TransportError, RPCError) as exc:
            log.warning("thread %d: ReportState failed: %s", self.index, exc)
            return
        if resp and resp.get("Finalized") and self.rec.state not in TERMINAL_STATES:
            self._aborted_by_manager = resp.get("AbortReason") or "finalized by the manager"

    # --------------------------------------------------------------- failures

    def _fail(self, exc: StepFailure, stop: threading.Event) -> None:
        level, text = exc.level, str(exc)
        counts = getattr(exc, "counts", True)
        if level == "temp" and no_space(text):
            counts = False                  # resumes when space is freed, however long that takes
            if "ENOSPC" not in text:
                text += " (ENOSPC)"
        self.last_error = f"{level}: {text}"
        if level == "temp" and counts:
            self.rec = replace(self.rec, retry=self.rec.retry + 1)
            if self.rec.retry >= self.ctx.sealing.max_retries:
                level = "perm"
                self.last_error = f"perm: {text} (after {self.rec.retry} temp retries)"
        self._journal_quietly(self.journal.failure, self.rec.to_json(), level, text)
        log.warning("thread %d: %s %s: %s", self.index, self.rec.name or "-", level, text,
                    extra={"sector": self.rec.name, "state": self.rec.state, "failure_level": level,
                           "sealing_thread": self.index})
        if level == "temp":
            self.status = "Waiting"
            self._journal_quietly(self.journal.save, self.rec.to_json())
            self._report_failure(level, self.last_error)
            self._sleep(stop, self.ctx.sealing.recover_interval)
            return
        self.rec = replace(self.rec, paused=True, last_error=self.last_error)
        self._journal_quietly(self.journal.save, self.rec.to_json())
        self._report_failure(level, self.last_error)      # an answer that the sector was aborted aborts it here

    def _journal_quietly(self, write, *args) -> None:
        """Bookkeeping (a failure's log row, retry counts) that may be lost on a full disk."""
        try:
            write(*args)
        except JournalWriteError as exc:
            log.warning("thread %d: %s", self.index, exc)

    def _journal_unwritable(self, exc: JournalWriteError, stop: threading.Event) -> None:
        """The journal could not take a write: nothing of it was committed. Say so (to the
        manager too) and try again after `recover_interval`; the sector resumes once it can."""
        self.status = "Waiting"
        self.last_error = f"temp: {exc}"
        log.warning("thread %d: %s %s", self.index, self.rec.name or "-", self.last_error,
                    extra={"sector": self.rec.name, "state": self.rec.state, "failure_level": "temp",
                           "sealing_thread": self.index})
        self._report_failure("temp", self.last_error)
        self._sleep(stop, self.ctx.sealing.recover_interval)

    def _report_failure(self, level: str, desc: str) -> None:
        """As Damocles: a failed step is reported too, so the manager shows the sector's error."""
        self.errors[level] = self.errors.get(level, 0) + 1
        if self.rec.name:
            self._report(self.rec.state, "Failure", {"Level": level, "Desc": desc[:4000]})

    # ------------------------------------------------------------ the end of a sector

    def _abort(self, reason: str, stop: threading.Event, report: bool = True) -> None:
        """Journal Aborted with the reason first, so that a crash from here on finishes the abort
        at the next start; then report it, remove the files and clear the journal."""
        log.warning("thread %d: %s aborted: %s", self.index, self.rec.name or "-", reason)
        if not self.rec.name:
            self.rec = EMPTY
            self._journal_quietly(self.journal.save, self.rec.to_json())
            return
        new = replace(self.rec, state="Aborted", paused=False, last_error=None, abort_reason=reason, abort_reported=not report)
        self._commit(new, self.rec.state, "Abort")
        self._end(stop)

    def _end(self, stop: threading.Event) -> None:
        """A sector in Finished or Aborted: tell the manager (until it answers or the worker
        stops), remove its files, clear the journal. Each part may be redone after a crash."""
        finished = self.rec.state == "Finished"
        if self.rec.name:
            if finished:
                crash_point("worker.finish.before_clear")
                if not self._report_done(stop):
                    return                   # stopped: the journal stays in Finished, the next start goes on
            elif not self.rec.abort_reported:
                if not self._report_aborted(stop):
                    return
                crash_point("worker.abort.before_clear")
            self._remove_files()
        self.journal.clear(self.rec.to_json(), "Finish" if finished else "Abort")
        self.rec, self.last_error = EMPTY, None
        if finished:
            self._idle_sleep(stop, self.ctx.sealing.seal_interval)

    def _call_until_answered(self, stop: threading.Event, method: str, *params) -> bool:
        """The manager must learn how a sector ended: retried every `recover_interval` while it
        does not answer, given up only when the worker stops (False)."""
        while not stop.is_set():
            try:
                self.ctx.rpc.call(method, *params)
                return True
            except TransportError as exc:
                self.status, self.last_error = "Waiting", f"temp: {method}: {exc}"
                log.warning("thread %d: %s failed, retrying: %s", self.index, method, exc)
                self._sleep(stop, self.ctx.sealing.recover_interval)
            except RPCError as exc:           # refused (e.g. the sector is unknown): nothing more to tell
                log.warning("thread %d: %s: %s", self.index, method, exc)
                return True
        return False


class SealingThread(PlannerThread):
    """A thread running the sealer plan."""
