"""Protocol and browser hygiene of the RPC server, each finding reproduced as an attack over real
HTTP on loopback and shown refused with a clear JSON-RPC error, the method never run and the
manager's state unchanged: the token before the body, bounded nesting and digits, integers in
their declared range, lone surrogates, non-finite numbers, stalled and trickling clients, a
bounded number of connection threads, cross-site posts and framing, no traceback anywhere."""

import json
import logging
import socket
import time
import urllib.error
import urllib.request

import pytest

from appliance.rpc.auth import NetworkAllowList, issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient
from appliance.rpc.server import RPCServer
from appliance.rpc.wire import sector_id, string, u64

from .test_rpc import raw
from .test_web import manager  # noqa: F401 (the in-process manager fixture, shared)

pytestmark = pytest.mark.timeout(60)





def request(method, params, rid=1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()


def with_param(method: str, raw_param: bytes) -> bytes:
    """A request whose params are written by hand (what json.dumps would not produce)."""
    return b'{"jsonrpc": "2.0", "id": 7, "method": "' + method.encode() + b'", "params": [' + raw_param + b"]}"


@pytest.fixture
def served(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="damocles.rpc")
    secret = load_or_create_secret(tmp_path / "secret")
    calls = []
    server = RPCServer(secret, max_body=1 << 20)
    server.max_connections, server.request_timeout = 4, 1.0       # read by serve()
    server.register("Test.Sector", lambda sid: calls.append(sid), "write", [("sid", sector_id)])
    server.register("Test.Text", lambda text: calls.append(text), "write", [("text", string)])
    server.register("Test.Any", lambda n: calls.append(n), "write", [("n", lambda v, f: v)])
    server.register("Test.Count", lambda n: calls.append(n), "write", [("n", u64)])
    server.register("Test.NaN", lambda: float("nan"), "read", [])
    server.register("Test.Bug", lambda: {}["missing"], "read", [])
    host, port = server.serve("127.0.0.1", 0)
    yield server, f"http://{host}:{port}", issue_token(secret, "write"), calls
    server.shutdown()


def no_traceback_logged(caplog, capfd):
    """Neither a log record with a traceback nor a traceback on stderr (socketserver's, or the
    logging machinery's); what was seen is printed in the test's report."""
    err = capfd.readouterr().err
    logged = [r for r in caplog.records if r.exc_info]
    if "Traceback" in err or logged:
        print(f"stderr:\n{err}\nrecords with a traceback: {[r.getMessage() for r in logged]}")
    return not logged and "Traceback" not in err


def test_without_a_token_the_body_is_never_parsed(served, monkeypatch, caplog, capfd):
    server, url, token, calls = served
    import appliance.rpc.server as server_mod
    parsed = []
    monkeypatch.setattr(server_mod, "parse_body", lambda body: parsed.append(body), raising=False)
    for body in (b"[" * 1000 + b"]" * 1000, with_param("Test.Count", b"9" * 5000), b"{not json"):
        status, answer = raw(url, body)
        assert status == 401 and answer["error"]["code"] == -32001 and "missing bearer token" in answer["error"]["message"]
    server.allow_list = NetworkAllowList(["10.0.0.0/8"], "write")       # the caller is not in it
    assert raw(url, b"[" * 1000)[0] == 401
    assert parsed == [] and calls == []
    assert no_traceback_logged(caplog, capfd)


def test_nesting_digits_and_non_finite_numbers_are_bounded_refusals(served, caplog, capfd):
    server, url, token, calls = served
    cases = [
        (b"[" * 1000 + b"]" * 1000, -32600, "nested deeper than 32"),
        (with_param("Test.Any", b'{"a":' * 900 + b"1" + b"}" * 900), -32600, "nested deeper than 32"),
        (b"[" * 5000, -32700, "do not balance"),
        (with_param("Test.Count", b"9" * 4300), -32600, "an integer of 4300 digits"),
        (with_param("Test.Count", b"-" + b"1" * 100000), -32600, "100000 digits"),
        (with_param("Test.Any", b"NaN"), -32600, "NaN is not a JSON number"),
        (with_param("Test.Any", b"-Infinity"), -32600, "-Infinity is not a JSON number"),
        (with_param("Test.Any", b"1e999"), -32600, "1e999 is not finite"),
        (b'"\\ud800"\xff', -32700, "not UTF-8"),
    ]
    for body, code, message in cases:
        status, answer = raw(url, body, token)
        assert status == 200 and answer["error"]["code"] == code, (body[:40], answer)
        assert message in answer["error"]["message"], answer
    assert raw(url, with_param("Test.Any", b'["[{\\"not", "nesting\\"}]"]'), token)[1]["result"] is None   # brackets in strings
    assert calls == [["[{\"not", "nesting\"}]"]]
    assert no_traceback_logged(caplog, capfd)


def test_integers_outside_their_range_and_lone_surrogates_name_the_field(served):
    server, url, token, calls = served
    cases = [
        (request("Test.Sector", [{"Miner": 1000, "Number": 2 ** 63}]), "sid.Number: expected an unsigned integer below 2^63"),
        (request("Test.Sector", [{"Miner": -1, "Number": 1}]), "sid.Miner"),
        (request("Test.Count", [2 ** 64]), "n: expected an unsigned 64-bit integer"),
        (with_param("Test.Text", b'"ok \\ud800 then"'), "text: holds a lone UTF-16 surrogate"),
        (with_param("Test.Any", b'{"Worker": {"Instance": "\\udfff"}}'), "n.Worker.Instance: holds a lone UTF-16 surrogate"),
        (with_param("Test.Any", b'{"\\ud83d": 1}'), "n (a key): holds a lone UTF-16 surrogate"),
    ]
    for body, message in cases:
        status, answer = raw(url, body, token)
        assert status == 200 and answer["error"]["code"] == -32602, answer
        assert message in answer["error"]["message"], answer
    assert calls == []
    raw(url, with_param("Test.Text", b'"\\ud83d\\ude00"'), token)       # a surrogate pair is one character
    assert calls == ["\U0001F600"]


def test_answers_are_strict_json_and_carry_no_traceback(served, caplog):
    server, url, token, calls = served
    status, answer = raw(url, request("Test.NaN", []), token)      # the old server wrote a bare NaN
    assert answer["error"]["code"] == -32603 and "cannot carry" in answer["error"]["message"]
    status, answer = raw(url, request("Test.Bug", []), token)
    assert answer["error"]["code"] == -32603 and "Traceback" not in json.dumps(answer) and 'File "' not in json.dumps(answer)


def test_state_changing_requests_need_json_and_the_same_origin(served):
    server, url, token, calls = served
    body = request("Test.Count", [1])
    for headers, status, message in [
        ({"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
        ({"Origin": "https://evil.example"}, 403, "origin 'https://evil.example'"),
        ({"Origin": "null"}, 403, "origin 'null'"),
    ]:
        got, answer = raw(url, body, token, headers)
        assert got == status and message in answer["error"]["message"], answer
    assert calls == []
    same = url.replace("http://", "")
    assert raw(url, body, token, {"Origin": f"http://{same}", "Content-Type": "application/json; charset=utf-8"})[0] == 200
    assert calls == [1]


def connect(url) -> socket.socket:
    host, port = url.replace("http://", "").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def test_stalled_and_trickling_clients_are_dropped_and_threads_are_bounded(served):
    server, url, token, calls = served          # max_connections=4, request_timeout=1s
    stalled = [connect(url) for _ in range(4)]
    time.sleep(0.2)                              # let the server accept all four
    extra = connect(url)
    assert extra.recv(1024).startswith(b"HTTP/1.1 503")          # a fifth is turned away, not queued
    extra.close()
    started = time.monotonic()
    for s in stalled:                                             # each is dropped within the bound
        assert s.recv(1024) == b""
    assert time.monotonic() - started < 5
    trickle = connect(url)                       # headers one byte at a time, each within the idle timeout
    head = b"POST /rpc/v0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 200
    started, dropped = time.monotonic(), False
    for byte in head:
        try:
            trickle.send(bytes([byte]))
            time.sleep(0.05)
        except OSError:
            dropped = True
            break
        if time.monotonic() - started > 8:
            break
    if not dropped:
        trickle.settimeout(5)
        dropped = trickle.recv(1024) == b""
    assert dropped and time.monotonic() - started < 8
    for s in stalled + [trickle]:
        s.close()
    assert RPCClient(url, token).call("Test.Count", 5) is None and calls == [5]


# ------------------------------------------------------------- against a running manager




def test_manager_refuses_attacks_and_its_state_is_unchanged(manager):
    svc, url = manager
    write, admin = issue_token(svc.secret, "write"), issue_token(svc.secret, "admin")
    sid = RPCClient(url, write).call("Venus.AllocateSector", {})["ID"]
    before = RPCClient(url, admin).call("Venus.ListSectors", "", 0)
    head = RPCClient(url, admin).call("Venus.DevnetHead")

    status, answer = raw(url, with_param("Venus.DevnetSetBlockTime", b"NaN"), admin)
    assert answer["error"]["code"] == -32600
    status, answer = raw(url, with_param("Venus.DevnetSetBlockTime", b"Infinity"), admin)
    assert answer["error"]["code"] == -32600
    assert RPCClient(url, admin).call("Venus.DevnetHead")["BlockTime"] == head["BlockTime"]    # and it answers JSON
    status, answer = raw(url, request("Venus.ReportAborted", [dict(sid, Number=2 ** 63), "x"]), write)
    assert answer["error"]["code"] == -32602 and "sid.Number" in answer["error"]["message"]
    status, answer = raw(url, with_param("Venus.ReportAborted", json.dumps(sid).encode() + b', "\\udc80"'), write)
    assert answer["error"]["code"] == -32602 and "reason: holds a lone UTF-16 surrogate" in answer["error"]["message"]
    status, answer = raw(url, request("Venus.MinerInfo", [2 ** 63]), write)
    assert answer["error"]["code"] == -32602 and answer["error"]["message"].startswith("miner:")

    # a web page on the operator's desktop, which AllowNetworks covers: a no-cors fetch can only
    # send text/plain, and a browser always says where it comes from
    svc.rpc.allow_list = NetworkAllowList(["127.0.0.0/8"], "admin")
    abort = request("Venus.AbortSector", [sid, "csrf"])
    assert raw(url, abort, headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://evil.example"})[0] == 403
    assert raw(url, abort, headers={"Content-Type": "text/plain;charset=UTF-8"})[0] == 415
    req = urllib.request.Request(url + "/piecestore/baga6ea4seaq", data=b"x" * 127, method="PUT",
                                 headers={"Content-Type": "text/plain", "Authorization": f"Bearer {write}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 415
    assert RPCClient(url, admin).call("Venus.ListSectors", "", 0) == before


def test_status_page_cannot_be_framed(manager):
    svc, url = manager
    for path in ("/ui/", "/ui/app.js"):
        with urllib.request.urlopen(url + path, timeout=10) as r:
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    req = urllib.request.Request(url + "/ui/api/version", headers={"Authorization": f"Bearer {issue_token(svc.secret, 'read')}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["X-Frame-Options"] == "DENY"
