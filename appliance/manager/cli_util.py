"""`damocles util chain|sectors|workers|storage|miner ...`: operator commands that talk to the
manager's RPC. The API address comes from --api or DAMOCLES_API (default
http://127.0.0.1:1789); the token from --token or DAMOCLES_TOKEN, or is minted from the secret
of a manager home on this machine (--home, default ~/.damocles-manager)."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

from ..core.output import emit
from ..core.sector import parse_sector_name, sector_name
from ..rpc.auth import cli_token
from ..rpc.client import RPCClient
from .commands import DEFAULT_HOME


def _client(args) -> RPCClient:
    listen = getattr(args, "listen", None)       # Damocles' `util --listen HOST:PORT`
    url = args.api or (listen and (listen if "://" in listen else f"http://{listen}")) or os.environ.get("DAMOCLES_API")
    return RPCClient(url or "http://127.0.0.1:1789", cli_token(args.token, args.home))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", help="manager URL (default $DAMOCLES_API or http://127.0.0.1:1789)")
    p.add_argument("--token", help="API token (default $DAMOCLES_TOKEN or minted from --home)")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--json", action="store_true")


def _sid(text: str) -> dict:
    """'1000-5' or 's-t01000-5' -> SectorID."""
    try:
        miner, number = parse_sector_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return {"Miner": miner, "Number": number}


def add_parsers(util: argparse._SubParsersAction) -> None:
    chain = util.add_parser("chain", help="the devnet chain (admin)").add_subparsers(dest="chain_cmd", metavar="CMD")
    chain.required = True
    p = chain.add_parser("head")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, _client(a).call("Venus.DevnetHead")))
    p = chain.add_parser("advance")
    p.add_argument("epochs", type=int)
    _common(p)
    p.set_defaults(func=lambda a: _show(a, _client(a).call("Venus.DevnetAdvance", a.epochs)))
    p = chain.add_parser("reorg", help="replace the last N epochs by another fork (their messages back to the pool)")
    p.add_argument("epochs", type=int)
    p.add_argument("--drop", action="store_true", help="the lost messages are gone from the chain instead (nonces free)")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, _client(a).call("Venus.DevnetReorg", a.epochs, a.drop)))
    p = chain.add_parser("block-time")
    p.add_argument("seconds", type=float)
    _common(p)
    p.set_defaults(func=lambda a: _show(a, {"BlockTime": a.seconds, "ok": _client(a).call("Venus.DevnetSetBlockTime", a.seconds) is None}))
    p = chain.add_parser("sectors")
    p.add_argument("--miner", type=int)
    _common(p)
    p.set_defaults(func=cmd_chain_sectors)
    from .cli_damocles import add_chain_miner, add_storage
    from .cli_damocles_cmds import cmd_miner_info, cmd_storage_list

    sectors = util.add_parser("sectors", help="sectors the manager knows").add_subparsers(dest="sectors_cmd", metavar="CMD")
    sectors.required = True
    p = sectors.add_parser("list", help="one page of the sectors (by miner and number), filtered")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--online", dest="online", action="store_const", const=True,
                       help="only those in flight (or held by a rebuild or unseal task)")
    which.add_argument("--offline", dest="online", action="store_const", const=False, help="only finished or aborted ones")
    page_flags(p)
    p.add_argument("--miner", help="only the sectors of this miner (1000, f01000 or t01000)")
    p.add_argument("--failing", action="store_true", help="only those whose last report was a failure")
    _common(p)
    p.set_defaults(func=cmd_sectors_list)
    for name, method in (("info", "Venus.FindSectorInAllStates"),):
        p = sectors.add_parser(name)
        p.add_argument("sector", type=_sid)
        _common(p)
        p.set_defaults(func=lambda a, m=method: _show(a, _client(a).call(m, a.sector)))
    p = sectors.add_parser("abort", help="abort a sector; its worker stops at its next report")
    p.add_argument("sector", type=_sid)
    p.add_argument("--reason", default="aborted by the operator")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, {"aborted": _client(a).call("Venus.AbortSector", a.sector, a.reason) is None}))
    p = sectors.add_parser("restore", help="bring an aborted sector back")
    p.add_argument("sector", type=_sid)
    p.add_argument("--forced", action="store_true")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, {"restored": _client(a).call("Venus.RestoreSector", a.sector, a.forced) is None}))
    p = sectors.add_parser("unseal", help="unseal a piece of a sealed sector to a destination (an unseal thread does it)")
    p.add_argument("sector", type=_sid)
    p.add_argument("--piece", required=True, help="the piece CID")
    p.add_argument("--dest", required=True, help="file:///abs/path (on the worker), store://NAME/path, or piecestore")
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the task to finish")
    _common(p)
    p.set_defaults(func=cmd_sectors_unseal)
    p = sectors.add_parser("rebuild", help="rebuild a sector whose persisted files are lost (a rebuild thread does it)")
    p.add_argument("sector", type=_sid)
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the rebuild to finish")
    _common(p)
    p.set_defaults(func=cmd_sectors_rebuild)
    p = sectors.add_parser("rebuild-tasks", help="rebuild tasks and their state")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, {"tasks": _client(a).call("Venus.RebuildTasks")}))
    p = sectors.add_parser("unseal-tasks", help="unseal tasks and their state")
    _common(p)
    p.set_defaults(func=lambda a: _show(a, {"tasks": _client(a).call("Venus.UnsealTasks")}))

    p = util.add_parser("workers", help="workers that pinged the manager").add_subparsers(dest="workers_cmd", metavar="CMD")
    p.required = True
    q = p.add_parser("list")
    _common(q)
    q.set_defaults(func=cmd_workers_list)
    for name in ("info", "pause", "resume"):
        q = p.add_parser(name, help=f"{name} a worker's sealing threads through the worker's own RPC")
        q.add_argument("worker", help="the worker's name as it pings the manager")
        if name != "info":
            q.add_argument("--index", type=int, required=True)
        if name == "resume":
            q.add_argument("--state", help="resume at this sealer state")
        _common(q)
        q.set_defaults(func=cmd_worker_control, action=name)
    p = util.add_parser("storage", help="persist stores").add_subparsers(dest="storage_cmd", metavar="CMD")
    p.required = True
    q = p.add_parser("list", help="List local storage paths and capacity")
    _common(q)
    q.set_defaults(func=cmd_storage_list)
    add_storage(p)
    miner = util.add_parser("miner", help="miner information").add_subparsers(dest="miner_cmd", metavar="CMD")
    miner.required = True
    q = miner.add_parser("info")
    q.add_argument("miner", nargs="?", default="1000", help="miner actor id (1000, f01000 or t01000)")
    _common(q)
    q.set_defaults(func=cmd_miner_info)
    add_chain_miner(chain, miner)


def _show(args, result) -> int:
    emit(result if isinstance(result, dict) else {"result": result}, args.json)
    return 0


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]]


def cmd_chain_sectors(args) -> int:
    rows = _client(args).call("Venus.DevnetSectors", args.miner)
    emit({"sectors": rows}, args.json, _table([[r["miner"], r["number"], r["seal_proof"], r["activation"], r["expiration"],
                                                r["sealed_cid"]] for r in rows],
                                              ["MINER", "NUMBER", "PROOF", "ACTIVATION", "EXPIRATION", "COMM_R"]))
    return 0


LIST_LIMIT, LIST_LIMIT_MAX = 100, 1000        # a listing's default and largest page (Venus.ListSectorsPage)


def page_flags(p: argparse.ArgumentParser) -> None:
    """The paging and filter flags of the sector listings (Venus.ListSectorsPage)."""
    p.add_argument("--limit", type=int, default=LIST_LIMIT, help=f"sectors per page, 1 to {LIST_LIMIT_MAX} (default {LIST_LIMIT})")
    p.add_argument("--after", type=_sid, help="the page after this sector (1000-5 or s-t01000-5): the `Next` of the last page")
    p.add_argument("--state", help="only sectors in this state (PC1Done, Finished, ...)")
    p.add_argument("--worker", help="only sectors the worker of this name last reported")


def sectors_page(args, online: bool | None) -> dict:
    """One page of Venus.ListSectorsPage for the listing flags."""
    if not 1 <= args.limit <= LIST_LIMIT_MAX:
        raise ValueError(f"--limit: expected 1 to {LIST_LIMIT_MAX}, got {args.limit}")
    from .cli_damocles_cmds import actor
    query = {"Online": online, "Miner": actor(args.miner) if args.miner else None, "State": args.state,
             "Worker": args.worker, "Failing": getattr(args, "failing", False) or None, "After": args.after,
             "Limit": args.limit}
    return _client(args).call("Venus.ListSectorsPage", {k: v for k, v in query.items() if v is not None})


def next_hint(page: dict, shown: int) -> str:
    nxt = page["Next"]
    more = f"; next page: --after {sector_name(nxt['Miner'], nxt['Number'])}" if nxt else ""
    return f"{shown} shown of {page['Total']} matching{more}"


def cmd_sectors_list(args) -> int:
    page = sectors_page(args, args.online)
    rows = page["Sectors"]
    counts = ", ".join(f"{state or '(none)'} {n}" for state, n in sorted(page["Counts"].items()))
    emit({"sectors": rows, "Next": page["Next"], "Total": page["Total"], "Counts": page["Counts"]}, args.json, _table(
        [[sector_name(r["ID"]["Miner"], r["ID"]["Number"]), r.get("State") or "", r["Worker"] or "",
          "yes" if r["Finalized"] else "no", _why(r)] for r in rows],
        ["SECTOR", "STATE", "WORKER", "FINALIZED", "ABORT REASON / WAITING FOR"])
        + [next_hint(page, len(rows)), f"by state: {counts or 'none'}"])
    return 0


def _why(r: dict) -> str:
    if r["AbortReason"]:
        return r["AbortReason"]
    if r.get("FundsWait") and not r["Finalized"]:
        return r["FundsWait"]
    return f"persist store: {r['StoreWait']}" if r.get("StoreWait") and not r["Finalized"] else ""


def cmd_sectors_unseal(args) -> int:
    import time
    client = _client(args)
    task = client.call("Venus.UnsealRequest", args.sector, args.piece, args.dest)
    deadline = time.monotonic() + args.wait
    while task["State"] in ("pending", "allocated") and time.monotonic() < deadline:
        time.sleep(0.5)   # polling the manager for the worker's outcome; bounded by --wait
        task = next(t for t in client.call("Venus.UnsealTasks") if t["ID"] == task["ID"])
    emit(task, args.json, [f"unseal task {task['ID']}: {task['PieceCid']} of {sector_name(task['Sector']['Miner'], task['Sector']['Number'])}"
                           f" to {task['Dest']}: {task['State']}"
                           + (f" ({task['ErrorInfo']})" if task["ErrorInfo"] else "")])
    return 1 if task["State"] == "failed" else 0


def cmd_sectors_rebuild(args) -> int:
    import time
    client = _client(args)
    task = client.call("Venus.RebuildRequest", args.sector)
    deadline = time.monotonic() + args.wait
    while task["State"] in ("pending", "allocated") and time.monotonic() < deadline:
        time.sleep(0.5)   # polling the manager for the worker's outcome; bounded by --wait
        task = next(t for t in client.call("Venus.RebuildTasks") if t["ID"] == task["ID"])
    emit(task, args.json, [f"rebuild task {task['ID']} of {sector_name(task['Sector']['Miner'], task['Sector']['Number'])} "
                           f"({task['Reason']}): {task['State']}" + (f" ({task['ErrorInfo']})" if task["ErrorInfo"] else "")])
    return 1 if task["State"] == "failed" else 0


def cmd_workers_list(args) -> int:
    rows = _client(args).call("Venus.WorkerPingInfoList")
    emit({"workers": rows}, args.json, _table(
        [[r["Info"]["Name"], r["Info"].get("Dest") or "", datetime.fromtimestamp(r["LastPing"], timezone.utc).isoformat()]
         for r in rows], ["NAME", "DEST", "LAST PING"]))
    return 0


def cmd_worker_control(args) -> int:
    """The manager knows where its workers are and makes the call to the worker's own RPC itself,
    with a credential for that one call: the operator's token never goes to a worker."""
    manager = _client(args)
    if args.action == "info":
        rows = manager.call("Venus.WorkerThreadList", args.worker)
        dest = next((w["Info"].get("Dest") for w in manager.call("Venus.WorkerPingInfoList") if w["Info"]["Name"] == args.worker), None)
        emit({"worker": args.worker, "dest": dest, "threads": rows}, args.json, _table(
            [[r["index"], r["thread_state"]["state"], r["job_id"] or "-", r["job_state"] or "-", r["location"],
              r["last_error"] or ""] for r in rows], ["IDX", "STATE", "SECTOR", "JOB STATE", "LOCATION", "LAST ERROR"]))
    elif args.action == "pause":
        emit({"paused": manager.call("Venus.WorkerThreadPause", args.worker, args.index)}, args.json)
    else:
        emit({"resumed": manager.call("Venus.WorkerThreadResume", args.worker, args.index, args.state)}, args.json)
    return 0
