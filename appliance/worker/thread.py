"""A sealing thread: owns one location, drives one sector at a time through the sealer plan.

Each turn: exec the current state's step; plan the next state from the event; commit the
transition (and what the step produced) to the journal; report it to the manager. A restart
resumes from the journaled state, so an interrupted step is redone from its start and a
completed one never. Before each new sector the thread re-reads `<location>/config.toml` (plan
and `[sealing]` overrides) when its mtime changed; a bad file is reported and ignored."""

from __future__ import annotations

import logging
import threading
import time
import traceback

from ..config import ConfigError, load_toml
from ..rpc import RPCError
from ..rpc.client import TransportError
from .config import ThreadConfig, parse_hot_config
from .failure import Abort, StepFailure, Wait
from .journal import Journal, JournalError
from .plan import plan
from .steps import Paths, SealerSteps

log = logging.getLogger("damocles.worker")


class SealingThread:
    def __init__(self, index: int, ctx, config: ThreadConfig | None = None):
        self.index, self.ctx = index, ctx
        self.base = config or ThreadConfig(ctx.location, "sealer", ctx.sealing)   # from worker.toml
        self.plan = self.base.plan
        self.config_error: str | None = None
        self._hot_mtime: int | None = None
        self.journal: Journal | None = None
        self.rec: dict = {"state": "Empty", "retry": 0}
        self.status = "Idle"          # Idle | Running | Waiting | Paused
        self.last_error: str | None = None
        self._resume = threading.Event()
        self._resume_state: str | None = None
        self._pause_requested = False
        self.errors: dict[str, int] = {}     # failures per level since start (the worker's metrics)

    # ----------------------------------------------------------------- control

    def pause(self) -> bool:
        """Pause after the step in flight (an operator's interrupt, treated as perm)."""
        if self.rec.get("paused"):
            return False
        self._pause_requested = True
        return True

    def resume(self, state: str | None = None) -> bool:
        if not self.rec.get("paused"):
            return False
        self._resume_state = state
        self._resume.set()
        return True

    def summary(self) -> dict:
        return {"index": self.index, "location": str(self.ctx.location), "plan": self.plan,
                "job_id": self.rec.get("name"), "job_state": self.rec.get("state"), "thread_state": {"state": self.status},
                "last_error": self.last_error, "config_error": self.config_error}

    def reload_hot_config(self) -> bool:
        """Apply `<location>/config.toml` if it changed since the last look; True if it did."""
        path = self.ctx.location / "config.toml"
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
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
        self.plan, self.ctx.sealing = cfg.plan, cfg.sealing
        log.info("thread %d: settings %s", self.index, f"reloaded from {path}" if mtime else "from worker.toml")
        return True

    # -------------------------------------------------------------------- loop

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        stop.wait(max(0.0, seconds))

    def run(self, stop: threading.Event) -> None:
        try:
            self.journal = Journal(self.ctx.location)
            self.rec = self.journal.current() or {"state": "Empty", "retry": 0}
        except JournalError as exc:
            self.status, self.last_error = "Paused", f"crit: {exc}"
            log.error("thread %d: %s", self.index, exc)
            return
        self.reload_hot_config()
        steps = SealerSteps(self.ctx)
        while not stop.is_set():
            if self._pause_requested:
                self._pause_requested = False
                self.rec["paused"] = True
                self.last_error = self.rec["last_error"] = "paused by the operator"
                self.journal.failure(self.rec, "perm", "paused by the operator")
                self.journal.save(self.rec)
                self._report_failure("perm", "paused by the operator")
            if self.rec.get("paused"):
                self.status = "Paused"
                self._resume.wait(timeout=0.5)
                if self._resume.is_set():
                    self._resume.clear()
                    self.rec.pop("paused", None)
                    self.rec.pop("last_error", None)
                    self.last_error = None
                    self.rec["retry"] = 0
                    if self._resume_state:
                        self._transition("SetState:" + self._resume_state)
                    elif "name" in self.rec:          # the manager clears the failure it showed
                        self._report(self.rec["state"], "Resume")
                    self.journal.save(self.rec)
                continue
            if self.rec["state"] == "Empty":
                self.reload_hot_config()
            s = self.ctx.sealing
            self.status = "Running"
            try:
                event = steps.exec(self.rec)
            except Wait as w:
                self.status = "Waiting"
                self._sleep(stop, w.delay if w.delay is not None else (s.rpc_polling_interval if w.polling else s.recover_interval))
                continue
            except Abort as exc:
                self._abort(str(exc))
                self._sleep(stop, s.seal_interval)
                continue
            except StepFailure as exc:
                self._fail(exc, stop)
                continue
            except Exception as exc:   # an unexpected error: the thread pauses, nothing is lost
                self._fail(StepFailure(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"), stop)
                continue
            self._transition(event)
            if self.rec["state"] == "Finished":
                self._finish()
                self._sleep(stop, s.seal_interval)
        self.status = "Idle"

    def _transition(self, event: str) -> None:
        prev = self.rec["state"]
        self.rec["state"] = plan(prev, event)
        self.rec["retry"] = 0
        self.last_error = None
        self.journal.transition(self.rec, prev, event)
        log.info("thread %d: %s %s -%s-> %s", self.index, self.rec.get("name", "-"), prev, event, self.rec["state"],
                 extra={"sector": self.rec.get("name"), "state": self.rec["state"], "prev": prev, "event": event,
                        "sealing_thread": self.index})
        if "name" in self.rec:
            self._report(prev, event)

    def _report(self, prev: str, event: str, failure: dict | None = None) -> None:
        req = {"Worker": {"Instance": self.ctx.worker_name, "Location": str(self.ctx.location)},
               "StateChange": {"Prev": prev, "Next": self.rec["state"], "Event": event}, "Failure": failure}
        try:
            resp = self.ctx.rpc.call("Venus.ReportState", {"Miner": self.rec["miner"], "Number": self.rec["number"]}, req)
        except (TransportError, RPCError) as exc:
            log.warning("thread %d: ReportState failed: %s", self.index, exc)
            return
        if resp and resp.get("Finalized") and self.rec["state"] not in ("Finished", "Aborted"):
            self._abort(resp.get("AbortReason") or "finalized by the manager", report=False)

    def _fail(self, exc: StepFailure, stop: threading.Event) -> None:
        level = exc.level
        self.last_error = f"{level}: {exc}"
        if level == "temp" and getattr(exc, "counts", True):
            self.rec["retry"] = self.rec.get("retry", 0) + 1
            if self.rec["retry"] >= self.ctx.sealing.max_retries:
                level = "perm"
                self.last_error = f"perm: {exc} (after {self.rec['retry']} temp retries)"
        self.journal.failure(self.rec, level, str(exc))
        log.warning("thread %d: %s %s: %s", self.index, self.rec.get("name", "-"), level, exc,
                    extra={"sector": self.rec.get("name"), "state": self.rec["state"], "failure_level": level, "sealing_thread": self.index})
        if level == "temp":
            self.journal.save(self.rec)
            self._report_failure(level, self.last_error)
            self._sleep(stop, self.ctx.sealing.recover_interval)
            return
        self.rec["paused"] = True
        self.rec["last_error"] = self.last_error
        self.journal.save(self.rec)
        self._report_failure(level, self.last_error)      # an answer that the sector was aborted aborts it here

    def _report_failure(self, level: str, desc: str) -> None:
        """As Damocles: a failed step is reported too, so the manager shows the sector's error."""
        self.errors[level] = self.errors.get(level, 0) + 1
        if "name" in self.rec:
            self._report(self.rec["state"], "Failure", {"Level": level, "Desc": desc[:4000]})

    def _abort(self, reason: str, report: bool = True) -> None:
        log.warning("thread %d: %s aborted: %s", self.index, self.rec.get("name", "-"), reason)
        if report and "name" in self.rec:
            try:
                self.ctx.rpc.call("Venus.ReportAborted", {"Miner": self.rec["miner"], "Number": self.rec["number"]}, reason)
            except (TransportError, RPCError) as exc:
                log.warning("thread %d: ReportAborted failed: %s", self.index, exc)
        if "name" in self.rec:
            Paths(self.ctx.location, self.rec["name"]).remove()
        self.rec["state"] = "Aborted"
        self.journal.clear(self.rec, "Abort")
        self.rec = {"state": "Empty", "retry": 0}

    def _finish(self) -> None:
        sid = {"Miner": self.rec["miner"], "Number": self.rec["number"]}
        while True:
            try:
                self.ctx.rpc.call("Venus.ReportFinalized", sid)
                break
            except TransportError as exc:   # the manager must learn it; the sector's files are persisted
                log.warning("thread %d: ReportFinalized failed, retrying: %s", self.index, exc)
                time.sleep(self.ctx.sealing.recover_interval)
            except RPCError as exc:
                log.warning("thread %d: ReportFinalized: %s", self.index, exc)
                break
        Paths(self.ctx.location, self.rec["name"]).remove()
        self.journal.clear(self.rec, "Finish")
        self.rec = {"state": "Empty", "retry": 0}
