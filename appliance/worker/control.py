"""What every kind of sealing thread shares with the operator: pause, resume (optionally at a
named state) and the summary `worker list` shows. Written once here; each thread says how it
pauses through `_paused()` and what it adds to its summary through `_summary_extra()`."""

from __future__ import annotations

import threading

from .record import EMPTY


class ThreadControl:
    plan = ""

    def __init__(self, index: int, location=None):
        self.index, self.location = index, location
        self.rec = EMPTY
        self.status = "Idle"          # Idle | Running | Waiting | Paused
        self.last_error: str | None = None
        self.config_error: str | None = None
        self._pause_requested = False
        self._resume = threading.Event()
        self._resume_state: str | None = None

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
        return {"index": self.index, "location": str(self.location or ""), "plan": self.plan,
                "job_id": self.rec.name, "job_state": self.rec.state, "thread_state": {"state": self.status},
                "last_error": self.last_error, "config_error": self.config_error, **self._summary_extra()}


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
