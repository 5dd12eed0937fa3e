"""What `util sealer sectors|snap` of Damocles' tree do (cli_damocles.py wires them):
each calls the manager's RPC and prints the fields damocles-manager's Go CLI prints
(internal/util_sealer_*.go), as far as our manager knows them; `--json` prints the RPC answers."""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from pathlib import Path

from ..core.output import emit
from ..core.sector import sector_name
from ..proofs.fr32 import is_valid_padded_piece_size, unpad, unpadded_size
from .cli_damocles_cmds import _sid, actor
from .cli_util import _client, _table, next_hint, sectors_page

ONLINE, OFFLINE = "online", "offline"      # Damocles' SectorWorkerState
JOB_ALL = 0                                # SectorWorkerJobAll


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


def _go_bool(v) -> str:
    return str(bool(v)).lower()


def _match_job(s: dict, job: str) -> bool:
    """Damocles' SectorState.MatchWorkerJob (core/types_sector_state.go)."""
    upgraded, rebuild, unseal = bool(s["Upgraded"]), bool(s["NeedRebuild"]), bool(s["Unsealing"])
    return {"sealing": not upgraded and not rebuild and not unseal, "snapup": upgraded and not rebuild and not unseal,
            "rebuild": rebuild, "unseal": unseal}[job]


def _marks(s: dict) -> str:
    marks = [m for m, on in (("upgrade", s["Upgraded"]), ("rebuild", s["NeedRebuild"]), ("unseal", s["Unsealing"])) if on]
    return f"({', '.join(marks)})" if marks else ""


def cmd_sectors_list(args) -> int:
    """Damocles' listing, one page at a time: Venus.ListSectorsPage (ours: online or offline as
    ListSectors has them, the miner and the filters applied by the manager on its indexes, at most
    --limit sectors), then the job flags select as the Go CLI does. The next page's flag goes to
    stderr, so that the output stays the Go CLI's."""
    page = sectors_page(args, not args.offline)
    chosen = [s for s in page["Sectors"]
              if any(getattr(args, j) and _match_job(s, j) for j in ("sealing", "snapup", "rebuild", "unseal"))]
    lines = ["Sectors:"]
    for s in chosen:
        lines.append(f"{sector_name(s['ID']['Miner'], s['ID']['Number'])}{_marks(s)}:")
        latest = s.get("LatestState")
        if latest:
            change = latest["StateChange"]
            lines += [f"\tWorker: {latest['Worker']['Instance']} @ {latest['Worker']['Location']}",
                      f"\tState: {change['Prev']} => {change['Next']} @{change['Event']}"]
        lines += [f"\tFinalized: {_go_bool(s['Finalized'])}, Removed: {_go_bool(s['Removed'])}", ""]
    lines.append(f"Count: {len(chosen)}")
    emit({"sectors": chosen, "Count": len(chosen), "Next": page["Next"], "Total": page["Total"]}, args.json, lines)
    if page["Next"] and not args.json:
        print(next_hint(page, len(page["Sectors"])), file=sys.stderr)
    return 0


def cmd_state(args) -> int:
    unknown = [w for w in args.extra if w.startswith("-")]
    if unknown:
        raise ValueError(f"state: unrecognized arguments: {' '.join(unknown)}")
    words = args.words + args.extra
    if words[0] == "import-json":
        if len(words) != 2:
            raise ValueError("state import-json: expected FILE")
        from .cli_damocles_move import cmd_state_import_json
        return cmd_state_import_json(args, words[1])
    export = words[0] == "export-json"
    if export:
        words = words[1:]
    if len(words) != 2:
        raise ValueError("state: expected MINER NUMBER (or export-json MINER NUMBER)")
    args.miner, args.number = words
    state = _client(args).call("Venus.FindSectorInAllStates", _sid(args))
    if export:
        print(json.dumps(state, separators=(",", ":")))      # Go's json.Marshal: compact
    elif args.json:
        emit(state, True)
    else:
        print("\n".join(state_lines(state)))
    return 0


def _or_null(v, fmt=str) -> str:
    return "NULL" if v is None else fmt(v)


