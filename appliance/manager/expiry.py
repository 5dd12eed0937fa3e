"""A sealed sector's expiry, as Damocles' `util sealer sectors check-expire | expired | extend`
have it (damocles-manager/cmd/damocles-manager/internal/util_sealer_sectors.go at 4235a895):

- check-expire: the miner's active sectors whose expiration is within `cutoff` epochs of the
  head, by expiration, with their MaxExpiration (activation + the proof's max lifetime) and
  MaxExtendNow (head + the max extension, no later than MaxExpiration).
- expired: the manager's sectors the chain says have ended (activated, no longer live); with
  removal, their files leave the persist store as `remove` takes them (sector_removal.py: the
  removal journalled on the record before any file goes, marked `removed` after), so a crash
  mid-way is finished by the next run or the next start, and a live sector's files are never touched.
- extend: ExtendSectorExpiration2 declarations grouped by deadline and partition, each new
  expiration held to the proof's max lifetime and the max extension, sectors within `tolerance`
  epochs of one another's new expiration in one declaration, batched into as few messages as the
  actor takes (DeclarationsMax declarations, AddressedSectorsMax sectors). Messages go through the
  commitment outbox (kind "extend"): journalled before the push, so a crash sends nothing twice;
  sectors of an extend not yet executed are left out of the next one. builtin-actors b0a3bdd6
  (lib.rs extend_sector_expiration_inner) does not refuse immutable deadlines for an extension, so
  none is skipped; a sector whose expiration epoch has passed (though still live until its
  deadline's end) it refuses, and so does the manager, in its words, before sending.

The chain is read through the Chain interface only, so a Lotus node serves as the devnet does."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

from ..chain.bitfield import json_from_numbers, numbers_from_json
from ..chain.lifecycle_actor import ADDRESSED_SECTORS_MAX, DECLARATIONS_MAX, seal_proof_max_lifetime
from ..chain.types import ChainError, MessageNotFound, SectorOnChain
from ..core.sector import sector_name
from .commitment import FundsWait
from .sector_removal import RemovalRefused, remove_sector_files

log = logging.getLogger("damocles.manager.expiry")

EPOCHS_PER_DAY = 2880
DEFAULT_CUTOFF = 60 * EPOCHS_PER_DAY           # check-expire --cutoff (Damocles: 172800)
DEFAULT_EXTENSION = 540 * EPOCHS_PER_DAY       # extend --extension (1555200)
DEFAULT_TOLERANCE = 7 * EPOCHS_PER_DAY         # extend --tolerance (20160)
DEFAULT_FROM, DEFAULT_TO = 120, 92160          # extend's window: now + 1 hour .. now + 32 days
WATCH_WINDOW = 3 * 86400.0                     # seconds an extend message is looked at as possibly pending


class ExpiryError(ValueError):
    """A request the manager refuses, saying why (the RPC answers it as invalid params)."""


@dataclass(frozen=True)
class ExtendRequest:
    """Damocles' extend flags, in epochs and attoFIL."""
    numbers: tuple[int, ...] = ()        # given sectors (args / --sector-file); empty: the window
    exclude: tuple[int, ...] = ()
    from_epoch: int | None = None
    to_epoch: int | None = None
    extension: int = DEFAULT_EXTENSION
    new_expiration: int | None = None
    only_cc: bool = False
    tolerance: int = DEFAULT_TOLERANCE
    max_fee: int = 0
    max_sectors: int = 0
    really_do_it: bool = False


def ranges(numbers) -> str:
    """Damocles' ArrayToString: {1,3,4,5,8,9} -> "1,3-5,8-9"."""
    out, run = [], []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [n]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


