"""`util sealer sectors check-expire | expired | extend` under Damocles' names and flags
(damocles-manager/cmd/damocles-manager/internal/util_sealer_sectors.go at 4235a895); the manager
does the work (expiry.py) through Venus.SectorsCheckExpire, SectorsExpired, SectorsRemoveExpired
and SectorsExtend."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..chain.money import parse_fil
from ..core.output import emit
from ..rpc import RPCError
from .cli_damocles_cmds import actor
from .cli_damocles_proving import _epoch
from .cli_util import _client
from .expiry import DEFAULT_CUTOFF, DEFAULT_EXTENSION, DEFAULT_TOLERANCE, ranges

WAIT_POLL = 1.0          # seconds between receipt checks while extend waits


def _miner(args) -> int:
    return actor(args.miner, "--miner")


def check_expire_flags(p) -> None:
    p.add_argument("--miner", help="miner actor id (1000, f01000 or t01000)")
    p.add_argument("--cutoff", type=int, default=DEFAULT_CUTOFF,
                   help="skip sectors whose current expiration is more than <cutoff> epochs from now, defaults to 60 days")


def cmd_check_expire(args) -> int:
    r = _client(args).call("Venus.SectorsCheckExpire", _miner(args), args.cutoff)
    head, lines = r["Head"], [f"Sectors({len(r['Sectors'])}):"]
    for s in r["Sectors"]:
        pledge = "unknown" if s["InitialPledge"] is None else s["InitialPledge"]
        lines += [f"\tID: {s['ID']}", f"\tSealProof: {s['SealProof']}", f"\tInitialPledge: {pledge}",
                  f"\tActivation: {_epoch(head, s['Activation'])}", f"\tExpiration: {_epoch(head, s['Expiration'])}",
                  f"\tMaxExpiration: {_epoch(head, s['MaxExpiration'])}", f"\tMaxExtendNow: {_epoch(head, s['MaxExtendNow'])}",
                  ""]
    emit(r, args.json, lines)
    return 0


def expired_flags(p) -> None:
    p.add_argument("--miner", help="miner actor id (1000, f01000 or t01000)")
    p.add_argument("--show-removed", action="store_true", help="show removed sectors")
    p.add_argument("--remove-expired", action="store_true", help="remove expired sectors")
    p.add_argument("--confirm-remove-count", type=int, help="the number of sectors listed: confirms their removal")
    p.add_argument("--expired-epoch", type=int,
                   help="only sectors whose expiration is at or before this epoch (default: any ended sector)")


def cmd_expired(args) -> int:
    miner, client = _miner(args), _client(args)
    if args.confirm_remove_count is not None and not args.remove_expired:
        raise ValueError("--confirm-remove-count is given without --remove-expired")
    if args.remove_expired and args.confirm_remove_count is not None:
        r = client.call("Venus.SectorsRemoveExpired", miner, args.expired_epoch, args.confirm_remove_count)
        lines = ["SectorID"] + [str(s["ID"]) for s in r["Sectors"]] + [""]
        lines += [f"Removing sector\t{s['ID']}:\tOK" for s in r["Removed"]]
        lines += [f"Removing sector\t{s['ID']}:\tERROR: {s['Error']}" for s in r["Failed"]]
        emit(r, args.json, lines)
        return 1 if r["Failed"] else 0
    r = client.call("Venus.SectorsExpired", miner, args.show_removed, args.expired_epoch)
    lines = ["SectorID"] + [f"{s['ID']}" + (" (removed)" if s["Removed"] else "") for s in r["Sectors"]]
    if args.remove_expired:
        todo = [s for s in r["Sectors"] if not s["Removed"]]
        epoch = f" --expired-epoch={args.expired_epoch}" if args.expired_epoch is not None else ""
        lines += ["", f"All {len(todo)} sectors listed above will be removed", "",
                  "To confirm removal of the above sectors, including all related sealed and unsealed data, run:",
                  f"damocles util sealer sectors expired --miner {miner} --remove-expired "
                  f"--confirm-remove-count={len(todo)}{epoch}", "", "WARNING: This operation is irreversible"]
    emit(r, args.json, lines)
    return 0


def _sector_file(path: str) -> list[int]:
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip().isdigit():
            raise ValueError(f"{path}:{i}: could not parse {line!r} as sector id")
        out.append(int(line))
    return out


def extend_flags(p) -> None:
    p.add_argument("numbers", nargs="*", type=int, metavar="sectorNumbers", help="sectors to extend (optional)")
    p.add_argument("--miner", help="miner actor id (1000, f01000 or t01000)")
    p.add_argument("--from", dest="from_epoch", type=int, help="only consider sectors whose current expiration epoch is "
                   "in the range of [from, to], <from> defaults to: now + 120 (1 hour)")
    p.add_argument("--to", dest="to_epoch", type=int, help="... <to> defaults to: now + 92160 (32 days)")
    p.add_argument("--sector-file", help="a file with one sector number a line, ignoring the selecting criteria above")
    p.add_argument("--exclude", help="a file with one sector number a line: sectors left out")
    p.add_argument("--extension", type=int, default=DEFAULT_EXTENSION,
                   help="try to extend selected sectors by this number of epochs, defaults to 540 days")
    p.add_argument("--new-expiration", type=int, help="try to extend selected sectors to this epoch, ignoring extension")
    p.add_argument("--only-cc", action="store_true", help="only extend CC sectors")
    p.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE,
                   help="don't try to extend sectors by fewer than this number of epochs, defaults to 7 days")
    p.add_argument("--max-fee", default="0", help="use up to this amount of FIL for one message")
    p.add_argument("--max-sectors", type=int, default=0, help="the maximum number of sectors contained in each message")
    p.add_argument("--really-do-it", action="store_true",
                   help="really extend sectors, otherwise only print out json representation of parameters")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the messages' receipts")
    p.add_argument("--wait-timeout", type=float, default=600.0, help="seconds to wait for the receipts (default 600)")


def cmd_extend(args) -> int:
    if args.numbers and args.sector_file:
        raise ValueError("sector-file specified along with command line params")
    numbers = list(args.numbers) or (_sector_file(args.sector_file) if args.sector_file else [])
    spec = {"Numbers": numbers or None, "Exclude": _sector_file(args.exclude) if args.exclude else None,
            "From": args.from_epoch, "To": args.to_epoch, "Extension": args.extension,
            "NewExpiration": args.new_expiration, "OnlyCC": args.only_cc, "Tolerance": args.tolerance,
            "MaxFee": str(parse_fil(args.max_fee, "--max-fee")), "MaxSectors": args.max_sectors,
            "ReallyDoIt": args.really_do_it}
    client = _client(args)
    r = client.call("Venus.SectorsExtend", _miner(args), spec)
    if args.really_do_it and not args.no_wait:
        _wait(client, r, args.wait_timeout)
    lines = [f"sectors {ranges(r['Pending'])}: an extend sent earlier is not executed yet, left out"] if r["Pending"] else []
    if not r["Messages"]:
        lines.append("nothing to extend")
    for m in r["Messages"]:
        lines.append(f"Extending {m['SectorCount']} sectors: " + (m["Message"] or m.get("Error") or ""))
        if r["DryRun"]:
            lines += ["  " + line for line in _pseudo(m["Extensions"])]
        if m.get("Receipt"):
            rc = m["Receipt"]
            lines.append(f"  exit code {rc['ExitCode']}" + (f": {rc['Error']}" if rc.get("Error") else ""))
    if r["Messages"] and not r["DryRun"]:
        if args.no_wait:
            sent = sum(m["SectorCount"] for m in r["Messages"] if m["Message"])
            lines.append(f"{sent} sectors in messages sent (not waited for: `damocles util message wait <message>`)")
        else:
            done = sum(m["SectorCount"] for m in r["Messages"] if (m.get("Receipt") or {}).get("ExitCode", 1) == 0)
            lines.append(f"{done} sectors extended")
    emit(r, args.json, lines)
    failed = any(m.get("Error") or (m.get("Receipt") or {}).get("ExitCode", 0) for m in r["Messages"])
    return 1 if failed else 0


def _pseudo(extensions: list[dict]) -> list[str]:
    return json.dumps({"Extensions": extensions}, indent=2).splitlines()


def _wait(client, r: dict, timeout: float) -> None:
    """Each sent message's receipt, put in its entry (`Receipt`); raises when one is late."""
    deadline = time.monotonic() + timeout
    for m in r["Messages"]:
        while m["Message"] and "Receipt" not in m:
            try:
                found = client.call("Venus.MessageSearch", m["Message"])
            except RPCError:
                found = None
            if found and found["State"] == "OnChainMsg":
                m["Receipt"] = found["Receipt"]
                break
            if time.monotonic() > deadline:
                raise ValueError(f"extend: message {m['Message']} has no receipt after {timeout:g} s; it stays in the "
                                 f"manager's outbox (`damocles util message wait {m['Message']}`)")
            time.sleep(WAIT_POLL)
