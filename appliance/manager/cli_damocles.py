"""Damocles' command tree under its own names: `damocles util sealer sectors|proving|actor|snap ...`,
`util worker ...`, `util storage ...`, `util market|message ...`, `util fetch-params|migrate`, as
damocles-manager's `util` command has them (same names, positional arguments and flags where
they mean something here, `--json` on every command that reports). Each actionable command calls
the manager's RPC; the commands that need on-chain lifecycle or chain messages answer, with exit
status 2, that they are not built yet. Our own shorter names (`util sectors`, `util workers`,
`util proving`, `util snap`) stay as they were."""

from __future__ import annotations

import argparse
import sys

from .cli_damocles_cmds import (cmd_fetch_params, cmd_gen_store_json, cmd_storage_find, cmd_storage_release_reserved,
                                cmd_wdpost_each, cmd_wdpost_list, cmd_wdpost_remove_all, cmd_worker_control, cmd_worker_list,
                                cmd_worker_remove, go_bool)
from .cli_damocles_lifecycle_term import add_term_args, cmd_finalize, cmd_remove, cmd_resend, cmd_terminate
from .cli_damocles_lifecycle_extend import (check_expire_flags, cmd_check_expire, cmd_expired, cmd_extend, expired_flags,
                                            extend_flags)
from .cli_damocles_move import add_attach, add_export_to_lotus, add_import
from .cli_damocles_proving import (cmd_deadline, cmd_deadlines, cmd_faults, cmd_proving_check, cmd_proving_info,
                                   cmd_sector_info, cmd_simulate_wdpost)
from .cli_damocles_sealer import (cmd_abort, cmd_find_deal, cmd_rebuild, cmd_restore, cmd_sectors_list, cmd_snap_cancel_commit,
                                  cmd_snap_candidates, cmd_snap_fetch, cmd_state, cmd_unseal)
from .cli_damocles_money import (LOTUS_MESSAGE_CONFIDENCE, cmd_actor_add_balance, cmd_actor_balance, cmd_actor_withdraw,
                                 cmd_message_search, cmd_message_wait)
from .cli_util import _common, page_flags

CHAIN = "it comes with chain support (messages to the miner actor through a real node)"


def not_built(sub, name: str, usage: str, reason: str, children: tuple = ()):
    """A command of Damocles' tree that is present in --help and answers clearly, never silently.
    It takes any arguments (Damocles' flags), so that the answer is this, not a usage error.
    `children`: its own sub-commands, named in the answer (`terminate query`)."""
    p = sub.add_parser(name, help=f"{usage} [not built yet]",
                       description=f"{usage}. Not built yet: {reason}." + (f" Commands: {', '.join(children)}." if children else ""))
    p.set_defaults(func=_not_built, not_built=reason, not_built_prog=p.prog, not_built_children=children, accepts_any=True)
    return p


def _not_built(args) -> int:
    words = args.not_built_prog.split()[1:]
    extra = getattr(args, "extra", [])
    if extra and extra[0] in args.not_built_children:
        words.append(extra[0])
    print(f"damocles: {' '.join(words)} is not built yet: {args.not_built}", file=sys.stderr)
    return 2


def _group(sub, name: str, helptext: str):
    g = sub.add_parser(name, help=helptext).add_subparsers(dest=f"{name}_cmd", metavar="CMD")
    g.required = True
    return g


def _leaf(sub, name: str, helptext: str, func, *args_fn, **defaults):
    p = sub.add_parser(name, help=helptext)
    for fn in args_fn:
        fn(p)
    _common(p)
    p.set_defaults(func=func, **defaults)
    return p


def _miner_sector(p):
    p.add_argument("miner", help="miner actor id (1000, f01000 or t01000)")
    p.add_argument("number", help="sector number")


def add_sealer(util) -> None:
    sealer = _group(util, "sealer", "Commands for sector sealing (Damocles' names)")
    add_sectors(_group(sealer, "sectors", "Commands for interacting with sectors"))
    add_proving(sealer)
    actor_parser = sealer.add_parser("actor", help="Manipulate the miner actor")
    actor_parser.add_argument("--miner", dest="group_miner", help="miner actor id/address")
    actor = actor_parser.add_subparsers(dest="actor_cmd", metavar="CMD")
    actor.required = True
    add_actor(actor)
    add_snap(_group(sealer, "snap", "Commands for snap-up sectors"))


