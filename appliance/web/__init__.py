"""The manager's status page: one static HTML + JS + CSS (no build step) under `/ui/`, and
the JSON it reads under `/ui/api/` (docs/observability.md).

- `GET /ui/` and its two files: public (they hold no data, and no token is ever put in them:
  an address with `?token=` is refused).
- `GET /ui/login?code=...`: a one-time login code (`Venus.WebLoginCode`, admin) traded for the
  page's session cookie, then 303 to `/ui/`; `POST /ui/logout` ends the session (login.py).
- `GET /ui/api/version`: read permission (a token or the session); `{ETag, Epoch, Now, Pings}`, one cheap query.
- `GET /ui/api/overview`: read; everything the page shows, asked only when the ETag changed.
- `GET /ui/api/sectors?open=1&state=&worker=&failing=&after=&limit=`: read; one page of sectors
  (the overview carries only the first of those in flight and of those failing).
- `GET /ui/api/workers?name=&attention=&after=&limit=`: read; one page of workers by name (the
  overview carries at most 100, those needing attention first).
- `GET /ui/api/sector/<miner>-<number>`: read; a sector's record and transition history.
- Actions are JSON-RPC methods needing admin (web/actions.py), which reach the worker's RPC."""

from __future__ import annotations

import hashlib
import json
import ssl
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from .actions import SectorActions, register as register_actions
from ..core.sector import parse_sector_name, sector_name
from ..rpc import INVALID_PARAMS, RPCError, UNAUTHORIZED
from ..rpc.auth import PERMISSIONS, secret_bytes
from ..rpc.wire import string
from .login import LoginError, WebLogin, set_cookie
from .views import WebViews

STATIC = {"": ("index.html", "text/html; charset=utf-8"), "/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"), "/app.css": ("app.css", "text/css; charset=utf-8")}


# the page may be shown only as itself: never framed (clickjacking its buttons), only its own
# scripts; style attributes are inline (the store bars' widths)
PAGE_HEADERS = (("X-Frame-Options", "DENY"),
                ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                            "base-uri 'none'; form-action 'none'"),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"))


def _page_headers(req) -> None:
    for name, value in PAGE_HEADERS:
        req.send_header(name, value)


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _send_json(req, obj, status: int = 200) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    req.send_response(status)
    req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(body)))
    req.send_header("Cache-Control", "no-store")
    _page_headers(req)
    req.end_headers()
    req.wfile.write(body)


