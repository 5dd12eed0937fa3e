"""The manager's poster: WindowPoSt for every miner with `[Miners.PoSt].Enabled`, and
WinningPoSt for miners with `[Miners.Proof].Enabled`.

For each deadline with sectors (Damocles' poster, Lotus' timing):
- two deadlines ahead (Lotus' `+2`: the first one whose fault cutoff has not passed), pre-check
  every sector; declare faults for bad active ones and recoveries for faulty ones that check
  good again;
- from Challenge + ChallengeConfidence: draw the randomness, pre-check the sectors to prove
  (bounded time per sector and per partition; bad ones are skipped), and have them proven: as a
  job for a dedicated prover when one polled recently, otherwise here, in a background thread;
  a job that fails past JobMaxTry is proven here too, so a deadline is not lost to a prover;
- verify the proof, submit from Open + SubmitConfidence with the chain commit randomness, and
  follow the message; a failed message is retried while the deadline is open.
Round state lives in the manager's database (`post_rounds`), so a restart resumes it."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..chain.bitfield import json_from_numbers
from ..chain.external_proofs import precheck
from ..chain.types import ChainError, DeadlineInfo, MessageNotFound, deadline_info
from ..core.extproc import ProcessorError, post_task
from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..proofs.post import (PrivateSector, PublicSector, check_sector, decode_post, encode_post, generate_window_post,
                           generate_winning_post, verify_post, winning_sector_indices)
from .config import ManagerConfig, MinerConfig

log = logging.getLogger("damocles.manager.poster")
SECTOR_CHECK_TIMEOUT = 10.0       # seconds one sector's pre-check may take (a hung disk or NFS)
PARTITION_CHECK_TIMEOUT = 60.0    # seconds all checks of one proving round may take
MAX_SUBMIT_ATTEMPTS = 3


@dataclass
class Target:
    """A sector to prove: where its files are and what the chain holds for it."""
    number: int
    comm_r: bytes
    store: str | None
    sealed: str | None
    cache: str | None
    upgraded: bool = False


@dataclass(frozen=True)
class Round:
    """One proving round: a group of a deadline's partitions (at most PoStedPartitionsMax, or
    MaxPartitionsPerPoStMessage) proven by one proof and sent in one message."""
    m: MinerConfig
    d: DeadlineInfo
    group: int
    partitions: list[int]

    @property
    def key(self) -> tuple:
        return (self.m.actor, self.d.period_start, self.d.index, self.group)

    def __str__(self) -> str:
        return f"miner {self.m.actor} deadline {self.d.index} (period {self.d.period_start}) partitions {self.partitions}"


class Poster:
    def __init__(self, config: ManagerConfig, state, chain, jobs, committer, sealer, now=time.time, ext_prover=None):
        self.config, self.state, self.chain, self.jobs, self.committer, self.sealer = config, state, chain, jobs, committer, sealer
        self.ext_prover = ext_prover     # `manager run --ext-prover`: PoSt goes to ext-prover.cfg's processors
        self._now = now
        self._local: dict[tuple, concurrent.futures.Future] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="wdpost-local")
        self._checks = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="post-check")
        self._last_mined: dict[int, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        block = getattr(self.chain, "policy", self.config.chain).block_time
        interval = min(1.0, max(0.05, block / 4)) if block > 0 else 0.1
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception:     # keep proving; the next pass retries
                log.exception("poster pass failed")

    def tick(self) -> None:
        # one head per pass: the deadline reads of a pass come from one tipset, and a pass at the
        # head the last one saw costs one ChainHead (the reads are memoized per tipset)
        with self._lock, self.chain.pinned_head():
            for line in self.jobs.housekeeping():
                log.warning(line)
            for m in self.config.miners:
                if m.winning_post:
                    self._mine(m)
                if m.post.enabled:
                    self._window_post(m)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._checks.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ round state

    def round(self, miner: int, period_start: int, index: int, group: int = 0) -> dict:
        row = self.state.one("SELECT info FROM post_rounds WHERE miner = ? AND period_start = ? AND deadline = ? "
                             "AND grp = ?", (miner, period_start, index, group))
        return json.loads(row[0]) if row else {}

    def _save(self, key: tuple, info: dict) -> None:
        with self.state.tx() as db:
            db.execute("INSERT INTO post_rounds (miner, period_start, deadline, grp, info) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(miner, period_start, deadline, grp) DO UPDATE SET info = excluded.info",
                       (*key, json.dumps(info)))

    def rounds(self, miner: int) -> list[dict]:
        rows = self.state.query("SELECT period_start, deadline, grp, info FROM post_rounds WHERE miner = ? "
                                "ORDER BY period_start, deadline, grp", (miner,))
        return [{"PeriodStart": p, "Deadline": d, "Group": g, **json.loads(i)} for p, d, g, i in rows]

    # ---------------------------------------------------------------- WindowPoSt

    def _deadline(self, dl: DeadlineInfo, ahead: int) -> DeadlineInfo:
        p = self.chain.policy
        index = dl.index + ahead
        period = dl.period_start + (index // p.wpost_period_deadlines) * p.wpost_proving_period
        return deadline_info(period, index % p.wpost_period_deadlines, dl.current_epoch, p.wpost_challenge_window,
                             p.wpost_challenge_lookback, p.fault_declaration_cutoff)

    def _window_post(self, m: MinerConfig) -> None:
        dl = self.chain.proving_deadline(m.actor)
        self.jobs.drop_stale(m.actor, dl.period_start, dl.index)
        self._declare(m, self._deadline(dl, 2))
        per_message = self.chain.policy.posted_partitions_max
        if m.post.max_partitions_per_message:
            per_message = min(per_message, m.post.max_partitions_per_message)
        for d in (dl, self._deadline(dl, 1)):
            if d.current_epoch >= d.challenge + m.post.challenge_confidence:
                parts = [p.index for p in self.chain.deadline_partitions(m.actor, d.index)]
                # one proof and one message per group of partitions (PoStedPartitionsMax)
                for g in range(0, len(parts), per_message):
                    self._advance_round(Round(m, d, g // per_message, parts[g:g + per_message]))

    def targets(self, miner: int, numbers) -> list[Target]:
        numbers = list(numbers)
        infos = self.chain.sectors_info(miner, numbers)      # one chain read for the deadline's sectors
        out = []
        for n in numbers:
            s = infos.get(n)
            if s is None:
                raise ChainError(f"sector {n} of f0{miner} is in a partition but the chain has no info for it")
            sid = {"Miner": miner, "Number": n}
            where = self.sealer.sector_indexer_find("upgrade", sid)      # a snap-upgraded sector proves its new replica
            upgraded = where["Found"]
            if not upgraded:
                where = self.sealer.sector_indexer_find("normal", sid)
            inst = where["Instance"] if where["Found"] else None
            out.append(Target(n, cid_to_commitment(s.sealed_cid)[1], inst and inst["Name"], inst and inst["SealedFile"],
                              inst and inst["CacheDir"], upgraded))
        return out

    def check(self, miner: int, targets: list[Target]) -> dict[int, str]:
        """Pre-check sectors in parallel, each within SECTOR_CHECK_TIMEOUT and all within
        PARTITION_CHECK_TIMEOUT; returns {sector: why} for the bad ones."""
        proof = seal_proof(self.chain.miner_info(miner).seal_proof)
        bad, futures = {}, {}
        for t in targets:
            if t.sealed is None:
                bad[t.number] = "not in any persist store (sector index)"
                continue
            futures[self._checks.submit(check_sector, proof, PrivateSector(t.number, t.comm_r, _path(t.cache), _path(t.sealed)))] = t
        deadline = time.monotonic() + PARTITION_CHECK_TIMEOUT
        for fut, t in futures.items():
            try:
                fut.result(timeout=max(0.0, min(SECTOR_CHECK_TIMEOUT, deadline - time.monotonic())))
            except concurrent.futures.TimeoutError:
                bad[t.number] = f"check did not finish within {SECTOR_CHECK_TIMEOUT:g}s"
            except ProofError as exc:
                bad[t.number] = str(exc)
        return bad

    def _declare(self, m: MinerConfig, d: DeadlineInfo) -> None:
        """Faults and recoveries for deadline `d` (two ahead), once per period, before its cutoff."""
        if d.fault_cutoff_passed or self.round(m.actor, d.period_start, d.index).get("declared"):
            return
        parts = self.chain.deadline_partitions(m.actor, d.index)
        faults, recoveries = [], []
        declared_faults, declared_recoveries = [], []     # sector numbers (the params hold bitfields)
        for p in parts:
            faulty, recovering = set(p.faulty), set(p.recovering)
            bad = self.check(m.actor, self.targets(m.actor, p.sectors))
            newly_bad = sorted(n for n in bad if n not in faulty)
            healed = sorted(n for n in faulty if n not in bad and n not in recovering)
            if newly_bad:
                faults.append({"Deadline": d.index, "Partition": p.index, "Sectors": json_from_numbers(newly_bad)})
                declared_faults += newly_bad
                for n in newly_bad:
                    log.warning("miner %s: sector %s fails its check (%s); declaring it faulty for deadline %s",
                                m.actor, n, bad[n], d.index)
            if healed:
                recoveries.append({"Deadline": d.index, "Partition": p.index, "Sectors": json_from_numbers(healed)})
                declared_recoveries += healed
                log.warning("miner %s: sectors %s check good again; declaring recovery for deadline %s", m.actor, healed, d.index)
        info = self.round(m.actor, d.period_start, d.index)
        if faults:
            info["faults_msg"] = self.committer.send(m.actor, "post", "DeclareFaults", {"Faults": faults}, [])
            info["declared_faults"] = declared_faults
        if recoveries:
            info["recoveries_msg"] = self.committer.send(m.actor, "post", "DeclareFaultsRecovered", {"Recoveries": recoveries}, [])
            info["declared_recoveries"] = declared_recoveries
        info["declared"] = True
        self._save((m.actor, d.period_start, d.index, 0), info)     # kept with the deadline's first round

    def _advance_round(self, r: "Round") -> None:
        info = self.round(*r.key)
        state = info.get("state")
        if state == "landed" and not r.d.elapsed and self._reorged_out(r, info):
            state = "submitted"
        if state in ("landed", "failed", "empty") or r.d.elapsed:
            if r.d.elapsed and state not in ("landed", "failed", "empty"):
                info.update(state="failed", error=info.get("error") or "the deadline closed before a proof landed")
                self._save(r.key, info)
                log.error("%s: %s", r, info["error"])
            return
        if state is None:
            self._start_round(r, info)
        elif state == "job":
            self._collect_job(r, info)
        elif state == "proving":
            self._collect_local(r, info)
        elif state == "proved":
            self._submit(r, info)
        elif state == "submitted":
            self._follow(r, info)

    def _start_round(self, r: "Round", info: dict) -> None:
        parts = [p for p in self.chain.deadline_partitions(r.m.actor, r.d.index) if p.index in r.partitions]
        if r.d.current_epoch >= r.d.open and parts and all(p.proven for p in parts):
            # the chain has this window's proof of them already (this manager's before its state was
            # restored from a backup, or another's): a second one is refused (partition already proven).
            # Before the window opens `proven` still speaks of the last period's.
            self._save(r.key, {**info, "state": "landed", "partitions": r.partitions, "proven_on_chain": True})
            log.info("%s: its partitions are proven on chain already: nothing to submit", r)
            return
        to_prove = []
        for p in parts:
            faulty, recovering = set(p.faulty), set(p.recovering)      # once per partition, not per sector
            to_prove += [n for n in p.sectors if n not in faulty or n in recovering]
        if not to_prove:           # every sector is faulty (declared): nothing to prove, nothing lost by not proving
            self._save(r.key, {**info, "state": "empty", "partitions": r.partitions})
            return
        randomness = self.chain.window_post_randomness(r.m.actor, r.d.challenge)
        targets = self.targets(r.m.actor, to_prove)
        bad = self.check(r.m.actor, targets)
        good = [t for t in targets if t.number not in bad]
        info.update(partitions=r.partitions, randomness=randomness.hex(), skipped=bad, sectors=[t.number for t in good],
                    attempts=info.get("attempts", 0))
        info.update(self._job_or_local(r, good, randomness))
        self._save(r.key, info)
        log.info("%s: proving %d sectors (%d skipped) %s", r, len(good), len(bad),
                 f"as job {info['job']}" if info["state"] == "job" else "here")

    def _job_or_local(self, r: "Round", good: list[Target], randomness: bytes) -> dict:
        proof = seal_proof(self.chain.miner_info(r.m.actor).seal_proof).window_post
        if good and self.jobs.provers_seen(self.config.worker_prover.heartbeat_timeout):
            job_input = {"Sectors": [{"SectorId": t.number, "CommR": list(t.comm_r), "Upgrade": t.upgraded,
                                      "Accesses": {"SealedFile": t.store, "CacheDir": t.store}} for t in good],
                         "MinerId": r.m.actor, "ProofType": proof.name, "Seed": list(randomness)}
            return {"state": "job", "job": self.jobs.create(r.m.actor, r.d.index, r.d.period_start, r.partitions, job_input)}
        self._prove_here(r, good, randomness)
        return {"state": "proving"}

    def _prove_here(self, r: "Round", good: list[Target], randomness: bytes) -> None:
        sp = seal_proof(self.chain.miner_info(r.m.actor).seal_proof)
        sectors = [PrivateSector(t.number, t.comm_r, _path(t.cache), _path(t.sealed)) for t in good]
        if self.ext_prover is not None and self.ext_prover.has("window_post"):
            task = post_task(r.m.actor, sp.window_post, sectors, randomness)
            self._local[r.key] = self._pool.submit(self._prove_external, "window_post", task)
            return
        self._local[r.key] = self._pool.submit(self._prove_in_process, sp, sectors, randomness)

    @staticmethod
    def _prove_in_process(sp, sectors: list[PrivateSector], randomness: bytes) -> tuple[bytes, list[int]]:
        result = generate_window_post(sp.window_post, sp, sectors, randomness)
        return encode_post(result), sorted(result.faults)

    def _prove_external(self, stage: str, task: dict) -> tuple[bytes, list[int]]:
        proofs, faults = self.ext_prover.prove(stage, task)
        return proofs[0], faults

    def _collect_local(self, r: "Round", info: dict) -> None:
        fut = self._local.get(r.key)
        if fut is None:      # the manager restarted while proving: prove again
            self._prove_here(r, self.targets(r.m.actor, info["sectors"]), bytes.fromhex(info["randomness"]))
            return
        if not fut.done():
            return
        del self._local[r.key]
        try:
            proof, faults = fut.result()
        except Exception as exc:
            log.error("%s: proving failed: %s", r, exc)
            info.update(state=None, error=f"proving failed: {exc}", attempts=info.get("attempts", 0) + 1)
            self._save(r.key, self._give_up_if_spent(info))
            return
        self._proved(r, info, proof, faults)

    def _collect_job(self, r: "Round", info: dict) -> None:
        job = self.jobs.get(info["job"])
        if job["State"] != "finished":
            return
        if job["Failed"] or not job["Output"] or not job["Output"].get("proofs"):
            log.error("%s: job %s failed (%s); proving here instead", r, info["job"], job["ErrorReason"])
            info.update(state="proving", job_error=job["ErrorReason"])
            self._save(r.key, info)
            self._prove_here(r, self.targets(r.m.actor, info["sectors"]), bytes.fromhex(info["randomness"]))
            return
        self._proved(r, info, base64.b64decode(job["Output"]["proofs"][0]), job["Output"].get("faults") or [])

    def _proved(self, r: "Round", info: dict, proof: bytes, faults: list[int]) -> None:
        """Verify before submitting: a bad proof from a prover costs a retry here, not a
        failed message and a missed deadline."""
        sp = seal_proof(self.chain.miner_info(r.m.actor).seal_proof)
        publics = [PublicSector(t.number, t.comm_r) for t in self.targets(r.m.actor, info["sectors"]) if t.number not in faults]
        try:   # a Groth16 proof of an external window_post processor: the chain decides
            external, check = precheck(self.chain, "window_post", proof, f"{r}")
            if not external:
                verify_post(sp.window_post, bytes.fromhex(info["randomness"]), publics, decode_post(proof, sp.window_post))
            elif check:
                info["proof_check"] = check
        except ProofError as exc:
            log.error("%s: the proof does not verify (%s); proving again", r, exc)
            info.update(state=None, error=f"proof did not verify: {exc}", attempts=info.get("attempts", 0) + 1)
            self._save(r.key, self._give_up_if_spent(info))
            return
        skipped = dict(info.get("skipped") or {})
        skipped.update({str(n): "the prover could not prove it" for n in faults})
        info.update(state="proved", proof=base64.b64encode(proof).decode(), skipped=skipped)
        self._save(r.key, info)

    def _journalled(self, r: "Round") -> dict | None:
        """A SubmitWindowedPoSt for this round already in the outbox: the manager was killed after
        journalling it and before saving the round as submitted. It is adopted, never sent again
        (a second one with a new nonce would be refused as "partition already proven")."""
        for msg in self.state.outbox_messages(r.m.actor, "post", "SubmitWindowedPoSt"):
            p = msg["params"]
            if p.get("Deadline") != r.d.index or not r.d.open <= p.get("ChainCommitEpoch", -1) < r.d.close or \
                    sorted(x["Index"] for x in p.get("Partitions", [])) != sorted(r.partitions):
                continue
            receipt = self.chain.receipt(msg["message"]) if msg["message"] else None
            if receipt is None or receipt.ok:      # pending or landed; one that failed may be sent again
                return msg
        return None

    def _submit(self, r: "Round", info: dict) -> None:
        head = r.d.current_epoch
        if head < r.d.open + r.m.post.submit_confidence:
            return
        sent = self._journalled(r)
        if sent is not None:
            if sent["message"] is None:
                return             # the commitment loop sends what the outbox holds unsent; adopt it then
            info.update(state="submitted", message=sent["message"])
            self._save(r.key, info)
            log.info("%s: SubmitWindowedPoSt already journalled as nonce %d (%s): adopted", r, sent["nonce"], sent["message"])
            return
        parts = self.chain.deadline_partitions(r.m.actor, r.d.index)
        skipped = {int(n) for n in info.get("skipped") or {}}
        params = {"Deadline": r.d.index,
                  "Partitions": [{"Index": p.index, "Skipped": json_from_numbers(n for n in p.sectors if n in skipped)}
                                 for p in parts if p.index in info["partitions"]],
                  "Proofs": [{"PoStProof": seal_proof(self.chain.miner_info(r.m.actor).seal_proof).window_post.id,
                              "ProofBytes": info["proof"]}],
                  "ChainCommitEpoch": head,
                  "ChainCommitRand": base64.b64encode(self.chain.chain_commit_randomness(head)).decode()}
        info.update(state="submitted", message=self.committer.send(r.m.actor, "post", "SubmitWindowedPoSt", params, []))
        self._save(r.key, info)
        log.info("%s: SubmitWindowedPoSt sent as %s", r, info["message"])

    def _reorged_out(self, r: "Round", info: dict) -> bool:
        """A landed proof whose receipt a reorg took back (within the miner's confidence, while its
        deadline is open): followed again, and resubmitted if it then fails."""
        if r.d.current_epoch - info.get("epoch", 0) >= r.m.post.confidence:
            return False
        try:
            receipt = self.chain.receipt(info["message"])
        except MessageNotFound:
            receipt = None
        if receipt is not None:
            return False
        info.update(state="submitted")
        self._save(r.key, info)
        log.warning("%s: the WindowPoSt that landed at epoch %s was taken back by a reorg: waiting for it again",
                    r, info.get("epoch"))
        return True

    def _follow(self, r: "Round", info: dict) -> None:
        try:
            receipt = self.chain.receipt(info["message"])
        except MessageNotFound:        # dropped by a reorg: the outbox sends it again at its nonce
            return
        if receipt is None:
            return
        if receipt.ok:
            info.update(state="landed", epoch=receipt.epoch)
            log.info("%s: WindowPoSt landed at epoch %s", r, receipt.epoch)
        else:
            log.error("%s: SubmitWindowedPoSt failed: %s", r, receipt.error)
            info.update(state=None, error=f"message failed: {receipt.error}", attempts=info.get("attempts", 0) + 1)
            info = self._give_up_if_spent(info)
        self._save(r.key, info)

    @staticmethod
    def _give_up_if_spent(info: dict) -> dict:
        if info.get("attempts", 0) >= MAX_SUBMIT_ATTEMPTS:
            info["state"] = "failed"
        return info

    # ---------------------------------------------------------------- WinningPoSt

    def _mine(self, m: MinerConfig) -> None:
        """At each new head, if the miner is elected, prove the challenged sector and submit
        the block before the epoch ends."""
        head = self.chain.head()
        if self._last_mined.get(m.actor) == head:
            return
        self._last_mined[m.actor] = head
        if not self.chain.winning_election(m.actor, head):
            return
        info = self.chain.miner_info(m.actor)
        sp = seal_proof(info.seal_proof)
        sectors = self.chain.winning_post_sectors(m.actor, head)
        randomness = self.chain.winning_post_randomness(m.actor, head)
        chosen = sectors[winning_sector_indices(SectorID(m.actor, 0).prover_id, randomness, len(sectors))[0]]
        target = self.targets(m.actor, [chosen.number])[0]
        if target.sealed is None:
            log.error("miner %s: elected at %s but sector %s is in no persist store", m.actor, head, chosen.number)
            return
        sector = PrivateSector(target.number, target.comm_r, _path(target.cache), _path(target.sealed))
        if self.ext_prover is not None and self.ext_prover.has("winning_post"):
            proof = self._winning_external(m, head, sp, sector, randomness)
            if proof is None:
                return
        else:
            result = generate_winning_post(sp.winning_post, sp, sector, randomness)
            if result.faults:
                log.error("miner %s: elected at %s, sector %s cannot be proven: %s", m.actor, head, chosen.number,
                          result.faults[chosen.number])
                return
            proof = encode_post(result)
        try:
            self.chain.submit_winning_post(m.actor, head, proof)
            log.info("miner %s: won the block at epoch %s", m.actor, head)
        except Exception as exc:
            log.error("miner %s: block at epoch %s refused: %s", m.actor, head, exc)

    def _winning_external(self, m: MinerConfig, head: int, sp, sector: PrivateSector, randomness: bytes) -> bytes | None:
        """A WinningPoSt from an ext-prover processor, checked as a window proof is: ours must
        verify, a Groth16 one is left to the chain."""
        what = f"miner {m.actor} block at epoch {head}"
        try:
            proofs, _ = self.ext_prover.prove("winning_post", post_task(m.actor, sp.winning_post, [sector], randomness))
            external, _ = precheck(self.chain, "winning_post", proofs[0], what)
            if not external:
                verify_post(sp.winning_post, randomness, [PublicSector(sector.number, sector.comm_r)],
                            decode_post(proofs[0], sp.winning_post))
        except (ProcessorError, ProofError) as exc:
            log.error("%s: the ext-prover's WinningPoSt failed: %s", what, exc)
            return None
        return proofs[0]


def _path(p: str | None) -> Path | None:
    return Path(p) if p else None
