"""Raw JSON-RPC for conformance tests: the request body exactly as a Damocles part writes it
(method, positional params), the whole answer back, nothing converted on the way."""

import json
import urllib.error
import urllib.request


def raw_call(url: str, method: str, params: list, token: str | None = None, timeout: float = 30) -> tuple[int, dict]:
    """(HTTP status, the JSON-RPC answer). Without `token` no Authorization header is sent, as
    Damocles' Rust worker sends none."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def result(url: str, method: str, params: list, token: str | None = None):
    status, answer = raw_call(url, method, params, token)
    assert status == 200 and "error" not in answer, (method, status, answer)
    return answer["result"]


def is_u64(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64


def is_bytes32_array(v) -> bool:
    """A Go [32]byte / serde [u8; 32]: an array of 32 numbers 0..255."""
    return isinstance(v, list) and len(v) == 32 and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in v)
