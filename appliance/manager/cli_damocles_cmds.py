"""What `util worker|storage|fetch-params` of Damocles' tree do (cli_damocles.py wires them), and
the argument readers every Damocles command shares. Each calls the manager's RPC and prints the
fields damocles-manager's Go CLI prints (internal/util_*.go); `--json` prints the RPC answers."""

from __future__ import annotations

import argparse
import json
import re
import time

from ..core.output import emit
from ..core.sector import sector_name
from .api_cli import go_duration
from .cli_util import _client, _table

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


def cmd_worker_remove(args) -> int:
    """WorkerGetPingInfo, then WorkerPingInfoRemove: the worker leaves the list and its name is
    free for another credential (a re-installed machine with a new token)."""
    client = _client(args)
    if client.call("Venus.WorkerGetPingInfo", args.worker) is None:
        raise ValueError(f"worker info not found. please make sure the instance name is correct: {args.worker}")
    client.call("Venus.WorkerPingInfoRemove", args.worker)
    emit({"removed": args.worker}, args.json, [f"'{args.worker}' removed"])
    return 0


def _when(t) -> str:
    return "-" if not t else time.strftime("%m-%d %H:%M:%S", time.localtime(int(t)))


def _succeed(j: dict) -> bool:
    """WdPoStJob.Succeed (core/types_wdpost.go)."""
    return j["State"] == "finished" and not j["ErrorReason"]


def _display_state(j: dict) -> str:
    """WdPoStJobBrief.DisplayState."""
    if j["State"] == "finished":
        return ("Succeed" if not j["Faults"] else f"Faults({j['Faults']})") if _succeed(j) else "Failed"
    return {"ready2run": "ReadyToRun", "running": "Running"}.get(j["State"], j["State"])


def cmd_wdpost_list(args) -> int:
    r = _client(args).call("Venus.WdPoStAllJobs")
    jobs = [j for j in r["Jobs"] if args.all or not _succeed(j)]
    rows = []
    for j in jobs:
        tries = f"{j['TryNum']}" + ("(Max)" if j["TryNum"] >= r["MaxTry"] else "")
        parts = "[" + ", ".join(map(str, j["Partitions"])) + "]"
        miner = f"f0{j['Input']['MinerId']}"
        if args.detail:      # Damocles prints the job's state under "Prefix"
            rows.append([j["Id"], j["State"], miner, j["DeadlineIdx"], parts, j["Sectors"], j["WorkerName"], _display_state(j),
                         tries, _when(j["CreatedAt"]), _when(j["StartedAt"]), _when(j["HeartbeatAt"]), _when(j["FinishedAt"]),
                         _when(j["UpdatedAt"]), j["ErrorReason"]])
        else:
            if not j["StartedAt"]:
                elapsed = heartbeat = "-"
            elif not j["FinishedAt"]:
                now = time.time()         # Go's Duration.String, truncated to the second and the millisecond
                elapsed, heartbeat = go_duration(int(now - j["StartedAt"])), go_duration(int((now - j["HeartbeatAt"]) * 1000) / 1000)
            else:
                elapsed, heartbeat = f"{go_duration(j['FinishedAt'] - j['StartedAt'])}(done)", "-"
            rows.append([j["Id"], miner, j["DeadlineIdx"], parts, j["Sectors"], j["WorkerName"], _display_state(j), tries,
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
    """SectorIndexerFind: the store names holding the sealed file and the cache, and whether the
    manager has those stores (Damocles' StoreMgr lookup, here StoreList)."""
    sid = _sid(args)
    client = _client(args)
    r = client.call("Venus.SectorIndexerFind", "upgrade" if args.upgrade else "normal", sid)
    name = sector_name(sid["Miner"], sid["Number"])
    if not r["Found"]:
        emit(r, args.json, [f"{name} not found"])
        return 0
    inst = r["Instance"]
    stores = {s["Name"] for s in client.call("Venus.StoreList")}
    lines = [f"sector {name} located, sealed file in {json.dumps(inst['SealedFile'])}, cache dir in {json.dumps(inst['CacheDir'])}"]
    lines += [f"store instance {json.dumps(n)} exists" if n in stores else
              f"store instance {json.dumps(n)} not found, check your config file" for n in (inst["SealedFile"], inst["CacheDir"])]
    emit(r, args.json, lines)
    return 0


def cmd_storage_release_reserved(args) -> int:
    sid = _sid(args)
    done = _client(args).call("Venus.StoreReleaseReserved", sid)
    emit({"sector": sid, "released": done}, args.json, [f"{sector_name(sid['Miner'], sid['Number'])} released: {str(done).lower()}"])
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


# --- util miner info -----------------------------------------------------------------------

def cmd_miner_info(args) -> int:
    """Damocles' `util miner info` fields the devnet has (it has no owner, worker or control
    addresses): Miner, SectorSize, WindowPoStPartitionSectors, and the proof types."""
    from ..core.proof_types import SECTOR_SIZES
    r = _client(args).call("Venus.MinerInfo", actor(args.miner))
    size = SECTOR_SIZES.get(r["SectorSize"])
    emit(r, args.json, [f"Miner: {r['Addr']}", f"SectorSize: {size.name if size else r['SectorSize']}",
                        f"WindowPoStPartitionSectors: {size.wpost_sectors_per_partition if size else '-'}",
                        f"SealProofType: {r['SealProofType']}", f"WindowPoStProofType: {r['WindowPoStProofType']}",
                        f"ProvingPeriodStart: {r['ProvingPeriodStart']}", f"Configured: {str(r['Configured']).lower()}"])
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
