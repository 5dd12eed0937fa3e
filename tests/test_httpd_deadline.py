"""A client that reads an answer a little at a time (each send of the server making progress, so
no per-send timeout fires) is disconnected once the answer's total deadline passes:
request_timeout plus its size at the least rate; a client reading at a normal pace gets all of it."""

import queue
import socket
import time

import pytest

from appliance.rpc.server import RPCServer

SIZE, CHUNK = 16 << 20, 64 << 10


@pytest.fixture
def served():
    server = RPCServer(None, verifier=lambda token: "read")
    server.request_timeout = 1.0                          # read by serve()

    handlers_done = queue.Queue()      # (seconds the handler's thread was held, how it ended)

    def big(req, rest):
        started = time.monotonic()
        try:
            req.send_response(200)
            req.send_header("Content-Type", "application/octet-stream")
            req.send_header("Content-Length", str(SIZE))
            req.end_headers()
            for _ in range(SIZE // CHUNK):                # many sends, as a piece download makes
                req.wfile.write(b"x" * CHUNK)
            handlers_done.put((time.monotonic() - started, "sent"))
        except OSError as exc:
            handlers_done.put((time.monotonic() - started, type(exc).__name__))
            raise
    server.route("GET", "/big", None, big)
    host, port = server.serve("127.0.0.1", 0)
    server._httpd.response_min_rate = 4 << 20             # 16 MiB: 1 s + 4 s
    yield server, host, port, handlers_done
    server.shutdown()


def fetch(host, port, pause: float, give_up: float) -> tuple[int, float, bool]:
    """(bytes read, seconds, whether the server ended the connection) reading 16 KiB per `pause`."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)      # no large kernel buffer soaking the answer up
    s.settimeout(5)
    s.connect((host, port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got, started, ended = 0, time.monotonic(), False
    try:
        while time.monotonic() - started < give_up:
            try:
                data = s.recv(16384)
            except (ConnectionResetError, TimeoutError):
                ended = True
                break
            if not data:
                ended = True
                break
            got += len(data)
            if got >= SIZE:
                break
            if pause:
                time.sleep(pause)       # the slow reader itself (the attack), not a wait for an event
    finally:
        s.close()
    return got, time.monotonic() - started, ended


def test_a_slow_reader_is_cut_off_at_the_answers_deadline(served):
    server, host, port, handlers_done = served
    # ~300 KiB/s: each 64 KiB send is taken well within the 1 s per-send timeout, the whole answer in ~50 s
    got, took, ended = fetch(host, port, pause=0.05, give_up=20)
    held, how = handlers_done.get(timeout=10)
    assert how != "sent" and held < 8, (held, how)                # 1 s + 16 MiB at 4 MiB/s, and the reaper's tick
    assert ended and got < SIZE // 2 and took < 9, (got, took)    # the rest is dropped, not trickled out


def test_a_normal_reader_gets_the_whole_answer(served):
    server, host, port, handlers_done = served
    got, took, ended = fetch(host, port, pause=0, give_up=20)
    assert got >= SIZE and took < 5, (got, took)
    assert handlers_done.get(timeout=10)[1] == "sent"
