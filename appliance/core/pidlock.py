"""An exclusive lock held by one process for as long as it runs: flock on a file, released by the
kernel when the process dies however it dies, with `<pid> <what it does>` written in the file so
that a refused caller can name the holder. Taken at once or refused, never waited for."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; `pid` and `role` from what it wrote (None if unreadable)."""

    def __init__(self, path: Path, pid: int | None, role: str):
        super().__init__(f"{path} is held by {role or 'another process'} (pid {pid})")
        self.pid, self.role = pid, role


class PidLock:
    def __init__(self, path: str | os.PathLike, role: str, mode: int = 0o600):
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, mode)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, held_role = os.pread(self._fd, 128, 0).decode(errors="replace").strip().partition(" ")
            os.close(self._fd)
            self._fd = None
            raise LockHeld(self.path, int(pid) if pid.isdigit() else None, held_role) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} {role}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
