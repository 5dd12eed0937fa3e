"""One manager process per home: `manager run` holds an exclusive flock on `<home>/.manager.lock`
for as long as it runs (released by the kernel when the process dies, however it dies), with its
pid written in the file. A second `manager run` on the same home, and `manager restore` into it,
are refused naming the home and the holder's pid. `restore` and a backup of a stopped manager
hold the lock while they work, so that no manager starts on a home half restored or half copied."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..core.db import DatabaseError

LOCK_FILE = ".manager.lock"


class HomeInUse(DatabaseError):
    """Another process holds the manager home's lock."""


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote: '<pid> <what it does>'."""
    pid, _, role = os.pread(fd, 128, 0).decode(errors="replace").strip().partition(" ")
    return f"{role or 'a manager'} (pid {pid})" if pid.isdigit() else "another process"


class HomeLock:
    """The exclusive lock on a manager home, taken at once or refused (never waited for)."""

    def __init__(self, home: Path, role: str = "manager run", purpose: str = "a home runs one manager at a time"):
        self.path = Path(home) / LOCK_FILE
        Path(home).mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            self._fd = None
            raise HomeInUse(f"manager home {Path(home)} is in use by {holder}, which holds {self.path}: {purpose}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} damocles {role}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def try_lock(home: Path, role: str) -> HomeLock | None:
    """The home's lock when no one holds it, None while someone does (an online backup)."""
    try:
        return HomeLock(home, role)
    except HomeInUse:
        return None
