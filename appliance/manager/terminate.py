"""Terminating sectors on chain, batched as Damocles' terminate processor does
(damocles-manager/modules/impl/commitmgr/terminate_processor.go and commitmgr.go SubmitTerminate /
TerminateState, commit 4235a895): `Venus.TerminateSector` queues a live sector; a batch goes out
when `[Miners.Commitment.Terminate.Batch]` Threshold sectors wait or the oldest has waited MaxWait,
checked every CheckInterval; one TerminateSectors message names the sectors by deadline and
partition (StateSectorPartition), at most DeclarationsMax declarations and AddressedSectorsMax
sectors. A sector whose deadline is the current one, the next or the previous (Damocles' rule: the
actor refuses immutable deadlines, and the message may take a while to land) waits.

The sector's record keeps its termination as `terminate`: {queued_at, msg, nonce, added_height,
terminated_at, error}. The message goes through the Committer's outbox (kind "terminate"), which
journals it with its nonce before the push and ties the sectors to it (`terminate_nonce`,
`terminate_msg`): a crash sends nothing twice, a pooled message is replaced, one a reorg dropped
is sent again. Those two keys are the authority for msg and nonce; `termination()` reads them.

A message that lands is followed until `Confidence` epochs past it; then `terminated_at` is its
epoch. One that fails: its sectors are queued again when the failure says to try again (funds,
gas, an immutable deadline) and the chain still has them live, up to 8 times; otherwise the
termination fails with the actor's error, and `terminate` may be asked again."""

from __future__ import annotations

import json
import logging
import threading
import time

from ..chain.bitfield import json_from_numbers
from ..chain.lifecycle_actor import ADDRESSED_SECTORS_MAX, DECLARATIONS_MAX
from ..chain.types import ChainError, MessageNotFound
from ..core.crash import crash_point
from ..core.protocol import SubmitResult
from ..core.sector import sector_name
from .commitment import MAX_GAS_RESENDS, RESEND_CODES, Committer, FundsWait

log = logging.getLogger("damocles.manager.terminate")
IMMUTABLE = "immutable deadline"       # the actor's words (lifecycle_actor.terminate_sectors, builtin-actors)


class TerminateRefused(ValueError):
    """The sector cannot be terminated: the reason names it."""


def termination(rec: dict) -> dict | None:
    """The sector's `terminate` with msg and nonce as the outbox has them (None: never asked)."""
    t = rec.get("terminate")
    if t is None:
        return None
    return {**t, "msg": rec.get("terminate_msg", t.get("msg")), "nonce": rec.get("terminate_nonce", t.get("nonce"))}


def terminate_info(rec: dict | None) -> dict:
    """Damocles' core.TerminateInfo (types.go): TerminateCid *cid.Cid, TerminatedAt, AddedHeight."""
    t = termination(rec) if rec else None
    if t is None:
        return {"TerminateCid": None, "TerminatedAt": 0, "AddedHeight": 0}
    return {"TerminateCid": {"/": t["msg"]} if t.get("msg") else None, "TerminatedAt": t.get("terminated_at") or 0,
            "AddedHeight": t.get("added_height") or 0}


def in_flight(t: dict | None) -> bool:
    """Asked for, not landed, not failed."""
    return t is not None and not t.get("terminated_at") and not t.get("error")


def termination_row(miner: int, number: int, rec: dict) -> dict:
    """The status page's line of a termination: State queued | sent | landed | failed."""
    t = termination(rec) or {}
    state = ("failed" if t.get("error") else "landed" if t.get("terminated_at") else "sent" if t.get("msg")
             else "queued")
    return {"Sector": sector_name(miner, number), "State": state, "QueuedAt": t.get("queued_at"),
            "AddedHeight": t.get("added_height"), "Message": t.get("msg"), "TerminatedAt": t.get("terminated_at"),
            "Error": t.get("error"), "LastFailure": t.get("last_failure"), "Removed": bool(rec.get("removed"))}