def _cid(c) -> str:
    return c["/"] if isinstance(c, dict) else str(c)


def _hex(b64) -> str:
    """A Go []byte (base64 on the wire) as %x prints it."""
    try:
        return base64.b64decode(b64 or "", validate=True).hex()
    except (binascii.Error, TypeError, ValueError):
        return str(b64)


def _deal_lines(s: dict) -> list[str]:
    lines = []
    for p in s.get("Pieces") or []:
        deal = p.get("DealInfo")
        if not deal or not (deal.get("DealID") or deal.get("AllocationID")):      # SectorPieceV2.HasDealInfo
            continue
        builtin = deal.get("IsBuiltinMarket")
        shown = f"builtinmarket({deal['DealID']})" if builtin else f"ddo({deal.get('AllocationID')})"
        lines += [f"\t{'DealID' if builtin else 'AllocID'}: {shown}",
                  f"\tPiece: {{ cid: {_cid(p['Piece']['PieceCID'])}; size: {p['Piece']['Size']}; offset: {deal.get('Offset', 0)} }}"]
    return lines or ["\tNULL"]


def state_lines(s: dict) -> list[str]:
    """Damocles' showSectorState (internal/util_sealer_sectors.go) of a SectorState."""
    latest, msg = s.get("LatestState"), s.get("MessageInfo") or {}
    failure = (latest or {}).get("Failure")
    lines = [f"Sector {sector_name(s['ID']['Miner'], s['ID']['Number'])}: ", "", "Common:",
             f"\tFinalized: {_go_bool(s['Finalized'])}", f"\tRemoved: {_go_bool(s['Removed'])}",
             "\tAborting: ", "\t\t" + (s["AbortReason"] or "NULL").replace("\n", "\n\t\t"), "", "LatestState:",
             "\tState Change: " + _or_null(latest, lambda x: f"{x['StateChange']['Prev']} => {x['StateChange']['Next']}, "
                                                           f"by {x['StateChange']['Event']}"),
             "\tWorker: " + _or_null(latest, lambda x: f"{x['Worker']['Instance']}({x['Worker']['Location']})"),
             "\tFailure: " + ("NULL" if latest is None else _or_null(
                 failure, lambda f: f"\n\t\t[{f['Level']}] " + f["Desc"].replace("\n", "\n\t\t"))),
             "", "Deals:", *_deal_lines(s), "", "Sealing:",
             "\tTicket: " + _or_null(s.get("Ticket"), lambda t: f"({t['Epoch']}) {_hex(t['Ticket'])}"),
             "\tPreCommit Info:", "\t\t" + _or_null(s.get("Pre"), lambda p: f"CommD: {_cid(p['CommD'])}\n\t\tCommR: {_cid(p['CommR'])}"),
             f"\tPreCommit Message: {_or_null(msg.get('PreCommitCid'), _cid)}",
             "\tSeed: " + _or_null(s.get("Seed"), lambda t: f"({t['Epoch']}) {_hex(t['Seed'])}"),
             "\tProveCommit Info:", "\t\t" + _or_null(s.get("Proof"), lambda p: f"Proof: {_hex(p['Proof'])}"),
             f"\tProveCommit Message: {_or_null(msg.get('CommitCid'), _cid)}",
             f"\tMessage NeedSend: {_go_bool(msg.get('NeedSend'))}", "", "SnapUp:", f"\tUpgraded: {_go_bool(s['Upgraded'])}"]
    if s["Upgraded"]:
        info = s.get("UpgradedInfo")
        if info:     # Damocles prints UnsealedCID on both lines; the sealed CID is what is meant
            lines += [f"\tUnsealedCID: {_cid(info['UnsealedCID'])}", f"\tSealedCID: {_cid(info['SealedCID'])}",
                      f"\tProof: {_hex(info.get('Proof'))}"]
        if s.get("UpgradeMessageID") is not None:
            lines.append(f"\tUpgrade Message: {s['UpgradeMessageID']}")
        if s.get("UpgradeLandedEpoch") is not None:
            lines.append(f"\tLanded Epoch: {s['UpgradeLandedEpoch']}")
    terminate = (s.get("TerminateInfo") or {}).get("TerminateCid")
    lines += ["", "Termination:", f"\tTerminate Message: {_or_null(terminate, _cid)}", "",
              f"Rebuild: {_go_bool(s['NeedRebuild'])}", ""]
    return lines


