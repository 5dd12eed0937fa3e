"""The JSON-RPC client workers, provers and the CLI use. Transport failures (connection refused,
timeouts, HTTP 5xx) raise TransportError, which callers treat as temporary; error answers raise
RPCError with the server's code and message.

Several managers (one active, the others standing by, manager.lease): the client is given every
address and follows the active one. A call goes to the address that last answered; on a transport
error or a standby's answer (STANDBY) it tries the next, each address at most once per call, and
logs when it switches. When none answers, the call raises TransportError (temporary: the caller
retries later, by then a standby has taken over)."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request

from typing import Callable, Sequence

from . import STANDBY, RPCError

log = logging.getLogger("damocles.rpc")


class TransportError(OSError):
    """The request did not get an answer; retrying later may succeed."""


class StandbyError(TransportError):
    """The manager asked is a standby (up, not serving); `active`: the address it names as the
    active manager, None when none holds the lease. Temporary, as a transport error is."""

    def __init__(self, message: str, active: str | None = None):
        super().__init__(message)
        self.active = active


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is for an RPC endpoint: following it would carry the
    Authorization header (and the body) to wherever the answer points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"refused to follow a redirect to {newurl}", headers, fp)


_opener = urllib.request.build_opener(_NoRedirects())


def _endpoint(url: str) -> str:
    return url.rstrip("/") + ("" if url.rstrip("/").endswith("/rpc/v0") else "/rpc/v0")


class RPCClient:
    def __init__(self, url: str | Sequence[str], token: str | None = None, timeout: float = 30.0):
        """`url`: the manager's address, or every manager's (the active one is followed)."""
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("RPCClient needs at least one address")
        self.urls = list(dict.fromkeys(_endpoint(u) for u in urls))
        self._current = 0           # the address that last answered
        self._switch = threading.Lock()
        self.token, self.timeout = token, timeout
        self._ids = itertools.count(1)
        # observer(method, seconds, ok): called after each call (a worker's metrics); ok is False
        # when the call raised (a transport error or an error answer)
        self.observer: Callable[[str, float, bool], None] | None = None

    def call(self, method: str, *params):
        if self.observer is None:
            return self._call(method, *params)
        started, ok = time.perf_counter(), False
        try:
            result = self._call(method, *params)
            ok = True
            return result
        finally:
            try:
                self.observer(method, time.perf_counter() - started, ok)
            except Exception:   # metrics never break a call
                pass

    @property
    def url(self) -> str:
        """The address calls go to first (the one that last answered)."""
        return self.urls[self._current]

    def _follow(self, attempt: Callable[[str], object]):
        """attempt(endpoint) on the current address, then each other one once, while they fail
        with a transport error or answer as a standby; the last failure is raised."""
        start = self._current
        failures: list[Exception] = []
        for step in range(len(self.urls)):
            i = (start + step) % len(self.urls)
            url = self.urls[i]
            try:
                result = attempt(url)
            except TransportError as exc:
                failures.append(exc)
            except RPCError as exc:
                if exc.code != STANDBY:
                    raise
                active = exc.data.get("Active") if isinstance(exc.data, dict) else None
                failures.append(StandbyError(f"{url}: {exc.message}", active))
            else:
                if i != start:
                    with self._switch:
                        self._current = i
                    log.warning("following the manager at %s (%s did not answer: %s)", url, self.urls[start], failures[0])
                return result
            if len(self.urls) > 1:
                log.info("manager at %s did not answer (%s)%s", url, failures[-1],
                         "; trying the next address" if step + 1 < len(self.urls) else "; no address answered")
        raise failures[-1]

    def _call(self, method: str, *params):
        return self._follow(lambda url: self._call_at(url, method, *params))

    def _call_at(self, url: str, method: str, *params):
        rid = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            try:
                with _opener.open(req, timeout=self.timeout) as resp:
                    payload = resp.read()
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise TransportError(f"{url}: HTTP {exc.code}") from None
                if 300 <= exc.code < 400:
                    raise TransportError(f"{url}: HTTP {exc.code}, {exc.msg}") from None
                payload = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{url}: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:   # the server died mid-answer (IncompleteRead, BadStatusLine)
            raise TransportError(f"{url}: the answer was cut short ({type(exc).__name__}: {exc})") from None
        try:
            answer = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransportError(f"{url}: answer is not JSON") from None
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            raise RPCError(err.get("code", 0), err.get("message", ""), err.get("data"))
        return answer.get("result")

    # ------------------------------------------------------------- plain HTTP routes

    @property
    def base(self) -> str:
        return self.url[: -len("/rpc/v0")]

    def _http(self, method: str, path: str, body=None, length: int | None = None):
        """A plain HTTP request to the current manager, then the others (a standby answers 503);
        a body is a file read from its start at each try."""
        def attempt(url: str):
            if body is not None:
                body.seek(0)
            return self._http_at(url[: -len("/rpc/v0")], method, path, body, length)
        return self._follow(attempt)

    def _http_at(self, base: str, method: str, path: str, body=None, length: int | None = None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if length is not None:
            headers["Content-Length"] = str(length)
        if body is not None:       # the server takes a PUT only as octet-stream (or JSON)
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(base + path, data=body, headers=headers, method=method)
        try:
            return _opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            message = exc.msg if 300 <= exc.code < 400 else exc.read().decode(errors="replace").strip()
            if exc.code >= 500:
                raise TransportError(f"{base + path}: HTTP {exc.code} {message}") from None
            raise HTTPStatusError(exc.code, f"{path}: {message or exc.reason} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{base + path}: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:   # the server died mid-answer
            raise TransportError(f"{base + path}: the answer was cut short ({type(exc).__name__}: {exc})") from None

    def upload(self, path: str, src) -> bytes:
        """PUT a file's bytes (streamed) to a plain HTTP route; returns the answer's body."""
        import os
        with open(src, "rb") as f:
            with self._http("PUT", path, f, os.fstat(f.fileno()).st_size) as resp:
                return resp.read()

    def download(self, path: str, dest) -> int:
        """GET a plain HTTP route into `dest` (written to a temporary name, then renamed)."""
        import os
        import shutil

        from ..core.files import atomic_output
        with atomic_output(dest) as tmp, self._http("GET", path) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        return os.path.getsize(dest)


class HTTPStatusError(Exception):
    """A plain HTTP route answered with an error status (4xx): the request itself is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
