"""bench chain: what speaking the Lotus API costs the manager. One run seals M sectors (bench
pipeline's manager and worker) twice: first with the manager reaching its embedded devnet
through the devnet's Filecoin API and LotusChain (the default, the path a farm on a real
chain takes), then with the manager reading the Devnet object in process (an internal switch
that exists for this comparison only). For each it reports the chain calls the manager made,
counted at the client (JSON-RPC methods for LotusChain, Chain methods in process), per sector
by method, and sectors per hour; then the API's rate against the in-process rate. Calls per
sector include the manager's polling while sectors wait, so they depend on the run's length."""

from __future__ import annotations

import collections
import inspect
import tempfile
import threading
from pathlib import Path

from ..core.output import emit


class CallCounter:
    """Counts the chain calls a manager makes, by method, from the moment it is attached."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def attach(self, manager) -> None:
        from ..chain.interface import Chain
        from ..chain.lotus.chain import LotusChain
        chain = manager.chain
        if isinstance(chain, LotusChain):           # every JSON-RPC request the client sends
            clients = [chain.client] + ([chain.messager.client] if getattr(chain.messager, "client", None) else [])
            for client in clients:
                self._wrap(client, "call", lambda args: args[0])
            return
        for name, _ in inspect.getmembers(Chain, inspect.isfunction):   # the Chain interface, in process
            if not name.startswith("_") and callable(getattr(chain, name, None)):
                self._wrap(chain, name, lambda args, name=name: name)

    def _wrap(self, obj, attr: str, key) -> None:
        real = getattr(obj, attr)

        def counted(*args, **kwargs):
            self._count(key(args))
            return real(*args, **kwargs)
        setattr(obj, attr, counted)     # on the instance: the manager's parts call it through the object


def summarise(run: dict, counter: CallCounter) -> dict:
    sectors = run["sectors"]
    total = sum(counter.counts.values())
    return {"sectors": sectors, "sectors_per_hour": run["sectors_per_hour"], "seconds": run["seconds"],
            "calls": dict(sorted(counter.counts.items())), "calls_per_sector_total": round(total / sectors, 2),
            "calls_per_sector": {m: round(n / sectors, 2) for m, n in sorted(counter.counts.items())}}


def run_chain_bench(home: Path, size_name: str, threads: int, sectors: int, block_time: float, timeout: float) -> dict:
    from .pipeline import run_pipeline
    out = {"size": size_name, "threads": threads, "block_time": block_time}
    for key, in_process in (("lotus_api", False), ("in_process", True)):
        counter = CallCounter()
        run = run_pipeline(home / key, size_name, threads, sectors, block_time, timeout,
                           in_process_chain=in_process, on_manager=counter.attach)
        out[key] = summarise(run, counter)
    out["lotus_api_vs_in_process"] = round(out["lotus_api"]["sectors_per_hour"] / out["in_process"]["sectors_per_hour"], 4)
    return out


def add_parser(bench) -> None:
    p = bench.add_parser("chain", help="chain calls per sector and sectors per hour through the Lotus API against "
                                       "the in-process devnet, in one run")
    p.add_argument("--size", default="2KiB")
    p.add_argument("--threads", type=int, default=2, help="sealing threads (default 2)")
    p.add_argument("--sectors", type=int, default=2, help="sectors to seal each way (default 2)")
    p.add_argument("--block-time", type=float, default=0.1, help="devnet seconds per epoch (default 0.1)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up on a run after this many seconds (default 3600)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_chain)


def cmd_bench_chain(args) -> int:
    for name in ("threads", "sectors"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.block_time < 0 or args.timeout <= 0:
        raise ValueError("--block-time must not be negative and --timeout must be positive")
    with tempfile.TemporaryDirectory(prefix="damocles-bench-chain-") as tmp:
        r = run_chain_bench(Path(tmp), args.size, args.threads, args.sectors, args.block_time, args.timeout)
    emit(r, args.json, _report_lines(r))
    return 0


def _report_lines(r: dict) -> list[str]:
    lines = []
    for key, label in (("lotus_api", "through the devnet's Lotus API"), ("in_process", "in-process devnet")):
        x = r[key]
        top = sorted(x["calls_per_sector"].items(), key=lambda kv: -kv[1])[:8]
        lines.append(f"{label}: {x['sectors_per_hour']:.1f} sectors/h, {x['calls_per_sector_total']:g} chain calls per sector "
                     f"({', '.join(f'{m} {n:g}' for m, n in top)})")
    lines.append(f"API against in process: {r['lotus_api_vs_in_process']:.3f}x the sealing rate")
    return lines
