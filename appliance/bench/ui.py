"""`damocles bench ui --sectors 1000`: the status page and /metrics of a manager holding N sectors.

It fills a fresh manager home with N sectors (60% finished, proving on the devnet chain in their
deadlines and partitions; 35% in flight across the sealer states, each with its transition
history; 5% failing, as paused sectors with an error), eight workers' pings, then starts the
manager (chain clock stopped, PoSt off, so nothing moves) and measures over HTTP on loopback:
the page's files, an idle refresh (`/ui/api/version`), the full view (`/ui/api/overview`), a
sector's history, and a `/metrics` scrape; the chain views' walk (the manager's background
refresher, web/chain_views.py, timed in process); and counts the SQL statements an idle refresh costs
(both databases, by SQLite's statement trace)."""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ..core.output import emit

STATES = ("Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done", "PC2Done", "PCSubmitted",
          "PCLanded", "Persisted", "PersistanceSubmitted", "SeedAssigned", "C1Done", "C2Done", "ProofSubmitted", "Finished")
EVENTS = ("Allocate", "AcquireDeals", "AddPiece", "BuildTreeD", "AssignTicket", "PC1", "PC2", "SubmitPC", "CheckPC",
          "Persist", "SubmitPersistance", "AssignSeed", "C1", "C2", "SubmitProof", "Finish")

CONFIG = """
[RPC]
Listen = "127.0.0.1:0"
[Chain]
BlockTime = "0s"
[[Common.PersistStores]]
Name = "persist-1"
Path = "persist-1"
[[Miners]]
Actor = 1000
SealProof = "StackedDrg2KiBV1_1"
[Miners.PoSt]
Enabled = false
[Miners.Proof]
Enabled = false
"""


def add_parser(bench) -> None:
    p = bench.add_parser("ui", help="status page and /metrics response times, and the queries of an idle refresh, "
                                    "with N sectors in the manager")
    p.add_argument("--sectors", type=int, default=1000)
    p.add_argument("--requests", type=int, default=20, help="requests per heavy endpoint (overview, metrics)")
    p.add_argument("--home", type=Path, help="fill this (new) manager home and keep it (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_ui)


def fill(home: Path, n: int, seed: int = 1) -> dict:
    """A manager home holding n sectors as a farm would; returns what went in."""
    from ..chain.types import SectorOnChain
    from ..manager.service import ManagerService, init_home
    rng = random.Random(seed)
    init_home(home, CONFIG)
    svc = ManagerService(home)           # opened, not started: only its databases are used here
    state, chain = svc.state, svc.devnet     # the devnet's own records, written directly
    now = time.time()
    finished, failing, live = [], 0, 0
    try:
        for i in range(n):
            number = state.allocate(1000, 5, 1, None)
            kind = "finished" if i < n * 0.6 else "failing" if i >= n * 0.95 else "live"
            last = len(STATES) - 1 if kind == "finished" else rng.randrange(1, len(STATES) - 1)
            t = now - 3600 * 6 + i * 10.0
            state._now = lambda t=t: t
            loc = f"/var/lib/damocles/worker/sealing-{i % 12}"
            worker = f"worker-{i % 8}"
            for k in range(1, last + 1):
                t += rng.uniform(5, 600)
                state._now = lambda t=t: t
                state.report(1000, number, {"state": STATES[k], "worker": worker, "location": loc}, STATES[k - 1], STATES[k],
                             EVENTS[k], worker)
            if kind == "failing":
                failure = {"Level": "perm", "Desc": "processor c2-0: CUDA out of memory on GPU 0 (after 5 temp retries)"}
                state.report(1000, number, {"failure": failure}, STATES[last], STATES[last], "Failure", worker, failure)
                failing += 1
            elif kind == "finished":
                state.update(1000, number, finalized=True)
                finished.append(number)
            else:
                live += 1
        state._now = time.time
        for w in range(8):
            state.ping(f"worker-{w}", {"Name": f"worker-{w}", "Dest": f"10.0.0.{w + 10}:17890", "Version": "bench",
                                       "Summary": {"Threads": 12, "Empty": 0, "Paused": 1, "Running": 9, "Waiting": 2,
                                                   "Errors": 1}})
        with chain._tx():                  # the finished sectors are active on chain, in deadlines and partitions
            chain._catch_up()
            for number in finished:
                chain.put_sector(SectorOnChain(1000, number, 5, f"bagboea4b5abc{number:040d}", f"baga6ea4seaq{number:040d}",
                                               0, 1_000_000))
            chain.assign_deadlines(1000, finished)
    finally:
        svc.stop()
    return {"sectors": n, "finished": len(finished), "in_flight": live, "failing": failing, "workers": 8}


def _time(url: str, token: str, count: int, headers: dict | None = None, timeout: float = 60) -> dict:
    times, size = [], 0
    for _ in range(count):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", **(headers or {})})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=timeout) as r:
            size = len(r.read())
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "max_ms": round(times[-1], 2), "bytes": size, "requests": count}


def _merge(runs: list[dict]) -> dict:
    times = sorted(r["median_ms"] for r in runs)
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "max_ms": round(times[-1], 2)}


