"""The HTTP side of the RPC server: a bounded number of connection threads, a deadline on every
request's headers (and on a JSON-RPC body) and on every answer as a whole (so a client reading
slowly cannot hold a thread for longer than the answer's size at MIN_RESPONSE_RATE allows), the
token (or the status page's session cookie) checked before a body is read, and browser
hygiene: a state-changing request must say it is JSON (or, for a PUT, octet-stream) and must
not come from a foreign Origin. That is what stops a web page the operator visits
from posting to the manager: a page cannot send `Content-Type: application/json` to another
origin without a CORS preflight, which this server never grants."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import INTERNAL_ERROR, INVALID_REQUEST, UNAUTHORIZED
from .limits import dumps, error_answer

log = logging.getLogger("damocles.rpc")

JSON = "application/json"
PUT_TYPES = (JSON, "application/octet-stream")
MIN_RESPONSE_RATE = 64 << 10     # bytes/s: an answer gets request_timeout plus its size at this rate
LINGER_RESET = struct.pack("ii", 1, 0)     # SO_LINGER on, 0 s: close() resets the connection
MAX_PLAIN_POST = 4096            # a POST beside /rpc/v0 (the page's logout) carries no real body
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections, try again\n")


class BoundedHTTPServer(ThreadingHTTPServer):
    """At most `max_connections` handler threads; a connection past that is answered 503 and
    closed. A reaper disconnects a client whose request (headers, or a JSON-RPC body) is not
    in after `request_timeout` seconds, however slowly it trickles in, and one that has not
    taken its answer after `request_timeout` plus the answer's size at `response_min_rate`."""
    daemon_threads = True
    request_queue_size = 128     # socketserver's 5 drops bursts of workers before they are accepted

    def __init__(self, address, handler, max_connections: int, request_timeout: float, name: str = "rpc"):
        super().__init__(address, handler)
        self.name = name          # request threads are "<name>-request": the manager's and the devnet API's apart
        self.slots, self.max_connections = threading.BoundedSemaphore(max_connections), max_connections
        self.request_timeout = request_timeout
        self.response_min_rate = MIN_RESPONSE_RATE
        # connection -> (when its request must be in, or its answer taken; whether that was an answer)
        self.deadlines: dict[socket.socket, tuple[float, bool]] = {}
        self.lock = threading.Lock()
        self.refused, self.refused_logged = 0, 0.0      # one log line per 10 s under a flood, with the count
        self.reaper_stop = threading.Event()
        self.closing = False      # shut down: kept-alive connections are closed instead of waiting for a request
        threading.Thread(target=self._reap, name="rpc-reaper", daemon=True).start()

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            if time.monotonic() - self.refused_logged > 10:
                log.warning("refused %d connection(s), the last from %s: %d connections already open", self.refused,
                            client_address[0], self.max_connections)
                self.refused, self.refused_logged = 0, time.monotonic()
            try:
                request.settimeout(1.0)
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        threading.current_thread().name = f"{self.name}-request"
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.clear_deadline(request)
            self.slots.release()

    def handle_error(self, request, client_address):
        # one line, not socketserver's traceback on stderr: a client hanging up is not a bug
        import sys
        exc = sys.exc_info()[1]
        log.warning("connection from %s ended: %s: %s", client_address[0], type(exc).__name__, exc)

    def set_deadline(self, conn: socket.socket, seconds: float | None = None, answer: bool = False) -> None:
        """`conn` is disconnected unless it is done (cleared) within `seconds` (request_timeout) from
        now. A late `answer` is dropped at once: what the kernel still holds of it is discarded
        (a reset), not trickled out to the slow reader after the thread has gone."""
        with self.lock:
            self.deadlines[conn] = (time.monotonic() + (self.request_timeout if seconds is None else seconds), answer)

    def drop_idle(self) -> None:
        """At shutdown: close the kept-alive connections waiting for their next request (or still
        reading one), so their clients see the server gone instead of a socket that never answers.
        A handler checks `closing` after setting its deadline, and this scans after setting it:
        one of the two sees the other."""
        with self.lock:
            self.closing = True
            waiting = [c for c, (_, answer) in self.deadlines.items() if not answer]
        for conn in waiting:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def clear_deadline(self, conn: socket.socket) -> None:
        with self.lock:
            self.deadlines.pop(conn, None)

    def _reap(self) -> None:
        while not self.reaper_stop.wait(min(1.0, self.request_timeout / 4)):
            now = time.monotonic()
            with self.lock:
                late = [(c, answer) for c, (t, answer) in self.deadlines.items() if t < now]
                for c, _ in late:
                    del self.deadlines[c]
            for conn, answer in late:
                try:
                    if answer:      # the handler's close then resets the connection, dropping the unsent rest
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                    conn.shutdown(socket.SHUT_RDWR)     # the handler's read or write returns; its thread ends
                except OSError:
                    pass


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def foreign_origin(origin: str | None, host: str | None) -> bool:
    """True when a browser says the request comes from a page of another origin."""
    if origin is None:
        return False                      # not a browser (or a same-origin GET): nothing to compare
    parts = urlsplit(origin)
    return parts.scheme not in ("http", "https") or not host or parts.netloc.lower() != host.strip().lower()


