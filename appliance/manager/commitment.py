"""PreCommit batching and ProveCommit aggregation per miner, as Damocles' `[Miners.Commitment]`:
a batch goes out when `Threshold` sectors wait or the oldest has waited `MaxWait`, checked every
`CheckInterval`. PreCommits go out as PreCommitSectorBatch2; proofs as ProveCommitSectors3, one
aggregate proof (SnarkPackV2) per message when enough are ready for the chain's aggregate
minimum, otherwise the sectors' own proofs side by side in one message (as Lotus sends them).
The builtin engine's aggregate is a stand-in for SnarkPack that only the devnet takes: against a
node every batch carries the sectors' own proofs, as many as fit the node's message size limit.

Deals take the direct data onboarding path (builtin-actors b0a3bdd6, lib.rs prove_commit_sectors3:
"New onboarding entry point does not allow pre-committed deals"): a PreCommit names no deals
(DealIDs empty) and declares the sector's CommD as UnsealedCid; each sector's deals go in its
ProveCommitSectors3 activation manifest, a piece notifying the market actor of each. A sector the
chain would refuse whatever its proof (its PreCommit named deals, sent by an older manager; its
deals' pieces do not make its CommD) is left out of the batch, so that it cannot fail the others,
and marked `proof_refused` with the reason, which PollProofState turns into the sector's abort.

Money, as Damocles' commitment manager treats it (commitmgr.go handleMessage: OutOfGas and
insufficient funds are "failed, send again", never a reason to abort): a batch whose deposit or
pledge the payer cannot cover is not sent; its sectors wait, saying so (`funds_wait`), and go out
once the funds are there. A PreCommit or proof that lands with exit code 2, 6 or 19 is queued
again (it then waits for funds); one that ran out of gas (7) is queued again with twice the gas.
A message still in the pool `replace_after` epochs after it was sent is replaced: same nonce and
content, premium 1.25x (Lotus' minimum for replace-by-fee), fee cap enough for the base fee.
Every step is journalled in the outbox (its `spec`) before the push, so a crash sends nothing twice."""

from __future__ import annotations

import base64
import logging
import threading
import time

from ..chain import money
from ..chain.actor_params import SNARK_PACK_V2
from ..chain.interface import Chain
from ..chain.miner_actor import DEALS_DISALLOWED, encode_aggregate
from ..chain.types import ChainError, ExitCode, MessageNotFound, Receipt
from ..core.crash import crash_point
from ..core.proof_types import seal_proof
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commd_to_cid, commr_to_cid
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from .config import ManagerConfig, MinerConfig
from .legacy_messages import is_old_form, manifests
from .state import ManagerState

log = logging.getLogger("damocles.manager.commitment")
EPOCHS_PER_DAY = 2880
RESEND_CODES = {ExitCode.SENDER_STATE_INVALID, ExitCode.SYS_INSUFFICIENT_FUNDS, ExitCode.INSUFFICIENT_FUNDS,
                ExitCode.OUT_OF_GAS}
MAX_GAS_RESENDS = 8                 # out of gas this many times: left failed (PERM_FAILED), for the operator
WATCH_WINDOW = 3 * 86400.0          # seconds a sent message's receipt is watched
SECTOR_KINDS = ("pre", "proof")     # the messages whose sectors are queued again after a failure
# Lotus' mpool refuses a message over 64 KiB (chain/messagepool/messagepool.go MaxMessageSize);
# proofs side by side (1,920 bytes a 32GiB sector) leave room for the rest of the params
PROOFS_BYTES_PER_MESSAGE = 56 * 1024


class FundsWait(ChainError):
    """The sender cannot hold the message's gas and value: refused before the journal."""


