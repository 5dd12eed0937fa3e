"""Failure levels of a sealing step, as Damocles' worker has them:
temp (retried `max_retries` times every `recover_interval`, then perm; an unreachable manager
is retried without limit), perm and crit (the thread
pauses until an operator resumes it), abort (the sector is given up and reported). Wait is not a
failure: the step is not done yet (idle, polling, waiting for the seed)."""

from __future__ import annotations


class StepFailure(Exception):
    level = "perm"


class Temp(StepFailure):
    level = "temp"
    counts = True      # towards `max_retries`


class Unreachable(Temp):
    """The manager did not answer. Retried every `recover_interval` without using up
    `max_retries`: a manager restart or a network outage is not the sector's fault, and pausing
    every thread of every worker for it would need an operator to resume them all."""
    counts = False


class NoSpace(Temp):
    """A sealing location (or the journal in it) is full. Retried every `recover_interval`
    without using up `max_retries`: the sector resumes once space is freed."""
    counts = False


def no_space(text: str) -> bool:
    """Whether an error's text says a device is full (ENOSPC, or a full SQLite database)."""
    return any(s in text for s in ("ENOSPC", "No space left on device", "[Errno 28]", "database or disk is full"))


class Perm(StepFailure):
    level = "perm"


class Crit(StepFailure):
    level = "crit"


class Abort(StepFailure):
    level = "abort"


class Wait(Exception):
    """Come back later: after `delay` seconds, or the polling interval, or the recover interval."""

    def __init__(self, why: str, delay: float | None = None, polling: bool = False):
        super().__init__(why)
        self.delay, self.polling = delay, polling
