"""The SealerAPI the sealer plan needs, with Damocles' semantics and result codes
(Damocles' manager `core/api.go`). Answers are in Damocles' wire shapes."""

from __future__ import annotations

import base64
import logging
import math
import random
import shutil
import time

from ..chain.external_proofs import precheck
from ..chain.interface import Chain
from ..chain.miner_actor import DEALS_DISALLOWED
from ..chain.types import ChainError, MessageNotFound
from ..core.crash import crash_point
from ..core.protocol import OnChainState, SubmitResult
from ..core.proof_types import seal_proof
from ..core.sector import SectorID, sector_name
from ..core.units import format_duration
from ..proofs import ProofError
from ..proofs.c2 import verify_seal
from ..proofs.commitment import comm_d_from_pieces
from ..rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, UNAUTHORIZED, RPCError
from .commitment import is_whole_proof_refusal, precommitted_deals_refusal, refused_in_proof_message, will_resend
from .config import ManagerConfig, PersistStore, resolve_seal_proofs
from .identity import NAME_LENGTH, TooManyNames, bound, check_sector, check_worker_name, names_refused
from .market import Market
from .pieces import sector_pieces
from .state import ManagerState
from .task_owner import check_holder

ACCEPTED, DUPLICATE_SUBMIT, MISMATCHED_SUBMISSION, REJECTED, FILES_MISSED = SubmitResult
PENDING, PACKED, LANDED, NOT_FOUND, FAILED, PERM_FAILED, SHOULD_ABORT = OnChainState
EPOCHS_PER_DAY = 2880
STORE_WAIT_LOG_EVERY = 60.0
LIMIT_LOG_EVERY = 60.0
SUMMARY_KEYS = ("Threads", "Empty", "Paused", "Running", "Waiting", "Errors")
log = logging.getLogger("damocles.manager.sectors")


def _submit(res: int, desc: str | None = None) -> dict:
    return {"Res": res, "Desc": desc}


def _poll(state: int, desc: str | None = None) -> dict:
    return {"State": state, "Desc": desc}


def _human(n: int) -> str:
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


