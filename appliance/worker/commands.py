"""`damocles worker run -c worker.toml`, `worker check`, and the worker's control commands."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..core.signals import wait_for_stop_signal


def add_parsers(worker: argparse._SubParsersAction) -> None:
    p = worker.add_parser("run", help="run a worker: sealing threads pulling work from the manager")
    p.add_argument("-c", "--config", type=Path, required=True)
    p.add_argument("--parent-cache", type=Path, help="SDR parent cache directory (default as rust-fil-proofs)")
    from ..core.logs import add_argument as add_log_format
    add_log_format(p)
    p.set_defaults(func=cmd_run)
    add_control_parsers(worker)
    from ..hw.commands import add_check_arguments
    p = worker.add_parser("check", help="check a worker.toml (or post.toml) against this machine (exit 1 on errors)")
    add_check_arguments(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from ..hw.commands import cmd_worker_check
    return cmd_worker_check(args)


DEFAULT_WORKER_HOST = "127.0.0.1:17890"     # damocles-worker's default, as its CLI falls back to


def add_control_parsers(worker: argparse._SubParsersAction) -> None:
    """damocles-worker's `worker list|pause -i N|resume -i N [-s STATE]`, the worker's address
    from `--worker`/`-H` (here or before the command), $DAMOCLES_WORKER_HOST, else 127.0.0.1:17890."""
    for name, helptext in (("list", "the worker's sealing threads"), ("pause", "pause a sealing thread"),
                           ("resume", "resume a paused sealing thread")):
        p = worker.add_parser(name, help=helptext)
        p.add_argument("--worker", "-H", "--host", dest="worker",
                       help="the worker's RPC address HOST:PORT (see util workers list)")
        p.add_argument("--token", help="a manager token (default $DAMOCLES_TOKEN or minted from --home)")
        p.add_argument("--home", type=Path, default=Path.home() / ".damocles-manager")
        if name != "list":
            p.add_argument("-i", "--index", type=int, required=True)
        if name == "resume":
            p.add_argument("-s", "--state", help="resume at this sealer state (e.g. PC2Done)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_control, action=name)
    # damocles-worker's `worker enable-dump --child-pid PID --dump-dir DIR` / `disable-dump --child-pid PID`:
    # DUMP_ERR_RESP_<PID> set or removed on the worker (WorkerSetEnv / WorkerRemoveEnv)
    for name, helptext in (("enable-dump", "write the malformed answers of external processor PID into DIR"),
                           ("disable-dump", "malformed answers of external processor PID back to the default directory")):
        p = worker.add_parser(name, aliases=[name.replace("-", "_")], help=helptext)
        p.add_argument("--child-pid", "--child_pid", dest="child_pid", type=int, required=True)
        if name == "enable-dump":
            p.add_argument("--dump-dir", "--dump_dir", dest="dump_dir", type=Path, required=True)
        p.add_argument("--worker", "-H", "--host", dest="worker", help="the worker's RPC address HOST:PORT")
        p.add_argument("--token", help="a manager token (default $DAMOCLES_TOKEN or minted from --home)")
        p.add_argument("--home", type=Path, default=Path.home() / ".damocles-manager")
        p.set_defaults(func=cmd_control, action=name)


def add_host_argument(worker_parser: argparse.ArgumentParser) -> None:
    """`damocles worker -H HOST:PORT list`, where damocles-worker takes it."""
    worker_parser.add_argument("-H", "--host", dest="worker_host", help="the worker's RPC address HOST:PORT")


def cmd_control(args) -> int:
    import os
    from ..core.output import emit
    from ..rpc.auth import cli_token
    from ..rpc.client import RPCClient
    from ..core.units import format_duration
    host = args.worker or getattr(args, "worker_host", None) or os.environ.get("DAMOCLES_WORKER_HOST") or DEFAULT_WORKER_HOST
    # the worker gets the token: one minted here lives only as long as this command needs
    client = RPCClient(f"http://{host}", cli_token(args.token, args.home, ttl=60))
    if args.action == "list":
        rows = client.call("VenusWorker.WorkerList")
        lines = [f"{r['index']:>3}  {r['thread_state']['state']:<8} {r['job_id'] or '-':<16} {r['job_state'] or '-':<22} "
                 f"{r['location']}  {r['last_error'] or ''}" for r in rows]
        procs = _processor_rows(client)
        lines += [""] + [f"{r['entry']:<26} {r['kind']:<8} {_pids(r):<12} {r['pinning_detail']}"
                         + (f"  timeout {format_duration(r['timeout'])}" if r.get("timeout") else "")
                         + (f"  last error: {r['last_error']}" if r.get("last_error") else "") for r in procs] if procs else []
        emit({"threads": rows, "processors": procs}, args.json,
             ["IDX  STATE    SECTOR           JOB STATE              LOCATION"] + lines)
    elif args.action in ("enable-dump", "disable-dump"):
        env = f"DUMP_ERR_RESP_{args.child_pid}"
        if args.action == "disable-dump":
            client.call("VenusWorker.WorkerRemoveEnv", env)
            print(f"external processor {args.child_pid}: malformed answers go to the default dump directory again")
            return 0
        if not args.dump_dir.is_dir():
            raise ValueError(f"--dump-dir: '{args.dump_dir}' is not a directory")
        client.call("VenusWorker.WorkerSetEnv", env, str(args.dump_dir.resolve()))
        print(f"external processor {args.child_pid}: malformed answers are written to {args.dump_dir.resolve()}")
    elif args.action == "pause":
        emit({"paused": client.call("VenusWorker.WorkerPause", args.index)}, args.json)
    else:
        emit({"resumed": client.call("VenusWorker.WorkerResume", args.index, args.state)}, args.json)
    return 0


def _processor_rows(client) -> list[dict]:
    """The worker's processor entries (an older worker without ProcessorList: none)."""
    from ..rpc import RPCError
    try:
        return client.call("VenusWorker.ProcessorList")
    except RPCError:
        return []


