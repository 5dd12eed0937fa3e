"""bench pipeline: M sectors through a manager (its embedded devnet, through the devnet's API) and a worker with N sealing
threads on this machine, the way `damocles up` runs them. It reports sectors per hour, every
stage's task time measured in the run (wall and CPU), the throughput bound those times and the
configured limits allow, the ratio of the two, and how busy each processor pool was.

The bound is the lowest of three, all from figures measured in the same run:
- cores: CPUs / CPU seconds of stage tasks per sector (the machine cannot seal faster);
- each stage: its slots (pool processes, capped by `limitation.concurrent` and the threads) over
  its CPU time per task (divided by the processes a PC2 task hashes with);
- threads: threads / the shortest possible sector latency, i.e. its compute time plus the least
  time any sector of the run spent outside compute steps (chain waits, persisting, RPC).
Every processor stage gets a pool of min(threads, CPUs) processes; C1 runs in the thread, as in
Damocles.

`--external` runs the same pipeline twice, in-process pools first, then with pc1, pc2 and c2 handed
to min(threads, CPUs) external processors each (`damocles processor <stage>`, over the
vc-processors protocol), and reports the second run's throughput and per-task times against the
first's: what the protocol costs."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import load_toml
from ..core.output import emit
from ..core.proof_types import default_seal_proof, sector_size

POOL_STAGES = ("add_pieces", "tree_d", "pc1", "pc2", "c2")
EXTERNAL_STAGES = ("pc1", "pc2", "c2")      # what --external hands to `damocles processor <stage>`
# the state a compute step leaves, per stage: time spent in these states is compute time
COMPUTE_STATES = {"DealsAcquired": "add_pieces", "PieceAdded": "tree_d", "TicketAssigned": "pc1", "PC1Done": "pc2",
                  "SeedAssigned": "c1", "C1Done": "c2"}

MANAGER_TOML = """# bench pipeline: devnet, every message sent at once (no batching waits)
[RPC]
Listen = "127.0.0.1:0"
[Sealing]
SealRandomnessLookback = 2
InteractivePoRepConfidence = 1
[Chain]
BlockTime = "{block_time}s"
MessageDelay = 1
[[Common.PersistStores]]
Name = "persist-1"
Path = "persist-1"
[[Miners]]
Actor = 1000
SealProof = "{proof}"
[Miners.Sector]
MaxNumber = {sectors}
[Miners.Commitment]
Confidence = 1
[Miners.Commitment.Pre.Batch]
Threshold = 1
CheckInterval = "50ms"
[Miners.Commitment.Prove.Batch]
Threshold = 1
CheckInterval = "50ms"
"""

WORKER_TOML = """[worker]
name = "bench"
ping_interval = "5s"
[worker.rpc_server]
host = "127.0.0.1"
port = 0
[sector_manager]
rpc_client = {{ addr = "{url}" }}
token = "{token}"
[sealing]
recover_interval = "100ms"
rpc_polling_interval = "100ms"
seal_interval = "100ms"
max_retries = 3
{threads}
[[attached]]
name = "persist-1"
location = "{store}"
{pools}"""


def add_parser(bench) -> None:
    p = bench.add_parser("pipeline", help="sectors per hour of a manager and a worker on this machine, against their bound")
    p.add_argument("--size", default="2KiB")
    p.add_argument("--threads", type=int, default=2, help="sealing threads (default 2)")
    p.add_argument("--sectors", type=int, default=4, help="sectors to seal (default 4)")
    p.add_argument("--block-time", type=float, default=0.1, help="devnet seconds per epoch (default 0.1)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds (default 3600)")
    p.add_argument("--external", action="store_true",
                   help="also run pc1, pc2 and c2 as external processors and compare with the in-process pools")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --external: alternate pools and external runs this many times and report the median "
                        "ratio (on a busy or small machine one pair is noise; default 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_pipeline)


def pool_tables(slots: int, external: bool) -> str:
    """[[processors.<stage>]] tables: one pool of `slots` processes per stage, or for the
    external stages `slots` entries each running `damocles processor <stage>`."""
    from ..worker.external import own_command
    out = []
    for s in POOL_STAGES:
        if external and s in EXTERNAL_STAGES:
            cmd = own_command(s)
            out += [f'[[processors.{s}]]\nbin = {json.dumps(cmd[0])}\nargs = {json.dumps(cmd[1:])}\nstable_wait = "60s"\n'] * slots
        else:
            out.append(f"[[processors.{s}]]\nconcurrent = {slots}\n")
    return "".join(out)


def run_pipeline(home: Path, size_name: str, threads: int, sectors: int, block_time: float, timeout: float,
                 external: bool = False, in_process_chain: bool = False, on_manager=None) -> dict:
    """`in_process_chain`: the manager reads the Devnet object itself, not through its API (bench
    chain's baseline); `on_manager(manager)` is called before the manager starts."""
    from ..manager.config import load_config
    from ..manager.service import ManagerService, init_home
    from ..core.files import atomic_write
    from ..rpc.auth import issue_token, load_or_create_secret
    from ..worker.config import parse_worker_config
    from ..worker.service import WorkerService

    proof = default_seal_proof(sector_size(size_name))
    cpus = len(os.sched_getaffinity(0))
    slots = min(threads, cpus)
    mhome = home / "manager"
    init_home(mhome, MANAGER_TOML.format(block_time=block_time, proof=proof.name, sectors=sectors))
    mcfg = load_config(mhome / "sector-manager.cfg")
    manager = ManagerService(mhome, replace(mcfg, chain=replace(mcfg.chain, block_time=block_time)),
                             _in_process_chain=in_process_chain)
    if on_manager is not None:
        on_manager(manager)
    host, port = manager.start("127.0.0.1:0")
    worker = None
    try:
        atomic_write(home / "worker.toml", mode=0o600, data=WORKER_TOML.format(
            url=f"http://{host}:{port}/rpc/v0", token=issue_token(load_or_create_secret(mhome / "secret"), "write", "bench"),
            threads="".join(f'[[sealing_thread]]\nlocation = "{home / f"thread-{i}"}"\n' for i in range(threads)),
            store=mhome / "persist-1",
            pools=pool_tables(slots, external)))
        worker = WorkerService(parse_worker_config(load_toml(home / "worker.toml")))   # pools start here, untimed
        started = time.time()
        worker.start()
        _wait(manager, worker, sectors, timeout)
        journals = [t.journal.log() for t in worker.threads]
        tasks = list(worker.tasklog.tasks)
        pools = {p.name: (p.busy_seconds, p.size) for ps in worker.processors.pools.values() for p in ps}
    finally:
        if worker is not None:
            worker.stop(timeout=10)
        manager.stop()
    r = measure(journals, tasks, pools, started, size_name, threads, sectors, cpus, slots, block_time)
    r["processors"] = "external" if external else "pools"
    r["task_pids"] = {stage: sorted({t.pid for t in tasks if t.stage == stage}) for stage in r["stages"]}
    return r


def compare(pools: dict, external: dict) -> dict:
    """The external run against the pools run: throughput, and wall time per task of each stage
    handed to a processor."""
    return {"pools": pools, "external": external,
            "external_vs_pools": round(external["sectors_per_hour"] / pools["sectors_per_hour"], 4),
            "stage_wall_ratio": {s: round(external["stages"][s]["wall_per_task"] / pools["stages"][s]["wall_per_task"], 4)
                                 for s in EXTERNAL_STAGES if s in external["stages"] and s in pools["stages"]}}


def _wait(manager, worker, sectors: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        listed = manager.sealer.list_sectors()
        aborted = [s for s in listed if s["AbortReason"]]
        if aborted:
            raise RuntimeError(f"sector {aborted[0]['ID']} aborted: {aborted[0]['AbortReason']}")
        broken = [t for t in worker.threads if t.status == "Paused" and t.last_error]
        if broken:
            raise RuntimeError(f"sealing thread {broken[0].index} stopped: {broken[0].last_error}")
        # done when the manager has them finished and the threads have let go of them (the journal's
        # last row, written just after ReportFinalized is answered): the figures come from the journals
        if sum(1 for s in listed if s["Finalized"] and s["LatestState"] == "Finished") >= sectors and \
                sum(1 for t in worker.threads for r in t.journal.log() if r["event"] == "Finish" and r["next"] is None) >= sectors:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sectors} sectors did not finish within {timeout:g}s")
        time.sleep(0.2)   # polling the in-process manager; bounded by the deadline


def measure(journals, tasks, pools, started, size_name, threads, sectors, cpus, slots, block_time) -> dict:
    """Throughput, stage times and the bound, from the worker's journals and task log."""
    latency, compute_time = {}, {}
    for log in journals:
        entered: dict[str, float] = {}
        for row in log:
            name = row["sector"]
            if name is None or row["level"]:
                continue
            if row["event"] == "Allocate":
                latency[name] = -row["ts"]
            if row["event"] == "Finish" and row["next"] is None:    # the thread let go of it
                latency[name] += row["ts"]
            if row["prev"] in COMPUTE_STATES and row["prev"] in entered.get(name, {}):
                compute_time[name] = compute_time.get(name, 0.0) + row["ts"] - entered[name][row["prev"]]
            if row["next"]:
                entered.setdefault(name, {})[row["next"]] = row["ts"]
    finished = [n for n, v in latency.items() if v > 0]
    end = max(r["ts"] for log in journals for r in log if r["event"] == "Finish" and r["next"] is None)
    wall = end - started
    measured = len(finished) / wall
    stages = {}
    for stage in sorted({t.stage for t in tasks}, key=lambda s: list(COMPUTE_STATES.values()).index(s)
                        if s in COMPUTE_STATES.values() else 99):
        ts = [t for t in tasks if t.stage == stage]
        cpu = sum(t.cpu if t.cpu is not None else t.end - t.start for t in ts) / len(ts)
        stages[stage] = {"tasks": len(ts), "wall_per_task": sum(t.end - t.start for t in ts) / len(ts),
                         "cpu_per_task": cpu, "slots": slots if stage in POOL_STAGES else threads,
                         "min_seconds": cpu}   # PC2 in these pools hashes in one process
    cpu_per_sector = sum(s["cpu_per_task"] * s["tasks"] for s in stages.values()) / len(finished)
    compute_latency = sum(s["min_seconds"] * s["tasks"] for s in stages.values()) / len(finished)
    least_wait = min(latency[n] - compute_time.get(n, 0.0) for n in finished)
    bounds = {"cores": cpus / cpu_per_sector, "threads": threads / (compute_latency + least_wait)}
    for name, s in stages.items():
        if s["min_seconds"] > 0:
            bounds[f"stage {name}"] = s["slots"] / s["min_seconds"]
    limit = min(bounds, key=bounds.get)
    busy = {name: busy_s / (wall * size) for name, (busy_s, size) in sorted(pools.items())}
    return {"size": size_name, "sectors": len(finished), "threads": threads, "cpus": cpus, "block_time": block_time,
            "seconds": round(wall, 3), "sectors_per_hour": round(measured * 3600, 2),
            "mean_sector_latency": round(sum(latency[n] for n in finished) / len(finished), 3),
            "least_non_compute_seconds": round(least_wait, 3), "cpu_seconds_per_sector": round(cpu_per_sector, 3),
            "stages": {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()} for k, v in stages.items()},
            "bounds_sectors_per_hour": {k: round(v * 3600, 2) for k, v in bounds.items()},
            "bound_sectors_per_hour": round(bounds[limit] * 3600, 2), "limited_by": limit,
            "ratio": round(measured / bounds[limit], 4), "pool_busy": {k: round(v, 4) for k, v in busy.items()}}