def will_resend(rec: dict, kind: str, receipt: Receipt, refused: dict[int, str] | None = None) -> bool:
    """Does the committer send this sector's failed message again (so that it is pending, not failed)?
    `refused`: for a proof message refused as a whole, its sectors the chain refuses whatever
    their proof (`refused_in_proof_message`)."""
    if refused_for_another(rec, kind, receipt, refused):
        return True
    if receipt.exit_code not in RESEND_CODES:
        return False
    return receipt.exit_code != ExitCode.OUT_OF_GAS or rec.get(f"{kind}_gas_resends", 0) < MAX_GAS_RESENDS


def refused_for_another(rec: dict, kind: str, receipt: Receipt, refused: dict[int, str] | None = None) -> bool:
    """A proof message the chain refused, all or nothing, for another sector's pre-committed deals
    (one an older manager journalled with such a sector): this sector's proof is sent again. The
    devnet's receipts name the sector; a node's carry no text (Lotus' MessageReceipt has only the
    exit code), so there `refused` says which sectors of the message the chain refuses."""
    if kind != "proof" or receipt.exit_code != ExitCode.ILLEGAL_ARGUMENT:
        return False
    error = receipt.error or ""
    if DEALS_DISALLOWED in error:
        return f"sector {rec['number']}: {DEALS_DISALLOWED}" not in error
    return bool(refused) and rec["number"] not in refused


def is_whole_proof_refusal(kind: str, receipt: Receipt) -> bool:
    """A proof message failed with exit code 16 without saying which sector (a node's receipt):
    `refused_in_proof_message` finds out from the chain."""
    return (kind == "proof" and receipt.exit_code == ExitCode.ILLEGAL_ARGUMENT
            and DEALS_DISALLOWED not in (receipt.error or ""))


def refused_in_proof_message(chain: Chain, state: ManagerState, miner: int, message: str) -> dict[int, str]:
    """The sectors of a journalled ProveCommitSectors3 that the chain refuses whatever their proof,
    with why (`proof_refusal`: their PreCommit, read from the chain, named deals). ProveCommitSectors3
    fails as a whole for one such sector (RequireActivationSuccess), and a node's receipt does not
    name it; this read does, on any chain. Empty: the message failed for another reason."""
    row = state.outbox_message(miner, message)
    if row is None or row["method"] != "ProveCommitSectors3":
        return {}
    numbers = [a["SectorNumber"] for a in row["params"].get("SectorActivations") or []]
    refused = {}
    for n in numbers:
        rec = state.sector(miner, n)
        why = proof_refusal(chain, state, rec) if rec is not None else None
        if why is not None:
            refused[n] = why
    return refused