def add_sectors(sectors) -> None:
    def really(p):
        p.add_argument("--really-do-it", action="store_true", help="actually abort (Damocles asks for it)")
    _leaf(sectors, "abort", "Abort specified online sector job", cmd_abort, _miner_sector, really)

    def list_flags(p):
        p.add_argument("--offline", action="store_true", help="show offline (finalized or aborted) sectors")
        for name, default in (("sealing", True), ("snapup", False), ("rebuild", False), ("unseal", False)):
            go_bool(p, name, default, f"enable {name} jobs in listing")
        p.add_argument("--miner", help="show sectors of the given miner only")
        page_flags(p)      # ours: the manager lists a page at a time
    _leaf(sectors, "list", "Print sector data", cmd_sectors_list, list_flags)

    def force(p):
        p.add_argument("--force", "--forced", dest="force", action="store_true")
    _leaf(sectors, "restore", "Restore a sector state that may already finalized or aborted", cmd_restore, _miner_sector, force)
    _leaf(sectors, "check-expire", "Inspect expiring sectors", cmd_check_expire, check_expire_flags)
    _leaf(sectors, "expired", "Get or cleanup expired sectors", cmd_expired, expired_flags)
    _leaf(sectors, "extend", "Extend expiring sectors while not exceeding each sector's max life", cmd_extend, extend_flags)
    _leaf(sectors, "terminate", "Terminate sector on-chain (WARNING: This means losing power and collateral for the sector); "
          "also: terminate query", cmd_terminate, add_term_args)
    _leaf(sectors, "remove", "Forcefully remove persist stores of sector, once the chain says it is gone", cmd_remove,
          add_term_args)
    _leaf(sectors, "finalize", "Mandatory label the sector status as the finalize (sectors on chain only)", cmd_finalize,
          lambda p: add_term_args(p, "--miner"))

    # `state MINER NUMBER`, `state export-json MINER NUMBER`, `state import-json FILE`:
    # one parser, as argparse cannot put optional positionals before sub-commands
    _leaf(sectors, "state", "Load and display the detailed sector state (also: state export-json|import-json ...)", cmd_state,
          lambda p: p.add_argument("words", nargs="+", metavar="MINER NUMBER | export-json MINER NUMBER | import-json FILE"),
          lambda p: p.add_argument("--offline", action="store_true", help="DEPRECATED: every state is searched"),
          lambda p: p.add_argument("--override", action="store_true", help="import-json: override the previous sector state"),
          lambda p: p.add_argument("--really-do-it", action="store_true", help="import-json: actually import it"),
          accepts_any=True)   # words after a flag come back as extras (argparse does not intermix); cmd_state checks them

    _leaf(sectors, "find-deal", "Find the sectors to which the deal was assigned", cmd_find_deal,
          lambda p: p.add_argument("deal", type=int, help="deal id"),
          lambda p: p.add_argument("--offline", action="store_true"))
    _leaf(sectors, "resend-pre", "Resend the pre commit on chain info for the specified sector", cmd_resend, _miner_sector,
          kind="pre")
    _leaf(sectors, "resend-prove", "Resend the prove commit on chain info for the specified sector", cmd_resend,
          _miner_sector, kind="proof")
    add_import(sectors)

    def rebuild_flags(p):
        p.add_argument("--pieces-available", action="store_true", help="RebuildOptions.PiecesAvailable (deals' pieces are in the piece store)")
        p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the rebuild to finish")
    _leaf(sectors, "rebuild", "Rebuild specified sector", cmd_rebuild, _miner_sector, rebuild_flags)
    add_export_to_lotus(sectors)

    def unseal_flags(p):
        p.add_argument("piece", help="the piece CID")
        p.add_argument("--actor", "--miner", "--actor-id", dest="actor", help="miner actor id (with --sector)")
        p.add_argument("--sector", "--sector-id", dest="sector", type=int, help="sector number (with --actor)")
        p.add_argument("--dest", help="file:///abs/path (on the worker), store://NAME/path, or piecestore")
        p.add_argument("-o", "--output", help="the file to write: on the worker (file:// destination), or here with --unseal-file")
        p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the task to finish")
        p.add_argument("--unseal-file", help="cut the piece out of this local unsealed sector file instead")
        p.add_argument("--offset", type=int, help="the piece's offset in the sector, padded bytes (default: from the sector)")
        p.add_argument("--piece-size", type=int, help="the piece's padded size (default: from the sector)")
        p.add_argument("--payload-size", type=int, help="bytes of payload in the piece (default: from the deal)")
    _leaf(sectors, "unseal", "unseal specified sector", cmd_unseal, unseal_flags)