def cmd_bench_pipeline(args) -> int:
    if args.threads < 1 or args.sectors < 1:
        raise ValueError(f"--threads and --sectors must be at least 1 (got {args.threads} and {args.sectors})")
    if args.block_time <= 0:
        raise ValueError(f"--block-time must be positive, got {args.block_time}")
    size = sector_size(args.size).name
    if args.external:
        from ..proofs.parent_cache import load_parents
        load_parents(default_seal_proof(sector_size(size)))      # both runs find it ready: neither pays for it
    if args.rounds < 1 or (args.rounds > 1 and not args.external):
        raise ValueError(f"--rounds must be at least 1, and more than 1 only with --external (got {args.rounds})")
    modes = (False, True) if args.external else (False,)
    rounds = []
    for _ in range(args.rounds):       # pools and external alternate, so a drift in the machine's load hits both
        runs = []
        for external in modes:
            with tempfile.TemporaryDirectory(prefix="damocles-bench-pipeline-") as tmp:
                runs.append(run_pipeline(Path(tmp), size, args.threads, args.sectors, args.block_time, args.timeout, external))
        rounds.append(runs)
    lines = []
    for r in rounds[0]:
        lines += _report_lines(r)
    if not args.external:
        emit(rounds[0][0], args.json, lines)
        return 0
    c = compare(*rounds[0])
    if args.rounds > 1:
        pairs = [compare(*runs) for runs in rounds]
        c["rounds"] = [{"external_vs_pools": p["external_vs_pools"], "stage_wall_ratio": p["stage_wall_ratio"]} for p in pairs]
        c["median_external_vs_pools"] = round(statistics.median(p["external_vs_pools"] for p in pairs), 4)
        c["median_stage_wall_ratio"] = {s: round(statistics.median(p["stage_wall_ratio"][s] for p in pairs), 4)
                                        for s in c["stage_wall_ratio"]}
    lines.append(f"external processors (pc1, pc2, c2 over the protocol): {c['external_vs_pools'] * 100:.1f}% of the "
                 "in-process pools' throughput; wall per task " +
                 ", ".join(f"{s} x{v:.3f}" for s, v in c["stage_wall_ratio"].items()))
    if args.rounds > 1:
        each = ", ".join(f"{r['external_vs_pools'] * 100:.1f}%" for r in c["rounds"])
        lines.append(f"over {args.rounds} alternating rounds: median {c['median_external_vs_pools'] * 100:.1f}% "
                     f"(rounds: {each}); median wall per task " +
                     ", ".join(f"{s} x{v:.3f}" for s, v in c["median_stage_wall_ratio"].items()))
    emit(c, args.json, lines)
    return 0


