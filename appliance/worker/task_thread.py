"""The loop shared by the sealing threads that take tasks rather than allocate sectors
(`plan = "unseal"`, `"rebuild"`, `"snapup"`): ask the manager for a task, do it, report the
outcome (retried while the manager does not answer). Pausing stops it from taking new tasks.
A subclass names its RPC methods and does the work; an interrupted task is done again from its
start, so the work must be a pure function of the task."""

from __future__ import annotations

import logging
import threading

from ..core.sector import sector_file_names
from ..rpc import RPCError
from ..rpc.client import TransportError

log = logging.getLogger("damocles.worker")


class TaskThread:
    plan = ""
    allocate_method = ""       # Venus.Allocate...(spec, workerName) -> task or null
    report_method = ""         # Venus....(*report_args(task), error); empty: the work reports itself
    working_state = ""

    def __init__(self, index: int, ctx, plan_config=None):
        self.index, self.ctx = index, ctx
        self.rec: dict = {"state": "Empty"}
        self.status = "Idle"
        self.last_error: str | None = None
        self.paused = False
        self.done = 0

    # ------------------------------------------------------------------ a subclass's part

    def work(self, task: dict, stop: threading.Event) -> None:
        raise NotImplementedError

    def report_args(self, task: dict) -> list:
        return [task["Sector"]["ID"]]

    def cleanup(self) -> None:
        """After each task, done or failed."""

    # ----------------------------------------------------------------------- control

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
        return {"index": self.index, "location": str(self.ctx.location), "plan": self.plan, "job_id": self.rec.get("name"),
                "job_state": self.rec.get("state"), "thread_state": {"state": self.status}, "last_error": self.last_error,
                "config_error": None, "tasks_done": self.done}

    # -------------------------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None, "AllowedProofTypes": None}
        name = f"{self.ctx.worker_name}-{self.plan}-{self.index}"
        while not stop.is_set():
            if self.paused:
                self.status = "Paused"
                stop.wait(0.5)
                continue
            try:
                task = self.ctx.rpc.call(self.allocate_method, spec, name)
            except (TransportError, RPCError) as exc:
                self.status, self.last_error = "Waiting", f"temp: {self.allocate_method}: {exc}"
                stop.wait(s.recover_interval)
                continue
            if not task:
                self.status, self.rec = "Waiting", {"state": "Empty"}
                stop.wait(s.rpc_polling_interval)
                continue
            sid = task["Sector"]["ID"]
            self.status = "Running"
            self.rec = {"state": self.working_state, "name": sector_file_names(sid["Miner"], sid["Number"])}
            try:
                self.work(task, stop)
                error = ""
                self.done += 1
                self.last_error = None
                log.info("thread %d: %s of %s done", self.index, self.plan, self.rec["name"])
            except Exception as exc:         # reported to the manager as the task's error
                error = str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}"
                self.last_error = f"{self.plan}: {error}"
                log.error("thread %d: %s of %s failed: %s", self.index, self.plan, self.rec["name"], error)
            finally:
                self.cleanup()
            if self.report_method:
                self._report(self.report_args(task) + [error], stop)
            elif error:
                stop.wait(s.recover_interval)     # the manager keeps the task for this worker: try again later

    def _report(self, args: list, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ctx.rpc.call(self.report_method, *args)
                return
            except TransportError as exc:          # the manager must learn the outcome
                log.warning("thread %d: %s failed, retrying: %s", self.index, self.report_method, exc)
                stop.wait(self.ctx.sealing.recover_interval)
            except RPCError as exc:
                log.warning("thread %d: %s: %s", self.index, self.report_method, exc.message)
                return
