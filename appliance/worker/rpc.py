"""The worker's own RPC (`VenusWorker.*`, as Damocles): list the sealing threads, pause one,
resume one (optionally at a named state). It accepts the manager's tokens, checked with the
manager's `Venus.AuthVerify`; the answer is trusted for at most TOKEN_CACHE_SECONDS (60 s), never
past the token's `exp`, so a token refused by the manager (its secret rotated) is refused here
within one cache period."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from .. import __version__
from ..rpc import RPCError, INVALID_PARAMS
from ..rpc.auth import PERMISSIONS, TOKEN_CACHE_SECONDS, AuthError, TokenCache
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
            perms = RPCClient(rpc.url, token, timeout=10).call("Venus.AuthVerify", token)
        except (TransportError, RPCError) as exc:
            raise AuthError(f"the manager did not accept the token: {exc}") from None
        if not perms or not all(p in PERMISSIONS for p in perms):
            raise AuthError("the manager returned no permissions for the token")
        perm = max(perms, key=PERMISSIONS.index)
        cache.put(token, perm)      # failures are not cached
        return perm
    return verify


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
    server = RPCServer(None, verifier=manager_verifier(service.rpc, token_cache_seconds))

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
    server.register("VenusWorker.WorkerVersion", lambda: __version__, "read", [])
    return server
