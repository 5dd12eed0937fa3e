"""What the commands of Damocles' tree do (cli_damocles.py wires them): each calls the manager's
RPC and prints the fields damocles-manager's Go CLI prints (internal/util_*.go), as far as our
manager knows them; `--json` prints the RPC answers instead."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
import time

from ..core.output import emit
from ..core.sector import sector_name
from .cli_util import _client, _table

DEADLINES = 48


def go_bool(p: argparse.ArgumentParser, name: str, default: bool, helptext: str) -> None:
    """A urfave/cli bool flag: `--name`, `--name=true|false` (how a default-true flag is turned off)."""
    p.add_argument(f"--{name}", nargs="?", const=True, default=default, type=_bool, metavar="true|false",
                   help=f"{helptext} (default {str(default).lower()})")


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "t", "true"):
        return True
    if t in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def actor(text: str | None, what: str = "miner") -> int:
    """'1000', 'f01000' or 't01000' -> 1000, as Damocles' ShouldActor reads an actor."""
    if text is None or text == "":
        raise ValueError(f"{what}: a miner actor id is required (1000, f01000 or t01000)")
    m = re.fullmatch(r"(?:[ft]0)?(\d+)", text)
    if not m:
        raise ValueError(f"{what}: {text!r} is not a miner actor id (1000, f01000 or t01000)")
    return int(m.group(1))


def _number(text: str, what: str = "sector number") -> int:
    if not text.isdigit():
        raise ValueError(f"{what}: {text!r} is not a number")
    return int(text)


def _sid(args) -> dict:
    return {"Miner": actor(args.miner), "Number": _number(args.number)}


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


def _offline(s: dict) -> bool:
    """Damocles keeps finalized and aborted sectors in its offline state store."""
    return bool(s["Finalized"] or s["AbortReason"])


def _jobs(client) -> dict[tuple, set]:
    """Sector -> the non-sealing jobs it has now (snapup, rebuild, unseal): Damocles' marks."""
    marks: dict[tuple, set] = {}
    for kind, rows in (("rebuild", client.call("Venus.RebuildTasks")), ("unseal", client.call("Venus.UnsealTasks"))):
        for t in rows:
            if t["State"] in ("pending", "allocated"):
                marks.setdefault((t["Sector"]["Miner"], t["Sector"]["Number"]), set()).add(kind)
    for c in client.call("Venus.SnapUpCandidates", None):
        if c["State"] not in ("candidate", "done", "failed"):
            marks.setdefault((c["Sector"]["Miner"], c["Sector"]["Number"]), set()).add("snapup")
    return marks


