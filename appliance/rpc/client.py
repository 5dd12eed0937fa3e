"""The JSON-RPC client workers, provers and the CLI use. Transport failures (connection refused,
timeouts, HTTP 5xx) raise TransportError, which callers treat as temporary; error answers raise
RPCError with the server's code and message."""

from __future__ import annotations

import http.client
import itertools
import json
import time
import urllib.error
import urllib.request

from typing import Callable

from . import RPCError


class TransportError(OSError):
    """The request did not get an answer; retrying later may succeed."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is for an RPC endpoint: following it would carry the
    Authorization header (and the body) to wherever the answer points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"refused to follow a redirect to {newurl}", headers, fp)


_opener = urllib.request.build_opener(_NoRedirects())


class RPCClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/rpc/v0") else "/rpc/v0")
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

    def _call(self, method: str, *params):
        rid = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            try:
                with _opener.open(req, timeout=self.timeout) as resp:
                    payload = resp.read()
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise TransportError(f"{self.url}: HTTP {exc.code}") from None
                if 300 <= exc.code < 400:
                    raise TransportError(f"{self.url}: HTTP {exc.code}, {exc.msg}") from None
                payload = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{self.url}: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:   # the server died mid-answer (IncompleteRead, BadStatusLine)
            raise TransportError(f"{self.url}: the answer was cut short ({type(exc).__name__}: {exc})") from None
        try:
            answer = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransportError(f"{self.url}: answer is not JSON") from None
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            raise RPCError(err.get("code", 0), err.get("message", ""), err.get("data"))
        return answer.get("result")

    # ------------------------------------------------------------- plain HTTP routes

    @property
    def base(self) -> str:
        return self.url[: -len("/rpc/v0")]

    def _http(self, method: str, path: str, body=None, length: int | None = None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if length is not None:
            headers["Content-Length"] = str(length)
        if body is not None:       # the server takes a PUT only as octet-stream (or JSON)
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method=method)
        try:
            return _opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            message = exc.msg if 300 <= exc.code < 400 else exc.read().decode(errors="replace").strip()
            if exc.code >= 500:
                raise TransportError(f"{self.base + path}: HTTP {exc.code} {message}") from None
            raise HTTPStatusError(exc.code, f"{path}: {message or exc.reason} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{self.base + path}: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:   # the server died mid-answer
            raise TransportError(f"{self.base + path}: the answer was cut short ({type(exc).__name__}: {exc})") from None

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
