"""`util sealer sectors terminate [query] | remove | finalize | resend-pre | resend-prove`, after
Damocles' commands (cmd/damocles-manager/internal/util_sealer_sectors.go, commit 4235a895): the same
names, flags and printed lines. Damocles takes the miner as `--actor` (terminate, remove) or
`--miner` (finalize) and the sector number as the argument; `MINER NUMBER` as two arguments is taken
too, as the other commands of this tree take them. `--json` prints the RPC's answer."""

from __future__ import annotations

from ..core.output import emit
from ..core.sector import sector_name
from .cli_damocles_cmds import _number, actor
from .cli_util import _client

REALLY = "pass --really-do-it to confirm this action"


def _sid_of(args, words: list[str], what: str) -> dict:
    """`NUMBER` with --actor/--miner, or `MINER NUMBER`."""
    flag = getattr(args, "actor", None)
    if len(words) == 2 and flag is None:
        return {"Miner": actor(words[0]), "Number": _number(words[1])}
    if len(words) == 1 and flag is not None:
        return {"Miner": actor(flag), "Number": _number(words[0])}
    raise ValueError(f"{what}: expected MINER NUMBER, or --actor MINER NUMBER")


def _words(args) -> list[str]:
    unknown = [w for w in args.extra if w.startswith("-")]
    if unknown:
        raise ValueError(f"unrecognized arguments: {' '.join(unknown)}")
    return list(args.words) + list(args.extra)


def add_term_args(p, flag: str = "--actor") -> None:
    """The arguments of terminate, remove and finalize (cli_damocles.py adds the parser)."""
    names = ("--actor", "--miner") if flag == "--actor" else ("--miner", "--actor")
    p.add_argument(*names, dest="actor", help="miner actor id, eg. 1000 (or give MINER NUMBER)")
    p.add_argument("--really-do-it", action="store_true", help="pass this flag if you know what you are doing")
    p.add_argument("words", nargs="+", metavar="[query] [MINER] NUMBER")
    p.set_defaults(accepts_any=True)      # words after a flag come back as extras; _words checks them


def cmd_terminate(args) -> int:
    words = _words(args)
    if words[0] == "query":
        return _terminate_query(args, words[1:])
    sid = _sid_of(args, words, "terminate")
    if not args.really_do_it:
        raise ValueError(REALLY)
    resp = _client(args).call("Venus.TerminateSector", sid)
    if args.json:
        emit(resp, True)
    elif resp["Res"] != 1:      # SubmitAccepted
        print(f"terminate failed: {resp.get('Desc')}")
    else:
        print("terminate accepted")
    return 0 if resp["Res"] == 1 else 1


def _terminate_query(args, words: list[str]) -> int:
    sid = _sid_of(args, words, "terminate query")
    info = _client(args).call("Venus.PollTerminateSectorState", sid)
    if args.json:
        emit(info, True)
    elif info["TerminateCid"] is not None:
        print(f"msg: {info['TerminateCid']['/']}, height: {info['TerminatedAt']}, added height: {info['AddedHeight']}")
    else:
        print(f"msg: null, added height: {info['AddedHeight']}")
    return 0


def cmd_remove(args) -> int:
    sid = _sid_of(args, _words(args), "remove")
    if not args.really_do_it:
        raise ValueError(REALLY)
    _client(args).call("Venus.RemoveSector", sid)
    emit({"removed": sid}, args.json, ["remove succeed"])
    return 0


def cmd_finalize(args) -> int:
    sid = _sid_of(args, _words(args), "finalize")
    if not args.really_do_it:
        raise ValueError(REALLY)
    _client(args).call("Venus.FinalizeSector", sid)
    emit({"finalized": sid}, args.json, [f"{sector_name(sid['Miner'], sid['Number'])} finalized"])
    return 0


def cmd_resend(args) -> int:
    sid = {"Miner": actor(args.miner), "Number": _number(args.number)}
    method, what = {"pre": ("Venus.ResendPreCommit", "pre commit"), "proof": ("Venus.ResendProof", "prove commit")}[args.kind]
    out = _client(args).call(method, sid)
    emit(out, args.json, [f"{what} on chain info reset"])
    return 0