def _pids(row: dict) -> str:
    pids = row.get("pids") or ([row["pid"]] if row.get("pid") else [])
    return "pid " + ",".join(map(str, pids)) if pids else "not running"


def add_processor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("processor", help="serve a stage over the vc-processors protocol (stdin/stdout)")
    p.add_argument("stage")
    p.add_argument("--disable-link", action="store_true", help="transfer: copy even where a route allows a link "
                   "(as Damocles' `processor transfer --disable-link`; or DISABLE_LINK=1)")
    p.set_defaults(func=cmd_processor)


def cmd_processor(args) -> int:
    from .external import serve
    if args.disable_link:
        os.environ["DISABLE_LINK"] = "1"        # read by the transfer runner (stage_data.links_disabled)
    return serve(args.stage)


def cmd_run(args) -> int:
    from .config import load_worker_config
    from .service import WorkerService
    from ..core.logs import setup as setup_logs
    setup_logs(args.log_format, logging.INFO)
    service = WorkerService(load_worker_config(args.config), args.parent_cache)
    service.start()
    print(f"worker {service.config.name} running {len(service.threads)} sealing threads, RPC on {service.dest}", flush=True)
    wait_for_stop_signal()
    service.stop()
    return 0


def add_store_parsers(store: argparse._SubParsersAction) -> None:
    """damocles-worker's `store` commands: `sealing-init -l a b c` and `file-init -l a b c` take
    several locations after one `-l`/`--loc` (clap's num_args=1..), or `-l` repeated."""
    from .stores import cmd_sealing_init
    p = store.add_parser("sealing-init", help="Initializing the sealing directory (one per sealing thread)")
    p.add_argument("-l", "--loc", "--location", dest="location", type=Path, nargs="+", action="extend", required=True,
                   metavar="LOCATION", help="location(s) of the store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sealing_init)
    p = store.add_parser("file-init", help="Initializing the persistence store directory")
    p.add_argument("-l", "--loc", "--location", dest="location", type=Path, nargs="+", action="extend", required=True,
                   metavar="LOCATION", help="location(s) of the store")
    p.add_argument("--name", help="the store's name (one location only; default the directory's name)")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_file_init)
    p = store.add_parser("hugepage-file-init", help="create hugepage memory files [not built yet]")
    p.set_defaults(func=_hugepage_not_built, accepts_any=True)


def cmd_file_init(args) -> int:
    from ..core.output import emit
    from .stores import file_init
    if args.name and len(args.location) > 1:
        raise ValueError(f"--name names one store, {len(args.location)} locations were given")
    results = [file_init(loc.expanduser(), args.name, args.read_only) for loc in args.location]
    lines = [f"{'initialised' if r['initialised'] else 'already initialised'} persist store {r['Name']} at {r['location']}"
             for r in results]
    emit(results[0] if len(results) == 1 else {"stores": results}, args.json, lines)
    return 0


def _hugepage_not_built(args) -> int:
    import sys
    print("damocles: store hugepage-file-init is not built yet: sealing threads here do not read hugepage memory files",
          file=sys.stderr)
    return 2
