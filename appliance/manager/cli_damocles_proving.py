"""What `util sealer proving ...` of Damocles' tree does (cli_damocles.py wires it): the proving
views from the manager's chain interface in the Go CLI's layout (internal/util_sealer_proving.go),
and check, sector-info and simulate-wdpost on Damocles' methods (CheckProvable,
ProvingSectorInfo, SimulateWdPoSt); `--json` prints what was asked and answered."""

from __future__ import annotations

import base64
import json
import sys

from ..core.output import emit
from .cli_damocles_cmds import actor
from .cli_util import _client, _table

DEADLINES = 48      # WindowPoSt deadlines in a proving period


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


def _extended(client, miner: int, number: int) -> dict:
    """A sector's builtin.ExtendedSectorInfo, from its on-chain info (ProvingSectorInfo)."""
    on = client.call("Venus.ProvingSectorInfo", {"Miner": miner, "Number": number})["OnChain"]
    return {"SealProof": on["SealProof"], "SectorNumber": on["SectorNumber"], "SectorKey": on["SectorKeyCID"],
            "SealedCID": on["SealedCID"]}


def cmd_proving_check(args) -> int:
    """Per partition of the deadline, CheckProvable(mid, postProofType, sectors, slow, stateCheck)
    of its live sectors (--faulty: only the faulty ones); `good`/`bad` counts, or per sector."""
    miner = _proving_miner(args)
    client = _client(args)
    post_type = client.call("Venus.GetInfo", miner)["WindowPoStProofType"]
    partitions = client.call("Venus.ProvingDeadline", miner, args.index)["Partitions"]
    faulty = {n for p in partitions for n in p["Faulty"]} if args.faulty else None
    rows, table = [], []
    for p in partitions:
        numbers = sorted(n for n in p["Sectors"] if faulty is None or n in faulty)
        if not numbers:
            continue
        sectors = [_extended(client, miner, n) for n in numbers]
        bad = client.call("Venus.CheckProvable", miner, post_type, sectors, args.slow, args.state_check) or {}
        part = [{"Deadline": args.index, "Partition": p["Index"], "Sector": n, "Ok": str(n) not in bad,
                 "Error": bad.get(str(n), "")} for n in numbers]
        rows += part
        if args.detail:
            table += [[args.index, p["Index"], r["Sector"], "good" if r["Ok"] else f"bad ({r['Error']})"]
                      for r in part if not (args.only_bad and r["Ok"])]
        else:
            table.append([args.index, p["Index"], len(numbers) - len(bad), len(bad)])
    emit({"sectors": rows}, args.json,
         _table(table, ["deadline", "partition", "sector", "status"] if args.detail else ["deadline", "partition", "good", "bad"]))
    return 0


def cmd_sector_info(args) -> int:
    """ProvingSectorInfo per sector, each printed as indented JSON; a sector that fails is a
    warning on stderr, as in Damocles, and the exit status is 1 then."""
    miner = _proving_miner(args)
    client = _client(args)
    out, failed = [], 0
    for i, text in enumerate(args.numbers):
        if not text.isdigit():
            print(f"damocles: warning: #{i} {text} is not a valid sector number", file=sys.stderr)
            failed += 1
            continue
        try:
            out.append(client.call("Venus.ProvingSectorInfo", {"Miner": miner, "Number": int(text)}))
        except Exception as exc:       # the RPC's error, shown as Damocles' warning; the next sector is still asked
            print(f"damocles: warning: sector {text}: failed to get info: {exc}", file=sys.stderr)
            failed += 1
    if args.json:
        emit({"sectors": out}, True)
    else:
        for info in out:
            print(json.dumps(info, indent="\t"))
    return 1 if failed else 0


def _go_sector(s: dict) -> str:
    """An ExtendedSectorInfo as Go's %v prints the struct."""
    key = s["SectorKey"]["/"] if s["SectorKey"] else "<nil>"
    return f"{{{s['SealProof']} {s['SectorNumber']} {key} {s['SealedCID']['/']}}}"


def cmd_simulate_wdpost(args) -> int:
    """SimulateWdPoSt of one partition: its live sectors (less the faulty ones unless
    --include-faulty, plus the recovering ones), every other sector of the partition replaced by
    the first of them as Damocles does; randomness from GetWindowPoStChanlleengeRand at
    --challenge, else 32 zero bytes. The manager proves in the background and logs the outcome."""
    miner = _proving_miner(args)
    client = _client(args)
    partitions = client.call("Venus.ProvingDeadline", miner, args.ddl_idx)["Partitions"]
    if args.partition_idx >= len(partitions):
        raise ValueError(f"partition-idx is range out of partitions array: {len(partitions)} <= {args.partition_idx}")
    p = partitions[args.partition_idx]
    prove = set(p["Sectors"]) - (set() if args.include_faulty else set(p["Faulty"])) | set(p["Recovering"])
    if not prove:
        raise ValueError("no lived sector in that partition")
    by_number = {n: _extended(client, miner, n) for n in sorted(prove)}
    substitute = by_number[min(by_number)]
    sectors = [by_number.get(n, substitute) for n in sorted(set(p["Sectors"]) | set(p["Faulty"]))]
    post_type = client.call("Venus.GetInfo", miner)["WindowPoStProofType"]
    if args.challenge is not None:
        rand = client.call("Venus.GetWindowPoStChanlleengeRand", [], args.challenge, miner)["Rand"]
    else:
        rand = base64.b64encode(bytes(32)).decode()
    client.call("Venus.SimulateWdPoSt", args.ddl_idx, args.partition_idx, f"f0{miner}", post_type, sectors, rand)
    emit({"Sectors": sectors, "Rand": rand}, args.json,
         [f"Simulate sectors [{' '.join(map(_go_sector, sectors))}] wdpost start, please retrieve "
          "`mock generate window post` from the log to view execution info."])
    return 0
