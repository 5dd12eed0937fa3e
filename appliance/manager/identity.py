"""Who may act on a sector or under a worker's name, and the bounds on what a worker reports.

A sector belongs to the caller identity that allocated it (rpc.server.Caller: a token's subject,
a digest of a token without one, or the source address of a tokenless AllowNetworks worker); a
worker name belongs to the identity that first pinged or reported under it. Admin callers (the
operator) and the manager itself (caller None) are not bound. Every refusal is counted by kind
(the manager's metrics)."""

from __future__ import annotations

import threading
from collections import Counter

from ..core.protocol import WORKER_STATES
from ..core.sector import sector_name
from ..rpc import INVALID_PARAMS, UNAUTHORIZED, RPCError

NAME_LENGTH = 256
# every kind counted in damocles_manager_limited_total (each is exported, 0 until it happens)
KINDS = ("in_flight", "text_truncated", "unknown_state", "unknown_level", "foreign_sector", "foreign_worker",
         "worker_names", "worker_expired", "deal_hold", "piece_quota", "piece_expired")
# failure levels: ours, and the names Damocles' worker spells out
LEVELS = {"temp": "temp", "perm": "perm", "crit": "crit", "abort": "abort",
          "Temporary": "temp", "Permanent": "perm", "Critical": "crit", "Abort": "abort"}


class Limits:
    """Counts of what was refused, cut or expired, per kind (damocles_manager_limited_total), and
    the cut of long texts. One per manager (ManagerState.limits): every module that stores text a
    worker sent cuts it here. `text_length`: `[Sealing] MaxTextLength`; `max_worker_names`:
    `[Sealing] MaxWorkerNamesPerCredential` (the Sealer sets both from the config)."""

    def __init__(self, text_length: int = 4096, max_worker_names: int = 256):
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.text_length = text_length
        self.max_worker_names = max_worker_names

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counts[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def text(self, value: str | None, limit: int) -> str | None:
        """`value` cut to `limit` characters with a marker saying how much was cut."""
        if value is None or len(value) <= limit:
            return value
        self.count("text_truncated")
        return f"{value[:limit]}... [{len(value) - limit} more characters cut]"

    def long_text(self, value: str | None) -> str | None:
        """An error text or reason a worker sent, cut at `[Sealing] MaxTextLength`."""
        return self.text(value, self.text_length)

    def state(self, value: str, field: str) -> str:
        if value not in WORKER_STATES:
            self.count("unknown_state")
            raise RPCError(INVALID_PARAMS, f"{field}: {value[:64]!r} is not a state of a Damocles worker "
                           f"(expected one of {', '.join(WORKER_STATES)})")
        return value

    def level(self, value: str, field: str) -> str:
        level = LEVELS.get(value)
        if level is None:
            self.count("unknown_level")
            raise RPCError(INVALID_PARAMS, f"{field}: {value[:64]!r} is not a failure level (expected temp, perm, crit or abort)")
        return level


def bound(caller) -> bool:
    """Whether the caller is held to the bindings (a worker's credential, not the operator's or the manager's)."""
    return caller is not None and not caller.admin


class TooManyNames(Exception):
    """The credential already holds `[Sealing] MaxWorkerNamesPerCredential` worker names (state.py)."""

    def __init__(self, held: int):
        super().__init__(held)
        self.held = held


def names_refused(limits: Limits, name: str, held: int) -> RPCError:
    limits.count("worker_names")
    return RPCError(INVALID_PARAMS, f"worker name {name!r} refused: this credential already holds {held} worker names "
                    "([Sealing] MaxWorkerNamesPerCredential); reuse a name, or let unused ones expire ([Sealing] WorkerExpiry)")


def check_worker_name(state, limits: Limits, name: str, caller, max_names: int) -> None:
    """Refuse a report under a worker name another identity holds; an unheld name becomes the
    caller's unless it already holds `max_names`."""
    if not bound(caller):
        return
    try:
        owner = state.worker_owner(name) or state.claim_worker(name, caller.identity, max_names)
    except TooManyNames as exc:
        raise names_refused(limits, name, exc.held) from None
    if owner != caller.identity:
        limits.count("foreign_worker")
        raise RPCError(UNAUTHORIZED, f"worker name {name!r} is registered by another credential; "
                       "each worker needs its own name")


def check_sector(state, limits: Limits, rec: dict, caller, rebuild_worker: str | None = None) -> None:
    """Refuse a call on a sector allocated to another identity. A sector allocated before owners
    were kept becomes the first caller's. `rebuild_worker`: who a rebuild task of the sector is
    allocated to (the identity; a worker name in tasks allocated before), which may act on it too."""
    if not bound(caller):
        return
    owner = rec.get("owner") or state.claim_sector(rec["miner"], rec["number"], caller.identity)
    if owner == caller.identity:
        return
    if rebuild_worker is not None and caller.identity in (rebuild_worker, state.worker_owner(rebuild_worker)):
        return
    limits.count("foreign_sector")
    raise RPCError(UNAUTHORIZED, f"sector {sector_name(rec['miner'], rec['number'])} is allocated to another worker's "
                   "credential; this one may not report or submit for it")
