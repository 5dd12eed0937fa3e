"""What `util sealer sectors|proving|snap` of Damocles' tree do (cli_damocles.py wires them):
each calls the manager's RPC and prints the fields damocles-manager's Go CLI prints
(internal/util_sealer_*.go), as far as our manager knows them; `--json` prints the RPC answers."""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time

from ..core.output import emit
from ..core.sector import sector_name
from .cli_damocles_cmds import _number, _sid, actor
from .cli_util import _client, _table

DEADLINES = 48      # WindowPoSt deadlines in a proving period


# --- util sealer sectors --------------------------------------------------------------------

def cmd_abort(args) -> int:
    sid = _sid(args)
    if not args.really_do_it:
        print("If you know what you're doing, Pass --really-do-it to actually execute this action")
        return 0
    _client(args).call("Venus.AbortSector", sid, "aborted via CLI")
    emit({"aborted": sid}, args.json, [f"{sector_name(sid['Miner'], sid['Number'])} aborted"])
    return 0


def cmd_restore(args) -> int:
    sid = _sid(args)
    _client(args).call("Venus.RestoreSector", sid, args.force)
    emit({"restored": sid}, args.json, [f"{sector_name(sid['Miner'], sid['Number'])} restored"])
    return 0


# The two calls whose params follow Damocles' when the manager's SealerCliAPI does (ListSectors
# (workerState, job), FindSectorInAllStates(sid)): one place to switch.

def _list_sectors(client) -> list[dict]:
    return client.call("Venus.ListSectors")


def _find_sector(client, sid: dict) -> dict:
    return client.call("Venus.FindSector", sid)


def _offline(s: dict) -> bool:
    """Damocles keeps finalized and aborted sectors in its offline state store."""
    return bool(s["Finalized"] or s["AbortReason"])


def _jobs(client) -> dict[tuple, set]:
    """Sector -> its non-sealing jobs (snapup, rebuild, unseal in progress): Damocles' marks."""
    marks: dict[tuple, set] = {}
    for kind, rows in (("rebuild", client.call("Venus.RebuildTasks")), ("unseal", client.call("Venus.UnsealTasks"))):
        for t in rows:
            if t["State"] in ("pending", "allocated"):
                marks.setdefault((t["Sector"]["Miner"], t["Sector"]["Number"]), set()).add(kind)
    for c in client.call("Venus.SnapUpCandidates", None):
        if c["State"] in ("allocated", "submitted", "landed"):       # Damocles' Upgraded: being or been upgraded
            marks.setdefault((c["Sector"]["Miner"], c["Sector"]["Number"]), set()).add("snapup")
    return marks


def cmd_sectors_list(args) -> int:
    client = _client(args)
    miner = actor(args.miner) if args.miner else None
    marks = _jobs(client)
    chosen = []
    for s in _list_sectors(client):
        key = (s["ID"]["Miner"], s["ID"]["Number"])
        if _offline(s) != args.offline or (miner is not None and key[0] != miner):
            continue
        jobs = marks.get(key, set())
        wanted = (args.sealing and not jobs) or any(getattr(args, j) and j in jobs for j in ("snapup", "rebuild", "unseal"))
        if wanted:
            chosen.append((s, jobs))
    lines = ["Sectors:"]
    for s, jobs in chosen:
        mark = f"({', '.join(j for j in ('snapup', 'rebuild', 'unseal') if j in jobs).replace('snapup', 'upgrade')})" if jobs else ""
        lines.append(f"{sector_name(s['ID']['Miner'], s['ID']['Number'])}{mark}:")
        if s["LatestState"]:
            lines += [f"\tWorker: {s['Worker'] or ''}", f"\tState: {s['LatestState']}"]
        lines += [f"\tFinalized: {str(s['Finalized']).lower()}, Removed: false", ""]
    lines.append(f"Count: {len(chosen)}")
    emit({"sectors": [s for s, _ in chosen], "Count": len(chosen)}, args.json, lines)
    return 0


def _deals_of(client, sid: dict) -> list[dict]:
    return [d for d in client.call("Venus.MarketDeals", sid["Miner"])
            if d["Sector"] is not None and d["Sector"] == sid["Number"]]


