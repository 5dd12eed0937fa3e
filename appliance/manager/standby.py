"""`manager run` with the lease (manager.lease): take it and serve, or stand by until it lapses.

A standby opens nothing of the manager (no sealer, committer, poster: they would write). It
serves its listen address so that workers and operators can tell it from a manager that is down:
/healthcheck answers ok, every JSON-RPC method the STANDBY error naming the active manager's
address, every other route 503. It polls the lease every LeaseSeconds / 3; once the holder's
lease lapses it takes it, closes the standby server and opens the manager as a restarted one does,
every piece of state read from the database."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from ..rpc.auth import NetworkAllowList, SecretFile
from ..rpc.server import RPCServer
from .lease import Lease, LeaseHolder
from .state import ManagerState

log = logging.getLogger("damocles.manager")


def advertised_addr(listen: str) -> str:
    """The address the active manager names to others: its listen address, a wildcard host
    (0.0.0.0, ::, empty) replaced by this host's name."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def open_lease(home: Path, config, listen: str) -> tuple[ManagerState, Lease]:
    """The manager's state and the lease on it, opened before any of the manager (a standby
    reads only the lease); the manager, once active, takes this state as its own."""
    state = ManagerState(Path(home) / "manager.db", store=config.db)
    return state, Lease(state.db, advertised_addr(listen), config.db.lease_seconds)


class StandbyServer:
    """What a standby serves on the manager's listen address (see the module's doc)."""

    def __init__(self, home: Path, config):
        self.active: str | None = None
        allow = NetworkAllowList(config.allow_networks) if config.allow_networks else None
        self.rpc = RPCServer(SecretFile(Path(home) / "secret"), allow, config.max_body)
        self.rpc.standby = lambda: self.active
        self.addr: tuple[str, int] | None = None

    def serve(self, listen: str) -> tuple[str, int]:
        host, _, port = listen.rpartition(":")
        self.addr = self.rpc.serve(host or "127.0.0.1", int(port))
        return self.addr

    def shutdown(self) -> None:
        self.rpc.shutdown()


def wait_for_lease(lease: Lease, server: StandbyServer, stop: threading.Event) -> bool:
    """Stand by until the lease is ours (True) or `stop` is set (False). Polls every
    LeaseSeconds / 3; a database that cannot be read is retried at the next poll."""
    last: LeaseHolder | None = None
    while True:
        try:
            holder = lease.try_take()
            if holder is None:
                return True
            if last is None or holder.holder != last.holder:
                log.info("standing by: the active manager is %s at %s; polling its lease every %.1fs",
                         holder.holder, holder.addr, lease.renew_interval)
            server.active, last = holder.addr, holder
        except Exception as exc:     # noqa: BLE001 - the database is away: the next poll tries again
            log.warning("standby: the manager lease cannot be read: %s", exc)
        if stop.wait(lease.renew_interval):
            return False
