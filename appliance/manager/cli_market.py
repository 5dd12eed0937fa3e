"""`damocles util piece import FILE --miner ID [--start-epoch E] [--duration D]` and
`damocles util piece list`: the embedded market. Import computes the piece's CommP here, uploads
the file to the manager's piece store (which checks the CommP again) and publishes a deal."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.output import emit
from ..core.sector import sector_name
from ..proofs.cid import commd_to_cid
from ..proofs.commitment import commp_file
from ..rpc.client import HTTPStatusError
from .cli_util import _client, _common, _table


def add_parsers(util: argparse._SubParsersAction) -> None:
    piece = util.add_parser("piece", help="pieces and deals of the embedded market").add_subparsers(
        dest="piece_cmd", metavar="CMD")
    piece.required = True
    p = piece.add_parser("import", help="store a piece in the manager's piece store and publish a deal for it")
    p.add_argument("file", type=Path)
    p.add_argument("--miner", type=int, required=True)
    p.add_argument("--start-epoch", type=int, help="deal start (default: head + 2 × the miner's SealingEpochs)")
    p.add_argument("--duration", type=int, help="deal duration in epochs (default 180 days)")
    _common(p)
    p.set_defaults(func=cmd_import)
    p = piece.add_parser("list", help="deals and the sectors they are in")
    p.add_argument("--miner", type=int)
    _common(p)
    p.set_defaults(func=cmd_list)


def add_snap_parsers(util: argparse._SubParsersAction) -> None:
    snap = util.add_parser("snap", help="SnapDeals: CC sectors to upgrade with deals").add_subparsers(dest="snap_cmd", metavar="CMD")
    snap.required = True
    p = snap.add_parser("fetch", help="mark the miner's live CC sectors as upgrade candidates")
    p.add_argument("--miner", type=int, required=True)
    p.add_argument("--deadline", type=int, help="only sectors of this deadline")
    _common(p)
    p.set_defaults(func=lambda a: _emit_fetch(a, _client(a).call("Venus.SnapUpFetch", a.miner, a.deadline)))
    p = snap.add_parser("candidates", help="upgrade candidates and their state")
    p.add_argument("--miner", type=int)
    _common(p)
    p.set_defaults(func=cmd_candidates)


def _emit_fetch(args, r) -> int:
    emit(r, args.json, [f"{len(r['Added'])} CC sectors of f0{args.miner} are upgrade candidates now: "
                        + (", ".join(map(str, r["Added"])) or "none")])
    return 0


def cmd_candidates(args) -> int:
    rows = _client(args).call("Venus.SnapUpCandidateList", args.miner)
    emit({"candidates": rows}, args.json, _table([[sector_name(r["Sector"]["Miner"], r["Sector"]["Number"]), r["State"],
                                                   r["Worker"] or "-", r["Error"]] for r in rows],
                                                 ["SECTOR", "STATE", "WORKER", "ERROR"]))
    return 0


def cmd_import(args) -> int:
    if not args.file.is_file():
        raise ValueError(f"{args.file} is not a file")
    info, payload = commp_file(args.file)
    cid = commd_to_cid(info.commitment)
    client = _client(args)
    try:
        client.upload(f"/piecestore/{cid}", args.file)
    except HTTPStatusError as exc:
        raise ValueError(f"the manager refused the piece: {exc}") from None
    deal = client.call("Venus.MarketImportDeal", args.miner, cid, args.start_epoch, args.duration)
    emit(deal, args.json, [f"deal {deal['DealID']}: piece {cid} ({payload} bytes, {info.size} padded) for f0{args.miner}, "
                           f"epochs {deal['StartEpoch']}..{deal['EndEpoch']}"])
    return 0


def cmd_list(args) -> int:
    rows = _client(args).call("Venus.MarketDeals", args.miner)
    emit({"deals": rows}, args.json, _table([[r["DealID"], r["Miner"], r["PieceCID"], r["PieceSize"], r["StartEpoch"],
                                              r["EndEpoch"], r["Sector"] if r["Sector"] is not None else "-"] for r in rows],
                                            ["DEAL", "MINER", "PIECE", "SIZE", "START", "END", "SECTOR"]))
    return 0