def cmd_state(args) -> int:
    unknown = [w for w in args.extra if w.startswith("-")]
    if unknown:
        raise ValueError(f"state: unrecognized arguments: {' '.join(unknown)}")
    words = args.words + args.extra
    if words[0] == "import-json":
        print(f"damocles: util sealer sectors state import-json is not built yet: {args.state_lifecycle}", file=sys.stderr)
        return 2
    export = words[0] == "export-json"
    if export:
        words = words[1:]
    if len(words) != 2:
        raise ValueError("state: expected MINER NUMBER (or export-json MINER NUMBER)")
    args.miner, args.number = words
    sid = _sid(args)
    client = _client(args)
    state = _find_sector(client, sid)
    if export:
        print(json.dumps(state))
        return 0
    deals = _deals_of(client, sid)
    rebuild = any(t["Sector"] == sid and t["State"] in ("pending", "allocated") for t in client.call("Venus.RebuildTasks"))
    upgraded = client.call("Venus.SectorIndexerFind", "upgrade", sid)["Found"]     # a snap-upgraded replica is persisted
    if args.json:
        emit({"Sector": state, "Deals": deals, "Upgraded": upgraded, "NeedRebuild": rebuild}, True)
        return 0
    print("\n".join(_state_lines(state, deals, upgraded, rebuild)))
    return 0


def _or_null(v, fmt=str) -> str:
    return "NULL" if v is None else fmt(v)


def _state_lines(s: dict, deals: list[dict], upgraded: bool, rebuild: bool) -> list[str]:
    """Damocles' showSectorState, with what our manager records."""
    lines = [f"Sector {sector_name(s['ID']['Miner'], s['ID']['Number'])}: ", "", "Common:",
             f"\tFinalized: {str(s['Finalized']).lower()}", "\tRemoved: false",
             "\tAborting: ", "\t\t" + (s["AbortReason"] or "NULL").replace("\n", "\n\t\t"), "", "LatestState:",
             f"\tState Change: {_or_null(s['LatestState'])}", f"\tWorker: {_or_null(s['Worker'])}", "", "Deals:"]
    lines += [x for d in deals for x in (f"\tDealID: {d['DealID']}",
                                         f"\tPiece: {{ cid: {d['PieceCID']}; size: {d['PieceSize']} }}")] or ["\tNULL"]
    pre, msg = s.get("Pre"), s.get("MessageInfo") or {}
    lines += ["", "Sealing:", f"\tTicket: {_or_null(s.get('Ticket'), _rand)}",
              "\tPreCommit Info:", "\t\t" + _or_null(pre, _pre),
              f"\tPreCommit Message: {_or_null(msg.get('PreCommitCid'))}", f"\tSeed: {_or_null(s.get('Seed'), _rand)}",
              f"\tProveCommit Message: {_or_null(msg.get('CommitCid'))}", "", "SnapUp:",
              f"\tUpgraded: {str(upgraded).lower()}", "", "Termination:", "\tTerminate Message: NULL", "",
              f"Rebuild: {str(rebuild).lower()}", ""]
    return lines


def _pre(p: dict) -> str:
    """CommD and CommR as the CIDs Damocles prints (the manager records them as hex)."""
    from ..proofs.cid import commd_to_cid, commr_to_cid
    try:
        return f"CommD: {commd_to_cid(bytes.fromhex(p['CommD']))}\n\t\tCommR: {commr_to_cid(bytes.fromhex(p['CommR']))}"
    except (KeyError, TypeError, ValueError):
        return f"CommD: {p.get('CommD')}\n\t\tCommR: {p.get('CommR')}"


def _rand(r) -> str:
    """A ticket or seed as Damocles prints it: `(epoch) hex`."""
    if not isinstance(r, dict):
        return str(r)
    value = r.get("Ticket", r.get("Seed"))
    try:
        shown = base64.b64decode(value, validate=True).hex()
    except (binascii.Error, TypeError, ValueError):
        shown = str(value)
    return f"({r.get('Epoch')}) {shown}"


def cmd_find_deal(args) -> int:
    found = [d for d in _client(args).call("Venus.MarketDeals", None) if d["DealID"] == args.deal and d["Sector"] is not None]
    sectors = [{"Miner": d["Miner"], "Number": d["Sector"]} for d in found]
    emit({"sectors": sectors}, args.json,
         [sector_name(s["Miner"], s["Number"]) for s in sectors] + [""] if sectors else ["Not Found"])
    return 0


def _poll(client, task: dict, list_method: str, wait: float) -> dict:
    deadline = time.monotonic() + wait
    while task["State"] in ("pending", "allocated") and time.monotonic() < deadline:
        time.sleep(0.5)   # polling the manager for the worker's outcome; bounded by --wait
        task = next(t for t in client.call(list_method) if t["ID"] == task["ID"])
    return task


