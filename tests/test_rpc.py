"""The RPC layer over real HTTP on loopback: tokens and permissions, malformed requests, wrong
parameter shapes, size limits; refused requests never reach the method."""

import json
import urllib.request

import pytest

from appliance.rpc import SECTOR_NOT_FOUND, RPCError
from appliance.rpc.auth import NetworkAllowList, issue_token, load_or_create_secret, verify_token
from appliance.rpc.client import RPCClient, TransportError
from appliance.rpc.server import RPCServer
from appliance.rpc.wire import bytes32, sector_id, struct, u64


@pytest.fixture
def served(tmp_path):
    secret = load_or_create_secret(tmp_path / "secret")
    calls = []
    server = RPCServer(secret, max_body=4096)

    def echo(sid, comm):
        calls.append(sid)
        return {"Id": sid, "Comm": list(comm)}

    def lookup(sid):
        raise RPCError(SECTOR_NOT_FOUND, f"sector {sid['Miner']}-{sid['Number']} not found")

    server.register("Venus.Echo", echo, "write", [("sid", sector_id), ("comm", bytes32)])
    server.register("Venus.Lookup", lookup, "read", [("sid", sector_id)])
    server.register("Venus.Admin", lambda n: n * 2, "admin", [("n", u64)])
    host, port = server.serve("127.0.0.1", 0)
    yield server, secret, f"http://{host}:{port}", calls
    server.shutdown()


def raw(url, body: bytes, token=None, headers=None):
    """(HTTP status, decoded JSON answer) of one POST /rpc/v0 of `body` as it is."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
               **(headers or {})}
    req = urllib.request.Request(url + "/rpc/v0", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_calls_with_tokens(served):
    server, secret, url, calls = served
    write = RPCClient(url, issue_token(secret, "write"))
    sid = {"Miner": 1000, "Number": 1}
    assert write.call("Venus.Echo", sid, list(range(32))) == {"Id": sid, "Comm": list(range(32))}
    with pytest.raises(RPCError) as e:
        write.call("Venus.Lookup", sid)
    assert e.value.code == 11001
    with pytest.raises(RPCError, match="needs 'admin' permission, the token has 'write'"):
        write.call("Venus.Admin", 2)
    assert RPCClient(url, issue_token(secret, "admin")).call("Venus.Admin", 21) == 42
    assert write.call("Venus.AuthVerify", issue_token(secret, "sign")) == ["read", "write", "sign"]
    assert len(calls) == 1


def test_refusals_change_nothing(served):
    server, secret, url, calls = served
    tok = issue_token(secret, "write")
    sid = {"Miner": 1000, "Number": 1}
    good = {"jsonrpc": "2.0", "id": 1, "method": "Venus.Echo", "params": [sid, [0] * 32]}
    cases = [
        (json.dumps(good).encode(), None, 401, -32001, "missing bearer token"),
        (json.dumps(good).encode(), issue_token(b"x" * 32, "admin"), 401, -32001, "invalid token"),
        (b"{not json", tok, 200, -32700, "parse error"),
        (b"[1, 2]", tok, 200, -32600, "batches are not supported"),
        (json.dumps({"id": 1, "method": "Venus.Echo"}).encode(), tok, 200, -32600, "jsonrpc"),
        (json.dumps(dict(good, method="Venus.Nope")).encode(), tok, 200, -32601, "Venus.Nope"),
        (json.dumps(dict(good, params=[sid])).encode(), tok, 200, -32602, "takes 2 params"),
        (json.dumps(dict(good, params=[{"Miner": -1, "Number": 1}, [0] * 32])).encode(), tok, 200, -32602, "sid.Miner"),
        (json.dumps(dict(good, params=[{"Miner": 1, "Number": 2 ** 64}, [0] * 32])).encode(), tok, 200, -32602, "sid.Number"),
        (json.dumps(dict(good, params=[sid, [0] * 31])).encode(), tok, 200, -32602, "comm: expected an array of 32"),
        (json.dumps(dict(good, params=[sid, [256] + [0] * 31])).encode(), tok, 200, -32602, "comm"),
        (json.dumps(dict(good, params={"sid": sid})).encode(), tok, 200, -32602, "positional"),
        (b" " * 5000, tok, 413, -32600, "exceeds the limit"),
    ]
    for body, token, status, code, msg in cases:
        got_status, resp = raw(url, body, token)
        assert (got_status, resp["error"]["code"]) == (status, code), (body[:60], resp)
        assert msg in resp["error"]["message"], resp
    assert calls == []


def test_healthcheck_and_allow_list(served, tmp_path):
    server, secret, url, calls = served
    with urllib.request.urlopen(url + "/healthcheck", timeout=5) as r:
        assert r.read() == b"ok\n"
    server.allow_list = NetworkAllowList(["127.0.0.0/8"], "write")         # worker-facing methods only: Echo is not one
    with pytest.raises(RPCError, match="Venus.Echo needs a token"):
        RPCClient(url).call("Venus.Echo", {"Miner": 1, "Number": 2}, [1] * 32)
    server.allow_list = NetworkAllowList(["127.0.0.0/8"], "write", methods=frozenset({"Venus.Echo", "Venus.Admin"}))
    assert RPCClient(url).call("Venus.Echo", {"Miner": 1, "Number": 2}, [1] * 32)["Id"]["Number"] == 2
    with pytest.raises(RPCError, match="needs 'admin'"):
        RPCClient(url).call("Venus.Admin", 1)
    with pytest.raises(ValueError, match="invalid network"):
        NetworkAllowList(["not-a-net"])


def test_transport_errors_are_temporary():
    with pytest.raises(TransportError):
        RPCClient("http://127.0.0.1:9", timeout=2).call("Venus.WorkerPing", {})


def test_tokens(tmp_path):
    secret = load_or_create_secret(tmp_path / "s")
    assert load_or_create_secret(tmp_path / "s") == secret            # created once
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    assert verify_token(secret, issue_token(secret, "sign")) == "sign"
    with pytest.raises(ValueError, match="unknown permission"):
        issue_token(secret, "root")


def test_struct_converter_names_fields(caplog):
    conv = struct({"A": u64, "B": bytes32}, optional_keys=("B",))
    assert conv({"A": 1}, "x") == {"A": 1, "B": None}
    # a field the struct does not have is ignored, as Go's encoding/json and serde do, and logged once
    with caplog.at_level("WARNING", logger="damocles.rpc"):
        assert conv({"A": 1, "Unknown9": 2}, "x9") == {"A": 1, "B": None}
        assert conv({"A": 1, "Unknown9": 3}, "x9") == {"A": 1, "B": None}
    assert [r.getMessage() for r in caplog.records].count("x9: ignoring unknown field 'Unknown9'") == 1
    # Go matches a key without case when no key matches exactly
    assert conv({"a": 2}, "x") == {"A": 2, "B": None}
    assert conv({"a": 2, "A": 3}, "x") == {"A": 3, "B": None}
    with pytest.raises(RPCError, match="x.A: is missing"):
        conv({}, "x")
