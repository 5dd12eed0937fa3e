"""rpc/keepalive.py against a real HTTP/1.1 server on loopback: connections are reused, one the
server closed while idle is replaced without failing the call, an old idle one is not reused,
a redirect is returned, not followed, and a dead server is an OSError for the caller to map."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance.rpc.keepalive import ConnectionPool


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    closing = False           # when set, the server answers and then closes the connection (while idle)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.peers.append(self.client_address[1])      # the client's port: one per connection
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if Echo.closing:
            self.close_connection = True      # no Connection: close header: the client learns on reuse

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    srv.peers = []
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    Echo.closing = False
    srv.shutdown()
    srv.server_close()


def _url(srv, path="/rpc/v1"):
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def test_calls_reuse_one_connection(server):
    pool = ConnectionPool(_url(server), timeout=10)
    for i in range(20):
        assert pool.post(b"call %d" % i, {}) == (200, "OK", b"call %d" % i)
    assert pool.opened == 1 and len(set(server.peers)) == 1
    pool.close()


def test_a_connection_closed_by_the_server_while_idle_is_replaced_and_the_call_answered(server):
    pool = ConnectionPool(_url(server), timeout=10)
    Echo.closing = True
    answers = [pool.post(b"x%d" % i, {}) for i in range(5)]
    assert answers == [(200, "OK", b"x%d" % i) for i in range(5)]
    assert pool.opened == 5 and len(set(server.peers)) == 5       # each answer on a connection of its own


def test_an_idle_connection_past_max_idle_is_not_reused(server):
    now = [0.0]
    pool = ConnectionPool(_url(server), timeout=10, max_idle=5.0, clock=lambda: now[0])
    pool.post(b"a", {})
    now[0] = 4.0
    pool.post(b"b", {})
    assert pool.opened == 1
    now[0] = 9.5
    pool.post(b"c", {})
    assert pool.opened == 2


def test_concurrent_callers_never_share_a_connection(server):
    pool = ConnectionPool(_url(server), timeout=10, keep=2)
    out, errors = [], []

    def caller(n):
        try:
            for i in range(20):
                out.append(pool.post(b"%d-%d" % (n, i), {})[2] == b"%d-%d" % (n, i))
        except Exception as exc:        # collected: a thread's failure must fail the test
            errors.append(exc)
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(out) == 80 and all(out)
    assert len(pool._idle) <= 2


def test_a_redirect_is_returned_not_followed(server):
    status, _, _ = ConnectionPool(_url(server, "/moved"), timeout=10).post(b"{}", {"Authorization": "Bearer t"})
    assert status == 302 and len(server.peers) == 1


def test_a_dead_server_raises_for_the_caller(server):
    url = _url(server)
    server.shutdown()
    server.server_close()
    with pytest.raises((OSError, http.client.HTTPException)):
        ConnectionPool(url, timeout=2).post(b"{}", {})


def test_only_http_addresses():
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionPool("ws://127.0.0.1:1/rpc/v1", timeout=1)
