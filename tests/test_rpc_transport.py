"""A manager killed while it answers: the connection closes in the middle of the response body.
That is a transport failure (retry later), as a refused connection is; found by the random-kill
campaign, where it paused a sealing thread with a perm error `IncompleteRead` waiting for an
operator."""

import socket
import threading

import pytest

from appliance.rpc.client import RPCClient, TransportError


def _server_that_dies_mid_answer(body_sent: bytes, promised: int):
    """A one-shot HTTP server on loopback that reads the request, promises `promised` bytes and
    closes after sending `body_sent`."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                          if k.strip().lower() == b"content-length")
            while len(body) < length:       # the whole request read: closing then is not a reset
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % promised + body_sent)
        srv.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}", t


@pytest.mark.parametrize("sent", [b"", b'{"jsonrpc": "2.0", "id": 1, "res'])
def test_an_answer_cut_short_is_a_transport_error(sent):
    url, t = _server_that_dies_mid_answer(sent, 140)
    with pytest.raises(TransportError, match="cut short"):
        RPCClient(url, timeout=10).call("Venus.PollPreCommitState", {"Miner": 1000, "Number": 7})
    t.join(10)
    assert not t.is_alive()
