"""The JSON-RPC server: `POST /rpc/v0` (bearer token), `GET /healthcheck` (no token).

Each method is registered with the permission it needs and a converter per positional
parameter; requests are refused before the method runs when the token is missing (checked
before the body is parsed, httpd.py) or too weak, the body is too large, not JSON or beyond the
parser's bounds (limits.py), the method is unknown, or a parameter has the wrong shape or range."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

import jwt

from . import (INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, STANDBY, UNAUTHORIZED,
               RPCError)
from .httpd import BoundedHTTPServer, handler_class
from .auth import AuthError, NetworkAllowList, allows, verify_token
from .limits import beyond_i64, error_answer, lone_surrogate, parse_body
from .wire import Converter, string

log = logging.getLogger("damocles.rpc")
DEFAULT_MAX_BODY = 8 << 20
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_REQUEST_TIMEOUT = 30.0
TOKENLESS = "addr:"      # the identity prefix of a caller let in by [RPC] AllowNetworks without a credential


@dataclass(frozen=True)
class Caller:
    """Who sent a request: its permission and the identity a worker's name and sectors are bound
    to: `name:<subject>` for a token that names its holder (its `sub` or `Name` claim),
    `token:<hash>` for one that does not, `addr:<ip>` for a tokenless AllowNetworks source.
    Admin callers (the operator) are not bound."""
    perm: str
    identity: str

    @property
    def admin(self) -> bool:
        return self.perm == "admin"


@dataclass(frozen=True)
class Method:
    name: str
    func: Callable[..., Any]
    perm: str
    params: tuple[tuple[str, Converter], ...]
    with_caller: bool = False     # func takes the Caller as its `caller` keyword


def _token_identity(token: str) -> str:
    """The identity of a token already verified: its subject, else a digest of the token."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = None
    subject = (claims.get("sub") or claims.get("Name")) if isinstance(claims, dict) else None
    if isinstance(subject, str) and subject:
        return f"name:{subject[:128]}"
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class RPCServer:
    def __init__(self, secret: bytes | None, allow_list: NetworkAllowList | None = None, max_body: int = DEFAULT_MAX_BODY,
                 verifier: Callable[[str], str] | None = None, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT):
        """`secret` verifies tokens locally (the manager); `verifier` instead asks someone else
        (a worker asks the manager's Venus.AuthVerify); it returns the permission or raises AuthError.
        At most `max_connections` connections are served at once (more are answered 503); a
        client silent for `request_timeout` seconds, or slower than that to send a request's
        headers (and a JSON-RPC body), is disconnected."""
        self.secret, self.allow_list, self.max_body = secret, allow_list, max_body
        self.max_connections, self.request_timeout = max_connections, request_timeout
        self._verifier = verifier or (lambda token: verify_token(self.secret, token))
        self.methods: dict[str, Method] = {}
        self.rpc_paths: tuple[str, ...] = ("/rpc/v0",)     # where JSON-RPC is POSTed (the devnet's API adds /rpc/v1)
        if secret is not None:
            self.register("Venus.AuthVerify", self._auth_verify, "read", [("token", string)])
        self._httpd: BoundedHTTPServer | None = None
        # (HTTP method, path prefix) -> (perm, handler, whether the page's session cookie counts there)
        self.routes: dict[tuple[str, str], tuple[str | None, Callable, bool]] = {}
        # the status page's browser sessions (web/login.py): `.session(cookie_header)` -> a session
        # with .perm and .identity, None, or raises AuthError; None here: cookies count nowhere
        self.sessions = None
        # observer(method, seconds, ok): called after each registered method ran (the metrics)
        self.observer: Callable[[str, float, bool], None] | None = None
        # method name -> requests dispatched to it (the tests read which API a worker used)
        self.calls: Counter[str] = Counter()
        # permission() and handle() run on the request's thread, one after the other: the caller's
        # identity found by the first reaches the method through this
        self._request = threading.local()
        self.name = "rpc"       # its request threads' names: "rpc-request" (the devnet's API: "devnet-api-request")
        # a standby manager (manager.standby): () -> the active manager's address (None: not known
        # yet); every JSON-RPC method is then answered with the STANDBY error naming it, and every
        # plain route with 503 (/healthcheck still answers ok: the process is up)
        self.standby: Callable[[], str | None] | None = None

    def _verify(self, token: str) -> str:
        """Checked on every request (exp, nbf, the current secret); a remote verifier caches itself, bounded."""
        return self._verifier(token)

    def route(self, http_method: str, prefix: str, perm: str | None, handler: Callable, cookie: bool = False) -> None:
        """A plain HTTP endpoint beside JSON-RPC (the piece store, /metrics, the status page):
        handler(request, rest of the path) answers the request itself; the token is checked here
        first, unless perm is None (a public route: the status page's static files). With
        `cookie`, the status page's session cookie is a credential there too."""
        self.routes[(http_method, prefix)] = (perm, handler, cookie)

    def _route(self, request, http_method: str) -> bool:
        if self.standby is not None:
            request._send(503, f"{standby_message(self.standby())}\n".encode(), "text/plain")
            request.close_connection = True
            return True
        for (m, prefix), (perm_needed, handler, cookie) in self.routes.items():
            if m == http_method and request.path.startswith(prefix):
                if perm_needed is None:
                    handler(request, request.path[len(prefix):])
                    return True
                perm, err = self.permission(request.headers.get("Authorization"), request.client_address[0],
                                            request.headers.get("Cookie") if cookie else None)
                if perm is not None and self._tokenless() and not self.allow_list.allows_route(prefix):
                    perm, err = None, f"{prefix} needs a token (a caller without one may use only the worker-facing routes)"
                if perm is None or not allows(perm, perm_needed):
                    request._send(401 if perm is None else 403,
                                  f"{err or f'needs {perm_needed!r} permission'}\n".encode(), "text/plain")
                    request.close_connection = True
                    return True
                handler(request, request.path[len(prefix):])
                return True
        return False

    def register(self, name: str, func: Callable[..., Any], perm: str, params: list[tuple[str, Converter]],
                 with_caller: bool = False) -> None:
        """with_caller: the method is called with `caller=` the request's Caller as well."""
        if name in self.methods:
            raise ValueError(f"method {name} registered twice")
        self.methods[name] = Method(name, func, perm, tuple(params), with_caller)

    def _auth_verify(self, token: str) -> list[str]:
        from .auth import PERMISSIONS
        try:
            perm = verify_token(self.secret, token)
        except AuthError as exc:
            raise RPCError(UNAUTHORIZED, str(exc)) from None
        return list(PERMISSIONS[: PERMISSIONS.index(perm) + 1])

    # ------------------------------------------------------------------- dispatch

    def permission(self, authorization: str | None, client_ip: str, cookie: str | None = None) -> tuple[str | None, str | None]:
        """(permission, error) for a request's Authorization header, Cookie header (where the
        page's session counts) and peer address, tried in that order."""
        if authorization:
            kind, _, token = authorization.partition(" ")
            if kind.lower() != "bearer" or not token:
                return None, "Authorization must be 'Bearer <token>'"
            try:
                perm = self._verify(token.strip())
            except AuthError as exc:
                return None, str(exc)
            self._request.identity = _token_identity(token.strip())
            return perm, None
        session_error = None
        if cookie and self.sessions is not None:
            try:
                session = self.sessions.session(cookie)
            except AuthError as exc:
                session, session_error = None, str(exc)
            if session is not None:
                self._request.identity = session.identity
                return session.perm, None
        if self.allow_list:
            perm = self.allow_list.permission_for(client_ip)
            if perm:
                self._request.identity = f"{TOKENLESS}{client_ip}"
                return perm, None
        return None, session_error or "missing bearer token"

    def _tokenless(self) -> bool:
        """Whether the request permission() just passed came without a credential (AllowNetworks)."""
        return (getattr(self._request, "identity", None) or "").startswith(TOKENLESS)

    def handle(self, body: bytes, perm: str | None, auth_error: str | None = None) -> tuple[int, dict]:
        """(HTTP status, JSON-RPC response) for one request body. The caller has already
        refused a request without a permission; `perm` None here answers 401 all the same."""
        # the identity permission() found for this request (taken, so that it never outlives it)
        identity = getattr(self._request, "identity", None) or "unknown"
        self._request.identity = None
        if perm is None:
            return HTTPStatus.UNAUTHORIZED, _error(None, UNAUTHORIZED, f"unauthorized: {auth_error or 'missing bearer token'}")
        try:
            req = parse_body(body)
        except RPCError as exc:
            return 200, _error(None, exc.code, exc.message)
        if not isinstance(req, dict):
            return 200, _error(None, INVALID_REQUEST, "request must be one JSON object (batches are not supported)")
        rid = req.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (int, str))):
            return 200, _error(None, INVALID_REQUEST, "invalid request: id must be a number or a string")
        if req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
            return 200, _error(rid, INVALID_REQUEST, 'invalid request: needs "jsonrpc": "2.0" and a "method" string')
        if self.standby is not None:
            active = self.standby()
            return 200, _error(rid, STANDBY, standby_message(active), {"Active": active})
        method = self.methods.get(req["method"])
        if method is None:
            return 200, _error(rid, METHOD_NOT_FOUND, f"method not found: {req['method']}")
        self.calls[method.name] += 1
        if identity.startswith(TOKENLESS) and self.allow_list and not self.allow_list.allows_method(method.name):
            return HTTPStatus.FORBIDDEN, _error(rid, UNAUTHORIZED, f"{method.name} needs a token: a caller without one "
                                                "(from [RPC] AllowNetworks) may call only the worker-facing methods")
        if not allows(perm, method.perm):
            return HTTPStatus.FORBIDDEN, _error(rid, UNAUTHORIZED, f"{method.name} needs '{method.perm}' permission, the token has '{perm}'")
        params = req.get("params", [])
        if not isinstance(params, list):
            return 200, _error(rid, INVALID_PARAMS, "params must be a positional array")
        if len(params) != len(method.params):
            return 200, _error(rid, INVALID_PARAMS, f"{method.name} takes {len(method.params)} params "
                               f"({', '.join(n for n, _ in method.params)}), got {len(params)}")
        for (name, _), value in zip(method.params, params):
            bad_text = lone_surrogate(value, name)
            if bad_text:
                return 200, _error(rid, INVALID_PARAMS, f"{bad_text}: holds a lone UTF-16 surrogate, not valid Unicode")
        started = time.perf_counter()
        try:
            args = [conv(v, name) for (name, conv), v in zip(method.params, params)]
            result = method.func(*args, caller=Caller(perm, identity)) if method.with_caller else method.func(*args)
        except RPCError as exc:
            self._observe(method.name, started, False)
            return 200, _error(rid, exc.code, exc.message, exc.data)
        except OverflowError as exc:   # a u64 param past what the store holds (SQLite: signed 64 bits)
            self._observe(method.name, started, False)
            field = next(filter(None, (beyond_i64(v, name) for (name, _), v in zip(method.params, params))), None)
            if field is None:
                log.exception("method %s failed", method.name)
                return 200, _error(rid, INTERNAL_ERROR, f"internal error in {method.name}: {type(exc).__name__}: {exc}")
            return 200, _error(rid, INVALID_PARAMS, f"{field}: out of range, at most 2^63-1 here")
        except Exception as exc:  # a bug: answer, log, keep serving
            log.exception("method %s failed", method.name)
            self._observe(method.name, started, False)
            return 200, _error(rid, INTERNAL_ERROR, f"internal error in {method.name}: {type(exc).__name__}: {exc}")
        self._observe(method.name, started, True)
        return 200, {"jsonrpc": "2.0", "id": rid, "result": result}

    def _observe(self, name: str, started: float, ok: bool) -> None:
        if self.observer is not None:
            try:
                self.observer(name, time.perf_counter() - started, ok)
            except Exception:   # metrics never break an answer
                log.exception("RPC observer failed")

    # ----------------------------------------------------------------------- HTTP

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start serving in a background thread; returns the bound address (port 0 = any)."""
        self._httpd = BoundedHTTPServer((host, port), handler_class(self), self.max_connections, self.request_timeout,
                                         self.name)
        threading.Thread(target=self._httpd.serve_forever, name="rpc-server", daemon=True).start()
        return self._httpd.server_address[:2]

    def shutdown(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.drop_idle()
            self._httpd.server_close()
            self._httpd.reaper_stop.set()


_error = error_answer


def standby_message(active: str | None) -> str:
    return (f"this manager is a standby: the active manager is at {active}" if active
            else "this manager is a standby: no manager holds the lease yet")
