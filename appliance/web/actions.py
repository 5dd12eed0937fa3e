"""Operator actions on a sector, from the status page or any admin client (JSON-RPC, admin):
`Venus.SectorResume(sid, state|null)`, `Venus.SectorPause(sid)`, `Venus.SectorAbort(sid, reason)`;
and on a worker's thread by the worker's name (`damocles util workers info|pause|resume`):
`Venus.WorkerThreadList(name)` (read), `Venus.WorkerThreadPause(name, index)`,
`Venus.WorkerThreadResume(name, index, state|null)` (admin).

The manager finds the worker that reported the sector (its last ReportState), asks that worker's
own RPC (`VenusWorker.WorkerList`) which sealing thread holds it, and calls
`VenusWorker.WorkerResume` / `WorkerPause` there, at the address the worker registered (scheme,
host and port only). Each call carries its own worker-call credential (rpc/auth.py): good for
that one method on that one worker for 60 s, and refused by the manager's own API, so neither
the worker nor anyone on the way can replay it as the operator. The worker has it checked by
the manager's `Venus.AuthVerifyWorkerCall`. Work still moves only when the worker's thread takes
its next step."""

from __future__ import annotations

import logging

from ..core.sector import sector_name
from ..rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, UNAUTHORIZED, RPCError
from ..rpc.auth import AuthError, issue_worker_call_token, verify_worker_call_token
from ..rpc.client import RPCClient, TransportError
from ..rpc.dest import worker_url
from ..rpc.wire import optional, sector_id, string, u64

log = logging.getLogger("damocles.manager.actions")
ACTION_ERROR = 11050     # the worker could not be reached or refused


class SectorActions:
    def __init__(self, state, sealer, secret, timeout: float = 10.0):
        self.state, self.sealer, self.timeout = state, sealer, timeout
        self._secret = secret       # a credential per call: short-lived, signed with the current secret after a rotation

    def _worker_call(self, worker: str, method: str, *params):
        """`method` on `worker`'s RPC at its registered address, with a credential for that call only."""
        infos = {n: i for n, i, _ in self.state.workers()}
        if worker not in infos:
            raise RPCError(ACTION_ERROR, f"no worker named {worker!r} has pinged the manager")
        dest = infos[worker].get("Dest")
        if not dest:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} has not pinged the manager with its RPC address")
        try:
            url = worker_url(dest)
        except ValueError as exc:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} registered an RPC address the manager will not call: {exc}") from None
        client = RPCClient(url, issue_worker_call_token(self._secret, method, worker), timeout=self.timeout)
        try:
            return client.call(method, *params)
        except TransportError as exc:
            raise RPCError(ACTION_ERROR, f"worker {worker!r} at {dest} cannot be reached: {exc}") from None
        except RPCError as exc:
            raise RPCError(exc.code if exc.code == INVALID_PARAMS else ACTION_ERROR,
                           f"worker {worker!r} refused {method}: {exc.message}") from None

    def _locate(self, sid: dict) -> tuple[dict, dict]:
        """(record, the sealing thread holding the sector)."""
        rec = self.state.sector(sid["Miner"], sid["Number"])
        name = sector_name(sid["Miner"], sid["Number"])
        if rec is None:
            raise RPCError(SECTOR_NOT_FOUND, f"sector {name} not found")
        worker = rec.get("worker")
        if not worker:
            raise RPCError(INVALID_PARAMS, f"sector {name} has not been reported by any worker yet")
        threads = self._worker_call(worker, "VenusWorker.WorkerList")
        thread = next((t for t in threads if t.get("job_id") == name), None)
        if thread is None:
            raise RPCError(ACTION_ERROR, f"no sealing thread of worker {worker!r} holds {name} now")
        return rec, thread

    def resume(self, sid: dict, state: str | None) -> dict:
        rec, thread = self._locate(sid)
        ok = self._worker_call(rec["worker"], "VenusWorker.WorkerResume", thread["index"], state)
        log.warning("operator: resume %s%s on worker %s thread %d: %s", thread["job_id"], f" at {state}" if state else "",
                    rec["worker"], thread["index"], "resumed" if ok else "it was not paused",
                    extra={"sector": thread["job_id"], "state": state or rec.get("state")})
        return {"Worker": rec["worker"], "Index": thread["index"], "Resumed": bool(ok)}

    def pause(self, sid: dict) -> dict:
        rec, thread = self._locate(sid)
        ok = self._worker_call(rec["worker"], "VenusWorker.WorkerPause", thread["index"])
        log.warning("operator: pause %s on worker %s thread %d", thread["job_id"], rec["worker"], thread["index"],
                    extra={"sector": thread["job_id"], "state": rec.get("state")})
        return {"Worker": rec["worker"], "Index": thread["index"], "Paused": bool(ok)}

    def abort(self, sid: dict, reason: str) -> dict:
        """Abort on the manager; a paused thread holding it is resumed so that its next report
        hears of the abort and it cleans up (a running one hears at its next report anyway)."""
        self.sealer.abort(sid, reason or "aborted by the operator")
        out = {"Aborted": True, "Nudged": False}
        try:
            rec, thread = self._locate(sid)
        except RPCError as exc:
            out["Note"] = exc.message
            return out
        if thread["thread_state"]["state"] == "Paused":
            out["Nudged"] = bool(self._worker_call(rec["worker"], "VenusWorker.WorkerResume", thread["index"], None))
        return out

    # a worker's threads by the worker's name (the CLI's `util workers info|pause|resume`)

    def worker_threads(self, worker: str) -> list:
        return self._worker_call(worker, "VenusWorker.WorkerList")

    def worker_pause(self, worker: str, index: int) -> bool:
        ok = self._worker_call(worker, "VenusWorker.WorkerPause", index)
        log.warning("operator: pause worker %s thread %d", worker, index)
        return ok

    def worker_resume(self, worker: str, index: int, state: str | None) -> bool:
        ok = self._worker_call(worker, "VenusWorker.WorkerResume", index, state)
        log.warning("operator: resume worker %s thread %d%s", worker, index, f" at {state}" if state else "")
        return ok

    def verify_worker_call(self, token: str) -> dict:
        """For a worker checking the credential a manager call brought: what it allows."""
        try:
            claims = verify_worker_call_token(self._secret, token)
        except AuthError as exc:
            raise RPCError(UNAUTHORIZED, str(exc)) from None
        return {"Action": claims["act"], "Worker": claims["wkr"], "Expires": claims["exp"], "ID": claims.get("jti", "")}


def register(server, actions: SectorActions) -> None:
    server.register("Venus.SectorResume", actions.resume, "admin", [("sid", sector_id), ("state", optional(string))])
    server.register("Venus.SectorPause", actions.pause, "admin", [("sid", sector_id)])
    server.register("Venus.SectorAbort", actions.abort, "admin", [("sid", sector_id), ("reason", string)])
    server.register("Venus.WorkerThreadList", actions.worker_threads, "read", [("worker", string)])
    server.register("Venus.WorkerThreadPause", actions.worker_pause, "admin", [("worker", string), ("index", u64)])
    server.register("Venus.WorkerThreadResume", actions.worker_resume, "admin",
                    [("worker", string), ("index", u64), ("state", optional(string))])
    # any caller may ask: it tells only whether a credential it holds is genuine, and what for
    server.register("Venus.AuthVerifyWorkerCall", actions.verify_worker_call, "read", [("token", string)])