def cmd_find_deal(args) -> int:
    found = _client(args).call("Venus.FindSectorsWithDeal", OFFLINE if args.offline else ONLINE, args.deal) or []
    sectors = [s["ID"] for s in found]
    emit({"sectors": sectors}, args.json,
         [sector_name(s["Miner"], s["Number"]) for s in sectors] + [""] if sectors else ["Not Found"])
    return 0


def _poll(client, task: dict, list_method: str, wait: float) -> dict:
    deadline = time.monotonic() + wait
    while task["State"] in ("pending", "allocated") and time.monotonic() < deadline:
        time.sleep(0.5)   # polling the manager for the worker's outcome; bounded by --wait
        task = next(t for t in client.call(list_method) if t["ID"] == task["ID"])
    return task


def _latest_task(client, list_method: str, match) -> dict | None:
    """The newest task a Damocles call just set (its answer does not name it)."""
    rows = [t for t in client.call(list_method) if match(t)]
    return max(rows, key=lambda t: t["ID"]) if rows else None


def cmd_rebuild(args) -> int:
    """SectorSetForRebuild(sid, RebuildOptions); Damocles prints nothing, we print the task."""
    sid = _sid(args)
    client = _client(args)
    client.call("Venus.SectorSetForRebuild", sid, {"PiecesAvailable": args.pieces_available})
    task = _latest_task(client, "Venus.RebuildTasks", lambda t: t["Sector"] == sid)
    if task is None:
        raise ValueError(f"the manager set {sector_name(sid['Miner'], sid['Number'])} for rebuild but lists no task for it")
    task = _poll(client, task, "Venus.RebuildTasks", args.wait)
    emit(task, args.json, [f"rebuild task {task['ID']} of {sector_name(sid['Miner'], sid['Number'])}: {task['State']}"
                           + (f" ({task['ErrorInfo']})" if task["ErrorInfo"] else "")])
    return 1 if task["State"] == "failed" else 0


def _piece_place(state: dict, piece: str) -> tuple[int | None, int, int]:
    """(offset, size, payload size) of the piece in the sector, padded bytes, from its SectorState
    (the fallback Damocles' CLI has for the venus-market lookup)."""
    for p in state.get("Pieces") or []:
        if _cid(p["Piece"]["PieceCID"]) == piece:
            deal = p.get("DealInfo") or {}
            return deal.get("Offset", 0), p["Piece"]["Size"], deal.get("PayloadSize", 0)
    return None, 0, 0