def cmd_sectors_list(args) -> int:
    client = _client(args)
    miner = actor(args.miner) if args.miner else None
    marks = _jobs(client)
    chosen = []
    for s in client.call("Venus.ListSectors"):
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
    state = client.call("Venus.FindSector", sid)
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
        out.append({"Sector": client.call("Venus.FindSector", sid),
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


# --- util worker ----------------------------------------------------------------------------

def _go_duration(text: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"--expiration: {text!r} is not a duration like 10m or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def cmd_worker_list(args) -> int:
    expiration = _go_duration(args.expiration)
    rows = _client(args).call("Venus.WorkerPingInfoList")
    now = time.time()
    table = []
    for r in rows:
        info, summary = r["Info"], r["Info"].get("Summary") or {}
        since = now - r["LastPing"]
        table.append([info["Name"], info.get("Dest") or "", info.get("Version") or ""]
                     + [summary.get(k, 0) for k in ("Threads", "Empty", "Paused", "Running", "Waiting", "Errors")]
                     + [f"{since:.0f}s" + (" (!)" if since > expiration else "")])
    emit({"workers": rows}, args.json, _table(table, ["Name", "Dest", "Version", "Threads", "Empty", "Paused", "Running",
                                                      "Waiting", "Errors", "LastPing(with ! if expired)"]))
    return 0


def cmd_worker_control(args) -> int:
    """info/pause/resume through the manager, which calls the worker's own RPC with a credential
    for that one call (the operator's token never goes to a worker)."""
    client = _client(args)
    if args.action == "info":
        rows = client.call("Venus.WorkerThreadList", args.worker)
        emit({"worker": args.worker, "threads": rows}, args.json, _table(
            [[r["index"], r["location"], r.get("plan", ""), r["job_id"] or "NULL", r["job_state"] or "",
              r.get("job_stage") or "NULL", r["thread_state"]["state"], r["last_error"] or "NULL"] for r in rows],
            ["Index", "Loc", "Plan", "JobID", "JobState", "JobStage", "ThreadState", "LastErr"]))
    elif args.action == "pause":
        ok = client.call("Venus.WorkerThreadPause", args.worker, args.index)
        emit({"paused": ok}, args.json, [f"pause call done, ok = {str(ok).lower()}"])
    else:
        ok = client.call("Venus.WorkerThreadResume", args.worker, args.index, args.state)
        emit({"resumed": ok}, args.json, [f"resume call done, ok = {str(ok).lower()}"])
    return 0


def _when(t) -> str:
    return "-" if not t else time.strftime("%m-%d %H:%M:%S", time.localtime(int(t)))


def cmd_wdpost_list(args) -> int:
    r = _client(args).call("Venus.WdPoStAllJobs")
    jobs = [j for j in r["Jobs"] if args.all or j["State"] != "finished" or j["Failed"]]
    rows = []
    for j in jobs:
        tries = f"{j['TryNum']}" + ("(Max)" if j["TryNum"] >= r["MaxTry"] else "")
        parts = "[" + ", ".join(map(str, j["Partitions"])) + "]"
        sectors = len((j.get("Input") or {}).get("Sectors") or [])
        state = "failed" if j["Failed"] else j["State"]
        if args.detail:
            rows.append([j["Id"], j["State"], f"f0{j['MinerId']}", j["DeadlineIdx"], parts, sectors, j["WorkerName"], state, tries,
                         _when(j["CreatedAt"]), _when(j["StartedAt"]), _when(j["HeartbeatAt"]), _when(j["FinishedAt"]),
                         _when(j["UpdatedAt"]), j["ErrorReason"]])
        else:
            if not j["StartedAt"]:
                elapsed = heartbeat = "-"
            elif not j["FinishedAt"]:
                elapsed, heartbeat = f"{time.time() - j['StartedAt']:.0f}s", f"{time.time() - j['HeartbeatAt']:.3f}s"
            else:
                elapsed, heartbeat = f"{j['FinishedAt'] - j['StartedAt']:.0f}s(done)", "-"
            rows.append([j["Id"], f"f0{j['MinerId']}", j["DeadlineIdx"], parts, sectors, j["WorkerName"], state, tries,
                         _when(j["CreatedAt"]), elapsed, heartbeat, j["ErrorReason"]])
    header = (["JobID", "Prefix", "Miner", "DDL", "Partitions", "Sectors", "Worker", "State", "Try", "CreateAt", "StartedAt",
               "HeartbeatAt", "FinishedAt", "UpdatedAt", "Error"] if args.detail else
              ["JobID", "MinerID", "DDL", "Partitions", "Sectors", "Worker", "State", "Try", "CreateAt", "Elapsed", "Heartbeat", "Error"])
    emit({"Jobs": jobs, "MaxTry": r["MaxTry"]}, args.json, _table(rows, header))
    return 0


def cmd_wdpost_each(args) -> int:
    client = _client(args)
    method = "Venus.WdPoStResetJob" if args.action == "reset" else "Venus.WdPoStRemoveJob"
    for job in args.jobs:
        client.call(method, job)
    emit({args.action: args.jobs}, args.json, [f"wdpost job {j}: {args.action} done" for j in args.jobs])
    return 0


def cmd_wdpost_remove_all(args) -> int:
    if not args.really_do_it:
        print("Pass --really-do-it to actually execute this action")
        return 0
    client = _client(args)
    removed = []
    for job in client.call("Venus.WdPoStAllJobs")["Jobs"]:
        client.call("Venus.WdPoStRemoveJob", job["Id"])
        removed.append(job["Id"])
    emit({"removed": removed}, args.json, [f"wdpost job {j} removed" for j in removed])
    return 0


# --- util storage ---------------------------------------------------------------------------

def _bytes(n: float) -> str:
    """go-units' BytesSize: binary units, 4 significant digits."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.4g}{units[i]}"


def cmd_storage_list(args) -> int:
    rows = _client(args).call("Venus.StoreList")
    if not rows:
        emit({"stores": []}, args.json, ["No Stores"])
        return 0
    lines = []
    for r in rows:
        total, free = r.get("Total", 0), r.get("Free", 0)
        used = max(total - free, 0)
        lines += [f"{r['Name']}:", f"\tPath: {r['Path']}", f"\tType: {r.get('Type') or 'filestore'}",
                  f"\tReadOnly: {str(r['ReadOnly']).lower()}", f"\tWeight: {r['Weight']}", f"\tTotal: {_bytes(total)}",
                  f"\tFree: {_bytes(free)}", f"\tUsed: {_bytes(used)}", f"\tUsedPercent: {100 * used / total if total else 0:.2f}%",
                  f"\tReserved: {_bytes(r.get('Reserved', 0))}", ""]
    emit({"stores": rows}, args.json, lines)
    return 0


def cmd_storage_find(args) -> int:
    sid = _sid(args)
    r = _client(args).call("Venus.SectorIndexerFind", "upgrade" if args.upgrade else "normal", sid)
    name = sector_name(sid["Miner"], sid["Number"])
    inst = r.get("Instance") or {}
    emit(r, args.json, [f"sector {name} located, sealed file in {inst.get('SealedFile')!r}, cache dir in {inst.get('CacheDir')!r}",
                        f"store instance {inst.get('Name')!r} exists"] if r["Found"] else [f"{name} not found"])
    return 0


def cmd_gen_store_json(args) -> int:
    """Damocles' SectorStoreJSON: ID plus PersistStoreConfig (objstore.Config, StoreSelectPolicy,
    Plugin, PluginName), as Go's encoding/json writes it (nil slices and maps as null)."""
    import uuid
    from pathlib import Path
    from ..core.files import atomic_write
    cfg = {"ID": str(uuid.uuid4()), "Name": "", "Path": "", "Meta": None, "Strict": args.strict, "ReadOnly": args.readonly,
           "Weight": args.weight, "AllowMiners": args.allow_miners or None, "DenyMiners": args.deny_miners or None,
           "Plugin": "", "PluginName": args.plugin_name}
    text = json.dumps(cfg, indent="\t")
    if not args.path:
        print(text)
        return 0
    target = Path(args.path)
    if target.name != "sectorstore.json":
        target = target / "sectorstore.json"
    if not target.parent.is_dir():
        raise ValueError(f"{target.parent} is not a directory")
    atomic_write(target, text)
    return 0


# --- util fetch-params ----------------------------------------------------------------------

def cmd_fetch_params(args) -> int:
    """The builtin engine needs no Groth16 parameter files; what a sector size needs prepared is
    its SDR parent cache (one for every seal proof version of the size), written as
    `util parent-cache` does."""
    from pathlib import Path
    from ..core.proof_types import default_seal_proof, sector_size
    from ..proofs.commands import cmd_parent_cache
    proof = default_seal_proof(sector_size(args.size))
    return cmd_parent_cache(argparse.Namespace(proof=proof.name, dir=Path(args.dir) if args.dir else None, json=args.json))
