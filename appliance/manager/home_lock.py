"""One manager process per home: `manager run` holds an exclusive flock on `<home>/.manager.lock`
for as long as it runs (released by the kernel when the process dies, however it dies), with its
pid written in the file. A second `manager run` on the same home, and `manager restore` into it,
are refused naming the home and the holder's pid. `restore` and a backup of a stopped manager
hold the lock while they work, so that no manager starts on a home half restored or half copied."""

from __future__ import annotations

from pathlib import Path

from ..core.db import DatabaseError
from ..core.pidlock import LockHeld, PidLock

LOCK_FILE = ".manager.lock"


class HomeInUse(DatabaseError):
    """Another process holds the manager home's lock."""


class HomeLock(PidLock):
    """The exclusive lock on a manager home."""

    def __init__(self, home: Path, role: str = "manager run", purpose: str = "a home runs one manager at a time"):
        Path(home).mkdir(parents=True, exist_ok=True)
        try:
            super().__init__(Path(home) / LOCK_FILE, f"damocles {role}")
        except LockHeld as held:
            holder = f"{held.role or 'a manager'} (pid {held.pid})" if held.pid is not None else "another process"
            raise HomeInUse(f"manager home {Path(home)} is in use by {holder}, which holds {Path(home) / LOCK_FILE}: "
                            f"{purpose}") from None


def try_lock(home: Path, role: str) -> HomeLock | None:
    """The home's lock when no one holds it, None while someone does (an online backup)."""
    try:
        return HomeLock(home, role)
    except HomeInUse:
        return None