def _send_text(req, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
    body = f"{text}\n".encode()
    req.send_response(status)
    req.send_header("Content-Type", "text/plain; charset=utf-8")
    req.send_header("Content-Length", str(len(body)))
    req.send_header("Cache-Control", "no-store")
    for name, value in headers:
        req.send_header(name, value)
    _page_headers(req)
    req.end_headers()
    req.wfile.write(body)


def _over_tls(req) -> bool:
    """Served over TLS: by this server, or by a proxy in front of it that says so (a client lying
    about it only makes its own cookie Secure, which then does not come back over plain HTTP)."""
    return isinstance(req.connection, ssl.SSLSocket) or req.headers.get("X-Forwarded-Proto", "").lower() == "https"


NO_TOKEN_IN_URL = ("a token in the page's address is refused (it would stay in the browser's history): "
                   "log in with a one-time link from `damocles manager login-url` on the manager's host")


def install(server, views: WebViews, actions: SectorActions, login: WebLogin) -> None:
    files: dict[str, tuple[bytes, str]] = {}      # read on first use: a missing file never stops the manager

    def api(req, rest: str) -> None:
        path = rest.split("?", 1)[0]
        if path == "version":
            v = views.version()
            if req.headers.get("If-None-Match") == f'"{v["ETag"]}"':
                req.send_response(304)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            _send_json(req, v)
        elif path == "overview":
            _send_json(req, views.overview())
        elif path in ("sectors", "workers"):
            query = {k: v[-1] for k, v in parse_qs(urlsplit(rest).query, keep_blank_values=True).items()}
            try:
                _send_json(req, views.sectors_page(query) if path == "sectors" else views.workers_page(query))
            except ValueError as exc:
                _send_json(req, {"error": str(exc)}, 400)
        elif path.startswith("sector/"):
            try:
                miner, number = parse_sector_name(path[len("sector/"):])
            except ValueError:
                _send_json(req, {"error": f"{path[7:]!r} is not a sector id like 1000-5"}, 400)
                return
            found = views.sector(miner, number)
            _send_json(req, found if found else {"error": f"sector {sector_name(miner, number)} not found"}, 200 if found else 404)
        else:
            _send_json(req, {"error": f"no such view {path!r}"}, 404)

    def static(req, rest: str) -> None:
        path, _, query = rest.partition("?")
        if "token" in parse_qs(query, keep_blank_values=True):
            _send_text(req, 400, NO_TOKEN_IN_URL)
            return
        if path not in STATIC:
            req._send(404, b"not found\n", "text/plain")
            return
        if path not in files:
            name, ctype = STATIC[path]
            try:
                files[path] = (_static(name), ctype)
            except OSError as exc:
                req._send(500, f"the status page's {name} is missing from this build: {exc}\n".encode(), "text/plain")
                return
        body, ctype = files[path]
        req.send_response(200)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-cache")
        _page_headers(req)
        req.end_headers()
        req.wfile.write(body)

    def login_page(req, rest: str) -> None:
        if rest and not rest.startswith("?"):
            _send_text(req, 404, "not found")
            return
        codes = parse_qs(urlsplit(rest).query).get("code", [])
        if len(codes) != 1:
            _send_text(req, 400, "no login code: open the link `damocles manager login-url` prints on the manager's host")
            return
        try:
            value, session = login.redeem(codes[0])
        except LoginError as exc:
            _send_text(req, 401, f"{exc}: run `damocles manager login-url` on the manager's host for a new link")
            return
        req.send_response(303)     # the code leaves the address bar (and the history entry is /ui/)
        req.send_header("Location", "/ui/")
        req.send_header("Set-Cookie", set_cookie(value, login.session_lifetime, _over_tls(req)))
        req.send_header("Cache-Control", "no-store")
        req.send_header("Content-Length", "0")
        _page_headers(req)
        req.end_headers()

    def logout(req, rest: str) -> None:
        if rest:
            _send_text(req, 404, "not found")
            return
        ended = login.logout(req.headers.get("Cookie"))
        body = json.dumps({"LoggedOut": ended}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Set-Cookie", set_cookie("", 0, _over_tls(req)))
        req.send_header("Cache-Control", "no-store")
        _page_headers(req)
        req.end_headers()
        req.wfile.write(body)

    # the first matching prefix answers: the specific ones before /ui
    server.route("GET", "/ui/api/", "read", api, cookie=True)
    server.route("GET", "/ui/login", None, login_page)
    server.route("POST", "/ui/logout", None, logout)
    server.route("GET", "/ui", None, static)
    server.sessions = login
    register_actions(server, actions)
    register_login(server, login)


def register_login(server, login: WebLogin) -> None:
    def login_code(perm: str, caller) -> dict:
        if caller.identity.startswith("page:"):     # a session never extends itself past its lifetime
            raise RPCError(UNAUTHORIZED, "Venus.WebLoginCode needs an admin token, not the page's session")
        if perm not in PERMISSIONS:
            raise RPCError(INVALID_PARAMS, f"perm: {perm!r} is not one of {', '.join(PERMISSIONS)}")
        code, lifetime = login.mint_code(perm)
        return {"Path": f"/ui/login?code={code}", "Perm": perm, "Lifetime": lifetime}
    server.register("Venus.WebLoginCode", login_code, "admin", [("perm", string)], with_caller=True)


def attach(service) -> None:
    """Give a ManagerService its status page, sector actions and `/metrics`."""
    from ..metrics import route as route_metrics
    from ..metrics.manager import ManagerMetrics
    service.web = WebViews(service.state, service.sealer, service.chain, service.poster, service.config)
    service.web.expiry = getattr(service, "expiry", None)       # the expiring sectors (manager/expiry.py)
    service.web_login = WebLogin(lambda: hashlib.sha256(secret_bytes(service.secret)).hexdigest()[:16],
                                 service.config.web_session_lifetime)
    install(service.rpc, service.web, SectorActions(service.state, service.sealer, service.secret), service.web_login)
    service.metrics = ManagerMetrics(service, service.web)
    route_metrics(service.rpc, service.metrics.exposition)
    service.sealer.observer = service.metrics.on_report
    service.rpc.observer = service.metrics.on_rpc
