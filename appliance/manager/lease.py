"""The active manager's lease: one row (`manager_lease`) in the manager's store that says which
`manager run` process may write, until when, and where it serves. Several managers on one
database (a PostgreSQL server, or one SQLite file on one host): the one holding the lease is
active, the others stand by (manager.standby) and take it once it lapses.

- The holder is one process: host, pid and start time (`holder_id`), so that a restarted manager
  is a new holder and never mistakes an old lease for its own.
- Expiry is a wall-clock time (seconds since the epoch) read from each manager's own clock: the
  hosts' clocks must agree to well under LeaseSeconds / 3 (NTP).
- The active renews every LeaseSeconds / 3. A renewal that finds the lease lapsed or taken is
  the end of that manager: `lost` is set and it must stop writing at once.
- Fencing: every write transaction of the active manager checks the lease first, under the
  writer lock (`Lease.fence`, installed as the Database's `fence`): one read of the one-row
  table by its primary key. A manager whose lease lapsed or was taken cannot commit anything,
  even a write begun before the takeover."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..core.db import DatabaseError

log = logging.getLogger("damocles.manager")

DEFAULT_LEASE_SECONDS = 10.0
MIN_LEASE_SECONDS = 1.0

# SQLite (state.py's version step) and PostgreSQL (state_pg.py) keep the same columns
SQLITE_DDL = ("CREATE TABLE IF NOT EXISTS manager_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, "
              "addr TEXT NOT NULL, expires REAL NOT NULL)")
POSTGRES_DDL = ("CREATE TABLE manager_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, "
                "addr TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)")


class LeaseLost(DatabaseError):
    """This manager no longer holds the lease: it must not write (another may be active)."""


@dataclass(frozen=True)
class LeaseHolder:
    holder: str       # host:pid:start time of the process holding it
    addr: str         # where it serves RPC (its advertised address)
    expires: float    # wall-clock seconds

    def live(self, now: float) -> bool:
        return self.expires > now


def holder_id() -> str:
    """This process, as a lease holder: a restart (a new pid or start time) is a new holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.6f}"


