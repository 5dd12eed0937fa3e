"""`damocles util sealer actor balance|add-balance|withdraw` and `util message wait|search`, as
damocles-manager's Go CLI has them (internal/util_sealer_actor.go, util_message.go): the same
names, arguments and printed lines; they ask the manager (Venus.ActorBalance, ActorAddBalance,
ActorWithdraw, MessageSearch), which asks its chain. Amounts are read as Damocles' ParseFIL
reads them ("1.5", "1.5 FIL", "5 nanoFIL", "100 attoFIL")."""

from __future__ import annotations

import time

from ..chain.money import fil_short, parse_fil
from ..core.output import emit
from .cli_damocles_cmds import actor
from .cli_util import _client

LOTUS_MESSAGE_CONFIDENCE = 5     # Lotus build.MessageConfidence, what `message wait` waits for


def _miner(args) -> int:
    return actor(getattr(args, "miner", None) or getattr(args, "group_miner", None), "--miner")


def cmd_actor_balance(args) -> int:
    b = _client(args).call("Venus.ActorBalance", _miner(args))
    lines = [f"balance: {fil_short(int(b['Balance']))}"]
    if b.get("Available") is not None:
        lines.append(f"available: {fil_short(int(b['Available']))}")
    for key, label in (("PreCommitDeposits", "precommit deposits"), ("InitialPledge", "initial pledge")):
        if key in b:
            lines.append(f"{label}: {fil_short(int(b[key]))}")
    if b.get("WorkerBalance") is not None:
        lines.append(f"worker {b['Worker']}: {fil_short(int(b['WorkerBalance']))}")
    emit(b, args.json, lines)
    return 0


def _wait(client, message: str, confidence: int, timeout: float) -> dict:
    """Poll the manager until the message has landed `confidence` epochs ago (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        m = client.call("Venus.MessageSearch", message)
        if m["State"] == "OnChainMsg" and m["Confidence"] >= confidence:
            return m
        if time.monotonic() >= deadline:
            raise TimeoutError(f"message {message} not on chain with {confidence} confirmations after {timeout:g}s "
                               f"(state {m['State']}): look again with `damocles util message search {message}`")
        time.sleep(0.5)     # polling the manager, bounded by --timeout


def cmd_actor_add_balance(args) -> int:
    miner = _miner(args)
    value = parse_fil(args.amount, "amount")
    client = _client(args)
    msg = client.call("Venus.ActorAddBalance", miner, args.sender, str(value))
    if not args.json:
        print(f"message {msg}: {fil_short(value)} from {args.sender} to f0{miner}")
    m = _wait(client, msg, 0, args.timeout)
    code = m["Receipt"]["ExitCode"]
    emit(m, args.json, [f"landed at height {m['Height']}, exit code {code}" +
                        (f": {m['Receipt'].get('Error')}" if code else "")])
    return 0 if code == 0 else 1


def cmd_actor_withdraw(args) -> int:
    if args.beneficiary:
        raise ValueError("withdraw --beneficiary: the devnet's miners have one key (owner = worker = beneficiary); "
                         "withdraw without it")
    miner = _miner(args)
    requested = parse_fil(args.amount, "amount") if args.amount is not None else None
    client = _client(args)
    res = client.call("Venus.ActorWithdraw", miner, None if requested is None else str(requested))
    if not args.json:
        print(f"Requested rewards withdrawal in message {res['Message']}")
        print(f"waiting for {args.confidence} epochs for confirmation..")
    m = _wait(client, res["Message"], args.confidence, args.timeout)
    code = m["Receipt"]["ExitCode"]
    lines = ([f"Successfully withdrew up to {fil_short(int(res['Requested']))} (what was available when it executed)"]
             if code == 0 else [f"withdrawal failed! exit code {code}: {m['Receipt'].get('Error')}"])
    emit({**m, "Requested": res["Requested"]}, args.json, lines)
    return 0 if code == 0 else 1


def _message_lines(m: dict) -> list[str]:
    """util_message.go's lines: State, and for a landed message Cid, Height, Tipset, ExitCode, gas_used."""
    lines = [f"State: {m['State']}"]
    if m["State"] == "OnChainMsg":
        lines += [f"Cid: {m['SignedCid']}", f"Height: {m['Height']}", "Tipset: " + str(m.get("TipSetKey") or "{}"),
                  f"ExitCode: {m['Receipt']['ExitCode']}", f"gas_used: {m['Receipt']['GasUsed']}"]
    if m.get("ReplacedBy"):
        lines.append(f"ReplacedBy: {m['ReplacedBy']}")
    return lines


def cmd_message_search(args) -> int:
    m = _client(args).call("Venus.MessageSearch", args.uid)
    emit(m, args.json, _message_lines(m))
    return 0


def cmd_message_wait(args) -> int:
    m = _wait(_client(args), args.uid, args.confidence, args.timeout)
    emit(m, args.json, _message_lines(m))
    return 0
