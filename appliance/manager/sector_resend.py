"""`util sealer sectors resend-pre | resend-prove` and `finalize`, as Damocles' commands
(cmd/damocles-manager/internal/util_sealer_sectors.go and modules/sealer/sealer_cli.go
FinalizeSector, commit 4235a895).

Damocles' resend-pre/-prove submit the sector's PreCommit or proof again with reset, for a sector
stuck where the state machine cannot recover by itself. Here that is: queue the sector's PreCommit
(or proof) into the committer's next batch again, only when its last message failed on chain or is
gone (the chain holds another message at its nonce; or it left the committer's watch, and then the
same message is pushed again at its own nonce, which no later message could skip);
never while one is queued, journalled, pending in the pool, or landed, nor once the chain has the
sector pre-committed (resend-pre) or proven. A refusal names why."""

from __future__ import annotations

import json
import time

from ..chain.types import ChainError, MessageNotFound
from ..core.sector import sector_name
from .commitment import WATCH_WINDOW

WHAT = {"pre": ("PreCommit", "pre", "pre_queued_at"), "proof": ("ProveCommit", "commit_proof", "proof_queued_at")}


class ResendRefused(ValueError):
    """The message may not be queued again: the text says why."""


def resend_refusal(chain, state, rec: dict, kind: str, now: float) -> str | None:
    what, info_key, _ = WHAT[kind]
    miner, number = rec["miner"], rec["number"]
    name = sector_name(miner, number)
    if rec.get("abort_reason"):
        return f"sector {name} is aborted ({rec['abort_reason']}): restore it first"
    if kind == "pre" and "commit_proof" in rec:
        return f"sector {name} has reached later stages (its proof is submitted), unable to resend its PreCommit"
    if info_key not in rec:
        return f"sector {name}: no {'pre commit' if kind == 'pre' else 'prove commit'} on chain info available"
    if chain.sector(miner, number) is not None:
        return f"sector {name} is proven on chain: its {what} landed"
    if kind == "pre" and chain.precommit(miner, number) is not None:
        return f"sector {name} is pre-committed on chain: its PreCommit landed"
    nonce, msg = rec.get(f"{kind}_nonce"), rec.get(f"{kind}_msg")
    if nonce is None:
        return f"sector {name}: its {what} is already queued, waiting for its batch"
    if msg is None:
        return f"sector {name}: its {what} is journalled at nonce {nonce} and not pushed yet (the committer pushes it)"
    try:
        receipt = chain.receipt(msg)
    except MessageNotFound:
        return _gone_refusal(chain, state, rec, kind, nonce, msg, now)
    except ChainError as exc:
        return f"sector {name}: the chain cannot say what became of {msg}: {exc}"
    if receipt is None:
        return f"sector {name}: its {what} message {msg} is pending in the message pool"
    if receipt.ok:
        return f"sector {name}: its {what} message {msg} landed at epoch {receipt.epoch}"
    return None       # it failed: sent again


def _gone_refusal(chain, state, rec: dict, kind: str, nonce: int, msg: str, now: float) -> str | None:
    """A message the chain does not know: the committer sends it again at its nonce while it
    watches it (refused here); after that it may be resent (`_nonce_free` says how)."""
    if _nonce_free(chain, rec["miner"], nonce):
        row = state.one("SELECT created FROM outbox WHERE miner = ? AND nonce = ?", (rec["miner"], nonce))
        if row is not None and now - row[0] <= WATCH_WINDOW:
            return (f"sector {sector_name(rec['miner'], rec['number'])}: its {WHAT[kind][0]} message {msg} left the chain "
                    f"(a reorg): the committer sends it again at nonce {nonce} by itself")
    return None


def _nonce_free(chain, miner: int, nonce: int) -> bool:
    """No message holds the nonce on chain: a message sent again must take it (a later nonce
    would wait behind the gap), not a new one."""
    at_nonce = getattr(chain, "message_at_nonce", None)
    return at_nonce is None or at_nonce(miner, nonce) is None


def resend(chain, state, miner: int, number: int, kind: str, now=time.time) -> dict:
    """Queue the sector's PreCommit (kind "pre") or proof ("proof") again; raises ResendRefused."""
    rec = state.sector(miner, number)
    if rec is None:
        raise KeyError((miner, number))
    why = resend_refusal(chain, state, rec, kind, now())
    if why is not None:
        raise ResendRefused(why)
    previous = rec.get(f"{kind}_msg")
    nonce = rec.get(f"{kind}_nonce")
    gone = _is_gone(chain, previous)
    if gone and _nonce_free(chain, miner, nonce):      # the same message again, at its own nonce
        spec = state.one("SELECT spec FROM outbox WHERE miner = ? AND nonce = ?", (miner, nonce))
        state.respec_message(miner, nonce, json.loads(spec[0]) if spec and spec[0] else {})
        return {"Sector": sector_name(miner, number), "Queued": WHAT[kind][0], "Previous": previous, "Nonce": nonce}
    changes = {f"{kind}_nonce": None, f"{kind}_msg": None, WHAT[kind][2]: now(),
               f"{kind}_failed": f"{previous}: sent again by hand (resend)"}
    if kind == "proof":
        changes["proof_refused"] = None
    if state.update_open(miner, number, **changes) is None:
        raise ResendRefused(f"sector {sector_name(miner, number)} is finalized or aborted")
    return {"Sector": sector_name(miner, number), "Queued": WHAT[kind][0], "Previous": previous}


def _is_gone(chain, msg: str) -> bool:
    try:
        chain.receipt(msg)
    except MessageNotFound:
        return True
    return False


def finalize(chain, state, miner: int, number: int) -> None:
    """Damocles' FinalizeSector: mark the sector finalized, only once the chain has it."""
    if state.sector(miner, number) is None:
        raise KeyError((miner, number))
    if chain.sector(miner, number) is None:
        raise ResendRefused(f"sector {sector_name(miner, number)} for miner f0{miner} not found on chain")
    state.update(miner, number, finalized=True, state="Finished", abort_reason=None)
    state.release(miner, number)