class Committer:
    def __init__(self, config: ManagerConfig, state: ManagerState, chain: Chain, now=time.time, replace_after: int = 20):
        self.config, self.state, self.chain, self._now = config, state, chain, now
        self.replace_after = replace_after       # epochs a message may sit in the pool before it is replaced
        self._lock = threading.Lock()
        self._settled: set[str] = set()           # messages whose receipt was handled
        self._pooled_since: dict[str, int] = {}   # message -> the head it was first seen pending at

    def tick(self) -> list[str]:
        """One pass: first send what the outbox holds unsent (after a crash, or a replacement),
        then follow the receipts of what was sent, then every miner's due batches; returns the
        ids of the messages pushed."""
        pushed, blocked = [], set()
        with self._lock:
            for row in self.state.unsent():
                if row["miner"] in blocked:
                    continue
                try:
                    pushed.append(self._push(row["miner"], row["nonce"], row["kind"], row["method"], row["params"], row["spec"]))
                except ChainError as exc:     # e.g. not enough funds for its gas: it waits, and what follows it
                    log.warning("miner %s: journalled message at nonce %s not accepted, later ones wait too: %s",
                                row["miner"], row["nonce"], exc)
                    blocked.add(row["miner"])
                    self._wait_funds(row["miner"], row["sectors"], f"message at nonce {row['nonce']} not accepted: {exc}")
            pushed += self._follow()
            for m in self.config.miners:
                if m.actor in blocked:
                    continue
                pushed += self._flush_precommits(m)
                pushed += self._flush_proofs(m)
        return pushed

    def run(self, stop: threading.Event) -> None:
        interval = min([min(m.pre_batch.check_interval, m.prove_batch.check_interval) for m in self.config.miners] or [1.0])
        while not stop.wait(max(0.05, interval)):
            try:
                self.tick()
            except Exception:   # keep batching; the next pass retries
                log.exception("commitment pass failed")

    def _due(self, waiting: list[dict], queued_key: str, batch) -> bool:
        if not waiting:
            return False
        oldest = min(r[queued_key] for r in waiting)
        return len(waiting) >= batch.threshold or self._now() - oldest >= batch.max_wait

    def _flush_precommits(self, m: MinerConfig) -> list[str]:
        waiting = [r for r in self.state.sectors(m.actor, open_only=True) if "pre" in r and "pre_nonce" not in r and not r.get("abort_reason")]
        if not self._due(waiting, "pre_queued_at", m.pre_batch):
            return []
        policy = getattr(self.chain, "policy", self.config.chain)
        head = self.chain.head()
        out = []
        for i in range(0, len(waiting), policy.precommit_batch_max):
            batch = waiting[i:i + policy.precommit_batch_max]
            value = self._funds(m, "pre", batch)
            if value is None:
                continue
            params = {"Sectors": [{
                "SealProof": r["proof"], "SectorNumber": r["number"],
                "SealedCID": {"/": commr_to_cid(bytes.fromhex(r["pre"]["CommR"]))},
                "SealRandEpoch": r["ticket"]["Epoch"], "DealIDs": [],      # DDO: the deals go in the proof
                "Expiration": head + m.lifetime_days * EPOCHS_PER_DAY,
                "UnsealedCid": {"/": commd_to_cid(bytes.fromhex(r["pre"]["CommD"]))}} for r in batch]}
            out += self._send_batch(m, "pre", "PreCommitSectorBatch2", params, batch, value,
                                    max((r.get("pre_gas_limit", 0) for r in batch), default=0))
        return out

    def send(self, miner: int, kind: str, method: str, params: dict, sectors: list[int], max_fee: int = 0) -> str:
        """A message of another part of the manager (the poster), journalled in the same outbox
        with the miner's next nonce. `max_fee` (attoFIL, 0: none): the most the message may
        spend on gas, its fee cap lowered to fit (Lotus' capGasFee)."""
        with self._lock:
            return self._send(miner, kind, method, params, sectors, max_fee=max_fee)

    def _send(self, miner: int, kind: str, method: str, params: dict, sectors: list[int], value: int = 0,
              min_gas: int = 0, max_fee: int = 0) -> str:
        """Journal, then push, then record: a crash anywhere resends the same nonce, which the
        chain answers with the message it already has."""
        spec = money.cap_gas_fee(self._spec(miner, method, params, value, min_gas), max_fee)
        self._check_sender(miner, method, spec)     # before the journal: a refused message takes no nonce
        nonce = self.state.enqueue_message(miner, kind, method, params, sectors, spec)
        crash_point("manager.commit.before_push")
        msg = self._push(miner, nonce, kind, method, params, spec)
        log.info("miner %s: %s (nonce %d) for sectors %s sent as %s", miner, method, nonce, sectors, msg)
        return msg

    def _push(self, miner: int, nonce: int, kind: str, method: str, params: dict, spec: dict | None = None) -> str:
        send = {k: v for k, v in (spec or {}).items() if v}      # a chain without money takes the old call
        try:
            msg = self.chain.push_message(miner, method, params, nonce, **send)
        except ChainError:
            msg = self._sent_before_upgrade(miner, nonce, method, params)
            if msg is None:
                raise
        crash_point("manager.commit.after_push")
        self.state.record_sent(miner, nonce, msg)
        return msg

    def _sent_before_upgrade(self, miner: int, nonce: int, method: str, params: dict) -> str | None:
        """The chain's message at this nonce when it is this one in its pre-upgrade form: a manager
        from before schema 3 sent it and stopped before recording it (the upgrade then rewrote the
        journal). Adopted, not sent again under another nonce."""
        at_nonce = getattr(self.chain, "message_at_nonce", None)
        on_chain = at_nonce(miner, nonce) if at_nonce else None
        if on_chain is None or not is_old_form(self.state, miner, on_chain, method, params):
            return None
        log.warning("miner %s: nonce %d was sent before the upgrade as %s (%s): recorded, not sent again",
                    miner, nonce, on_chain["method"], on_chain["id"])
        return on_chain["id"]

    # ------------------------------------------------------------------------- money

    def _spec(self, miner: int, method: str, params: dict, value: int, min_gas: int = 0) -> dict:
        """How the message is sent, decided (and journalled) here, as Damocles' fee config does:
        gas limit = the chain's estimate x 1.25 (at least `min_gas`, after an out-of-gas), premium
        Lotus' minimum, fee cap enough for twice the base fee. Empty gas fields: the node fills them."""
        spec = {"value": value}
        estimate, fee = self.chain.estimate_gas(miner, method, params), self.chain.base_fee()
        if estimate is None or fee is None:
            return spec
        num, den = money.GAS_OVERESTIMATION
        limit = max(estimate * num // den, min_gas)
        cap = getattr(getattr(self.chain, "policy", None), "block_gas_limit", None)
        premium = money.DEFAULT_PREMIUM
        return {**spec, "gas_limit": min(limit, cap) if cap else limit, "premium": premium,
                "fee_cap": max(money.DEFAULT_FEE_CAP, 2 * fee + premium)}

    def _check_sender(self, miner: int, method: str, spec: dict) -> None:
        """The node refuses a message whose sender cannot hold gas limit x fee cap + value (Lotus'
        mpool check): refused here first, so that nothing is journalled that cannot be sent."""
        if not spec.get("gas_limit"):
            return
        sender = self.chain.miner_info(miner).worker
        need, have = money.required_funds(spec["gas_limit"], spec["fee_cap"], spec["value"]), self.chain.balance(sender)
        if have is not None and have < need:
            raise FundsWait(f"waiting for funds: {method} needs {money.format_fil(need)} (gas limit x fee cap + value) "
                             f"from sender {sender}, which holds {money.format_fil(have)}")

    def _send_batch(self, m: MinerConfig, kind: str, method: str, params: dict, batch: list[dict], value: int,
                    min_gas: int) -> list[str]:
        """A PreCommit or proof batch; one its sender cannot pay for waits, saying so."""
        numbers = [r["number"] for r in batch]
        try:
            return [self._send(m.actor, kind, method, params, numbers, value, min_gas)]
        except FundsWait as exc:       # a push that fails after the journal raises: the outbox resends it
            self._wait_funds(m.actor, numbers, str(exc))
            return []

    def _funds(self, m: MinerConfig, kind: str, batch: list[dict]) -> int | None:
        """The value the message carries (SendFund: the deposit or pledge it needs), or None when
        the payer cannot cover it: the sectors then wait for funds, saying so."""
        n, chain = len(batch), self.chain
        deposit = chain.precommit_deposit(m.actor, n)
        need = deposit if kind == "pre" else None
        if kind == "proof" and deposit is not None:
            pledge = chain.initial_pledge(m.actor, n)
            need = None if pledge is None else max(0, pledge - deposit)      # the deposits are released into it
        numbers = [r["number"] for r in batch]
        if need is None:        # the chain cannot tell: send, and let the receipt say
            self._clear_wait(m.actor, batch)
            return 0
        what = "PreCommit deposit" if kind == "pre" else "initial pledge"
        send_fund = m.pre_send_fund if kind == "pre" else m.prove_send_fund
        if send_fund:
            sender = chain.miner_info(m.actor).worker
            have = chain.balance(sender)
            if have is not None and have < need:
                self._wait_funds(m.actor, numbers, f"waiting for funds: {what} {money.format_fil(need)} for {n} sector(s), "
                                                   f"sender {sender} holds {money.format_fil(have)} (SendFund)")
                return None
            self._clear_wait(m.actor, batch)
            return need
        have = chain.available_balance(m.actor)
        if have is not None and have < need:
            self._wait_funds(m.actor, numbers, f"waiting for funds: {what} {money.format_fil(need)} for {n} sector(s), "
                                               f"miner f0{m.actor} has {money.format_fil(have)} available "
                                               f"(damocles util sealer actor --miner {m.actor} add-balance)")
            return None
        self._clear_wait(m.actor, batch)
        return 0

    def _wait_funds(self, miner: int, numbers: list[int], why: str) -> None:
        for n in numbers:
            rec = self.state.sector(miner, n)
            if rec is not None and rec.get("funds_wait") != why:
                if self.state.update_open(miner, n, funds_wait=why) is not None:
                    log.warning("sector f0%s-%s: %s", miner, n, why)

    def _clear_wait(self, miner: int, batch: list[dict]) -> None:
        for r in batch:
            if r.get("funds_wait"):
                self.state.update(miner, r["number"], funds_wait=None)
                log.info("sector f0%s-%s: funds are there, sending (was %s)", miner, r["number"], r["funds_wait"])

    def _follow(self) -> list[str]:
        """The receipts of recent messages: failures for money or gas queue their sectors again;
        a message pooled past `replace_after` epochs is replaced. Returns the replacements' ids."""
        out, head = [], None
        for row in self.state.sent_since(self._now() - WATCH_WINDOW):
            msg = row["message"]
            if msg in self._settled:
                continue
            try:
                receipt = self.chain.receipt(msg)
            except MessageNotFound:
                self._resend_lost(row)
                continue
            except ChainError:
                continue
            head = self.chain.head() if head is None else head
            if receipt is None:
                replaced = self._replace_if_stuck(row, head)
                if replaced:
                    out.append(replaced)
                continue
            self._pooled_since.pop(msg, None)
            if receipt.ok:
                # followed until a reorg can no longer take it back (Damocles waits with Confidence)
                if head - receipt.epoch >= self._confidence(row["miner"]):
                    self._settled.add(msg)
                continue
            self._settled.add(msg)
            refused = self._refused_whole(row, receipt)
            if row["kind"] not in SECTOR_KINDS or (receipt.exit_code not in RESEND_CODES and not refused
                                                   and DEALS_DISALLOWED not in (receipt.error or "")):
                continue
            self._queue_again(row, receipt, refused)
        return out

    def _confidence(self, miner: int) -> int:
        m = self.config.miner(miner)
        return m.confidence if m else 10

    def _resend_lost(self, row: dict) -> None:
        """A sent message the chain no longer has (dropped in a reorg) is unsent again at its own
        nonce, so the next pass pushes it once more: same nonce, so it can never land twice. A nonce
        the chain holds another message at is left alone (guard.py settles those)."""
        at_nonce = getattr(self.chain, "message_at_nonce", None)
        if at_nonce is not None and at_nonce(row["miner"], row["nonce"]) is not None:
            return
        self.state.respec_message(row["miner"], row["nonce"], row["spec"])
        self._pooled_since.pop(row["message"], None)
        log.warning("f0%s: %s (nonce %s, %s) is gone from the chain (a reorg dropped it): sending it again at the same nonce",
                    row["miner"], row["message"], row["nonce"], row["method"])

    def _refused_whole(self, row: dict, receipt: Receipt) -> dict[int, str]:
        """For a proof message refused as a whole without naming the sector (a node's receipt): its
        sectors the chain refuses whatever their proof, each marked `proof_refused` (PollProofState
        aborts them); the others are then sent again without them."""
        if not is_whole_proof_refusal(row["kind"], receipt):
            return {}
        refused = refused_in_proof_message(self.chain, self.state, row["miner"], row["message"])
        for n, why in refused.items():
            if self.state.update_open(row["miner"], n, proof_refused=why) is not None:
                log.warning("sector f0%s-%s: %s failed with exit code %s: %s", row["miner"], n, row["message"],
                            receipt.exit_code, why)
        return refused

    def _queue_again(self, row: dict, receipt: Receipt, refused: dict[int, str] | None = None) -> None:
        kind, miner = row["kind"], row["miner"]
        gas = receipt.exit_code == ExitCode.OUT_OF_GAS
        for n in row["sectors"]:
            rec = self.state.sector(miner, n)
            if rec is None or rec.get(f"{kind}_msg") != row["message"] or not will_resend(rec, kind, receipt, refused):
                continue
            changes = {f"{kind}_nonce": None, f"{kind}_msg": None,
                       f"{kind}_failed": f"{row['message']} exit code {receipt.exit_code}: {receipt.error}"}
            if gas:
                changes[f"{kind}_gas_limit"] = 2 * max(int(row["spec"].get("gas_limit") or 0), receipt.gas_used)
                changes[f"{kind}_gas_resends"] = rec.get(f"{kind}_gas_resends", 0) + 1
            if self.state.update_open(miner, n, **changes) is not None:
                log.warning("sector f0%s-%s: %s %s failed with exit code %s (%s): queued again%s", miner, n, row["method"],
                            row["message"], receipt.exit_code, receipt.error, " with twice the gas" if gas else "")

    def _replace_if_stuck(self, row: dict, head: int) -> str | None:
        msg, spec = row["message"], row["spec"]
        since = self._pooled_since.setdefault(msg, head)
        if head - since < self.replace_after or not spec.get("premium"):
            return None
        fee = self.chain.base_fee()
        premium = money.min_replacement_premium(int(spec["premium"]))
        new = {**spec, "premium": premium,
               "fee_cap": max(int(spec.get("fee_cap") or 0) * money.RBF_NUM // money.RBF_DENOM, 2 * (fee or 0) + premium)}
        self.state.respec_message(row["miner"], row["nonce"], new)     # journalled: a crash now pushes it on restart
        try:
            replacement = self._push(row["miner"], row["nonce"], row["kind"], row["method"], row["params"], new)
        except ChainError as exc:     # journalled: the next pass pushes it again
            log.warning("f0%s: replacing %s (nonce %s) failed: %s", row["miner"], msg, row["nonce"], exc)
            return None
        self._pooled_since.pop(msg, None)
        self._pooled_since[replacement] = head
        log.warning("f0%s: %s (nonce %s) pooled for %s epochs: replaced by %s (premium %s, fee cap %s)", row["miner"], msg,
                    row["nonce"], head - since, replacement, new["premium"], new["fee_cap"])
        return replacement

    def _flush_proofs(self, m: MinerConfig) -> list[str]:
        waiting = [r for r in self.state.sectors(m.actor, open_only=True) if "commit_proof" in r and "proof_nonce" not in r
                   and not r.get("abort_reason") and not r.get("proof_refused")]
        if not self._due(waiting, "proof_queued_at", m.prove_batch):
            return []
        waiting = [r for r in waiting if not self._refuse_proof(m.actor, r)]
        policy = getattr(self.chain, "policy", self.config.chain)
        aggregate = self.chain.takes_builtin_aggregate()
        out = []
        for batch in proof_batches(waiting, policy.aggregate_max, None if aggregate else PROOFS_BYTES_PER_MESSAGE):
            value = self._funds(m, "proof", batch)
            if value is None:
                continue
            params = {"SectorActivations": [{"SectorNumber": r["number"], "Pieces": self._pieces(r)} for r in batch],
                      "SectorProofs": [], "AggregateProof": "", "AggregateProofType": None,
                      "RequireActivationSuccess": True, "RequireNotificationSuccess": True}
            if aggregate and len(batch) >= policy.aggregate_min:
                proofs = {r["number"]: base64.b64decode(r["commit_proof"]) for r in batch}
                params.update(AggregateProof=base64.b64encode(encode_aggregate(proofs)).decode(),
                              AggregateProofType=SNARK_PACK_V2)
            else:              # too few to aggregate (a short tail too): each sector's own proof
                params["SectorProofs"] = [r["commit_proof"] for r in batch]
            out += self._send_batch(m, "proof", "ProveCommitSectors3", params, batch, value,
                                    max((r.get("proof_gas_limit", 0) for r in batch), default=0))
        return out

    def _pieces(self, record: dict) -> list[dict]:
        """The sector's deals as piece manifests, in the order they lie in the sector."""
        return manifests(list(record.get("deals") or []), self.state.deal_pieces)

    def _refuse_proof(self, miner: int, record: dict) -> bool:
        """Whether the chain would refuse the sector's ProveCommitSectors3 whatever its proof; if
        so the sector is marked `proof_refused` with the reason (PollProofState aborts it)."""
        why = proof_refusal(self.chain, self.state, record)
        if why is None:
            return False
        if self.state.update_open(miner, record["number"], proof_refused=why) is not None:
            log.warning("sector f0%s-%s: not sent for ProveCommit: %s", miner, record["number"], why)
        return True


def proof_batches(waiting: list[dict], max_sectors: int, max_proof_bytes: int | None) -> list[list[dict]]:
    """The due proofs cut into messages of at most `max_sectors`, each sorted by sector number; with
    `max_proof_bytes`, also at most that many bytes of proofs side by side (a message that carries
    each sector's proof must stay under the node's message size limit)."""
    batches, batch, size = [], [], 0
    for r in waiting:
        proof = len(base64.b64decode(r["commit_proof"]))
        if batch and (len(batch) == max_sectors or (max_proof_bytes is not None and size + proof > max_proof_bytes)):
            batches.append(batch)
            batch, size = [], 0
        batch.append(r)
        size += proof
    if batch:
        batches.append(batch)
    return [sorted(b, key=lambda r: r["number"]) for b in batches]


def proof_refusal(chain: Chain, state: ManagerState, record: dict) -> str | None:
    """Why ProveCommitSectors3 would refuse the sector (None: it would not): its PreCommit on
    chain named deals (builtin-actors refuses those), or its deals' pieces do not make the CommD
    its PreCommit declared (their manifests would fail the CommD check)."""
    deals = list(record.get("deals") or [])
    if deals:
        pc = chain.precommit(record["miner"], record["number"])
        if pc is not None and pc.deal_ids:
            return precommitted_deals_refusal(list(pc.deal_ids))
    try:
        pieces = [PieceInfo(size, cid_to_commitment(cid)[1]) for cid, size in state.deal_pieces(deals)]
        comm_d = comm_d_from_pieces(pieces, seal_proof(record["proof"]).size.bytes)
    except (ValueError, ProofError) as exc:
        return f"the pieces of its deals {deals} cannot make its ProveCommit manifests: {exc}"
    declared = (record.get("pre") or {}).get("CommD")
    if declared is not None and comm_d.hex() != declared:
        return (f"its deals {deals} make CommD {comm_d.hex()}, its PreCommit declared {declared}: "
                f"the chain would refuse the proof (unsealed CID does not match pieces)")
    return None


def precommitted_deals_refusal(deal_ids: list[int]) -> str:
    """The reason a sector whose PreCommit named deals (an older manager's) is aborted."""
    return (f"its PreCommit on chain names deals {deal_ids} (DealIDs, as managers before direct data onboarding "
            f"sent them): ProveCommitSectors3 refuses it (builtin-actors: {DEALS_DISALLOWED}), so it can never be "
            f"proven; its deals are free on chain again when the PreCommit expires")