def _report_lines(r: dict) -> list[str]:
    lines = [f"bench pipeline {r['size']} ({r['processors']}): {r['sectors']} sectors, {r['threads']} sealing threads, "
             f"{r['cpus']} CPUs, devnet block time {r['block_time']:g}s",
             f"  finished in {r['seconds']:.1f}s: {r['sectors_per_hour']:,.1f} sectors/hour "
             f"(mean sector latency {r['mean_sector_latency']:.1f}s)",
             f"  {'stage':<12}{'tasks':>6}{'wall/task':>11}{'cpu/task':>10}{'slots':>7}"]
    for name, s in r["stages"].items():
        lines.append(f"  {name:<12}{s['tasks']:>6}{s['wall_per_task']:>10.2f}s{s['cpu_per_task']:>9.2f}s{s['slots']:>7}")
    lines.append(f"  bound: {r['bound_sectors_per_hour']:,.1f} sectors/hour, limited by {r['limited_by']} "
                 f"({r['cpu_seconds_per_sector']:.2f} CPU-s per sector; least non-compute time {r['least_non_compute_seconds']:.2f}s)")
    lines.append("  bounds: " + ", ".join(f"{k} {v:,.1f}/h" for k, v in r["bounds_sectors_per_hour"].items()))
    lines.append(f"  ratio: {r['ratio'] * 100:.1f}% of the bound")
    lines.append("  pools busy: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in r["pool_busy"].items()))
    return lines
