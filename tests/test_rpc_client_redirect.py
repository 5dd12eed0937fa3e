"""The RPC client never follows a redirect: following one would carry its Authorization header
(a worker's token, or a manager-to-worker credential) to wherever the answer points."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from appliance.rpc.client import RPCClient, TransportError


def serve(handler_cls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_the_token_goes_nowhere(code):
    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()
        do_POST = do_GET

        def log_message(self, *args):
            pass

    elsewhere = serve(Elsewhere)

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(code)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        do_GET = do_POST

        def log_message(self, *args):
            pass

    redirecting = serve(Redirecting)
    try:
        client = RPCClient(f"http://127.0.0.1:{redirecting.server_port}", token="secret-token", timeout=5)
        with pytest.raises(TransportError, match=f"HTTP {code}.*redirect"):
            client.call("Venus.WorkerPing", {"Name": "w"})
        assert seen == []
    finally:
        redirecting.shutdown()
        elsewhere.shutdown()