class Expiry:
    def __init__(self, config, state, chain, committer, now=time.time):
        self.config, self.state, self.chain, self.committer, self._now = config, state, chain, committer, now
        self._lock = threading.Lock()
        self._page: dict[tuple, tuple[int, dict]] = {}   # (miner, days, first) -> (head, summary): once per head

    @property
    def policy(self):
        return getattr(self.chain, "policy", self.config.chain)

    def _miner(self, miner: int) -> None:
        if self.config.miner(miner) is None:
            known = ", ".join(str(m.actor) for m in self.config.miners) or "none"
            raise ExpiryError(f"miner {miner} is not one of this manager's miners ({known})")

    def _limits(self, s: SectorOnChain, head: int) -> tuple[int | None, int]:
        """(MaxExpiration, MaxExtendNow) of a sector at `head`."""
        lifetime = seal_proof_max_lifetime(s.seal_proof)
        max_expiration = None if lifetime is None else s.activation + lifetime
        extend_now = head + self.policy.max_sector_expiration_extension
        return max_expiration, extend_now if max_expiration is None else min(extend_now, max_expiration)

    # ------------------------------------------------------------------------ check-expire

    def check_expire(self, miner: int, cutoff: int = DEFAULT_CUTOFF) -> dict:
        self._miner(miner)
        with self.chain.pinned_head():
            head = self.chain.head()
            active = self.chain.active_sectors(miner)
        rows = []
        for s in sorted((s for s in active if s.expiration - head <= cutoff), key=lambda s: (s.expiration, s.number)):
            max_expiration, extend_now = self._limits(s, head)
            rows.append({"ID": s.number, "SealProof": s.seal_proof, "InitialPledge": None, "Activation": s.activation,
                         "Expiration": s.expiration, "MaxExpiration": max_expiration, "MaxExtendNow": extend_now})
        return {"Miner": miner, "Head": head, "Cutoff": cutoff, "BlockDelaySecs": self.policy.block_time, "Sectors": rows}

    def expiring_by_deadline(self, miner: int, days: int = 30, first: int = 5) -> dict:
        """The status page: sectors expiring within `days`, by deadline (counts and the first
        sector numbers), from check-expire; read once per chain head."""
        head, key = self.chain.head(), (miner, days, first)
        with self._lock:
            cached = self._page.get(key)
            if cached and cached[0] == head:
                return cached[1]
        listing = self.check_expire(miner, days * EPOCHS_PER_DAY)
        by_deadline: dict[int, list[int]] = {}
        deadline_of = self._deadline_of(miner, {row["ID"] for row in listing["Sectors"]}) if listing["Sectors"] else {}
        for row in listing["Sectors"]:
            by_deadline.setdefault(deadline_of.get(row["ID"], -1), []).append(row["ID"])
        summary = {"Head": listing["Head"], "Days": days, "Total": len(listing["Sectors"]),
                   "Deadlines": [{"Deadline": d, "Count": len(ns), "First": sorted(ns)[:first]}
                                 for d, ns in sorted(by_deadline.items())]}
        with self._lock:
            self._page[key] = (listing["Head"], summary)
        return summary

    def _deadline_of(self, miner: int, wanted: set[int]) -> dict[int, int]:
        """The deadline of each `wanted` live sector, from the miner's partitions: one read of the
        48 deadlines (side by side through a node), not a StateSectorPartition call per expiring
        sector (a farm can have tens of thousands expiring within a month); only those wanted are
        kept (a farm's miner has 100,000 live sectors)."""
        with self.chain.pinned_head():
            every = getattr(self.chain, "all_deadline_partitions", None)
            deadlines = every(miner) if every else [self.chain.deadline_partitions(miner, i)
                                                    for i in range(self.policy.wpost_period_deadlines)]
        return {n: index for index, parts in enumerate(deadlines) for p in parts for n in p.sectors if n in wanted}

    # ----------------------------------------------------------------------------- expired

    def _ended(self, miner: int, number: int, expired_epoch: int | None) -> bool:
        """The chain says the sector was activated and is no longer live (expired or terminated);
        with `expired_epoch`, its expiration is also at or before that epoch."""
        if self.chain.sector_location(miner, number) is None or self.chain.sector_expiration(miner, number) is not None:
            return False
        if expired_epoch is None:
            return True
        s = self.chain.sector(miner, number)
        return s is not None and s.expiration <= expired_epoch

    def expired(self, miner: int, show_removed: bool = False, expired_epoch: int | None = None) -> dict:
        self._miner(miner)
        with self.chain.pinned_head():
            head = self.chain.head()
            if expired_epoch is not None and expired_epoch > head:
                raise ExpiryError(f"--expired-epoch {expired_epoch} is after the chain head {head}")
            active = {s.number for s in self.chain.active_sectors(miner)}     # one read: most sectors are live
            rows = []
            for rec in self.state.sectors(miner):
                if rec.get("removed") and not show_removed:
                    continue
                if not rec.get("persisted") and not rec.get("upgraded") and not rec.get("removed"):
                    continue       # no files in a persist store (an imported upgraded sector may have update/ only)
                if rec["number"] not in active and self._ended(miner, rec["number"], expired_epoch):
                    rows.append({"ID": rec["number"], "Removed": bool(rec.get("removed")),
                                 "Removing": bool(rec.get("removal")) and not rec.get("removed")})
        return {"Miner": miner, "Head": head, "ExpiredEpoch": expired_epoch, "Sectors": rows}

    def remove_expired(self, miner: int, expired_epoch: int | None, confirm_count: int) -> dict:
        """Remove the files of the listed (ended, not removed) sectors; `confirm_count` must be
        their number (Damocles' --confirm-remove-count), so that the operator removes what was shown."""
        listing = self.expired(miner, False, expired_epoch)
        todo = [r["ID"] for r in listing["Sectors"] if not r["Removed"]]
        if len(todo) != confirm_count:
            raise ExpiryError(f"value of confirm-remove-count ({confirm_count}) doesn't match the number of sectors "
                              f"which can be removed ({len(todo)})")
        done, failed = [], []
        for n in todo:
            try:
                done.append({"ID": n, "Files": self.remove_files(miner, n)})
            except (OSError, ExpiryError) as exc:
                failed.append({"ID": n, "Error": str(exc)})
        return {**listing, "Removed": done, "Failed": failed}

    def remove_files(self, miner: int, number: int) -> list[str]:
        """Remove an ended sector's files from its persist stores, as `remove` does
        (sector_removal.remove_sector_files: checked against the chain, journalled, then the
        files, then `removed`; a journalled removal is finished). Returns the paths removed."""
        rec = self.state.sector(miner, number)
        if rec is None or (not rec.get("removal") and not self._ended(miner, number, None)):
            raise ExpiryError(f"sector {sector_name(miner, number)} is live on chain (or was never activated): "
                              f"its files stay")
        try:
            return remove_sector_files(self.config, self.state, self.chain, miner, number, self._now)["Removed"]
        except RemovalRefused as exc:
            raise ExpiryError(str(exc)) from None

    # ------------------------------------------------------------------------------ extend

    def _pending(self, miner: int) -> set[int]:
        """Sectors of recent extend messages not yet executed (unsent, or no receipt yet)."""
        cutoff = self._now() - WATCH_WINDOW
        rows = self.state.query("SELECT params, message FROM outbox WHERE miner = ? AND kind = 'extend' AND created > ?",
                                (miner, cutoff))
        out: set[int] = set()
        for params, message in rows:
            if message is not None:
                try:
                    if self.chain.receipt(message) is not None:
                        continue
                except MessageNotFound:
                    pass            # dropped: the committer sends it again at its nonce
            for d in json.loads(params)["Extensions"]:
                out.update(numbers_from_json(d["Sectors"]))
        return out

    def _select(self, miner: int, req: ExtendRequest, head: int, active: dict[int, SectorOnChain]) -> list[SectorOnChain]:
        if req.numbers:
            missing = [n for n in req.numbers if n not in active]
            if missing:
                raise ExpiryError(f"sector {missing[0]} is not active" if len(missing) == 1
                                  else f"sectors {ranges(missing)} are not active")
            chosen = [active[n] for n in req.numbers]
        else:
            lo = head + DEFAULT_FROM if req.from_epoch is None else req.from_epoch
            hi = head + DEFAULT_TO if req.to_epoch is None else req.to_epoch
            chosen = [s for s in active.values() if lo <= s.expiration <= hi]
        late = [s.number for s in chosen if s.expiration < head and s.number not in req.exclude]
        if req.numbers and late:       # the actor's refusal, said before a message is spent on it
            s = active[late[0]]
            raise ExpiryError(f"cannot extend expiration for expired sector {s.number} at {s.expiration}: its expiration "
                              f"has passed (head {head}); it leaves the chain at its deadline's end")
        skip = set(req.exclude) | set(late)
        return [s for s in chosen if s.number not in skip and not (req.only_cc and s.deal_ids)]

    def _new_expiration(self, s: SectorOnChain, req: ExtendRequest, head: int) -> int | None:
        new = s.expiration + req.extension if req.new_expiration is None else req.new_expiration
        new = min(new, self._limits(s, head)[1])
        if new <= s.expiration or abs(new - s.expiration) <= req.tolerance:
            return None
        return new

    def plan_extend(self, miner: int, req: ExtendRequest) -> dict:
        """The ExtendSectorExpiration2 params to send, as few as the actor allows."""
        self._miner(miner)
        limit = ADDRESSED_SECTORS_MAX
        if req.max_sectors:
            if req.max_sectors > ADDRESSED_SECTORS_MAX:
                raise ExpiryError(f"the specified max-sectors ({req.max_sectors}) exceeds the maximum limit "
                                  f"({ADDRESSED_SECTORS_MAX})")
            limit = req.max_sectors
        with self.chain.pinned_head():
            head = self.chain.head()
            active = {s.number: s for s in self.chain.active_sectors(miner)}
            chosen = self._select(miner, req, head, active)
            pending = self._pending(miner) & {s.number for s in chosen}
            groups: dict[tuple[int, int], dict[int, list[int]]] = {}
            skipped = []
            for s in sorted(chosen, key=lambda s: s.number):
                if s.number in pending:
                    continue
                new = self._new_expiration(s, req, head)
                if new is None:
                    skipped.append(s.number)
                    continue
                loc = self.chain.sector_location(miner, s.number)
                if loc is None:
                    raise ExpiryError(f"location for sector {s.number} not found")
                by_exp = groups.setdefault((loc.deadline, loc.partition), {})
                near = next((e for e in by_exp if abs(new - e) <= req.tolerance), new)
                by_exp.setdefault(near, []).append(s.number)
        messages, current, count = [], [], 0
        for (deadline, partition), by_exp in sorted(groups.items()):
            for new, numbers in sorted(by_exp.items()):
                for i in range(0, len(numbers), limit):     # a declaration larger than a message is split
                    part = numbers[i:i + limit]
                    if current and (count + len(part) > limit or len(current) >= DECLARATIONS_MAX):
                        messages.append(current)
                        current, count = [], 0
                    current.append({"Deadline": deadline, "Partition": partition, "Sectors": part, "NewExpiration": new})
                    count += len(part)
        if current:
            messages.append(current)
        return {"Miner": miner, "Head": head, "Messages": messages, "Pending": sorted(pending), "Skipped": skipped}

    def extend(self, miner: int, req: ExtendRequest) -> dict:
        """Plan, then (really_do_it) send each message through the outbox. Dry run: nothing sent."""
        plan = self.plan_extend(miner, req)
        out = []
        for decls in plan["Messages"]:
            shown = [{**d, "Sectors": ranges(d["Sectors"])} for d in decls]
            entry = {"Extensions": shown, "SectorCount": sum(len(d["Sectors"]) for d in decls), "Message": None}
            if req.really_do_it:
                params = {"Extensions": [{"Deadline": d["Deadline"], "Partition": d["Partition"],
                                          "Sectors": json_from_numbers(d["Sectors"]), "SectorsWithClaims": [],
                                          "NewExpiration": d["NewExpiration"]} for d in decls]}
                try:
                    entry["Message"] = self.committer.send(miner, "extend", "ExtendSectorExpiration2", params, [],
                                                           max_fee=req.max_fee)
                except FundsWait as exc:          # refused before the journal: nothing will be sent
                    entry["Error"] = str(exc)
                except ChainError as exc:         # journalled: the commitment pass pushes it again
                    entry["Error"] = f"journalled, not yet accepted by the chain (sent again by the manager): {exc}"
                    log.warning("miner %s: extend of sectors %s not sent: %s", miner, entry["Extensions"], exc)
            out.append(entry)
        return {"Miner": plan["Miner"], "Head": plan["Head"], "DryRun": not req.really_do_it, "Messages": out,
                "Pending": plan["Pending"], "Skipped": plan["Skipped"],
                "Total": sum(m["SectorCount"] for m in out)}