def cmd_rebuild(args) -> int:
    sid = _sid(args)
    client = _client(args)
    task = _poll(client, client.call("Venus.SectorSetForRebuild", sid), "Venus.RebuildTasks", args.wait)
    emit(task, args.json, [f"rebuild task {task['ID']} of {sector_name(sid['Miner'], sid['Number'])}: {task['State']}"
                           + (f" ({task['ErrorInfo']})" if task["ErrorInfo"] else "")])
    return 1 if task["State"] == "failed" else 0


def cmd_unseal(args) -> int:
    for flag in ("unseal_file", "offset", "payload_size", "piece_size"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} is not supported: the worker unseals the whole piece")
    if (args.actor is None) != (args.sector is None):
        raise ValueError('flag "--actor" and "--sector" must be set together')
    client = _client(args)
    if args.actor is not None:
        sid = {"Miner": actor(args.actor, "--actor"), "Number": args.sector}
    else:
        holding = [d for d in client.call("Venus.MarketDeals", None) if d["PieceCID"] == args.piece and d["Sector"] is not None]
        if not holding:
            raise ValueError(f"no sector found with piece {args.piece}")
        sid = {"Miner": holding[0]["Miner"], "Number": holding[0]["Sector"]}
    dest = args.dest
    if dest is None and args.output:
        if not args.output.startswith("/"):
            raise ValueError(f"--output {args.output!r}: give an absolute path on the worker")
        dest = f"file://{args.output}"
    if dest is None:
        raise ValueError("--dest (or --output) is required: the manager does not stream pieces back to the CLI")
    task = _poll(client, client.call("Venus.UnsealPiece", sid, args.piece, dest), "Venus.UnsealTasks", args.wait)
    emit(task, args.json, ["set task for unseal success:", f"piece cid: {args.piece}",
                           f"sector: {sector_name(sid['Miner'], sid['Number'])}", f"dest: {dest}", f"state: {task['State']}"]
         + ([f"error: {task['ErrorInfo']}"] if task["ErrorInfo"] else []))
    return 1 if task["State"] == "failed" else 0


# --- util sealer proving --------------------------------------------------------------------

def _proving_miner(args) -> int:
    return actor(args.miner or getattr(args, "group_miner", None), "--miner")


def _epoch(current: int, e: int) -> str:
    if current > e:
        return f"{e} ({current - e} epochs ago)"
    return f"{e} (in {e - current} epochs)" if current < e else f"{e} (now)"


