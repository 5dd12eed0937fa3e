"""Operator actions on a sector, from the status page or any admin client (JSON-RPC, admin):
`Venus.SectorResume(sid, state|null)`, `Venus.SectorPause(sid)`, `Venus.SectorAbort(sid, reason)`.

As `damocles util workers pause|resume` does, the manager finds the worker that reported the
sector (its last ReportState), asks that worker's own RPC (`VenusWorker.WorkerList`) which sealing
thread holds it, and calls `VenusWorker.WorkerResume` / `WorkerPause` there with an admin token of
its own (the worker checks it with the manager's AuthVerify). Work still moves only when the
worker's thread takes its next step."""

from __future__ import annotations

import logging

from ..core.sector import sector_name
from ..rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, RPCError
from ..rpc.auth import issue_token
from ..rpc.client import RPCClient, TransportError
from ..rpc.wire import optional, sector_id, string

log = logging.getLogger("damocles.manager.actions")
ACTION_ERROR = 11050     # the worker could not be reached or refused


class SectorActions:
    def __init__(self, state, sealer, secret: bytes, timeout: float = 10.0):
        self.state, self.sealer, self.timeout = state, sealer, timeout
        self._secret = secret       # a token per call: short-lived, and signed with the current secret after a rotation

    def _locate(self, sid: dict) -> tuple[dict, RPCClient, dict]:
        """(record, the worker's RPC client, the sealing thread holding the sector)."""
        rec = self.state.sector(sid["Miner"], sid["Number"])
        name = sector_name(sid["Miner"], sid["Number"])
        if rec is None:
            raise RPCError(SECTOR_NOT_FOUND, f"sector {name} not found")
        worker = rec.get("worker")
        if not worker:
            raise RPCError(INVALID_PARAMS, f"sector {name} has not been reported by any worker yet")
        infos = {n: i for n, i, _ in self.state.workers()}
        dest = (infos.get(worker) or {}).get("Dest")
        if not dest:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} (holding {name}) has not pinged the manager with its RPC address")
        client = RPCClient(f"http://{dest}", issue_token(self._secret, "admin", "manager-actions", ttl=60), timeout=self.timeout)
        try:
            threads = client.call("VenusWorker.WorkerList")
        except TransportError as exc:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} at {dest} cannot be reached: {exc}") from None
        except RPCError as exc:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} at {dest} refused WorkerList: {exc.message}") from None
        thread = next((t for t in threads if t.get("job_id") == name), None)
        if thread is None:
            raise RPCError(ACTION_ERROR, f"no sealing thread of worker {worker!r} holds {name} now")
        return rec, client, thread

    def _call(self, client: RPCClient, method: str, *params):
        try:
            return client.call(method, *params)
        except TransportError as exc:
            raise RPCError(ACTION_ERROR, f"{method} at {client.url}: {exc}") from None
        except RPCError as exc:
            raise RPCError(exc.code if exc.code == INVALID_PARAMS else ACTION_ERROR, f"{method}: {exc.message}") from None

    def resume(self, sid: dict, state: str | None) -> dict:
        rec, client, thread = self._locate(sid)
        ok = self._call(client, "VenusWorker.WorkerResume", thread["index"], state)
        log.warning("operator: resume %s%s on worker %s thread %d: %s", thread["job_id"], f" at {state}" if state else "",
                    rec["worker"], thread["index"], "resumed" if ok else "it was not paused",
                    extra={"sector": thread["job_id"], "state": state or rec.get("state")})
        return {"Worker": rec["worker"], "Index": thread["index"], "Resumed": bool(ok)}

    def pause(self, sid: dict) -> dict:
        rec, client, thread = self._locate(sid)
        ok = self._call(client, "VenusWorker.WorkerPause", thread["index"])
        log.warning("operator: pause %s on worker %s thread %d", thread["job_id"], rec["worker"], thread["index"],
                    extra={"sector": thread["job_id"], "state": rec.get("state")})
        return {"Worker": rec["worker"], "Index": thread["index"], "Paused": bool(ok)}

    def abort(self, sid: dict, reason: str) -> dict:
        """Abort on the manager; a paused thread holding it is resumed so that its next report
        hears of the abort and it cleans up (a running one hears at its next report anyway)."""
        self.sealer.abort(sid, reason or "aborted by the operator")
        out = {"Aborted": True, "Nudged": False}
        try:
            rec, client, thread = self._locate(sid)
        except RPCError as exc:
            out["Note"] = exc.message
            return out
        if thread["thread_state"]["state"] == "Paused":
            out["Nudged"] = bool(self._call(client, "VenusWorker.WorkerResume", thread["index"], None))
        return out


def register(server, actions: SectorActions) -> None:
    server.register("Venus.SectorResume", actions.resume, "admin", [("sid", sector_id), ("state", optional(string))])
    server.register("Venus.SectorPause", actions.pause, "admin", [("sid", sector_id)])
    server.register("Venus.SectorAbort", actions.abort, "admin", [("sid", sector_id), ("reason", string)])
