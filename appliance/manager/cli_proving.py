"""`damocles util proving info|deadlines|deadline N|faults|check|jobs` (the manager's view of
WindowPoSt), and `util proving job reset|remove ID` for WindowPoSt jobs."""

from __future__ import annotations

import argparse

from ..core.output import emit
from .cli_util import _client, _common, _table


def add_parsers(util: argparse._SubParsersAction) -> None:
    proving = util.add_parser("proving", help="WindowPoSt: deadlines, faults, checks, prover jobs").add_subparsers(
        dest="proving_cmd", metavar="CMD")
    proving.required = True
    for name, helptext, func in (("info", "current deadline and power", cmd_info),
                                 ("deadlines", "the 48 deadlines: partitions, sectors, faults, this period's round", cmd_deadlines),
                                 ("deadline", "one deadline: partitions and the poster's round", cmd_deadline),
                                 ("faults", "faulty sectors", cmd_faults),
                                 ("check", "pre-check sectors' files as the poster does", cmd_check)):
        p = proving.add_parser(name, help=helptext)
        if name == "deadline":
            p.add_argument("index", type=int)
        if name == "check":
            p.add_argument("--deadline", type=int, help="only this deadline's sectors")
        p.add_argument("--miner", type=int, default=1000)
        _common(p)
        p.set_defaults(func=func)
    p = proving.add_parser("jobs", help="WindowPoSt jobs of dedicated provers, with states and tries")
    _common(p)
    p.set_defaults(func=cmd_jobs)
    for name in ("reset", "remove"):
        p = proving.add_parser(f"job-{name}", help=f"{name} a WindowPoSt job (admin)")
        p.add_argument("job")
        _common(p)
        p.set_defaults(func=cmd_job_action, action=name)


def cmd_info(args) -> int:
    r = _client(args).call("Venus.ProvingInfo", args.miner)
    d, power = r["Deadline"], r["Power"]
    emit(r, args.json, [f"miner f0{r['Miner']}: epoch {r['CurrentEpoch']}, period start {r['PeriodStart']}",
                        f"deadline {d['index']}: open {d['open']}, close {d['close']}, challenge {d['challenge']}, "
                        f"fault cutoff {d['fault_cutoff']}",
                        f"power: {power['raw_bytes']} bytes, {power['active_sectors']} active sectors, "
                        f"{power['faulty_sectors']} faulty"])
    return 0


def cmd_deadlines(args) -> int:
    rows = _client(args).call("Venus.ProvingDeadlines", args.miner)
    emit({"deadlines": rows}, args.json, _table(
        [[r["Index"], r["Partitions"], r["Sectors"], r["Faulty"], r["Recovering"], r["Round"] or "-",
          "<- current" if r["Current"] else ""] for r in rows],
        ["DEADLINE", "PARTITIONS", "SECTORS", "FAULTY", "RECOVERING", "ROUND", ""]))
    return 0


def cmd_deadline(args) -> int:
    r = _client(args).call("Venus.ProvingDeadline", args.miner, args.index)
    lines = [f"deadline {r['Index']} (period start {r['PeriodStart']}): round {r['Round'].get('state') or '-'}"
             + (f", error: {r['Round']['error']}" if r["Round"].get("error") else "")]
    lines += _table([[p["Index"], ",".join(map(str, p["Sectors"])) or "-", ",".join(map(str, p["Faulty"])) or "-",
                      ",".join(map(str, p["Recovering"])) or "-"] for p in r["Partitions"]],
                    ["PARTITION", "SECTORS", "FAULTY", "RECOVERING"])
    emit(r, args.json, lines)
    return 0


def cmd_faults(args) -> int:
    rows = _client(args).call("Venus.ProvingFaults", args.miner)
    emit({"faults": rows}, args.json, _table([[r["Deadline"], r["Partition"], r["Sector"], "yes" if r["Recovering"] else "no"]
                                              for r in rows], ["DEADLINE", "PARTITION", "SECTOR", "RECOVERING"]))
    return 0


def cmd_check(args) -> int:
    rows = _client(args).call("Venus.ProvingCheck", args.miner, args.deadline)
    emit({"sectors": rows}, args.json, _table([[r["Deadline"], r["Partition"], r["Sector"], "ok" if r["Ok"] else "BAD", r["Error"]]
                                               for r in rows], ["DEADLINE", "PARTITION", "SECTOR", "CHECK", "ERROR"]))
    return 0 if all(r["Ok"] for r in rows) else 1


def cmd_jobs(args) -> int:
    r = _client(args).call("Venus.WdPoStAllJobs")
    # Damocles' AllWdPoStJob: a finished job with an error reason failed (WdPoStJob.Succeed)
    emit(r, args.json, _table([[j["Id"], j["Input"]["MinerId"], j["DeadlineIdx"],
                                "failed" if j["State"] == "finished" and j["ErrorReason"] else j["State"],
                                f"{j['TryNum']}/{r['MaxTry']}", j["WorkerName"] or "-", j["ErrorReason"]] for j in r["Jobs"]],
                              ["JOB", "MINER", "DEADLINE", "STATE", "TRIES", "PROVER", "ERROR"]))
    return 0


def cmd_job_action(args) -> int:
    method = "Venus.WdPoStResetJob" if args.action == "reset" else "Venus.WdPoStRemoveJob"
    _client(args).call(method, args.job)
    emit({args.action: args.job}, args.json, [f"job {args.job}: {args.action} done"])
    return 0
