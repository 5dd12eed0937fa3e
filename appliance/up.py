"""`damocles up`: the whole cluster on one machine, for a first look and for demos. On first run
it initialises a manager home (devnet profile) and a worker with N sealing threads; then it runs
the devnet, serving its Filecoin API on loopback, the manager talking to it through the Lotus
client (as it would to a node), the worker, and shows live progress. With `--sectors N` it exits 0
once N sectors are Finished, and non-zero with the reason if a sector aborts, a thread stops on
an error, or nothing progresses for `--stall-timeout` seconds.

Layout: `<home>/manager` (sector-manager.cfg, secret, databases, `persist-1/` store),
`<home>/worker` (worker.toml, one location per sealing thread) and `<home>/post` (post.toml: a
prover reading the persist store, which the manager gives its WindowPoSt jobs to)."""

from __future__ import annotations

import argparse
import collections
import logging
import re
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from .core.proof_types import default_seal_proof, sector_size

DEFAULT_HOME = Path.home() / ".damocles"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run manager, devnet chain and a worker on this machine")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--size", default="2KiB", help="sector size (first run; default 2KiB)")
    p.add_argument("--threads", type=int, default=2, help="sealing threads (first run; default 2)")
    p.add_argument("--sectors", type=int, help="exit once this many sectors are Finished")
    p.add_argument("--block-time", type=float, default=1.0, help="devnet seconds per epoch (default 1)")
    p.add_argument("--stall-timeout", type=float, default=300.0, help="give up when nothing moves this long")
    p.add_argument("--listen", default="127.0.0.1:0", help="manager RPC address (default: a free loopback port)")
    from .core.logs import add_argument as add_log_format
    add_log_format(p)
    p.set_defaults(func=cmd_up)


def _init(home: Path, size_name: str, threads: int) -> None:
    """Write the three homes on first run; the worker's and prover's configs hold write tokens,
    so they are 0600 from the moment they exist."""
    from .core.files import atomic_write
    from .manager.config import config_path
    from .manager.config_file import DEVNET_CFG
    from .manager.service import init_home
    from .rpc.auth import issue_token, load_or_create_secret
    proof = default_seal_proof(sector_size(size_name))
    mhome = home / "manager"
    if not config_path(mhome).exists():
        init_home(mhome, DEVNET_CFG.replace('SealProof = "StackedDrg2KiBV1_1"', f'SealProof = "{proof.name}"'))
    pdir = home / "post"
    if not (pdir / "post.toml").exists():
        pdir.mkdir(parents=True, exist_ok=True)
        token = issue_token(load_or_create_secret(mhome / "secret"), "write", "up-prover")
        atomic_write(pdir / "post.toml", mode=0o600, data=f"""# damocles up: a dedicated WindowPoSt prover
[prover]
name = "up-prover"
poll_interval = "500ms"

[sector_manager]
rpc_client = {{ addr = "http://127.0.0.1:1789" }}   # replaced at start by the running manager's address
token = "{token}"

[[attached]]
name = "persist-1"
location = "{mhome / 'persist-1'}"
""")
    wdir = home / "worker"
    if (wdir / "worker.toml").exists():
        return
    wdir.mkdir(parents=True, exist_ok=True)
    token = issue_token(load_or_create_secret(mhome / "secret"), "write", "up-worker")
    thread_tables = "".join(f'[[sealing_thread]]\nlocation = "{wdir / f"thread-{i}"}"\n\n' for i in range(threads))
    atomic_write(wdir / "worker.toml", mode=0o600, data=f"""# damocles up: the worker (devnet profile: short intervals)
[worker]
name = "up-worker"
ping_interval = "5s"

[sector_manager]
rpc_client = {{ addr = "http://127.0.0.1:1789" }}   # replaced at start by the running manager's address
token = "{token}"

[sealing]
allowed_sizes = ["{proof.size.name}"]
recover_interval = "1s"
rpc_polling_interval = "1s"
seal_interval = "1s"

{thread_tables}[[attached]]
name = "persist-1"
location = "{mhome / 'persist-1'}"
""")


