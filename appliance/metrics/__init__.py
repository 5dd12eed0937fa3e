"""Prometheus metrics (prometheus-client) for the manager and the worker (docs/observability.md).

Each service has its own registry (`damocles up` runs several in one process). What the services
already know (sectors per state, workers, stores, deadlines, threads, pools) is read by a custom
collector when Prometheus scrapes, which costs nothing between scrapes; what only passes by
(state transitions, stage tasks, RPC calls, failures) is counted as it happens.

Served at `/metrics` on the manager's RPC port and on the worker's (a token with read permission,
or an allowed network), and, on a worker with `[metrics] enable = true`, without a token on
`[metrics] http_listen` as Damocles' worker exporter."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, disable_created_metrics, generate_latest

log = logging.getLogger("damocles.metrics")
disable_created_metrics()      # no `_created` series beside every counter and histogram

# seconds: a 2KiB step takes milliseconds, a 32GiB PC1 hours
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 57600)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def route(server, render, perm: str | None = "read") -> None:
    """`GET /metrics` on an RPCServer (its token check applies); `render()` gives the exposition
    (`exposition(registry)`, or the manager's own, which adds series rendered ahead)."""
    def handler(req, rest: str) -> None:
        if rest not in ("", "/") and not rest.startswith("?"):
            req._send(404, b"not found\n", "text/plain")
            return
        try:
            body = render()
        except Exception as exc:    # a collector's bug is answered, not raised into the server
            log.exception("collecting metrics failed")
            req._send(500, f"collecting metrics failed: {exc}\n".encode(), "text/plain")
            return
        req._send(200, body, CONTENT_TYPE_LATEST)
    server.route("GET", "/metrics", perm, handler)


def serve_exporter(listen: str, registry: CollectorRegistry):
    """A plain exporter on HOST:PORT (no token, as Damocles' worker `[metrics] http_listen`);
    returns the HTTP server (`.server_address`, `.shutdown()`)."""
    from prometheus_client import start_http_server
    host, _, port = listen.rpartition(":")
    httpd, _thread = start_http_server(int(port), host.strip("[]") or "0.0.0.0", registry)
    return httpd
