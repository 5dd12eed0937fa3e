"""The JSON-RPC client workers, provers and the CLI use. Transport failures (connection refused,
timeouts, HTTP 5xx) raise TransportError, which callers treat as temporary; error answers raise
RPCError with the server's code and message."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request

from . import RPCError


class TransportError(OSError):
    """The request did not get an answer; retrying later may succeed."""


class RPCClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/rpc/v0") else "/rpc/v0")
        self.token, self.timeout = token, timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params):
        rid = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise TransportError(f"{self.url}: HTTP {exc.code}") from None
            payload = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{self.url}: {getattr(exc, 'reason', exc)}") from None
        try:
            answer = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransportError(f"{self.url}: answer is not JSON") from None
        if "error" in answer and answer["error"] is not None:
            err = answer["error"]
            raise RPCError(err.get("code", 0), err.get("message", ""), err.get("data"))
        return answer.get("result")