def add_proving(sealer) -> None:
    proving_parser = sealer.add_parser("proving", help="View proving information")
    proving_parser.add_argument("--miner", dest="group_miner", help="miner actor id (here or on the command)")
    proving = proving_parser.add_subparsers(dest="proving_cmd", metavar="CMD")
    proving.required = True

    def miner(p):
        p.add_argument("--miner", help="miner actor id")
    _leaf(proving, "info", "View current state information", cmd_proving_info, miner)
    _leaf(proving, "faults", "View the currently known proving faulty sectors information", cmd_faults, miner)
    _leaf(proving, "deadlines", "View the current proving period deadlines information", cmd_deadlines, miner,
          lambda p: p.add_argument("-a", "--all", action="store_true", help="accepted; every sector is counted"))

    def deadline(p):
        p.add_argument("index", type=int, help="deadline index")
        p.add_argument("-n", "--sector-nums", action="store_true", help="Print sector/fault numbers belonging to this deadline")
        p.add_argument("-b", "--bitfield", action="store_true", help="accepted; bitfield run statistics are not shown")
    _leaf(proving, "deadline", "View the current proving period deadline information by its index", cmd_deadline, miner, deadline)

    def check(p):
        p.add_argument("index", type=int, help="deadline index")
        for flag in ("--only-bad", "--slow", "--state-check", "--faulty", "--detail"):
            p.add_argument(flag, action="store_true")
    _leaf(proving, "check", "Check sectors provable", cmd_proving_check, miner, check)
    def simulate(p):
        p.add_argument("--ddl-idx", type=int, required=True, help="the deadline")
        p.add_argument("--partition-idx", type=int, required=True, help="the partition")
        p.add_argument("--include-faulty", action="store_true", help="whether include faulty sectors or not")
        p.add_argument("--challenge", type=int, help="the epoch of the challenge randomness (default: 32 zero bytes)")
    _leaf(proving, "simulate-wdpost", "Simulate a WindowPoSt of one partition (in the manager's background; see its log)",
          cmd_simulate_wdpost, miner, simulate)
    _leaf(proving, "sector-info", "Print sector info", cmd_sector_info, miner,
          lambda p: p.add_argument("numbers", nargs="+", help="sector numbers"))
    not_built(proving, "winning-vanilla", "Generate a WinningPoSt vanilla proof for a sector file",
              "it comes with chain support (the sector's on-chain info from a real node)")
    not_built(proving, "compact-partitions", "Removes dead sectors from partitions", CHAIN)
    not_built(proving, "recover-faults", "Recover faults manually", CHAIN)


def add_actor(actor) -> None:
    def miner(p):
        p.add_argument("--miner", help="miner actor id/address (also accepted before the command)")

    def wait(p, default):
        p.add_argument("--timeout", type=float, default=default, help="seconds to wait for the message (ours)")
    _leaf(actor, "balance", "Print the miner actor's balance, locked and available funds", cmd_actor_balance, miner)
    _leaf(actor, "add-balance", "Send FIL from an address to the miner actor (method 0)", cmd_actor_add_balance, miner,
          lambda p: p.add_argument("sender", metavar="FROM", help="from address"),
          lambda p: p.add_argument("amount", help="amount (\"1.5\", \"1.5 FIL\", \"5 nanoFIL\", \"100 attoFIL\")"),
          lambda p: p.add_argument("--exid", help="accepted (sophon-messager's extra id)"), lambda p: wait(p, 600.0))
    _leaf(actor, "withdraw", "Withdraw available balance", cmd_actor_withdraw, miner,
          lambda p: p.add_argument("amount", nargs="?", help="amount (FIL); default: all that is available"),
          lambda p: p.add_argument("--confidence", type=int, default=6, help="number of block confirmations to wait for"),
          lambda p: p.add_argument("--beneficiary", action="store_true", help="send withdraw message from the beneficiary address"),
          lambda p: wait(p, 600.0))
    for name in ("repay-debt", "set-owner", "propose-change-worker",
                 "confirm-change-worker", "compact-allocated", "propose-change-beneficiary", "confirm-change-beneficiary"):
        not_built(actor, name, f"miner actor: {name}", CHAIN)
    not_built(actor, "control", "Manage control addresses", CHAIN, children=("list", "set"))


def add_snap(snap) -> None:
    _leaf(snap, "fetch", "Fetch activated CC sectors in the specified deadline as snap candidates", cmd_snap_fetch,
          lambda p: p.add_argument("miner", help="miner actor id"),
          lambda p: p.add_argument("deadline", type=int, help="deadline index"))
    _leaf(snap, "candidates", "Show fetched cc sectors for specified miner", cmd_snap_candidates,
          lambda p: p.add_argument("miner", help="miner actor id"),
          lambda p: p.add_argument("--show-all", action="store_true", help="show all deadlines"))
    _leaf(snap, "cancel-commit", "Cancel inflight snapup commitment", cmd_snap_cancel_commit, _miner_sector)


