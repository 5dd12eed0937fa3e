"""The manager's status page: one static HTML + JS + CSS (no build step) under `/ui/`, and
the JSON it reads under `/ui/api/` (docs/observability.md).

- `GET /ui/` and its two files: public (they hold no data); the page asks for a token once
  (`/ui/?token=...` or its login form) and keeps it in the browser's localStorage.
- `GET /ui/api/version`: read permission; `{ETag, Epoch, Now, Pings}`, one cheap query.
- `GET /ui/api/overview`: read; everything the page shows, asked only when the ETag changed.
- `GET /ui/api/sector/<miner>-<number>`: read; a sector's record and transition history.
- Actions are JSON-RPC methods needing admin (web/actions.py), which reach the worker's RPC."""

from __future__ import annotations

import json
from importlib import resources

from .actions import SectorActions, register as register_actions
from ..core.sector import parse_sector_name, sector_name
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


def install(server, views: WebViews, actions: SectorActions) -> None:
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
        path = rest.split("?", 1)[0]
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

    server.route("GET", "/ui/api/", "read", api)      # before /ui: the first matching prefix answers
    server.route("GET", "/ui", None, static)
    register_actions(server, actions)


def attach(service) -> None:
    """Give a ManagerService its status page, sector actions and `/metrics`."""
    from ..metrics import route as route_metrics
    from ..metrics.manager import ManagerMetrics
    service.web = WebViews(service.state, service.sealer, service.chain, service.poster, service.config)
    install(service.rpc, service.web, SectorActions(service.state, service.sealer, service.secret))
    service.metrics = ManagerMetrics(service, service.web)
    route_metrics(service.rpc, service.metrics.registry)
    service.sealer.observer = service.metrics.on_report
    service.rpc.observer = service.metrics.on_rpc
