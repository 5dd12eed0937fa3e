"""PreCommit batching and ProveCommit aggregation per miner, as Damocles' `[Miners.Commitment]`:
a batch goes out when `Threshold` sectors wait or the oldest has waited `MaxWait`, checked every
`CheckInterval`. PreCommits go out as PreCommitSectorBatch2; proofs as ProveCommitSectors3, one
aggregate proof (SnarkPackV2) per message when enough are ready for the chain's aggregate
minimum, otherwise the sectors' own proofs side by side in one message (as Lotus sends them).
Each sector's deals go in its activation manifest, a piece notifying the market actor of each."""

from __future__ import annotations

import base64
import logging
import threading
import time

from ..chain.actor_params import SNARK_PACK_V2
from ..chain.interface import Chain
from ..chain.types import ChainError
from ..chain.miner_actor import encode_aggregate
from ..core.crash import crash_point
from ..proofs.cid import commd_to_cid, commr_to_cid
from .config import ManagerConfig, MinerConfig
from .legacy_messages import is_old_form, manifests
from .state import ManagerState

log = logging.getLogger("damocles.manager.commitment")
EPOCHS_PER_DAY = 2880


class Committer:
    def __init__(self, config: ManagerConfig, state: ManagerState, chain: Chain, now=time.time):
        self.config, self.state, self.chain, self._now = config, state, chain, now
        self._lock = threading.Lock()

    def tick(self) -> list[str]:
        """One pass: first send what the outbox holds unsent (after a crash), then every
        miner's due batches; returns the ids of the messages pushed."""
        pushed = []
        with self._lock:
            for row in self.state.unsent():
                pushed.append(self._push(row["miner"], row["nonce"], row["kind"], row["method"], row["params"]))
            for m in self.config.miners:
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
        waiting = [r for r in self.state.sectors(m.actor) if "pre" in r and "pre_nonce" not in r and not r.get("abort_reason")]
        if not self._due(waiting, "pre_queued_at", m.pre_batch):
            return []
        policy = getattr(self.chain, "policy", self.config.chain)
        head = self.chain.head()
        out = []
        for i in range(0, len(waiting), policy.precommit_batch_max):
            batch = waiting[i:i + policy.precommit_batch_max]
            params = {"Sectors": [{
                "SealProof": r["proof"], "SectorNumber": r["number"],
                "SealedCID": {"/": commr_to_cid(bytes.fromhex(r["pre"]["CommR"]))},
                "SealRandEpoch": r["ticket"]["Epoch"], "DealIDs": r.get("deals", []),
                "Expiration": head + m.lifetime_days * EPOCHS_PER_DAY,
                "UnsealedCid": {"/": commd_to_cid(bytes.fromhex(r["pre"]["CommD"]))}} for r in batch]}
            out.append(self._send(m.actor, "pre", "PreCommitSectorBatch2", params, [r["number"] for r in batch]))
        return out

    def send(self, miner: int, kind: str, method: str, params: dict, sectors: list[int]) -> str:
        """A message of another part of the manager (the poster), journalled in the same outbox
        with the miner's next nonce."""
        with self._lock:
            return self._send(miner, kind, method, params, sectors)

    def _send(self, miner: int, kind: str, method: str, params: dict, sectors: list[int]) -> str:
        """Journal, then push, then record: a crash anywhere resends the same nonce, which the
        chain answers with the message it already has."""
        nonce = self.state.enqueue_message(miner, kind, method, params, sectors)
        crash_point("manager.commit.before_push")
        msg = self._push(miner, nonce, kind, method, params)
        log.info("miner %s: %s (nonce %d) for sectors %s sent as %s", miner, method, nonce, sectors, msg)
        return msg

    def _push(self, miner: int, nonce: int, kind: str, method: str, params: dict) -> str:
        try:
            msg = self.chain.push_message(miner, method, params, nonce)
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

    def _flush_proofs(self, m: MinerConfig) -> list[str]:
        waiting = [r for r in self.state.sectors(m.actor) if "commit_proof" in r and "proof_nonce" not in r and not r.get("abort_reason")]
        if not self._due(waiting, "proof_queued_at", m.prove_batch):
            return []
        policy = getattr(self.chain, "policy", self.config.chain)
        out = []
        for i in range(0, len(waiting), policy.aggregate_max):
            batch = sorted(waiting[i:i + policy.aggregate_max], key=lambda r: r["number"])
            params = {"SectorActivations": [{"SectorNumber": r["number"], "Pieces": self._pieces(r)} for r in batch],
                      "SectorProofs": [], "AggregateProof": "", "AggregateProofType": None,
                      "RequireActivationSuccess": True, "RequireNotificationSuccess": True}
            if len(batch) >= policy.aggregate_min:
                proofs = {r["number"]: base64.b64decode(r["commit_proof"]) for r in batch}
                params.update(AggregateProof=base64.b64encode(encode_aggregate(proofs)).decode(),
                              AggregateProofType=SNARK_PACK_V2)
            else:              # too few to aggregate (a short tail too): each sector's own proof
                params["SectorProofs"] = [r["commit_proof"] for r in batch]
            out.append(self._send(m.actor, "proof", "ProveCommitSectors3", params, [r["number"] for r in batch]))
        return out

    def _pieces(self, record: dict) -> list[dict]:
        """The sector's deals as piece manifests, in the order its PreCommit named them."""
        return manifests(list(record.get("deals") or []), lambda ids: deal_pieces(self.state, ids))


def deal_pieces(state: ManagerState, deal_ids: list[int]) -> list[tuple[str, int]]:
    """(piece CID, padded size) of each deal, from the manager's deals."""
    out = []
    for d in deal_ids:
        row = state.one("SELECT piece_cid, piece_size FROM deals WHERE id = ?", (d,))
        if row is None:
            raise ValueError(f"deal {d} is not in the manager's deals: its piece is unknown")
        out.append((row[0], row[1]))
    return out
