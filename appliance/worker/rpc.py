"""The worker's own RPC (`VenusWorker.*`, the six methods of Damocles' worker, in its shapes):
list the sealing threads (WorkerList, Damocles' WorkerInfo: control.py), pause one, resume one
(optionally at a named state), set or remove an environment variable (runtime_env.py says what
that changes), the version. It accepts two kinds of credential:

- the manager's tokens (an operator's `damocles worker pause`), checked with the manager's
  `Venus.AuthVerify`; the answer is trusted for at most TOKEN_CACHE_SECONDS (60 s), never past
  the token's `exp`, so a token refused by the manager (its secret rotated) is refused here
  within one cache period;
- the worker-call credentials the manager's own calls carry (rpc/auth.py), checked on every use
  with the manager's `Venus.AuthVerifyWorkerCall` (asked with this worker's own credential) and
  then allowed once, for the one method they name, and only if they name this worker."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

from .. import __version__
from . import runtime_env
from ..rpc import RPCError, INVALID_PARAMS, UNAUTHORIZED
from ..rpc.auth import (PERMISSIONS, TOKEN_CACHE_SECONDS, AuthError, TokenCache, check_worker_call_scope,
                        is_worker_call_token)
from ..rpc.client import RPCClient, TransportError
from ..rpc.server import RPCServer
from ..rpc.wire import optional, string, u64


def manager_verifier(rpc: RPCClient, cache_seconds: float = TOKEN_CACHE_SECONDS):
    cache = TokenCache(cache_seconds)

    def verify(token: str) -> str:
        perm = cache.get(token)
        if perm is not None:
            return perm
        try:
            perms = RPCClient(rpc.urls, token, timeout=10).call("Venus.AuthVerify", token)
        except (TransportError, RPCError) as exc:
            raise AuthError(f"the manager did not accept the token: {exc}") from None
        if not perms or not all(p in PERMISSIONS for p in perms):
            raise AuthError("the manager returned no permissions for the token")
        perm = max(perms, key=PERMISSIONS.index)
        cache.put(token, perm)      # failures are not cached
        return perm
    return verify


USED_CALLS_MAX = 4096    # credentials remembered as used; each only until its exp (at most 60 s)


def manager_worker_call_verifier(rpc: RPCClient):
    """A worker-call credential -> its claims (act, wkr), as the manager vouches for them. Each
    serves one call: its ID is remembered until it expires, and a second use is refused (someone
    who saw it on the way cannot pause or resume again with it)."""
    used: dict[str, float] = {}
    lock = threading.Lock()

    def verify(token: str) -> dict:
        try:
            answer = rpc.call("Venus.AuthVerifyWorkerCall", token)
        except (TransportError, RPCError) as exc:
            raise AuthError(f"the manager did not accept the worker-call credential: {exc}") from None
        if not isinstance(answer, dict) or not all(isinstance(answer.get(k), str) and answer[k] for k in ("Action", "Worker", "ID")) \
                or not isinstance(answer.get("Expires"), (int, float)):
            raise AuthError("the manager's answer on the worker-call credential lacks Action, Worker, ID or Expires")
        now = time.time()
        with lock:
            for jti in [j for j, exp in used.items() if exp <= now]:
                del used[jti]
            if answer["ID"] in used:
                raise AuthError("this worker-call credential was used already (each serves one call)")
            if len(used) >= USED_CALLS_MAX:
                raise AuthError(f"more than {USED_CALLS_MAX} manager calls in the last minute: refused until some expire")
            used[answer["ID"]] = float(answer["Expires"])
        return {"act": answer["Action"], "wkr": answer["Worker"]}
    return verify


class WorkerRPCServer(RPCServer):
    """An RPCServer whose every method also enforces a worker-call credential's scope: such a
    credential passes the permission check (it was minted for a method the manager may call) and
    then runs only the method it names, on the worker it names."""

    def __init__(self, worker_name: str | None, token_verifier, call_verifier):
        super().__init__(None, verifier=self._verify_credential)
        self.worker_name = worker_name
        self._token_verifier, self._call_verifier = token_verifier, call_verifier
        self._scope = threading.local()     # the worker-call claims of the request on this thread

    def _verify_credential(self, token: str) -> str:
        if is_worker_call_token(token):
            self._scope.claims = self._call_verifier(token)
            return "admin"          # the scope, not a level, limits it (register below)
        return self._token_verifier(token)

    def permission(self, authorization, client_ip, cookie=None):
        self._scope.claims = None
        return super().permission(authorization, client_ip, cookie)

    def handle(self, body, perm, auth_error=None):
        try:
            return super().handle(body, perm, auth_error)
        finally:
            self._scope.claims = None

    def register(self, name, func, perm, params, with_caller=False):
        def scoped(*args, **kwargs):
            claims = getattr(self._scope, "claims", None)
            if claims is not None:
                try:
                    check_worker_call_scope(claims, name, self.worker_name)
                except AuthError as exc:
                    raise RPCError(UNAUTHORIZED, f"unauthorized: {exc}") from None
            return func(*args, **kwargs)
        super().register(name, scoped, perm, params, with_caller)


def reachable_host(bind_host: str, manager_url: str) -> str:
    """The address the manager can reach us at: the bound one, or, when bound to all
    interfaces, the local address of the route to the manager."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    target = urlparse(manager_url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((target, 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def build_server(service, token_cache_seconds: float = TOKEN_CACHE_SECONDS) -> RPCServer:
    config = getattr(service, "config", None)      # without one (a bare test double) no worker-call credential passes
    server = WorkerRPCServer(getattr(config, "name", None), manager_verifier(service.rpc, token_cache_seconds),
                             manager_worker_call_verifier(service.rpc))

    def thread(index: int):
        if index >= len(service.threads):
            raise RPCError(INVALID_PARAMS, f"index: no sealing thread {index} (this worker has {len(service.threads)})")
        return service.threads[index]

    def resume(index: int, set_to: str | None) -> bool:
        t = thread(index)
        table = getattr(t, "table", None)           # the thread's plan (wdpost has none: it cannot be set)
        if set_to is not None and set_to not in (table.states if table else ()):
            raise RPCError(INVALID_PARAMS, f"set_to: {set_to!r} is not a state of the {t.plan} plan")
        return t.resume(set_to)

    server.register("VenusWorker.WorkerList", lambda: [t.summary() for t in service.threads], "read", [])
    server.register("VenusWorker.WorkerPause", lambda index: thread(index).pause(), "admin", [("index", u64)])
    server.register("VenusWorker.WorkerResume", resume, "admin", [("index", u64), ("set_to", optional(string))])
    def set_env(name: str, value: str) -> None:
        try:
            runtime_env.set_env(name, value)
        except runtime_env.EnvError as exc:
            raise RPCError(INVALID_PARAMS, f"invalid environment variable name or value: {exc}") from None

    def remove_env(name: str) -> None:
        try:
            runtime_env.remove_env(name)
        except runtime_env.EnvError as exc:
            raise RPCError(INVALID_PARAMS, f"invalid environment variable name: {exc}") from None

    server.register("VenusWorker.WorkerSetEnv", set_env, "admin", [("name", string), ("value", string)])
    server.register("VenusWorker.WorkerRemoveEnv", remove_env, "admin", [("name", string)])
    server.register("VenusWorker.WorkerVersion", lambda: __version__, "read", [])
    # ours: the processor entries, how each runs and is pinned (cgroup or sched_setaffinity)
    server.register("VenusWorker.ProcessorList",
                    lambda: service.processors.describe() if getattr(service, "processors", None) else [], "read", [])
    return server