class Sealer:
    def __init__(self, config: ManagerConfig, state: ManagerState, chain: Chain, now=time.time,
                 rng: random.Random | None = None):
        self.config, self.state, self.chain, self._now = config, state, chain, now
        resolve_seal_proofs(config, chain)      # a miner without SealProof takes the chain's
        self._rng = rng or random.Random()      # which eligible miner gets the next sector (tests seed it)
        self.market = Market(config, state, chain, now)
        # observer(prev, next, seconds in prev or None, failure level or None): each ReportState (metrics)
        self.observer = None
        self._store_wait_logged: dict[tuple[int, int], float] = {}
        self.limits = state.limits          # shared with the task modules, which cut their error texts with it
        self.limits.text_length = config.max_text_length
        self.limits.max_worker_names = config.max_worker_names
        self._limit_logged: dict[str, float] = {}      # identity -> when its in-flight limit was last logged
        # kind ("snap-up", "rebuild", "unseal") -> fn(sid, finished, reason, caller): what a task's
        # ReportFinalized (finished) or ReportAborted (not) does; set by the task's module

    # ----------------------------------------------------------------- helpers

    def _sector(self, sid: dict) -> dict:
        rec = self.state.sector(sid["Miner"], sid["Number"])
        if rec is None:
            raise RPCError(SECTOR_NOT_FOUND, f"sector {sid['Miner']}-{sid['Number']} not found")
        return rec

    def _owned(self, sid: dict, caller, rebuild: bool = False) -> dict:
        """The sector's record, when the caller may act on it (identity.check_sector); `rebuild`:
        the worker a rebuild task of the sector is allocated to may too."""
        rec = self._sector(sid)
        rebuilder = None
        if rebuild and bound(caller):
            row = self.state.one("SELECT worker FROM rebuild_tasks WHERE miner = ? AND number = ? AND state = 'allocated'",
                                 (sid["Miner"], sid["Number"]))
            rebuilder = row[0] if row else None
        check_sector(self.state, self.limits, rec, caller, rebuilder)
        return rec

    def _rebuilding(self, sid: dict) -> bool:
        return self.state.one("SELECT 1 FROM rebuild_tasks WHERE miner = ? AND number = ? AND state = 'allocated'",
                              (sid["Miner"], sid["Number"])) is not None

    # ------------------------------------------------------------- allocation

    def allocate_sector(self, spec: dict, caller=None) -> dict | None:
        """A new sector for the caller, or None (Damocles: nothing now, ask again later) when no
        miner matches or the caller's credential already holds `max_in_flight_per_worker` sectors.
        As Damocles' sectors.Manager.Allocate: a miner picked at random among the eligible ones,
        and one whose MaxNumber is reached is dropped from the draw; its number is
        max(last, MinNumber or else InitNumber) + 1 (the state's smallest number: the floor + 1)."""
        allowed_miners = spec.get("AllowedMiners")
        allowed_proofs = spec.get("AllowedProofTypes")
        if any(m.seal_proof is None for m in self.config.miners):     # a config given since __init__
            resolve_seal_proofs(self.config, self.chain)
        candidates = [m for m in self.config.miners if m.enabled and not (allowed_miners and m.actor not in allowed_miners)
                      and not (allowed_proofs and m.seal_proof not in allowed_proofs)]
        while candidates:
            m = candidates.pop(self._rng.randrange(len(candidates)))
            if bound(caller):
                limit = self.config.max_in_flight_per_worker
                number, held = self.state.allocate_owned(m.actor, m.seal_proof, m.min_number + 1, m.max_number,
                                                         caller.identity, limit)
                if number is None and held >= limit:
                    self._refuse_allocation(caller.identity, held)
                    return None
            else:
                number = self.state.allocate(m.actor, m.seal_proof, m.min_number + 1, m.max_number)
            crash_point("manager.allocate.after_commit")
            if number is not None:
                return {"ID": {"Miner": m.actor, "Number": number}, "ProofType": m.seal_proof}
        return None

    def _refuse_allocation(self, identity: str, held: int) -> None:
        self.limits.count("in_flight")
        now, last = self._now(), self._limit_logged.get(identity)
        if last is None or now - last >= LIMIT_LOG_EVERY:
            self._limit_logged[identity] = now
            log.warning("allocation refused: %s already holds %d sectors in flight ([Sealing] MaxInFlightPerWorker)",
                        identity, held)

    def acquire_deals(self, sid: dict, spec: dict, caller=None) -> list[dict] | None:
        """The sector's deals (None: a CC sector), packed from the pending ones on first call. An
        aborted sector (its deals returned, DealHoldTimeout, among other reasons) gets an error
        saying why: not None, which a worker would seal as CC."""
        rec = self._owned(sid, caller)
        if rec.get("abort_reason"):
            raise RPCError(INVALID_PARAMS, f"sector {sector_name(sid['Miner'], sid['Number'])} was aborted and takes no "
                           f"deals: {rec['abort_reason']}")
        size = seal_proof(rec["proof"]).size.bytes
        return sector_pieces(self.market.acquire(sid["Miner"], sid["Number"], size, spec.get("MaxDeals"),
                                                 spec.get("MinUsedSpace")), size)

    def assign_ticket(self, sid: dict, caller=None) -> dict:
        rec = self._owned(sid, caller)
        if "ticket" not in rec:
            epoch = max(0, self.chain.head() - self.config.seal_randomness_lookback)
            ticket = self.chain.seal_randomness(sid["Miner"], epoch)
            rec = self.state.update(sid["Miner"], sid["Number"], ticket={"Ticket": base64.b64encode(ticket).decode(), "Epoch": epoch})
        return rec["ticket"]

    # -------------------------------------------------------------- precommit

    def submit_pre_commit(self, sector: dict, info: dict, reset: bool, caller=None) -> dict:
        sid = sector["ID"]
        rec = self._owned(sid, caller)
        if rec.get("abort_reason"):
            return _submit(REJECTED, f"sector aborted: {rec['abort_reason']}")
        if rec.get("finalized"):
            return _submit(REJECTED, "sector finished sealing")
        if sector["ProofType"] != rec["proof"]:
            return _submit(REJECTED, f"proof type {sector['ProofType']} is not the allocated {rec['proof']}")
        if "ticket" not in rec or info["Ticket"] != rec["ticket"]:
            return _submit(REJECTED, "ticket is not the one assigned to this sector")
        pieces = self.market.pieces(sid["Miner"], sid["Number"])
        if info["CommD"] != comm_d_from_pieces(pieces, seal_proof(rec["proof"]).size.bytes):
            return _submit(MISMATCHED_SUBMISSION, "CommD does not match the sector's pieces" +
                           ("" if pieces else " (a CC sector is all zeros)"))
        pre = {"CommR": info["CommR"].hex(), "CommD": info["CommD"].hex()}
        if "pre" in rec:
            if rec["pre"] == pre:
                return _submit(DUPLICATE_SUBMIT if "pre_nonce" in rec else ACCEPTED)
            if not reset or "pre_nonce" in rec:
                return _submit(MISMATCHED_SUBMISSION, "a different PreCommit was already submitted")
        if self.state.update_open(sid["Miner"], sid["Number"], pre=pre, pre_queued_at=self._now(), state="PCSubmitted") is None:
            return _submit(REJECTED, f"sector aborted: {self._sector(sid).get('abort_reason')}")    # meanwhile (deal hold)
        crash_point("manager.precommit.after_record")
        return _submit(ACCEPTED)

    def _message_state(self, rec: dict, key: str, landed) -> dict:
        msg = rec.get(key)
        if msg is None:     # waiting for its batch, or for funds (commitment.py)
            return _poll(PENDING, rec.get("funds_wait") or "queued for the next batch")
        try:
            receipt = self.chain.receipt(msg)
        except MessageNotFound:        # a reorg dropped it: the outbox sends it again at its nonce
            return _poll(PENDING, f"message {msg} is gone from the chain (reorg): the manager sends it again")
        if receipt is None:            # not yet, or again: a reorg took its receipt back
            return _poll(PENDING, f"message {msg} not executed yet")
        kind = key.removesuffix("_msg")
        refused = (refused_in_proof_message(self.chain, self.state, rec["miner"], msg)
                   if not receipt.ok and is_whole_proof_refusal(kind, receipt) else {})
        if rec["number"] in refused:          # the committer marks it too; the first to see it says so
            return _poll(SHOULD_ABORT, f"message {msg} failed with exit code {receipt.exit_code}: {refused[rec['number']]}")
        if not receipt.ok and will_resend(rec, kind, receipt, refused):
            return _poll(PENDING, f"message {msg} failed with exit code {receipt.exit_code} ({receipt.error}): "
                                  f"the manager sends it again")
        if not receipt.ok:
            if receipt.error and ("already allocated" in receipt.error
                                  or f"sector {rec['number']}: {DEALS_DISALLOWED}" in receipt.error):
                return _poll(SHOULD_ABORT, receipt.error)
            return _poll(PERM_FAILED, f"message {msg} failed with exit code {receipt.exit_code}: {receipt.error}")
        miner_cfg = self.config.miner(rec["miner"])
        confidence = miner_cfg.confidence if miner_cfg else 10
        if self.chain.head() - receipt.epoch < confidence:
            return _poll(PACKED, f"landed at {receipt.epoch}, waiting for {confidence} epochs of confidence")
        if not landed():
            return _poll(SHOULD_ABORT, f"message {msg} landed but the chain holds no such sector state")
        return _poll(LANDED)

    def poll_pre_commit_state(self, sid: dict) -> dict:
        rec = self._sector(sid)
        if "pre" not in rec:
            return _poll(NOT_FOUND, "no PreCommit submitted")
        m, n = sid["Miner"], sid["Number"]
        return self._message_state(rec, "pre_msg", lambda: self.chain.precommit(m, n) or self.chain.sector(m, n))

    # ---------------------------------------------------------------------- seed

    def _precommit_expired_at(self, rec: dict, pc, policy, head: int) -> int | None:
        """The epoch the sector's PreCommit expired at (its ProveCommit deadline passed, or the
        chain already cleaned it up), or None while it can still be proven."""
        if pc is not None:
            deadline = policy.prove_commit_deadline(pc.precommit_epoch)
            return deadline if head > deadline else None
        if not rec.get("pre_msg") or self.chain.sector(rec["miner"], rec["number"]) is not None:
            return None
        receipt = self._receipt(rec["pre_msg"])
        if receipt is None or not receipt.ok:
            return None
        return policy.prove_commit_deadline(receipt.epoch)      # landed, then removed by the chain's cron

    def _receipt(self, msg: str):
        """The message's receipt; None while it is pending, or gone in a reorg (the outbox resends it)."""
        try:
            return self.chain.receipt(msg)
        except MessageNotFound:
            return None

    def wait_seed(self, sid: dict, proof_type: int) -> dict:
        rec = self._sector(sid)
        if rec.get("abort_reason"):        # the worker learns the reason from its failure report
            return {"ShouldWait": False, "Delay": 0, "Seed": None}
        pc = self.chain.precommit(sid["Miner"], sid["Number"])
        policy = self.chain.policy if hasattr(self.chain, "policy") else self.config.chain
        head = self.chain.head()
        expired_at = self._precommit_expired_at(rec, pc, policy, head)
        if expired_at is not None:
            self.report_aborted(sid, f"PreCommit expired at epoch {expired_at}")
            return {"ShouldWait": False, "Delay": 0, "Seed": None}
        if pc is not None and pc.deal_ids:      # an older manager's PreCommit: never proven (commitment.py)
            self.report_aborted(sid, precommitted_deals_refusal(list(pc.deal_ids)))
            return {"ShouldWait": False, "Delay": 0, "Seed": None}
        if pc is None:
            if rec.get("pre_msg") and self._receipt(rec["pre_msg"]) is None and \
                    self.chain.sector(sid["Miner"], sid["Number"]) is None:
                # its PreCommit is in the pool again (a reorg took it back): the seed waits for it
                return {"ShouldWait": True, "Delay": max(1, math.ceil(policy.block_time)) if policy.block_time else 1,
                        "Seed": None}
            return {"ShouldWait": False, "Delay": 0, "Seed": None}
        seed_epoch = policy.seed_epoch(pc.precommit_epoch)
        ready_at = seed_epoch + self.config.interactive_porep_confidence
        if head < ready_at:
            delay = max(1, math.ceil((ready_at - head) * policy.block_time)) if policy.block_time else 1
            return {"ShouldWait": True, "Delay": delay, "Seed": None}
        seed = {"Seed": base64.b64encode(self.chain.interactive_seed(sid["Miner"], seed_epoch)).decode(), "Epoch": seed_epoch}
        if rec.get("seed") != seed:
            self.state.update(sid["Miner"], sid["Number"], seed=seed, state="SeedAssigned")
        return {"ShouldWait": False, "Delay": 0, "Seed": seed}

    # --------------------------------------------------------------------- proof

    def submit_proof(self, sid: dict, info: dict, reset: bool, caller=None) -> dict:
        rec = self._owned(sid, caller)
        if rec.get("abort_reason"):
            return _submit(REJECTED, f"sector aborted: {rec['abort_reason']}")
        if rec.get("finalized"):
            return _submit(REJECTED, "sector finished sealing")
        if "seed" not in rec or "pre" not in rec:
            return _submit(REJECTED, "no seed assigned yet (call WaitSeed after the PreCommit landed)")
        if not rec.get("persisted") or not self._files_present(rec["persisted"], sid["Miner"], sid["Number"]):
            return _submit(FILES_MISSED, "the sealed files are not in the persist store")
        if self._seed_reorged(sid, rec):
            return _submit(REJECTED, f"the seed of epoch {rec['seed']['Epoch']} changed in a chain reorg: the proof must "
                                     f"be made again from the new seed (WaitSeed)")
        proof = info["Proof"]
        b64 = base64.b64encode(proof).decode()
        if "commit_proof" in rec:
            if rec["commit_proof"] == b64:
                return _submit(DUPLICATE_SUBMIT if "proof_nonce" in rec else ACCEPTED)
            if not reset or "proof_nonce" in rec:
                return _submit(MISMATCHED_SUBMISSION, "a different proof was already submitted")
        sp = seal_proof(rec["proof"])
        try:   # check before paying for a message, as Lotus does (a Groth16 proof: the chain decides)
            external, check = precheck(self.chain, "seal", proof, f"sector {sid['Number']}", sp.size.porep_partitions)
        except ProofError as exc:
            return _submit(REJECTED, str(exc))
        try:
            if not external:
                verify_seal(sp, SectorID(sid["Miner"], sid["Number"]), bytes.fromhex(rec["pre"]["CommD"]),
                            bytes.fromhex(rec["pre"]["CommR"]), base64.b64decode(rec["ticket"]["Ticket"]),
                            base64.b64decode(rec["seed"]["Seed"]), proof)
        except ProofError as exc:
            return _submit(REJECTED, f"proof does not verify: {exc}")
        self.state.update(sid["Miner"], sid["Number"], commit_proof=b64, proof_queued_at=self._now(), state="ProofSubmitted",
                          proof_check=check)
        crash_point("manager.proof.after_record")
        return _submit(ACCEPTED)

    def _seed_reorged(self, sid: dict, rec: dict) -> bool:
        """Whether a reorg re-made the seed's epoch since the seed was handed out: the chain would
        check the proof against the new seed, so the new one is recorded for WaitSeed."""
        if "commit_proof" in rec:          # already accepted (a resubmission): judged as before
            return False
        now = base64.b64encode(self.chain.interactive_seed(sid["Miner"], rec["seed"]["Epoch"])).decode()
        if now == rec["seed"]["Seed"]:
            return False
        self.state.update(sid["Miner"], sid["Number"], seed={**rec["seed"], "Seed": now}, state="SeedAssigned")
        log.warning("sector f0%s-%s: the seed of epoch %s changed in a reorg; the proof made from the old one is refused",
                    sid["Miner"], sid["Number"], rec["seed"]["Epoch"])
        return True

    def poll_proof_state(self, sid: dict) -> dict:
        rec = self._sector(sid)
        if "commit_proof" not in rec:
            return _poll(NOT_FOUND, "no proof submitted")
        if rec.get("proof_refused"):            # the committer found the chain would refuse it
            if not rec.get("abort_reason"):
                self.report_aborted(sid, rec["proof_refused"])
            return _poll(SHOULD_ABORT, rec["proof_refused"])
        return self._message_state(rec, "proof_msg", lambda: self.chain.sector(sid["Miner"], sid["Number"]) is not None)

    # -------------------------------------------------------------------- stores

    def _store(self, name: str) -> PersistStore | None:
        return next((s for s in self.config.persist_stores if s.name == name), None)

    @staticmethod
    def basic_info(s: PersistStore) -> dict:
        return {"Name": s.name, "Path": str(s.path), "Strict": False, "ReadOnly": s.read_only, "Weight": s.weight, "Meta": {}}

    def store_reserve_space(self, sid: dict, size: int, candidates: list[str], caller=None) -> dict | None:
        """Reserve room for a sector's persisted files in one of the worker's candidate stores
        (weighted random among those with room; a reservation already held is kept while its store
        still has room). None (Damocles' answer) when no store has room: the reason is kept on the
        sector (`sectors list`, the status page) and logged. Candidates the manager knows none of
        (a store renamed in one config but not the other) are an error the worker shows."""
        rec = self._owned(sid, caller, rebuild=True)
        miner, number = sid["Miner"], sid["Number"]
        if candidates and not any(self._store(c) for c in candidates):
            known = ", ".join(s.name for s in self.config.persist_stores) or "none"
            why = (f"none of the worker's persist stores ({', '.join(candidates)}) is in the manager's "
                   f"[[Common.PersistStores]] (it has: {known}); a store renamed in one config but not the other?")
            self._store_wait(sid, rec, why)
            raise RPCError(INVALID_PARAMS, why)
        held = self.state.reservation(miner, number)
        options, reasons = self._stores_with_room(miner, size, candidates, held)
        if not options:
            self._store_wait(sid, rec, "no persist store has room: " + "; ".join(reasons or ["no store configured"]))
            return None
        kept = next((s for s in options if held and s.name == held[0]), None)
        chosen = kept or random.choices(options, weights=[s.weight for s in options])[0]
        if not kept:
            self.state.reserve(miner, number, chosen.name, size)
        self._store_wait_logged.pop((miner, number), None)
        if rec.get("store_wait"):
            log.info("sector %s: persist store %s reserved (was waiting: %s)", sector_name(miner, number), chosen.name, rec["store_wait"],
                     extra={"sector": sector_name(miner, number), "state": rec.get("state")})
        if rec.get("store_wait") or rec.get("reserved_store") != chosen.name:
            self.state.update(miner, number, reserved_store=chosen.name, store_wait=None)
        return self.basic_info(chosen)

    def _stores_with_room(self, miner: int, size: int, candidates: list[str], held) -> tuple[list[PersistStore], list[str]]:
        """The candidate stores that can take `size` bytes, and why each other candidate cannot."""
        options = []
        reasons = [f"{c} is not one of the manager's persist stores" for c in candidates if self._store(c) is None]
        for s in self.config.persist_stores:
            if candidates and s.name not in candidates:
                continue
            if s.read_only:
                reasons.append(f"{s.name} is read-only")
                continue
            if miner in s.deny_miners or (s.allow_miners and miner not in s.allow_miners):
                reasons.append(f"{s.name} does not take miner {miner}")
                continue
            try:
                free = shutil.disk_usage(s.path).free
            except OSError as exc:
                reasons.append(f"{s.name}: cannot read {s.path} ({exc.strerror or exc})")
                continue
            others = self.state.reserved(s.name) - (held[1] if held and held[0] == s.name else 0)
            if free - others >= size:
                options.append(s)
            else:
                reasons.append(f"{s.name} has {_human(free)} free, {_human(others)} of it reserved for other sectors, "
                               f"needs {_human(size)}")
        return options, reasons

    def _store_wait(self, sid: dict, rec: dict, why: str) -> None:
        """Keep why a sector waits for a persist store on its record, and log it: at once when
        the wait starts, then at most every STORE_WAIT_LOG_EVERY seconds (workers poll often)."""
        key, now = (sid["Miner"], sid["Number"]), self._now()
        if rec.get("store_wait") != why:
            self.state.update(sid["Miner"], sid["Number"], store_wait=why)
        last = self._store_wait_logged.get(key)
        if last is None or now - last >= STORE_WAIT_LOG_EVERY:
            self._store_wait_logged[key] = now
            name = sector_name(sid["Miner"], sid["Number"])
            log.warning("sector %s: waiting for a persist store: %s", name, why, extra={"sector": name, "state": rec.get("state")})

    def store_basic_info(self, name: str) -> dict | None:
        s = self._store(name)
        return self.basic_info(s) if s else None

    def _files_present(self, store_name: str, miner: int, number: int) -> bool:
        s = self._store(store_name)
        if s is None:
            return False
        name = sector_name(miner, number)
        cache = s.path / "cache" / name
        return ((s.path / "sealed" / name).is_file() and (cache / "p_aux").is_file() and (cache / "t_aux").is_file()
                and any(cache.glob("sc-02-data-tree-r-last*.dat")))

    def _update_files_present(self, store_name: str, miner: int, number: int) -> bool:
        """A snap-upgraded replica's files (`update/` and `update-cache/`) in the store."""
        s = self._store(store_name)
        name = sector_name(miner, number)
        return s is not None and (s.path / "update" / name).is_file() and (s.path / "update-cache" / name / "p_aux").is_file()

    def submit_persisted(self, sid: dict, instance: str, is_upgrade: bool = False, caller=None) -> bool:
        """SubmitPersistedEx: whether the sector's files are in the store `instance` (true records
        it as the sector's store). `is_upgrade`: the files of a snap-up (update/, update-cache/),
        from the identity the snap-up is allocated to; recorded by SubmitSnapUpProof, which names
        the store again."""
        if is_upgrade:
            self._sector(sid)
            row = self.state.one("SELECT worker FROM snap_candidates WHERE miner = ? AND number = ? AND state = 'allocated'",
                                 (sid["Miner"], sid["Number"]))
            if row is None:
                raise RPCError(INVALID_PARAMS, f"sector {sector_name(sid['Miner'], sid['Number'])} is not being upgraded")
            check_holder(row[0], caller, f"the snap-up of sector {sid['Miner']}-{sid['Number']}")
            return self._update_files_present(instance, sid["Miner"], sid["Number"])
        rec = self._owned(sid, caller, rebuild=True)
        if rec.get("finalized") and not self._rebuilding(sid):    # a rebuild persists a Finished sector again
            raise RPCError(INVALID_PARAMS, f"sector {sector_name(sid['Miner'], sid['Number'])} is "
                           f"{'aborted' if rec.get('abort_reason') else 'finished'}: its persisted files do not change")
        if not self._files_present(instance, sid["Miner"], sid["Number"]):
            return False
        self.state.update(sid["Miner"], sid["Number"], persisted=instance, state="PersistanceSubmitted")
        return True

    # ------------------------------------------------------------------ reports

    def _bounded_report(self, req: dict) -> tuple[dict, dict | None, str, str]:
        """(state change, failure, worker name, location) of a report, checked against the known
        states and levels (-32602 otherwise: no new metrics series) and cut to their lengths."""
        change, failure = req["StateChange"], req.get("Failure")
        text, cut = self.config.max_text_length, self.limits.text
        change = {"Prev": self.limits.state(change["Prev"], "req.StateChange.Prev"),
                  "Next": self.limits.state(change["Next"], "req.StateChange.Next"), "Event": cut(change["Event"], NAME_LENGTH)}
        if failure is not None:
            failure = {"Level": self.limits.level(failure["Level"], "req.Failure.Level"), "Desc": cut(failure["Desc"], text)}
        return change, failure, cut(req["Worker"]["Instance"], NAME_LENGTH), cut(req["Worker"]["Location"], text)

    def report_state(self, sid: dict, req: dict, caller=None) -> dict:
        """A worker's state change. A finalized sector (Finished or Aborted) does not move: the
        answer tells the worker so (Finalized, AbortReason)."""
        change, failure, worker, location = self._bounded_report(req)
        rec = self._owned(sid, caller)
        check_worker_name(self.state, self.limits, worker, caller, self.config.max_worker_names)
        if rec.get("finalized") or rec.get("abort_reason"):
            return {"Id": sid, "Finalized": True, "AbortReason": rec.get("abort_reason") or ""}
        rec, seconds = self.state.report(sid["Miner"], sid["Number"],
                                         {"state": change["Next"], "worker": worker, "failure": failure, "reported_at": self._now(),
                                          "location": location},
                                         change["Prev"], change["Next"], change["Event"], worker, failure)
        name = sector_name(sid["Miner"], sid["Number"])
        fields = {"sector": name, "state": change["Next"], "prev": change["Prev"], "event": change["Event"], "worker": worker}
        if failure:
            log.warning("sector %s: %s failure in %s (worker %s): %s", name, failure["Level"], change["Next"], worker,
                        failure["Desc"].splitlines()[0] if failure["Desc"] else "", extra={**fields, "failure_level": failure["Level"]})
        else:
            log.info("sector %s: %s -%s-> %s (worker %s)", name, change["Prev"], change["Event"], change["Next"], worker,
                     extra=fields)
        if self.observer is not None:
            self.observer(change["Prev"], change["Next"], seconds, failure and failure["Level"])
        # AbortReason: Go answers a pointer to the sector's reason, "" when it has none
        return {"Id": sid, "Finalized": bool(rec.get("finalized")), "AbortReason": rec.get("abort_reason") or ""}

    def report_finalized(self, sid: dict, caller=None) -> None:
        """The worker finished the sector; an aborted or already finished one stays as it is. (The
        end of a snap-up, rebuild or unseal task the caller holds on the sector never reaches here:
        api._route_task_reports hands it to the task's module.)"""
        rec = self._owned(sid, caller)
        if rec.get("finalized") or rec.get("abort_reason"):
            return
        self.state.update(sid["Miner"], sid["Number"], finalized=True, state="Finished")
        self.state.release(sid["Miner"], sid["Number"])

    def worker_aborted(self, sid: dict, reason: str, caller=None) -> None:
        """ReportAborted: the worker gave the sector up. A sector already aborted stays as it is; a
        Finished one is refused (only the operator's AbortSector aborts it); a task the caller
        holds on it is given up by the task's module (api._route_task_reports)."""
        rec = self._owned(sid, caller)
        if rec.get("abort_reason"):
            return
        if rec.get("finalized"):
            raise RPCError(INVALID_PARAMS, f"sector {sector_name(sid['Miner'], sid['Number'])} finished sealing: "
                           "a worker cannot abort it (the operator's AbortSector can)")
        self.report_aborted(sid, reason)

    def report_aborted(self, sid: dict, reason: str) -> None:
        rec = self._sector(sid)
        reason = self.limits.text(reason, self.config.max_text_length) or "aborted by the worker"
        _, seconds = self.state.report(sid["Miner"], sid["Number"], {"finalized": True, "abort_reason": reason, "state": "Aborted"},
                                       rec.get("state"), "Aborted", "Abort", rec.get("worker"), {"Level": "abort", "Desc": reason})
        if self.observer is not None:
            self.observer(rec.get("state") or "", "Aborted", seconds, "abort")
        log.warning("sector %s: aborted in %s: %s", sector_name(sid["Miner"], sid["Number"]), rec.get("state"), reason,
                    extra={"sector": sector_name(sid["Miner"], sid["Number"]), "state": "Aborted", "prev": rec.get("state")})
        self.state.release(sid["Miner"], sid["Number"])
        self.market.release(sid["Miner"], sid["Number"])

    def abort(self, sid: dict, reason: str) -> None:
        """Operator abort: the worker learns it from its next ReportState (Finalized)."""
        self.report_aborted(sid, reason or "aborted by the operator")

    def list_sectors(self) -> list[dict]:
        """Every sector the manager knows, in a shape close to Damocles' SectorState."""
        out = []
        for r in self.state.sectors():
            out.append({"ID": {"Miner": r["miner"], "Number": r["number"]}, "SectorType": r["proof"],
                        "LatestState": r.get("state"), "Worker": r.get("worker"), "Finalized": bool(r.get("finalized")),
                        "AbortReason": r.get("abort_reason"), "Ticket": r.get("ticket"), "Seed": r.get("seed"),
                        "Pre": r.get("pre"), "Persisted": r.get("persisted"), "StoreWait": r.get("store_wait"),
                        "FundsWait": r.get("funds_wait"),
                        "MessageInfo": {"PreCommitCid": r.get("pre_msg"), "CommitCid": r.get("proof_msg")}})
        return out

    def find_sector(self, sid: dict) -> dict:
        self._sector(sid)
        return next(s for s in self.list_sectors() if s["ID"] == sid)

    def sector_indexer_find(self, kind: str, sid: dict) -> dict:
        """Where a persisted sector's files live: {Found, Instance{Name, SealedFile, CacheDir}}."""
        if kind not in ("normal", "upgrade"):
            raise RPCError(INVALID_PARAMS, f"type: expected normal or upgrade, got {kind!r}")
        rec = self.state.sector(sid["Miner"], sid["Number"])
        key = "upgraded" if kind == "upgrade" else "persisted"     # a snap-upgraded replica is in update/
        store = self._store(rec[key]) if rec and rec.get(key) else None
        if store is None:
            return {"Found": False, "Instance": None}
        name = sector_name(sid["Miner"], sid["Number"])
        sealed, cache = ("update", "update-cache") if kind == "upgrade" else ("sealed", "cache")
        return {"Found": True, "Instance": {"Name": store.name, "SealedFile": str(store.path / sealed / name),
                                            "CacheDir": str(store.path / cache / name)}}

    def restore_sector(self, sid: dict, forced: bool) -> None:
        """Operator: bring an aborted or finalized sector back (its worker may resume it)."""
        rec = self._sector(sid)
        if not (rec.get("finalized") or rec.get("abort_reason")):
            raise RPCError(INVALID_PARAMS, f"sector {sid['Miner']}-{sid['Number']} is not finalized or aborted")
        if rec.get("state") == "Finished" and not forced:
            raise RPCError(INVALID_PARAMS, "the sector finished sealing; use forced to restore it anyway")
        self.state.update(sid["Miner"], sid["Number"], finalized=None, abort_reason=None)

    def worker_list(self) -> list[dict]:
        return [{"Info": info, "LastPing": int(last)} for _, info, last in self.state.workers()]

    def store_list(self) -> list[dict]:
        out = []
        for s in self.config.persist_stores:
            try:
                du = shutil.disk_usage(s.path)
                total, free = du.total, du.free
            except OSError:
                total = free = 0
            out.append({**self.basic_info(s), "Total": total, "Free": free, "Reserved": self.state.reserved(s.name)})
        return out

    def miner_info(self, miner: int) -> dict:
        try:
            info = self.chain.miner_info(miner)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        return {"ID": info.actor, "Addr": f"f0{info.actor}", "SectorSize": info.sector_size,
                "SealProofType": info.seal_proof, "WindowPoStProofType": info.window_post_proof,
                "ProvingPeriodStart": info.proving_period_start, "Configured": self.config.miner(miner) is not None}

    def worker_ping(self, info: dict, caller=None) -> None:
        """A worker's ping. Its name is bound to the first caller identity that used it (a ping,
        or a report under that name): another credential cannot change its address or info."""
        summary = info.get("Summary") or {}
        info = {"Name": info["Name"], "Dest": info.get("Dest") or "", "Version": info.get("Version") or "",
                # Go's WorkerInfo.Summary is a struct value: what a worker leaves out reads as zeros
                "Summary": {k: summary.get(k) or 0 for k in SUMMARY_KEYS}}
        info = {k: self.limits.text(v, NAME_LENGTH) if isinstance(v, str) else v for k, v in info.items()}
        if caller is None:
            self.state.ping(info["Name"], info)
            return None
        try:
            owner = self.state.ping_owned(info["Name"], info, caller.identity, self.config.max_worker_names)
        except TooManyNames as exc:
            raise names_refused(self.limits, info["Name"], exc.held) from None
        if owner != caller.identity:
            self.limits.count("foreign_worker")
            raise RPCError(UNAUTHORIZED, f"worker name {info['Name']!r} is registered by another credential; "
                           "each worker needs its own name")
        return None

    def expire_workers(self) -> list[tuple[str, float]]:
        """Workers that have not pinged (nor first reported) for `[Sealing] WorkerExpiry` leave
        the list, the page and the metrics, and their names' bindings are released; returns
        (name, last ping) of each (the caller logs them)."""
        gone = self.state.expire_workers(self._now() - self.config.worker_expiry)
        if gone:
            self.limits.count("worker_expired", len(gone))
        return gone

    def return_held_deals(self) -> list[tuple[int, int, str]]:
        """Deals of sectors that have not moved for `[Sealing] DealHoldTimeout` since they took
        them go back to pending. Such a sector is aborted with the reason (its pieces are no longer
        its own): its next ReportState answers Finalized with it, AcquireDeals and the submits
        refuse with it. A sector that submitted its PreCommit, or is finalized, keeps its deals.
        Returns (miner, number, reason) of each."""
        timeout, returned = self.config.deal_hold_timeout, []
        cutoff = self._now() - timeout

        def stale(rec) -> bool:
            if rec is None or rec.get("finalized") or rec.get("abort_reason") or "pre" in rec:
                return False
            return max(rec.get("entered_at") or rec.get("allocated_at") or 0, rec.get("deals_at") or 0) < cutoff

        for miner, number in self.market.holders():
            if not stale(self.state.sector(miner, number)):      # most are not: no write transaction for them
                continue
            with self.state.tx():     # checked again and aborted at once: a PreCommit written meanwhile wins
                rec = self.state.sector(miner, number)
                if not stale(rec):
                    continue
                deals = rec.get("deals") or [d["DealID"] for d in self.market.deals(miner) if d["Sector"] == number]
                reason = (f"released: it held deals {', '.join(map(str, deals))} for {format_duration(timeout)} without moving "
                          f"(last in {rec.get('state')}); they went back to pending ([Sealing] DealHoldTimeout)")
                self.report_aborted({"Miner": miner, "Number": number}, reason)
            self.limits.count("deal_hold")
            returned.append((miner, number, reason))
        return returned

    def release_silent(self) -> list[tuple[int, int, str]]:
        """Release, marked aborted with the reason, allocations no worker reported within
        `unreported_release_after` (the worker died before it journaled the number) and unfinished
        sectors not heard of for `release_after`; returns them (the caller logs each). A released
        number is never handed out again: the counter only moves forward."""
        now, released = self._now(), []
        long_silent = set(self.state.silent_since(now - self.config.release_after))
        for miner, number in self.state.silent_since(now - self.config.unreported_release_after):
            rec = self.state.sector(miner, number)
            if rec.get("finalized"):
                continue
            if rec.get("state") == "Allocated" and not rec.get("worker"):
                reason = (f"released: allocated but never reported by a worker within "
                          f"{self.config.unreported_release_after:.0f}s (the worker stopped before it journaled the number)")
            elif (miner, number) in long_silent:
                reason = f"released: no report for {self.config.release_after:.0f}s"
            else:
                continue
            self.report_aborted({"Miner": miner, "Number": number}, reason)
            released.append((miner, number, reason))
        for miner, number in long_silent:       # when ReleaseAfter is the shorter of the two
            rec = self.state.sector(miner, number)
            if not rec.get("finalized"):
                reason = f"released: no report for {self.config.release_after:.0f}s"
                self.report_aborted({"Miner": miner, "Number": number}, reason)
                released.append((miner, number, reason))
        return released

