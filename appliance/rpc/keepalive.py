"""HTTP/1.1 keep-alive for a JSON-RPC client: a few idle connections to one endpoint, reused.

Why: a new connection per call costs a TCP connect and, on our servers, a new handler thread:
about a millisecond on loopback, three times the cost of a small call itself, and the manager asks
its chain node several times a second. Connections are handed out one caller at a time (http.client
connections are not thread-safe), at most KEEP_IDLE are kept, and one idle longer than MAX_IDLE
seconds is closed instead of reused (servers cut idle connections: Lotus after its idle timeout,
ours after their request timeout). A kept connection the server has closed meanwhile fails on
first use; the request is then sent once more on a fresh connection.

Redirects are never followed: a 3xx is returned as it is, so a bearer token never goes to
another address."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from urllib.parse import urlsplit

KEEP_IDLE = 4          # idle connections kept per endpoint
MAX_IDLE = 5.0         # seconds an idle connection may wait to be reused

# what a connection the server closed while it sat idle raises on reuse
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class ConnectionPool:
    def __init__(self, url: str, timeout: float, keep: int = KEEP_IDLE, max_idle: float = MAX_IDLE, clock=time.monotonic):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url}: expected an http:// or https:// address")
        self.https, self.host, self.port = parts.scheme == "https", parts.hostname, parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout, self.keep, self.max_idle, self._clock = timeout, keep, max_idle, clock
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()
        self.opened = 0          # connections made (the tests and benches count reuse by it)

    def _new(self) -> http.client.HTTPConnection:
        self.opened += 1
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                since, conn = self._idle.pop()
                if self._clock() - since <= self.max_idle:
                    return conn, True
                conn.close()
        return self._new(), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append((self._clock(), conn))
                return
        conn.close()

    def post(self, body: bytes, headers: dict) -> tuple[int, str, bytes]:
        """POST `body`; returns (status, reason, payload) whatever the status. Raises OSError or
        http.client.HTTPException when the server cannot be reached or its answer is cut short."""
        while True:
            conn, reused = self._take()
            try:
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                payload = resp.read()
            except _STALE:
                conn.close()
                if reused:          # closed by the server while idle: send it again on a fresh connection
                    continue
                raise
            except BaseException:
                conn.close()        # a half-used connection is never reused
                raise
            if resp.will_close:
                conn.close()
            else:
                self._give(conn)
            return resp.status, resp.reason, payload

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()
