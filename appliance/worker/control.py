"""What every kind of sealing thread shares with the operator: pause, resume (optionally at a
named state) and the summary `worker list` shows. Written once here; each thread says how it
pauses through `_paused()` and what it adds to its summary through `_summary_extra()`.

The summary is Damocles' `WorkerInfo` (damocles-worker src/rpc/worker/mod.rs) as serde writes it,
which Damocles' CLIs read: location ("-" for none), plan, job_id, index, thread_state (`{"state":
"Idle"}`, or Paused / Waiting with `elapsed` seconds in that state, or Running with `elapsed` in
the current step and `proc`), job_state (a string, "" for none), job_stage, last_error."""

from __future__ import annotations

import threading
import time

from .record import EMPTY

THREAD_STATES = ("Idle", "Running", "Waiting", "Paused")      # Damocles' SealingThreadState variants


class ThreadControl:
    plan = ""

    def __init__(self, index: int, location=None):
        self.index, self.location = index, location
        self.rec = EMPTY
        self._status, self._status_since = "Idle", time.monotonic()
        self.status = "Idle"          # Idle | Running | Waiting | Paused
        self.last_error: str | None = None
        self.config_error: str | None = None
        self._pause_requested = False
        self._resume = threading.Event()
        self._resume_state: str | None = None

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        # each step is a new run (Damocles' Running{at} is the start of the task in flight);
        # the other states count from when the thread entered them
        if value != self._status or value == "Running":
            self._status_since = time.monotonic()
        self._status = value

    def _thread_state(self) -> dict:
        state = self.status
        if state != self._status:         # a status derived elsewhere (wdpost) changes without the setter
            self._status, self._status_since = state, time.monotonic()
        if state not in THREAD_STATES or state == "Idle":
            return {"state": "Idle"}
        out = {"state": state, "elapsed": int(time.monotonic() - self._status_since)}
        if state == "Running":
            out["proc"] = None           # steps run in pools, not under one named processor
        return out

    def _paused(self) -> bool:
        return self.rec.paused

    def pause(self) -> bool:
        """Pause after the step in flight (an operator's interrupt)."""
        if self._paused() or self._pause_requested:
            return False
        self._pause_requested = True
        return True

    def resume(self, state: str | None = None) -> bool:
        if not self._paused():
            return False
        self._resume_state = state
        self._resume.set()
        return True

    def _summary_extra(self) -> dict:
        return {}

    def summary(self) -> dict:
        """Damocles' WorkerInfo, and ours: config_error (a hot config change that was refused)."""
        out = {"index": self.index, "location": str(self.location or "-"), "plan": self.plan,
               "job_id": self.rec.name, "job_state": self.rec.state or "", "job_stage": None,
               "thread_state": self._thread_state(), "last_error": self.last_error, "config_error": self.config_error}
        out.update(self._summary_extra())
        return out


class RefusedThread(ThreadControl):
    """A `[[sealing_thread]]` whose plan cannot run on this worker (`plan = "niporep"`): it
    takes no work and shows why (`damocles worker list`); the worker's other threads run."""

    def __init__(self, index: int, config):
        super().__init__(index, config.location)
        self.plan = config.plan
        self.status = "Paused"
        self.last_error = f"crit: {config.refused}"

    def run(self, stop: threading.Event) -> None:
        stop.wait()
