"""JSON-RPC 2.0 over HTTP POST to a Lotus/Venus full node (or the devnet's API server).

The Authorization header goes only where the endpoint says: redirects are refused, never
followed. Connections are kept alive and reused (rpc/keepalive.py). A node that does not answer (refused, reset, timed out,
HTTP 5xx) is retried a bounded number of times with a growing pause, then NodeUnavailable is
raised: a ChainError the manager's loops log and retry on their next pass, never a crash. A
refused token raises NodeAuthError at once (retrying cannot help)."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import threading
import time
from collections import Counter

from ...rpc.keepalive import ConnectionPool
from ..types import ChainError
from .endpoint import Endpoint

log = logging.getLogger("damocles.chain.lotus")
METHOD_NOT_FOUND = -32601


class NodeUnavailable(ChainError):
    """The node did not answer after the retries (the next pass may succeed)."""


class NodeAuthError(ChainError):
    """The node refused the token (HTTP 401/403): fix [Common.API] Token."""


class NodeError(ChainError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"{method}: {message} (code {code})")
        self.method, self.code, self.message = method, code, message


class LotusClient:
    def __init__(self, endpoint: Endpoint, timeout: float = 30.0, attempts: int = 3, backoff: float = 0.25,
                 sleep=time.sleep):
        self.endpoint, self.timeout, self.attempts, self.backoff = endpoint, timeout, max(1, attempts), backoff
        self._sleep = sleep
        self._ids = itertools.count(1)
        self.calls: Counter[str] = Counter()      # method -> requests sent (the bench counts chain calls)
        self._lock = threading.Lock()
        self._pool = ConnectionPool(endpoint.url, timeout)      # keep-alive: a connect per call costs more than the call

    def close(self) -> None:
        self._pool.close()

    def call(self, method: str, *params):
        """`method` with Lotus' namespace ("Filecoin.ChainHead"); params positional."""
        with self._lock:
            self.calls[method] += 1
        last = None
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return self._once(method, params)
            except NodeUnavailable as exc:
                last = exc
                log.warning("%s: %s (try %d of %d)", method, exc, attempt + 1, self.attempts)
        raise NodeUnavailable(f"chain node {self.endpoint.url} did not answer {method} after {self.attempts} tries: {last}")

    def _once(self, method: str, params: tuple):
        url = self.endpoint.url
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        try:
            status, reason, payload = self._pool.post(body, headers)
        except OSError as exc:
            raise NodeUnavailable(str(exc) or type(exc).__name__) from None
        except http.client.HTTPException as exc:
            raise NodeUnavailable(f"the answer was cut short ({type(exc).__name__})") from None
        if status in (401, 403):
            raise NodeAuthError(f"chain node {url} refused the token (HTTP {status}): check [Common.API] "
                                f"Token (or the TOKEN: part of [Common.API] Chain)")
        if status >= 500:
            raise NodeUnavailable(f"HTTP {status} {reason}")
        if 300 <= status < 400:       # never followed: the token stays with the address configured
            raise NodeUnavailable(f"HTTP {status} {reason}: refused to follow a redirect")
        try:
            answer = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NodeUnavailable(f"the answer to {method} is not JSON") from None
        if not isinstance(answer, dict):
            raise ChainError(f"{url}: the answer to {method} is not a JSON-RPC response")
        err = answer.get("error")
        if err is not None:
            if not isinstance(err, dict):
                raise ChainError(f"{url}: {method} answered a malformed error {err!r}")
            raise NodeError(method, err.get("code", 0), str(err.get("message", "")))
        return answer.get("result")