def dead_here(holder: str) -> bool:
    """Whether `holder` was a process of this host that is gone (a manager killed and restarted
    by systemd): its lease can be taken at once, it writes nothing more. A live process, or a pid
    now someone else's, is taken as the holder: its lease must lapse first."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:         # another user's process: alive
        return False
    return False


class Lease:
    """This process's view of the lease on `db` (a core.db Database or core.pg PostgresDatabase
    holding the manager's schema). `addr`: the RPC address it advertises while active."""

    def __init__(self, db, addr: str, seconds: float = DEFAULT_LEASE_SECONDS, holder: str | None = None,
                 now: Callable[[], float] = time.time):
        self.db, self.addr, self.seconds, self._now = db, addr, float(seconds), now
        self.holder = holder or holder_id()
        self.lost = threading.Event()       # set once: this process must stop writing
        self.on_lost: Callable[[str], None] | None = None    # called once, with the reason, when lost is set
        self._for_update = db.dialect.for_update
        self._expires = 0.0         # the expiry we last wrote (what keep() goes by when the database is away)

    @property
    def renew_interval(self) -> float:
        return self.seconds / 3

    def current(self) -> LeaseHolder | None:
        row = self.db.one("SELECT holder, addr, expires FROM manager_lease WHERE id = 1")
        return LeaseHolder(*row) if row else None

    def try_take(self) -> LeaseHolder | None:
        """Take the lease if no live holder has it (or renew it, ours already). Returns None when
        this process holds it now, else the live holder that does."""
        seen = self.current()       # read without the writer lock first: a standby's usual answer
        if seen is not None and seen.holder != self.holder and seen.live(self._now()) and not dead_here(seen.holder):
            return seen
        with self.db.tx() as conn:
            row = conn.execute(f"SELECT holder, addr, expires FROM manager_lease WHERE id = 1{self._for_update}").fetchone()
            now = self._now()
            if row is not None and row[0] != self.holder and row[2] > now and not dead_here(row[0]):
                return LeaseHolder(*row)
            if self.lost.is_set():        # never again, once lost: a restart is a new holder
                raise LeaseLost(f"the manager lease was lost by {self.holder}; restart to stand by again")
            conn.execute("INSERT INTO manager_lease (id, holder, addr, expires) VALUES (1, ?, ?, ?) "
                         "ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, addr = excluded.addr, "
                         "expires = excluded.expires", (self.holder, self.addr, now + self.seconds))
        self._expires = now + self.seconds
        if row is not None and row[0] != self.holder:
            log.warning("took the manager lease from %s (%s), %s", row[0], row[1],
                        f"which lapsed {now - row[2]:.1f}s ago" if row[2] <= now else "a process of this host that is gone")
        return None

    def renew(self) -> bool:
        """Extend our lease by LeaseSeconds from now; False (and `lost` set) when it lapsed or
        another holder has it: this process must stop writing."""
        if self.lost.is_set():
            return False
        with self.db.tx() as conn:
            row = conn.execute(f"SELECT holder, expires FROM manager_lease WHERE id = 1{self._for_update}").fetchone()
            now = self._now()
            reason = self._refusal(row, now)
            if reason is None:
                conn.execute("UPDATE manager_lease SET expires = ?, addr = ? WHERE id = 1", (now + self.seconds, self.addr))
        if reason is not None:
            self._lose(reason)
            return False
        self._expires = now + self.seconds
        return True

    def _refusal(self, row, now: float) -> str | None:
        if row is None:
            return "the lease row is gone"
        if row[0] != self.holder:
            return f"the lease is held by {row[0]} now"
        if row[1] <= now:
            return f"the lease lapsed {now - row[1]:.1f}s ago (not renewed in time)"
        return None

    def fence(self, conn) -> None:
        """Called at the start of each write transaction, under the writer lock: refuse it (the
        transaction is rolled back, nothing of it stored) unless this process holds a live lease."""
        if self.lost.is_set():
            raise LeaseLost(f"manager {self.holder} lost its lease: its writes are refused")
        row = conn.execute("SELECT holder, expires FROM manager_lease WHERE id = 1").fetchone()
        reason = self._refusal(row, self._now())
        if reason is not None:
            self._lose(reason)
            raise LeaseLost(f"manager {self.holder}: {reason}; its writes are refused")

    def release(self) -> None:
        """A clean stop: the lease expires now, so that a standby takes over at its next poll
        (nothing is released when lost: another holder may have it)."""
        if self.lost.is_set():
            return
        with self.db.tx() as conn:
            conn.execute("UPDATE manager_lease SET expires = ? WHERE id = 1 AND holder = ?", (self._now(), self.holder))
        self.lost.set()

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        log.critical("manager lease lost: %s: this manager stops writing now", reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def overdue(self) -> bool:
        """Whether our lease expired by our own clock without a renewal (the database hangs, or a
        renewal waits behind a long write): then it is lost, at once, wherever the renewal is."""
        if not self.lost.is_set() and self._expires and self._now() >= self._expires:
            self._lose(f"not renewed before it expired ({self._now() - self._expires:.1f}s ago)")
        return self.lost.is_set()

    def keep(self, stop: threading.Event) -> None:
        """Renew every LeaseSeconds / 3 until `stop` or the lease is lost (a renewal that fails
        on the database is retried at the next tick; the lease lapses if none succeeds in time).
        A watchdog beside it declares the lease lost once it expired unrenewed, even while a
        renewal is stuck on the database."""
        def watch():
            while not stop.wait(self.renew_interval / 2) and not self.overdue():
                pass
        threading.Thread(target=watch, name="lease-watchdog", daemon=True).start()
        while not stop.wait(self.renew_interval) and not self.lost.is_set():
            try:
                self.renew()
            except LeaseLost:
                return
            except Exception as exc:     # noqa: BLE001 - the database is away: the next tick tries again
                log.warning("renewing the manager lease failed: %s", exc)
                if self._now() >= self._expires:
                    self._lose("the lease lapsed while the database could not be reached")
                    return