def add_worker(util) -> None:
    worker = _group(util, "worker", "Utils for worker management (Damocles' names)")
    _leaf(worker, "list", "list workers that pinged the manager", cmd_worker_list,
          lambda p: p.add_argument("--expiration", default="10m", help="a worker is missing after this long (Go duration)"))
    _leaf(worker, "remove", "Remove the specific worker (its name is free for another credential then)", cmd_worker_remove,
          lambda p: p.add_argument("worker", help="worker instance name"))
    _leaf(worker, "info", "Show details about the specific worker", cmd_worker_control,
          lambda p: p.add_argument("worker", help="worker instance name"), action="info")
    _leaf(worker, "pause", "Pause the specified sealing thread inside target worker", cmd_worker_control,
          lambda p: p.add_argument("worker", help="worker instance name"),
          lambda p: p.add_argument("index", type=int, help="thread index"), action="pause")
    _leaf(worker, "resume", "Resume the specified sealing thread inside target worker", cmd_worker_control,
          lambda p: p.add_argument("worker", help="worker instance name"),
          lambda p: p.add_argument("index", type=int, help="thread index"),
          lambda p: p.add_argument("state", nargs="?", help="the next state"), action="resume")
    wdpost = _group(worker, "wdpost", "manage wdpost jobs handled by provers")
    _leaf(wdpost, "list", "list all wdpost job", cmd_wdpost_list,
          lambda p: p.add_argument("--all", action="store_true", help="include jobs that succeeded"),
          lambda p: p.add_argument("--detail", action="store_true", help="show more detailed information"))
    _leaf(wdpost, "reset", "reset the job status to allow new workers can pick it up", cmd_wdpost_each,
          lambda p: p.add_argument("jobs", nargs="+"), action="reset")
    _leaf(wdpost, "remove", "remove wdpost job", cmd_wdpost_each, lambda p: p.add_argument("jobs", nargs="+"), action="remove")
    _leaf(wdpost, "remove-all", "remove all wdpost jobs", cmd_wdpost_remove_all,
          lambda p: p.add_argument("--really-do-it", action="store_true"))


def add_storage(storage) -> None:
    """Damocles' `util storage` commands next to our `list` (which prints as Damocles' does)."""
    def gen(p):
        p.add_argument("path", nargs="?", help="sectorstore.json, or the directory to write it in (default: print it)")
        go_bool(p, "strict", True, "strict")
        p.add_argument("--readonly", "--read-only", dest="readonly", action="store_true")
        p.add_argument("--weight", type=int, default=1)
        p.add_argument("--plugin-name", "--plugin", dest="plugin_name", default="")
        p.add_argument("--allow-miners", type=int, action="append", default=[])
        p.add_argument("--deny-miners", type=int, action="append", default=[])
    p = storage.add_parser("gen-sectorstore-json", help="generate the `sectorstore.json` file")
    gen(p)
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_gen_store_json)
    add_attach(storage)
    _leaf(storage, "find", "Find sector in the storage", cmd_storage_find, _miner_sector,
          lambda p: p.add_argument("--upgrade", action="store_true", help="Find upgrade sectors"))
    _leaf(storage, "release-reserved", "Manually release the reserved storage space", cmd_storage_release_reserved, _miner_sector)


def add_rest(util) -> None:
    """market, message, fetch-params, migrate: chain and venus-market parts, and tools."""
    market = _group(util, "market", "Interacting with the venus-market")
    not_built(market, "release-deals", "Manual release deals", CHAIN)
    message = _group(util, "message", "Message related utilities")
    _leaf(message, "wait", "Wait for the execution result of the specified uid message", cmd_message_wait,
          lambda p: p.add_argument("uid", help="the message id"),
          lambda p: p.add_argument("--confidence", type=int, default=LOTUS_MESSAGE_CONFIDENCE, help="epochs after landing"),
          lambda p: p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (ours)"))
    _leaf(message, "search", "Search for the execution result of the specified uid message", cmd_message_search,
          lambda p: p.add_argument("uid", help="the message id"))
    p = util.add_parser("fetch-params", help="prepare proving parameters: the builtin engine's SDR parent caches for a size")
    p.add_argument("size", help="sector size, e.g. 2KiB, 32GiB")
    p.add_argument("--dir", help="parent cache directory (default as rust-fil-proofs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fetch_params)
    not_built(util, "migrate", "migrate a kvstore", "our manager keeps its state in SQLite; there is no kvstore to migrate")


def add_chain_miner(chain, miner) -> None:
    """`util chain pci` and `util miner create` next to our `chain head` and `miner info`."""
    not_built(chain, "pci", "show the pre-commit info of a sector", CHAIN)
    not_built(miner, "create", "create a miner actor", CHAIN)
