"""bench rpc: sustained requests per second and p50/p99 latency of a worker-like mix
(WorkerPing, ReportState, PollPreCommitState) against a real manager process, and the same load
against a bare HTTP server of the same stack (http.server, threads) answering a fixed JSON body,
measured in the same run. The ratio says what the manager's own work costs."""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..core.output import emit
from ..proofs.pc2 import mp_context

BENCH_CONFIG = """
[RPC]
Listen = "127.0.0.1:0"
[Chain]
BlockTime = "0s"
[[Miners]]
Actor = 1000
SealProof = "StackedDrg2KiBV1_1"
"""


def _manager_child(home: str, queue, stop) -> None:
    from ..manager.service import ManagerService
    service = ManagerService(Path(home))
    queue.put(service.start("127.0.0.1:0"))
    stop.wait()
    service.stop()


def _bare_child(queue, stop) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": None}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True   # headers and body go out as separate writes

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    queue.put(httpd.server_address[:2])
    stop.wait()
    httpd.shutdown()


def _requests(sid: dict) -> list[tuple[str, list]]:
    report = {"Worker": {"Instance": "bench", "Location": "/bench"},
              "StateChange": {"Prev": "PC2Done", "Next": "PCSubmitted", "Event": "SubmitPC"}}
    return [("Venus.WorkerPing", [{"Name": "bench", "Dest": "127.0.0.1:1", "Version": "bench"}]),
            ("Venus.ReportState", [sid, report]),
            ("Venus.PollPreCommitState", [sid])]


def _load(addr, token: str, mix, clients: int, seconds: float) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(*addr, timeout=30)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        k = i
        while time.perf_counter() < deadline:
            method, params = mix[k % len(mix)]
            k += 1
            body = json.dumps({"jsonrpc": "2.0", "id": k, "method": method, "params": params})
            t = time.perf_counter()
            conn.request("POST", "/rpc/v0", body, headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            latencies[i].append(time.perf_counter() - t)
            if resp.status != 200 or answer.get("error"):
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = sorted(x for lat in latencies for x in lat)
    return {"requests": len(flat), "errors": sum(errors), "requests_per_second": round(len(flat) / elapsed, 1),
            "p50_ms": round(statistics.median(flat) * 1000, 3) if flat else None,
            "p99_ms": round(flat[int(len(flat) * 0.99) - 1] * 1000, 3) if flat else None}


def cmd_bench_rpc(args) -> int:
    from ..rpc.auth import issue_token, load_or_create_secret
    from ..rpc.client import RPCClient
    if args.clients < 1 or args.seconds <= 0:
        raise ValueError("--clients must be ≥ 1 and --seconds > 0")
    ctx = mp_context()
    with tempfile.TemporaryDirectory(prefix="damocles-bench-rpc-") as tmp:
        home = Path(tmp)
        (home / "manager.toml").write_text(BENCH_CONFIG)
        token = issue_token(load_or_create_secret(home / "secret"), "write")
        results = {}
        for name, target, targs in (("manager", _manager_child, (str(home),)), ("bare", _bare_child, ())):
            q, stop = ctx.Queue(), ctx.Event()
            child = ctx.Process(target=target, args=(*targs, q, stop))
            child.start()
            try:
                addr = q.get(timeout=60)
                if name == "manager":
                    sid = RPCClient(f"http://{addr[0]}:{addr[1]}", token).call("Venus.AllocateSector", {})["ID"]
                    mix = _requests(sid)
                results[name] = _load(addr, token, mix, args.clients, args.seconds)
            finally:
                stop.set()
                child.join(timeout=30)
    ratio = results["manager"]["requests_per_second"] / results["bare"]["requests_per_second"]
    out = {"clients": args.clients, "seconds": args.seconds, "mix": [m for m, _ in mix], **results, "ratio_to_bare": round(ratio, 3)}
    lines = [f"{args.clients} clients, {args.seconds:g}s each, mix {', '.join(m for m, _ in mix)}"]
    for name in ("manager", "bare"):
        r = results[name]
        lines.append(f"  {name:8s} {r['requests_per_second']:>9,.1f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                     f"  ({r['requests']} requests, {r['errors']} errors)")
    lines.append(f"manager / bare server: {ratio:.2f}")
    emit(out, args.json, lines)
    return 0 if results["manager"]["errors"] == 0 else 1