def run(home: Path, n: int, requests: int) -> dict:
    from ..manager.service import ManagerService
    from ..rpc.auth import issue_token
    t0 = time.perf_counter()
    filled = fill(home, n)
    fill_s = time.perf_counter() - t0
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    base = f"http://{host}:{port}"
    token = issue_token(svc.secret, "read", "bench-ui")
    try:
        out = {"filled": filled, "fill_seconds": round(fill_s, 1)}
        waited = threading.Event()
        for _ in range(1200):      # the chain views' first result (the refresher's, at start): bounded, 2 minutes
            if svc.web.chain_views.ready() or waited.wait(0.1):
                break
        for path, count in (("/ui/api/overview", 3), ("/metrics", 3), ("/ui/api/version", 10)):     # warm up
            _time(base + path, token, count)
        out["page_files"] = _time(base + "/ui/", token, 20)
        out["version"] = _time(base + "/ui/api/version", token, max(100, requests * 5))
        out["overview"] = _time(base + "/ui/api/overview", token, requests)
        walks = []                # the refresher's walk of the chain, off the request path
        for _ in range(requests):
            t = time.perf_counter()
            svc.web.chain_views.refresh(force=True)
            walks.append((time.perf_counter() - t) * 1000)
        out["chain_views"] = {**_merge([{"median_ms": w} for w in walks]), "bytes": out["overview"]["bytes"], "requests": requests}
        out["sector"] = _time(base + f"/ui/api/sector/1000-{int(n * 0.7) + 1}", token, requests)   # one in flight
        out["metrics"] = _time(base + "/metrics", token, requests)
        # the statements an idle refresh costs, on both databases, by SQLite's own trace
        counted: list[str] = []
        background: list[str] = []

        def trace(stmt: str) -> None:    # statements of the threads answering the manager's HTTP requests
            name = threading.current_thread().name     # count; its own loops (poster, housekeeping) and
            (counted if name == "rpc-request" else background).append(stmt)   # the devnet API they call do not
        svc.state.db.set_trace(trace)
        svc.devnet.database.set_trace(trace)
        refreshes = 50
        _time(base + "/ui/api/version", token, refreshes)
        idle = list(counted)
        counted.clear()
        _time(base + "/ui/api/overview", token, 1)
        overview_statements = len(counted)
        svc.state.db.set_trace(None)
        svc.devnet.database.set_trace(None)
        out["idle_refresh"] = {"refreshes": refreshes, "statements": len(idle), "manager_loops_meanwhile": len(background),
                               "statements_per_refresh": len(idle) / refreshes,
                               "distinct": sorted(set(idle))}
        out["overview_statements"] = overview_statements
        ov = json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/ui/api/overview", headers={"Authorization": f"Bearer {token}"}), timeout=60).read())
        out["overview_shows"] = {"in_flight": ov["Sectors"]["LiveTotal"], "in_flight_listed": len(ov["Sectors"]["Live"]),
                                 "failing": ov["Sectors"]["Failing"],
                                 "partitions": sum(len(d["Partitions"]) for p in ov["Proving"].values()
                                                   for d in p.get("Deadlines", []))}
        return out
    finally:
        svc.stop()


def cmd_bench_ui(args) -> int:
    if args.sectors < 1:
        raise ValueError(f"--sectors must be at least 1, got {args.sectors}")
    if args.home:
        if args.home.exists() and any(args.home.iterdir()):
            raise ValueError(f"--home {args.home} is not empty")
        out = run(args.home, args.sectors, args.requests)
    else:
        with tempfile.TemporaryDirectory(prefix="damocles-bench-ui-") as d:
            out = run(Path(d) / "manager", args.sectors, args.requests)
    lines = [f"manager with {out['filled']['sectors']} sectors ({out['filled']['finished']} finished and proving, "
             f"{out['filled']['in_flight']} in flight, {out['filled']['failing']} failing), filled in {out['fill_seconds']} s"]
    for key, label in (("page_files", "page (/ui/)"), ("version", "idle refresh (/ui/api/version)"),
                       ("overview", "full view (/ui/api/overview)"),
                       ("chain_views", "chain views' walk (background, not a request)"),
                       ("sector", "sector history (/ui/api/sector/ID)"),
                       ("metrics", "Prometheus scrape (/metrics)")):
        r = out[key]
        lines.append(f"  {label:<46} median {r['median_ms']:>8.2f} ms  p95 {r['p95_ms']:>8.2f} ms  "
                     f"max {r['max_ms']:>8.2f} ms  {r['bytes']:>9,} bytes")
    idle = out["idle_refresh"]
    lines.append(f"  an idle refresh costs {idle['statements_per_refresh']:g} SQL statement(s): "
                 + "; ".join(idle["distinct"]))
    lines.append(f"  a full view (asked only when the ETag changed) costs {out['overview_statements']} statements; "
                 f"it shows {out['overview_shows']['in_flight']} sectors in flight, {out['overview_shows']['failing']} failing, "
                 f"{out['overview_shows']['partitions']} partitions")
    emit(out, args.json, lines)
    return 0