def cmd_unseal(args) -> int:
    """As Damocles' `sectors unseal`: the sector from FindSectorWithPiece (offline sectors) unless
    --actor/--sector name it; offset and size from the sector's pieces unless the flags give them;
    then UnsealPiece(sid, piece, offset, size, dest), or with --unseal-file the piece is cut out of
    a local unsealed file here."""
    if (args.actor is None) != (args.sector is None):
        raise ValueError('flag "--actor" and "--sector" must be set together')
    if args.unseal_file and args.dest:
        raise ValueError('flag "--unseal-file" and "--dest" can not be set together')
    client = _client(args)
    piece = {"/": args.piece}
    if args.actor is not None:
        sid = {"Miner": actor(args.actor, "--actor"), "Number": args.sector}
        state = client.call("Venus.FindSectorInAllStates", sid)
    else:
        state = client.call("Venus.FindSectorWithPiece", OFFLINE, piece)
        if state is None:
            raise ValueError(f"no sector found with piece {args.piece}")
        sid = state["ID"]
    offset, size, payload = _piece_place(state, args.piece)
    offset = args.offset if args.offset is not None else offset
    size = args.piece_size if args.piece_size is not None else size
    payload = args.payload_size or payload or unpadded_size(size)
    if offset is None:
        raise ValueError(f"piece {args.piece} is not among the pieces of {sector_name(sid['Miner'], sid['Number'])}: "
                         "give --offset and --piece-size")
    if not is_valid_padded_piece_size(size):
        raise ValueError(f"invalid piece size: {size} (a power of two of at least 128 padded bytes)")
    if offset % 128:
        raise ValueError(f"invalid offset: {offset} (a multiple of 128 padded bytes)")
    if args.unseal_file:
        out = _unseal_local(args, offset, size, payload)
        emit({"output": str(out), "offset": offset, "size": size, "payload_size": payload}, args.json,
             [f"piece {args.piece} written to {out}"])
        return 0
    dest = args.dest
    if dest is None and args.output:         # ours: -o names a file on the worker (the manager streams nothing back)
        if not args.output.startswith("/"):
            raise ValueError(f"--output {args.output!r}: give an absolute path on the worker")
        dest = f"file://{args.output}"
    client.call("Venus.UnsealPiece", sid, piece, unpadded_size(offset), unpadded_size(size), dest or "")
    task = _latest_task(client, "Venus.UnsealTasks", lambda t: t["Sector"] == sid and t["PieceCid"] == args.piece)
    if task is not None:
        task = _poll(client, task, "Venus.UnsealTasks", args.wait)
    lines = ["set task for unseal success:", f"piece cid: {args.piece}", f"offset: {offset}", f"size: {size}",
             f"payload size: {payload}", f"dest: {dest or ''}"]
    if task is not None:
        lines += [f"sector: {sector_name(sid['Miner'], sid['Number'])}", f"state: {task['State']}"]
        lines += [f"error: {task['ErrorInfo']}"] if task["ErrorInfo"] else []
    emit(task or {"Sector": sid, "PieceCid": args.piece, "Dest": dest}, args.json, lines)
    return 1 if task is not None and task["State"] == "failed" else 0


def _unseal_local(args, offset: int, size: int, payload: int) -> Path:
    """The piece's bytes of an unsealed sector file, fr32-unpadded, cut to the payload, written to
    -o (a directory gets PIECE_CID in it; default ./PIECE_CID)."""
    src = Path(args.unseal_file)
    if src.is_dir():
        raise ValueError(f"--unseal-file {src}: unseal file can not be a directory")
    if not src.is_file():
        raise ValueError(f"--unseal-file {src}: no such file")
    out = Path(args.output) if args.output else Path.cwd() / args.piece
    if out.is_dir():
        out = out / args.piece
    with open(src, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise ValueError(f"--unseal-file {src}: {src.stat().st_size} bytes, the piece needs {offset + size}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(unpad(data)[:payload])
    return out


# --- util sealer snap -----------------------------------------------------------------------

def cmd_snap_fetch(args) -> int:
    """SnapUpPreFetch(mid, &deadline); Damocles logs the two numbers."""
    r = _client(args).call("Venus.SnapUpPreFetch", actor(args.miner), args.deadline)
    emit(r, args.json, [f"candidate sectors fetched: available-in-deadline={r['Total']}, added={r['Diff']}"])
    return 0


def _count(runs) -> int:
    """Set bits of a go-bitfield in its JSON form (run lengths, starting with an unset run)."""
    return sum(runs[1::2]) if runs else 0


def cmd_snap_candidates(args) -> int:
    """SnapUpCandidates(mid): one bitfield per deadline."""
    rows = _client(args).call("Venus.SnapUpCandidates", actor(args.miner)) or []
    counts = [_count(r) for r in rows]
    if not rows:
        emit({"candidates": [], "deadlines": []}, args.json, ["no candidates available"])
        return 0
    emit({"candidates": rows, "deadlines": counts}, args.json,
         _table([[i, n] for i, n in enumerate(counts) if n or args.show_all], ["deadline", "count"]))
    return 0


def cmd_snap_cancel_commit(args) -> int:
    sid = _sid(args)
    _client(args).call("Venus.SnapUpCancelCommitment", sid)
    emit({"cancelled": sid}, args.json, [f"{sector_name(sid['Miner'], sid['Number'])}: cancel-commit done"])
    return 0
