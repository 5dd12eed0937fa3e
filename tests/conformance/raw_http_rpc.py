"""Raw JSON-RPC and HTTP for conformance tests: the request body exactly as a Damocles part writes it
(method, positional params), the whole answer back, nothing converted on the way."""

import http.client
import json
from urllib.parse import urlparse


def raw_http(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None,
             source: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """(HTTP status, body) of one request to the server of `url`. Without `token` no
    Authorization header is sent, as Damocles' Rust worker sends none; `source` is the local
    address to send from (127.0.0.2 is another host on the loopback network)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw_call(url: str, method: str, params: list, token: str | None = None, source: str | None = None,
             timeout: float = 30) -> tuple[int, dict]:
    """(HTTP status, the JSON-RPC answer) of a request body exactly as a Damocles part sends it."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    status, answer = raw_http(url, "POST", urlparse(url).path or "/rpc/v0", body, token, source, timeout)
    return status, json.loads(answer or b"{}")


def result(url: str, method: str, params: list, token: str | None = None):
    status, answer = raw_call(url, method, params, token)
    assert status == 200 and "error" not in answer, (method, status, answer)
    return answer["result"]


def is_u64(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64


def is_bytes32_array(v) -> bool:
    """A Go [32]byte / serde [u8; 32]: an array of 32 numbers 0..255."""
    return isinstance(v, list) and len(v) == 32 and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in v)