def cmd_up(args) -> int:
    from .manager.config import config_path, load_config
    from .manager.service import ManagerService
    from .post.config import load_post_config
    from .post.service import ProverService
    from .worker.config import load_worker_config
    from .worker.service import WorkerService
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.block_time < 0:
        raise ValueError(f"--block-time must not be negative, got {args.block_time}")
    from .core.logs import setup as setup_logs
    # the terminal shows the progress line and warnings; JSON logs are for machines and carry every event
    setup_logs(args.log_format, logging.INFO if args.log_format == "json" else logging.WARNING)
    home = args.home.expanduser()
    _init(home, args.size, args.threads)
    mcfg = load_config(config_path(home / "manager"))
    mcfg.chain = replace(mcfg.chain, block_time=args.block_time)
    manager = ManagerService(home / "manager", mcfg)     # the devnet's API on loopback, or the configured node
    devnet_api = manager.devnet_api
    host, port = manager.start(args.listen)
    wcfg = load_worker_config(home / "worker" / "worker.toml")
    wcfg.manager_urls = [f"http://{host}:{port}/rpc/v0"]    # this manager only, whatever worker.toml lists
    wcfg.rpc_host, wcfg.rpc_port = "127.0.0.1", 0     # any free port: two `up`s (or a real worker) may share a host
    pcfg = load_post_config(home / "post" / "post.toml")
    pcfg.manager_urls = wcfg.manager_urls
    worker = prover = None
    try:
        worker = WorkerService(wcfg)
        prover = ProverService(pcfg)
        worker.start()
        prover.start()
    except BaseException:                 # nothing may keep running (or hang the process) after a failed start
        if prover is not None:
            prover.stop()
        if worker is not None:
            worker.stop(timeout=10)
        manager.stop()
        raise
    chain = f"devnet block time {args.block_time:g}s, its Filecoin API on {devnet_api.url}" if devnet_api else \
        f"chain {mcfg.chain_api.chain_endpoint().url}"
    print(f"damocles up: manager on http://{host}:{port} (home {home}), {chain}, "
          f"worker with {len(worker.threads)} sealing threads, prover {pcfg.name}", flush=True)
    # no token in the address (it would stay in the browser's history and this terminal's
    # scrollback): a one-time code, worth nothing once used or 120 s old
    code, lifetime = manager.web_login.mint_code("admin")
    print(f"damocles up: status page http://{host}:{port}/ui/login?code={code} (works once, within {lifetime:g} s; "
          f"a new link: `damocles manager login-url --home {home / 'manager'} --api http://{host}:{port}`)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return _watch(manager, worker, args, stop)
    finally:
        worker.stop(timeout=10)
        prover.stop()
        manager.stop()


def _watch(manager, worker, args, stop: threading.Event) -> int:
    tty = sys.stdout.isatty()
    last_change, last_line, last_print = time.monotonic(), None, 0.0
    started_at = time.time()
    finished_before = _finished(manager)
    failing_seen: set[str] = set()
    while not stop.wait(1.0):
        view = manager.web.sectors()           # what the status page's pipeline shows
        aborted = [s for s in view["Recent"] if s["AbortReason"] and not s["AbortReason"].startswith("released")
                   and s["Updated"] >= started_at]
        finished = _finished(manager) - finished_before
        counts = collections.Counter({state: n for state, n in view["LiveCounts"].items() if state})
        failing = view["Attention"]
        threads = [t.status for t in worker.threads]
        line = (f"epoch {manager.chain.head():>5} | finished {finished}" + (f"/{args.sectors}" if args.sectors else "")
                + " | in flight: " + (", ".join(f"{k} {v}" for k, v in _in_order(counts)) or "-")
                + (f" | failing {len(failing)}" if failing else "")
                + " | threads: " + ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(threads).items())))
        for s in failing:                      # one line per sector that starts failing, as the page lists it
            if s["Sector"] not in failing_seen:
                failing_seen.add(s["Sector"])
                desc = (s["Failure"].get("Desc") or "").splitlines()[0][:160]
                print(("\n" if tty else "") + f"damocles up: {s['Sector']} {s['Failure']['Level']} failure in {s['State']} "
                      f"(worker {s['Worker']}): {desc}", flush=True)
        failing_seen &= {s["Sector"] for s in failing}
        key = re.sub(r"epoch\s+\d+ \| ", "", line)
        changed = last_line is None or key != re.sub(r"epoch\s+\d+ \| ", "", last_line)
        if changed:
            last_change = time.monotonic()
        # a terminal gets one line rewritten in place; a log gets a line per change (or every 30 s)
        if tty or changed or time.monotonic() - last_print > 30:
            print(("\r" + line.ljust(120)) if tty else line, end="" if tty else "\n", flush=True)
            last_print = time.monotonic()
        last_line = line
        if aborted:
            print(f"\ndamocles up: sector {aborted[0]['Sector']} aborted: {aborted[0]['AbortReason']}", file=sys.stderr)
            return 1
        broken = [t for t in worker.threads if t.status == "Paused" and t.last_error]
        if broken:
            print(f"\ndamocles up: sealing thread {broken[0].index} stopped: {broken[0].last_error}", file=sys.stderr)
            return 1
        if args.sectors and finished >= args.sectors:
            print(f"\ndamocles up: {finished} sectors finished" if tty else f"damocles up: {finished} sectors finished", flush=True)
            return 0
        if time.monotonic() - last_change > args.stall_timeout:
            print(f"\ndamocles up: nothing progressed for {args.stall_timeout:g}s", file=sys.stderr)
            return 1
    return 0


_ORDER = ("Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done", "PC2Done", "PCSubmitted",
          "PCLanded", "Persisted", "PersistanceSubmitted", "SeedAssigned", "C1Done", "C2Done", "ProofSubmitted", "Finished")


def _in_order(counts: collections.Counter) -> list[tuple[str, int]]:
    """States in pipeline order (as the status page lists them), unknown ones after."""
    return sorted(counts.items(), key=lambda kv: (_ORDER.index(kv[0]) if kv[0] in _ORDER else len(_ORDER), str(kv[0])))


def _finished(manager) -> int:
    return sum(1 for s in manager.sealer.list_sectors() if s["Finalized"] and s["LatestState"] == "Finished" and not s["AbortReason"])