def handler_class(rpc):
    """The request handler for one RPCServer (`rpc`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body go out as separate writes
        timeout = rpc.request_timeout    # every recv and send on the connection

        def log_message(self, fmt, *args):   # quiet: one line per request is too much
            log.debug("%s " + fmt, self.client_address[0], *args)

        def handle_one_request(self):
            self.server.set_deadline(self.connection)    # until its headers are in (and an RPC body)
            with self.server.lock:
                closing = self.server.closing
            if closing:            # the server is shutting down: no next request on a kept-alive connection
                self.close_connection = True
                self.server.clear_deadline(self.connection)
                return
            try:
                super().handle_one_request()
            except OSError as exc:                       # the client went away or was too slow
                log.debug("%s: connection dropped: %s", self.client_address[0], exc)
                self.close_connection = True
                try:        # reset at close: what the kernel still holds of a failed answer is not trickled out
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                except OSError:
                    pass
            finally:
                self.server.clear_deadline(self.connection)

        def send_response(self, code, message=None):
            # from the first byte of an answer, the whole answer must be taken in time: a per-send
            # timeout alone lets a client that reads a little at a time hold this thread for ever
            self.server.set_deadline(self.connection, self.server.request_timeout, answer=True)
            super().send_response(code, message)

        def send_header(self, keyword, value):
            if keyword.lower() == "content-length":
                try:
                    size = max(0, int(value))
                except ValueError:
                    size = 0
                self.server.set_deadline(self.connection, self.server.request_timeout + size / self.server.response_min_rate,
                                         answer=True)
            super().send_header(keyword, value)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, status: int, message: str, rpc_error: bool, unread: int = 0) -> None:
            """Answer an error and close. `unread` bytes of body are read and dropped first (never
            parsed): closing on unread data would reset the connection before the client reads
            the answer."""
            while unread > 0:
                chunk = self.rfile.read(min(unread, 1 << 16))
                if not chunk:
                    break
                unread -= len(chunk)
            if rpc_error:
                code = UNAUTHORIZED if status in (401, 403) else INVALID_REQUEST
                self._send(status, dumps(error_answer(None, code, message)))
            else:
                self._send(status, f"{message}\n".encode(), "text/plain")
            self.close_connection = True

        def _browser_checks(self, allowed_types: tuple[str, ...], rpc_error: bool, unread: int = 0) -> bool:
            """Refuse a state-changing request from a foreign page or without a JSON body type."""
            if foreign_origin(self.headers.get("Origin"), self.headers.get("Host")):
                self._refuse(403, f"requests from origin {self.headers.get('Origin')!r} are refused", rpc_error, unread)
                return False
            if media_type(self.headers.get("Content-Type")) not in allowed_types:
                self._refuse(415, f"Content-Type must be {' or '.join(allowed_types)}, "
                                  f"got {self.headers.get('Content-Type')!r}", rpc_error, unread)
                return False
            return True

        def do_GET(self):
            self.server.clear_deadline(self.connection)
            if self.path == "/healthcheck":
                self._send(200, b"ok\n", "text/plain")
            elif not rpc._route(self, "GET"):
                self._send(404, b"not found\n", "text/plain")

        def do_PUT(self):
            self.server.clear_deadline(self.connection)     # a piece upload may take long; each recv is bounded
            if not self._browser_checks(PUT_TYPES, rpc_error=False):
                return
            if not rpc._route(self, "PUT"):
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self):
            if self.path not in rpc.rpc_paths:
                self._plain_post()
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._refuse(411, "Content-Length required", rpc_error=True)
                return
            if length < 0 or length > rpc.max_body:
                self._refuse(413, f"request body of {length} bytes exceeds the limit of {rpc.max_body}", rpc_error=True)
                return
            if not self._browser_checks((JSON,), rpc_error=True, unread=length):
                return
            perm, err = rpc.permission(self.headers.get("Authorization"), self.client_address[0],
                                       self.headers.get("Cookie"))    # the status page's session counts here
            if perm is None:                             # before the body is parsed
                self._refuse(401, f"unauthorized: {err or 'missing bearer token'}", rpc_error=True, unread=length)
                return
            body = self.rfile.read(length)
            self.server.clear_deadline(self.connection)
            if len(body) < length:                       # the client hung up (or was disconnected)
                self.close_connection = True
                return
            try:
                status, resp = rpc.handle(body, perm, err)
                payload = _dumps(resp)
            except Exception:                            # a bug: a short answer here, the traceback in the log
                log.exception("request to %s failed", self.path)
                status, payload = 500, _dumps(error_answer(None, INTERNAL_ERROR, "internal error (see the server's log)"))
            self._send(int(status), payload)

        def _plain_post(self):
            """A POST route beside JSON-RPC (the status page's logout): the same browser checks, a
            small body read and dropped, then the route answers."""
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_PLAIN_POST:
                self._refuse(413, f"a POST to {self.path} carries at most {MAX_PLAIN_POST} bytes", rpc_error=False)
                return
            if not self._browser_checks((JSON,), rpc_error=False, unread=length):
                return
            if len(self.rfile.read(length)) < length:
                self.close_connection = True
                return
            self.server.clear_deadline(self.connection)
            if not rpc._route(self, "POST"):
                self._send(404, b"not found\n", "text/plain")

    return Handler


def _dumps(resp) -> bytes:
    try:
        return dumps(resp)
    except ValueError:          # NaN or Infinity in a result: never send what JSON clients cannot read
        log.error("an answer held a non-finite number: %r", resp)
        return dumps(error_answer(resp.get("id"), INTERNAL_ERROR, "internal error: the result holds a number JSON cannot carry"))