class Terminator:
    def __init__(self, config, state, chain, committer: Committer, now=time.time):
        self.config, self.state, self.chain, self.committer, self._now = config, state, chain, committer, now
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- RPC

    def submit(self, sid: dict) -> dict:
        """Venus.TerminateSector -> SubmitTerminateResp {Res, Desc}."""
        miner, number = sid["Miner"], sid["Number"]
        name = sector_name(miner, number)
        if self.config.miner(miner) is None:
            return _resp(SubmitResult.REJECTED, f"miner {miner} is not one of this manager's miners")
        self.check_live(miner, number)
        with self._lock:
            rec = self.state.sector(miner, number)
            if rec is not None and in_flight(termination(rec)):
                return _resp(SubmitResult.DUPLICATE_SUBMIT, "duplicate submit")
            entry = {"queued_at": self._now(), "msg": None, "nonce": None, "added_height": self.chain.head(),
                     "terminated_at": None, "error": None}
            if rec is None:     # on chain, unknown here (Damocles' InitWith): a record for its termination
                s = self.chain.sector(miner, number)
                self.state.recover_sector(miner, number, s.seal_proof,
                                          {"state": "Finished", "finalized": True, "terminate": entry}, [])
            else:               # a failed termination asked again: the old message's ties go
                self.state.update(miner, number, terminate=entry, terminate_nonce=None, terminate_msg=None)
        log.info("sector %s: termination queued at epoch %s", name, entry["added_height"])
        return _resp(SubmitResult.ACCEPTED, None)

    def check_live(self, miner: int, number: int) -> None:
        """Raises TerminateRefused unless the chain has the sector live (commitmgr.go SubmitTerminate)."""
        name = sector_name(miner, number)
        if self.chain.sector(miner, number) is None:
            if self.chain.precommit(miner, number) is not None:
                raise TerminateRefused(f"sector {name} was precommitted but not proven, remove instead of terminating")
            raise TerminateRefused(f"sector {name} is not on chain (never proven, or already gone)")
        if self.chain.sector_expiration(miner, number) is None:
            raise TerminateRefused(f"sector {name} already terminated or expired (not live on chain)")

    def poll(self, sid: dict) -> dict:
        """Venus.PollTerminateSectorState -> TerminateInfo."""
        rec = self.state.sector(sid["Miner"], sid["Number"])
        if rec is None:
            raise KeyError((sid["Miner"], sid["Number"]))
        return terminate_info(rec)

    # ---------------------------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        interval = min([m.terminate_batch.check_interval for m in self.config.miners] or [1.0])
        while not stop.wait(max(0.05, interval)):
            try:
                self.tick()
            except Exception:      # the next pass retries
                log.exception("terminate pass failed")

    def tick(self) -> list[str]:
        """Follow sent terminations, then send each miner's due batch; the messages sent."""
        sent = []
        with self._lock:
            for m in self.config.miners:
                recs = self._in_flight(m.actor)
                self._follow(m, [r for r in recs if r.get("terminate_nonce") is not None])
                waiting = [r for r in recs if r.get("terminate_nonce") is None]
                if self._due(waiting, m.terminate_batch):
                    sent += self._flush(m.actor, waiting)
        return sent

    def _in_flight(self, miner: int) -> list[dict]:
        """The miner's terminations asked for, not landed nor failed (a partial index holds just those)."""
        rows = self.state.query("SELECT number, proof, info FROM sectors WHERE terminate_pending = 1 AND miner = ? "
                                "ORDER BY number", (miner,))
        return [{**json.loads(info), "miner": miner, "number": number, "proof": proof} for number, proof, info in rows]

    def _due(self, waiting: list[dict], batch) -> bool:
        if not waiting:
            return False
        oldest = min(r["terminate"]["queued_at"] for r in waiting)
        return len(waiting) >= batch.threshold or self._now() - oldest >= batch.max_wait

    def _flush(self, miner: int, waiting: list[dict]) -> list[str]:
        current = self.chain.proving_deadline(miner)
        n_deadlines = getattr(getattr(self.chain, "policy", None), "wpost_period_deadlines", 48)
        skip = {current.index, (current.index + 1) % n_deadlines, (current.index - 1) % n_deadlines}
        by_partition: dict[tuple[int, int], list[int]] = {}
        for r in waiting:
            number = r["number"]
            if self.chain.sector_expiration(miner, number) is None:
                self._fail(miner, number, "not live on chain any more (expired or terminated otherwise): nothing to terminate")
                continue
            loc = self.chain.sector_location(miner, number)
            if loc is None:
                continue
            if loc.deadline in skip:      # waits: the actor refuses immutable deadlines
                continue
            by_partition.setdefault((loc.deadline, loc.partition), []).append(number)
        out = []
        decls, count = [], 0
        for (deadline, partition), numbers in sorted(by_partition.items()):
            numbers = sorted(numbers)
            while numbers:
                take = numbers[:ADDRESSED_SECTORS_MAX - count]
                numbers = numbers[len(take):]
                decls.append({"Deadline": deadline, "Partition": partition, "Sectors": take})
                count += len(take)
                if count >= ADDRESSED_SECTORS_MAX or len(decls) >= DECLARATIONS_MAX:
                    out += self._send(miner, decls)
                    decls, count = [], 0
        if decls:
            out += self._send(miner, decls)
        return out

    def _send(self, miner: int, decls: list[dict]) -> list[str]:
        numbers = [n for d in decls for n in d["Sectors"]]
        params = {"Terminations": [{**d, "Sectors": json_from_numbers(d["Sectors"])} for d in decls]}
        try:
            msg = self.committer.send(miner, "terminate", "TerminateSectors", params, numbers)
        except FundsWait as exc:         # nothing journalled: they wait in the queue
            log.warning("f0%s: termination of sectors %s waits: %s", miner, numbers, exc)
            return []
        except ChainError as exc:         # journalled; the committer's pass pushes it again
            log.warning("f0%s: TerminateSectors for sectors %s journalled, push failed (sent again): %s", miner, numbers, exc)
            return []
        crash_point("lifecycle.terminate.after_send")
        for n in numbers:
            rec = self.state.sector(miner, n)
            self.state.update(miner, n, terminate={**rec["terminate"], "msg": msg, "nonce": rec.get("terminate_nonce")})
        log.info("f0%s: TerminateSectors %s sent for sectors %s", miner, msg, numbers)
        return [msg]

    def _follow(self, m, recs: list[dict]) -> None:
        for r in recs:
            msg = r.get("terminate_msg")
            t = r["terminate"]
            if msg is None:          # journalled, not pushed yet: the committer's pass pushes it
                continue
            if t.get("msg") != msg:  # replaced (fee bump) or pushed after a crash: the record follows the outbox
                self.state.update(m.actor, r["number"], terminate={**t, "msg": msg, "nonce": r.get("terminate_nonce")})
            try:
                receipt = self.chain.receipt(msg)
            except (MessageNotFound, ChainError):     # dropped by a reorg: the committer sends it again
                continue
            if receipt is None:
                continue
            if receipt.ok:
                if self.chain.head() - receipt.epoch >= m.confidence:
                    self._landed(m.actor, r["number"], msg, receipt.epoch)
                continue
            self._failed(m.actor, r, msg, receipt)

    def _landed(self, miner: int, number: int, msg: str, epoch: int) -> None:
        rec = self.state.sector(miner, number)
        self.state.update(miner, number, terminate={**rec["terminate"], "msg": msg, "terminated_at": epoch})
        log.info("sector %s: terminated on chain at epoch %s by %s", sector_name(miner, number), epoch, msg)

    def _failed(self, miner: int, rec: dict, msg: str, receipt) -> None:
        number, why = rec["number"], f"{msg} exit code {receipt.exit_code}: {receipt.error}"
        again = receipt.exit_code in RESEND_CODES or IMMUTABLE in (receipt.error or "")
        tries = rec["terminate"].get("resends", 0)
        live = self.chain.sector_expiration(miner, number) is not None
        if again and live and tries < MAX_GAS_RESENDS:
            self.state.update(miner, number, terminate_nonce=None, terminate_msg=None,
                              terminate={**rec["terminate"], "msg": None, "nonce": None, "last_failure": why,
                                         "resends": tries + 1})
            log.warning("sector %s: TerminateSectors %s failed (%s): queued again", sector_name(miner, number), msg, why)
            return
        self._fail(miner, number, why)

    def _fail(self, miner: int, number: int, why: str) -> None:
        rec = self.state.sector(miner, number)
        self.state.update(miner, number, terminate={**termination(rec), "error": why})
        log.warning("sector %s: termination failed: %s", sector_name(miner, number), why)


def _resp(res: SubmitResult, desc: str | None) -> dict:
    """Damocles' SubmitTerminateResp (types.go): Res SubmitResult, Desc *string."""
    return {"Res": int(res), "Desc": desc}
