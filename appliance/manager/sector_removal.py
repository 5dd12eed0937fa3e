"""Removing a sector's files from its persist store (`util sealer sectors remove`, Venus.RemoveSector,
as Damocles' Sealer.RemoveSector, modules/sealer/sealer_cli.go at commit 4235a895), only once the
chain says the sector is gone: never proven (an aborted sector), expired or terminated. What the
manager believes is not asked: a sector the chain still has live is refused, naming why (and the
termination in flight, if any). A terminated sector also waits WinningPoSt's sector-set lookback
past its termination epoch, as Damocles does: until then a block may still challenge it.

The removal is journalled on the record before a file goes (`removal`: the exact paths, all of this
sector's name in the stores its record names), so a manager killed mid-way finishes the same list
at its next start (`resume_removals`) and never touches another path. The record then says
`removed`. `remove_sector_files` is the whole of it, for any caller (`expired --remove-expired`)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..core.crash import crash_point
from ..core.sector import sector_name
from .terminate import in_flight, termination

log = logging.getLogger("damocles.manager.removal")
WINNING_POST_SECTOR_SET_LOOKBACK = 10      # go-state-types policy GetWinningPoStSectorSetLookback (nv >= 10)
# (directory, is a directory) of each file type lotus and Damocles lay out per sector name
LAYOUT = {"persisted": (("sealed", False), ("cache", True), ("unsealed", False)),
          "upgraded": (("update", False), ("update-cache", True))}


class RemovalRefused(ValueError):
    """The sector's files may not be removed (yet): the message says why."""


def removal_refusal(chain, rec: dict) -> str | None:
    """Why the chain does not allow the sector's files to go now (None: it does)."""
    miner, number = rec["miner"], rec["number"]
    name = sector_name(miner, number)
    if not rec.get("finalized") and not rec.get("abort_reason"):
        return f"sector {name} is not finalized (offline): it is still being sealed"
    on_chain = chain.sector(miner, number)
    if on_chain is None:
        if chain.precommit(miner, number) is not None and not rec.get("abort_reason"):
            return f"sector {name} is pre-committed on chain and may still be proven: abort it first"
        return None               # never proven here: nothing on chain needs its files
    live = chain.sector_expiration(miner, number)
    if live is not None:
        t = termination(rec)
        doing = (f"; its termination is in flight (message {t.get('msg') or 'not sent yet'})" if in_flight(t)
                 else ": terminate it first (util sealer sectors terminate)")
        return f"sector {name} is live on chain until epoch {live.on_time}{doing}"
    t = termination(rec) or {}
    ended = t.get("terminated_at")
    if ended:
        until = ended + WINNING_POST_SECTOR_SET_LOOKBACK
        if chain.head() < until:
            return f"sector {name} was terminated at epoch {ended}: wait for expiration (+winning lookback): {until}"
    return None


def sector_paths(config, rec: dict) -> list[tuple[str, bool]]:
    """The sector's own paths in the stores its record names (path, is a directory), present or not."""
    name = sector_name(rec["miner"], rec["number"])
    out = []
    for key, layout in LAYOUT.items():
        store = next((s for s in config.persist_stores if s.name == rec.get(key)), None)
        if store is None:
            continue
        out += [(str(store.path / sub / name), is_dir) for sub, is_dir in layout]
    return out


def remove_sector_files(config, state, chain, miner: int, number: int, now=time.time) -> dict:
    """Remove the sector's files once the chain says it is gone; raises RemovalRefused (why) or
    KeyError (no such sector). Returns {"Removed": [paths deleted], "AlreadyRemoved": bool}."""
    rec = state.sector(miner, number)
    if rec is None:
        raise KeyError((miner, number))
    if rec.get("removed"):
        return {"Removed": [], "AlreadyRemoved": True}
    if rec.get("removal") is None:
        why = removal_refusal(chain, rec)
        if why is not None:
            raise RemovalRefused(why)
        paths = sector_paths(config, rec)
        if not paths:
            raise RemovalRefused(f"sector {sector_name(miner, number)}: object not found in any persist store")
        rec = state.update(miner, number, removal={"started_at": now(), "paths": [list(p) for p in paths]})
        crash_point("lifecycle.remove.after_journal")
    return _finish(state, rec)


def _finish(state, rec: dict) -> dict:
    """Delete the journalled paths (each may be gone already), then mark the record removed."""
    deleted = []
    for path, is_dir in rec["removal"]["paths"]:
        p = Path(path)
        if p.is_symlink() or (p.exists() and not is_dir):
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        deleted.append(path)
        if len(deleted) == 1:
            crash_point("lifecycle.remove.mid_files")
    state.update(rec["miner"], rec["number"], removed=True, removal={**rec["removal"], "done": True})
    log.info("sector %s: files removed from its persist store: %s", sector_name(rec["miner"], rec["number"]),
             ", ".join(deleted) or "(none were left)")
    return {"Removed": deleted, "AlreadyRemoved": False}


def resume_removals(state) -> list[tuple[int, int]]:
    """Finish the removals a stopped manager journalled and did not mark done."""
    done = []
    for miner, number in state.query("SELECT miner, number FROM sectors WHERE removal_pending = 1 ORDER BY miner, number"):
        rec = state.sector(miner, number)          # the partial index holds only these: no record of another is read
        _finish(state, rec)
        done.append((miner, number))
    return done