def cmd_proving_info(args) -> int:
    miner = _proving_miner(args)
    client = _client(args)
    r = client.call("Venus.ProvingInfo", miner)
    rows = client.call("Venus.ProvingDeadlines", miner)
    d, now = r["Deadline"], r["CurrentEpoch"]
    period = DEADLINES * (d["close"] - d["open"])
    proving = r["Power"]["active_sectors"] + r["Power"]["faulty_sectors"]
    recovering = sum(x["Recovering"] for x in rows)
    current = next((x for x in rows if x["Current"]), {"Sectors": 0})
    pct = (r["Faults"] * 100 // proving) if proving else 0
    emit({**r, "Recovering": recovering, "DeadlineSectors": current["Sectors"]}, args.json, [
        f"Sealer: f0{miner}", f"Current Epoch:           {now}", f"Proving Period Boundary: {r['PeriodStart'] % period}",
        f"Proving Period Start:    {_epoch(now, r['PeriodStart'])}",
        f"Next Period Start:       {_epoch(now, r['PeriodStart'] + period)}", "",
        f"Faults:      {r['Faults']} ({pct:.2f}%)", f"Recovering:  {recovering}",
        f"Deadline Index:       {d['index']}", f"Deadline Sectors:     {current['Sectors']}",
        f"Deadline Open:        {_epoch(now, d['open'])}", f"Deadline Close:       {_epoch(now, d['close'])}",
        f"Deadline Challenge:   {_epoch(now, d['challenge'])}", f"Deadline FaultCutoff: {_epoch(now, d['fault_cutoff'])}"])
    return 0


def cmd_faults(args) -> int:
    miner = _proving_miner(args)
    rows = _client(args).call("Venus.ProvingFaults", miner)
    emit({"faults": rows}, args.json, [f"Miner: f0{miner}"] + _table(
        [[f"  {r['Deadline']}", r["Partition"], r["Sector"], "yes" if r["Recovering"] else "no"] for r in rows],
        ["deadline", "partition", "sectors", "recovering"]))
    return 0


def cmd_deadlines(args) -> int:
    miner = _proving_miner(args)
    client = _client(args)
    d = client.call("Venus.ProvingInfo", miner)["Deadline"]
    rows = client.call("Venus.ProvingDeadlines", miner)
    width = d["close"] - d["open"]
    emit({"deadlines": rows}, args.json, [f"Sealer: f0{miner}"] + _table(
        [[r["Index"], d["open"] + (r["Index"] - d["index"]) * width, r["Partitions"], f"{r['Sectors']} ({r['Faulty']})",
          r["Partitions"] if r["Round"] == "landed" else 0, "(current)" if r["Current"] else ""] for r in rows],
        ["deadline", "open", "partitions", "sectors (faults)", "proven partitions", ""]))
    return 0


def cmd_deadline(args) -> int:
    miner = _proving_miner(args)
    client = _client(args)
    d = client.call("Venus.ProvingInfo", miner)["Deadline"]
    r = client.call("Venus.ProvingDeadline", miner, args.index)
    proven = len(r["Partitions"]) if (r.get("Round") or {}).get("state") == "landed" else 0
    lines = [f"Deadline Index:           {args.index}",
             f"Deadline Open:            {d['open'] + (args.index - d['index']) * (d['close'] - d['open'])}",
             f"Partitions:               {len(r['Partitions'])}", f"Proven Partitions:        {proven}",
             f"Current:                  {str(args.index == d['index']).lower()}", ""]
    for p in r["Partitions"]:
        active = [s for s in p["Sectors"] if s not in p["Faulty"]]
        lines.append(f"Partition Index:          {p['Index']}")
        for name, nums in (("All", p["Sectors"]), ("Live", p["Sectors"]), ("Active", active), ("Faulty", p["Faulty"]),
                           ("Recovering", p["Recovering"])):
            lines.append(f"\t{name} Sectors:{' ' * (18 - len(name))}{len(nums)}")
            if args.sector_nums:
                lines.append(f"\t{name} Sector Numbers:{' ' * (12 - len(name))}[{' '.join(map(str, nums))}]")
    emit(r, args.json, lines)
    return 0


def cmd_proving_check(args) -> int:
    miner = _proving_miner(args)
    client = _client(args)
    rows = client.call("Venus.ProvingCheck", miner, args.index)
    if args.faulty:
        faulty = {f["Sector"] for f in client.call("Venus.ProvingFaults", miner) if f["Deadline"] == args.index}
        rows = [r for r in rows if r["Sector"] in faulty]
    if args.detail:
        lines = _table([[r["Deadline"], r["Partition"], r["Sector"], "good" if r["Ok"] else f"bad ({r['Error']})"]
                        for r in rows if not (args.only_bad and r["Ok"])], ["deadline", "partition", "sector", "status"])
    else:
        parts = sorted({r["Partition"] for r in rows})
        lines = _table([[args.index, p, sum(1 for r in rows if r["Partition"] == p and r["Ok"]),
                         sum(1 for r in rows if r["Partition"] == p and not r["Ok"])] for p in parts],
                       ["deadline", "partition", "good", "bad"])
    emit({"sectors": rows}, args.json, lines)
    return 0


def cmd_sector_info(args) -> int:
    miner = _proving_miner(args)
    client = _client(args)
    out = []
    for text in args.numbers:
        sid = {"Miner": miner, "Number": _number(text)}
        out.append({"Sector": _find_sector(client, sid),
                    "Location": client.call("Venus.SectorIndexerFind", "normal", sid)})
    if args.json:
        emit({"sectors": out}, True)
    else:
        for info in out:
            print(json.dumps(info, indent="\t"))
    return 0


# --- util sealer snap -----------------------------------------------------------------------

def cmd_snap_fetch(args) -> int:
    miner = actor(args.miner)
    r = _client(args).call("Venus.SnapUpFetch", miner, args.deadline)
    emit(r, args.json, [f"candidate sectors fetched: added {len(r['Added'])}"
                        + (f" ({', '.join(map(str, r['Added']))})" if r["Added"] else "")])
    return 0


def cmd_snap_candidates(args) -> int:
    miner = actor(args.miner)
    client = _client(args)
    rows = [c for c in client.call("Venus.SnapUpCandidates", miner) if c["State"] == "candidate"]
    if not rows:
        emit({"candidates": []}, args.json, ["no candidates available"])
        return 0
    numbers = {c["Sector"]["Number"] for c in rows}
    counts = [sum(1 for p in client.call("Venus.ProvingDeadline", miner, i)["Partitions"] for s in p["Sectors"] if s in numbers)
              for i in range(DEADLINES)]
    emit({"candidates": rows, "deadlines": counts}, args.json,
         _table([[i, n] for i, n in enumerate(counts) if n or args.show_all], ["deadline", "count"]))
    return 0
