"""LotusChain: the Chain interface over a Lotus/Venus full node's JSON-RPC API (Filecoin.*).

Every read is made at the node's head (an empty TipSetKey, as Lotus takes `null`), with Lotus'
method names and shapes (shapes.py). Randomness is drawn as the miner does (Lotus
chain/rand/rand.go): the node's ticket or beacon digest at the epoch
(StateGetRandomnessDigestFrom*), then blake2b(DST || digest || epoch || entropy) here, the
entropy being the CBOR of the miner's address; a node without the digest methods (before
network version 22) is asked StateGetRandomnessFrom* with the tag and entropy instead.

Messages: params CBOR-encoded by appliance.chain.actor_params (the codec), sent from the
section's sender with GasEstimateMessageGas then MpoolPushMessage, idempotent through MsgUuid
(message.py); receipts come from StateSearchMsg, and a message found neither there nor in
MpoolPending is lost (MessageNotFound: a reorg dropped it).

What a full node cannot answer for the manager (docs/chain.md): WinningPoSt is the block
producer's job and deals come from a market; the devnet's API offers both as Devnet.* methods,
which this client uses when the node has them (never elected, deals refused, otherwise). The
devnet-only restart checks (highest_sector_number, next_nonce, message_at_nonce,
executed_messages) have the fallbacks documented on each method."""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import json
import logging
import threading
import time
import uuid

from ...proofs.cid import commr_to_cid
from ...core.proof_types import default_seal_proof, post_proof, seal_proof
from .. import bitfield as _bitfield
from ..interface import Chain
from ..policy import ChainPolicy
from ..randomness import DST, draw, miner_entropy
from ..types import (ChainError, DeadlineInfo, MessageNotFound, MinerInfo, MinerPower, PartitionInfo, PreCommitOnChain,
                     Receipt, SectorExpiration, SectorLocation, SectorOnChain)
from . import shapes
from .client import METHOD_NOT_FOUND, LotusClient, NodeError
from .messager import Messager
from .message import SECTIONS, SendPolicy, message_json, message_uuid

log = logging.getLogger("damocles.chain.lotus")
TSK = None                      # the head tipset (Lotus' empty TipSetKey)
MINER_INFO_TTL = 60.0           # seconds a miner's StateMinerInfo is kept
SEARCH_LIMIT = -1               # StateSearchMsg: look back as far as the node keeps
MEMO_TIPSETS = 2                # pinned_head: the tipsets whose state reads are kept (the head, and the one before it
                                # that a reorg may come back to)
# the list items (sectors, partitions) the memo keeps, all tipsets together: a farm's StateMinerActiveSectors
# answers are 100,000 sectors a miner, about 1 KiB each once decoded, so they are not all kept; the oldest
# tipset goes first, and an answer that does not fit beside the head's others is asked again when needed
MEMO_ITEMS = 200_000
# sent with the default policy: no Damocles section names them (its `sectors extend` takes its fee on the command line)
UNSECTIONED = ("Send", "WithdrawBalance", "ExtendSectorExpiration2")
# the sector a deposit/pledge question stands for: any valid sealed CID, a typical lifetime (540 days)
TEMPLATE_SEALED_CID = commr_to_cid(bytes(32))
TEMPLATE_LIFETIME = 540 * 2880


def _weight(answer) -> int:
    """What a memoized answer counts for against MEMO_ITEMS: its items when a list, else 1."""
    return max(1, len(answer)) if isinstance(answer, list) else 1


class LotusChain(Chain):
    def __init__(self, client: LotusClient, policy: ChainPolicy | None = None,
                 send_policies: dict[tuple[int, str], SendPolicy] | None = None,
                 seal_proofs: dict[int, int] | None = None, network: str = "f", messager: Messager | None = None):
        """`policy`: the chain's constants the manager plans with ([Chain]); `send_policies`:
        (miner, section) -> SendPolicy (message.SECTIONS); `seal_proofs`: a miner's configured
        SealProof (Lotus' MinerInfo has none: the V1_1 type of its sector size otherwise);
        `messager`: send through sophon-messager instead of the node's mpool (messager.py)."""
        self.messager = messager
        self.client, self.policy = client, policy or ChainPolicy()
        self.send_policies, self.seal_proofs, self.network = send_policies or {}, seal_proofs or {}, network
        self._digest_methods = True       # cleared when the node does not know StateGetRandomnessDigest*
        self._devnet_methods = True       # cleared when the node is not the devnet's API (no Devnet.*)
        self._takes_aggregate: bool | None = None
        self._miner_info: dict[int, tuple[float, MinerInfo]] = {}
        self._replaced: dict[str, str] = {}     # CID -> the CID of the message that replaced it in the pool (_replace)
        self._clock = time.monotonic
        self._pin = threading.local()           # the tipset this thread's pinned_head() block reads at
        self._memo: OrderedDict[str, dict] = OrderedDict()   # tipset key -> {(method, params): answer}
        self._memo_items = 0                    # the items the memo holds (_weight), at most MEMO_ITEMS
        self._memo_lock = threading.Lock()

    def call(self, method: str, *params):
        return self.client.call(f"Filecoin.{method}", *params)

    @contextmanager
    def pinned_head(self):
        """Inside the block, this thread's state reads are made at one tipset (the head when the
        block starts: one ChainHead) and answered from memory when that tipset was read before: a
        tipset's state never changes, so a loop that re-reads the same deadlines on every pass (the
        poster, 4 passes an epoch) asks the node once per head instead of 100 times an epoch. A
        reorg gives the head another key, so nothing read on the lost fork is served. Nested
        blocks keep the outer tipset."""
        if getattr(self._pin, "key", None) is not None:
            yield
            return
        head = self.call("ChainHead")
        self.epoch = shapes.integer(shapes.field(head, "Height", "ChainHead"), "ChainHead.Height")
        cids = shapes.field(head, "Cids", "ChainHead")
        if not isinstance(cids, list) or not cids:
            raise ChainError(f"ChainHead.Cids: expected the head's block CIDs, got {cids!r:.200}")
        self._pin.tsk, self._pin.key, self._pin.height = cids, json.dumps(cids, sort_keys=True), self.epoch
        try:
            yield
        finally:
            self._pin.tsk = self._pin.key = self._pin.height = None

    def _state(self, method: str, *params):
        """A state read (the TipSetKey is the last param): at the pinned tipset, memoized, inside
        pinned_head(); at the head otherwise."""
        key = getattr(self._pin, "key", None)
        if key is None:
            return self.call(method, *params, TSK)
        what = (method, json.dumps(params, sort_keys=True))
        with self._memo_lock:
            reads = self._memo.get(key)
            if reads is not None and what in reads:
                return reads[what]
        answer = self.call(method, *params, self._pin.tsk)
        self._remember(key, what, answer)
        return answer

    def _remember(self, key: str, what: tuple, answer) -> None:
        """Keep a state read of tipset `key` within MEMO_TIPSETS tipsets and MEMO_ITEMS items:
        older tipsets leave first; what still does not fit is not kept."""
        weight = _weight(answer)
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = {}
                while len(self._memo) > MEMO_TIPSETS:
                    self._forget_oldest()
            while self._memo_items + weight > MEMO_ITEMS and next(iter(self._memo)) != key:
                self._forget_oldest()
            if what in self._memo[key] or self._memo_items + weight > MEMO_ITEMS:
                return
            self._memo[key][what] = answer
            self._memo_items += weight

    def _forget_oldest(self) -> None:
        _, reads = self._memo.popitem(last=False)
        self._memo_items -= sum(_weight(a) for a in reads.values())

    def close(self) -> None:
        close = getattr(self.client, "close", None)      # the kept-alive connections
        if close is not None:
            close()

    def _addr(self, miner: int) -> str:
        return shapes.id_address(miner, self.network)

    # ------------------------------------------------------------------------ reads

    def head(self) -> int:
        pinned = getattr(self._pin, "height", None)
        if pinned is not None:
            return pinned
        height = shapes.integer(shapes.field(self.call("ChainHead"), "Height", "ChainHead"), "ChainHead.Height")
        self.epoch = height
        return height

    # The last head this client saw (None before its first ChainHead), as the devnet's `epoch`: the
    # status page keys its cached chain reads on it instead of asking the node on every view (the
    # manager's loops call head() all the time, so it stays current).
    epoch: int | None = None

    def network_version(self) -> int:
        return shapes.integer(self.call("StateNetworkVersion", TSK), "StateNetworkVersion")

    def _randomness(self, beacon: bool, tag: DST, epoch: int, entropy: bytes) -> bytes:
        source = "Beacon" if beacon else "Tickets"
        if self._digest_methods:
            try:
                digest = shapes.unb64(self._state(f"StateGetRandomnessDigestFrom{source}", epoch),
                                      f"StateGetRandomnessDigestFrom{source}")
                if len(digest) != 32:
                    raise ChainError(f"StateGetRandomnessDigestFrom{source}: {len(digest)} bytes, expected 32")
                return draw(tag, digest, epoch, entropy)
            except NodeError as exc:
                if exc.code != METHOD_NOT_FOUND:
                    raise
                log.info("the node has no StateGetRandomnessDigestFrom%s: asking StateGetRandomnessFrom%s", source, source)
                self._digest_methods = False
        out = shapes.unb64(self._state(f"StateGetRandomnessFrom{source}", int(tag), epoch, shapes.b64(entropy)),
                           f"StateGetRandomnessFrom{source}")
        if len(out) != 32:
            raise ChainError(f"StateGetRandomnessFrom{source}: {len(out)} bytes, expected 32")
        return out

    def seal_randomness(self, miner: int, epoch: int) -> bytes:
        return self._randomness(False, DST.SEAL_RANDOMNESS, epoch, miner_entropy(miner))

    def interactive_seed(self, miner: int, epoch: int) -> bytes:
        return self._randomness(True, DST.INTERACTIVE_SEAL_CHALLENGE_SEED, epoch, miner_entropy(miner))

    def window_post_randomness(self, miner: int, epoch: int) -> bytes:
        r = self._randomness(True, DST.WINDOWED_POST_CHALLENGE_SEED, epoch, miner_entropy(miner))
        return r[:31] + bytes([r[31] & 0x3F])

    def chain_commit_randomness(self, epoch: int) -> bytes:
        return self._randomness(False, DST.POST_CHAIN_COMMIT, epoch, b"")

    def miner_info(self, miner: int) -> MinerInfo:
        """Read at most every MINER_INFO_TTL seconds: the manager asks it on every pass, and it
        changes only with a worker change (which takes the chain a day and more to apply)."""
        cached = self._miner_info.get(miner)
        if cached is not None and self._clock() - cached[0] < MINER_INFO_TTL:
            return cached[1]
        info = self._read_miner_info(miner)
        self._miner_info[miner] = (self._clock(), info)
        return info

    def _read_miner_info(self, miner: int) -> MinerInfo:
        what = "StateMinerInfo"
        info = self._state(what, self._addr(miner))
        size = shapes.integer(shapes.field(info, "SectorSize", what), f"{what}.SectorSize")
        wpost = post_proof(shapes.integer(shapes.field(info, "WindowPoStProofType", what), f"{what}.WindowPoStProofType"))
        if wpost.size.bytes != size:
            raise ChainError(f"{what}: WindowPoStProofType {wpost.name} does not match SectorSize {size}")
        proof = seal_proof(self.seal_proofs[miner]) if miner in self.seal_proofs else default_seal_proof(wpost.size)
        if proof.size.bytes != size:
            raise ChainError(f"miner f0{miner}: the configured SealProof {proof.name} is not for its {size}-byte sectors")
        dl = self.proving_deadline(miner)
        return MinerInfo(miner, shapes.field(info, "Worker", what), proof.id, wpost.id, size,
                         dl.period_start % self.policy.wpost_proving_period)

    def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        p = self._state("StateSectorPreCommitInfo", self._addr(miner), number)
        return None if p is None else shapes.precommit(miner, p)

    def sector(self, miner: int, number: int) -> SectorOnChain | None:
        s = self._state("StateSectorGetInfo", self._addr(miner), number)
        return None if s is None else shapes.sector(miner, s)

    def sectors_info(self, miner: int, numbers) -> dict[int, SectorOnChain]:
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        rows = self._state("StateMinerSectors", self._addr(miner), shapes.runs(wanted)) or []
        return {s.number: s for s in (shapes.sector(miner, r, "StateMinerSectors[]") for r in rows) if s.number in wanted}

    def sectors(self, miner: int) -> list[SectorOnChain]:
        rows = self._state("StateMinerSectors", self._addr(miner), None) or []
        return sorted((shapes.sector(miner, s, "StateMinerSectors[]") for s in rows), key=lambda s: s.number)

    def precommits(self, miner: int) -> list[PreCommitOnChain]:
        """PreCommits waiting for their proof: allocated numbers above the highest live sector
        that have PreCommit info (below it a number is live, terminated or expired)."""
        base = max((s.number for s in self.sectors(miner)), default=-1)
        out, pos = [], 0
        for val, length in self.allocated(miner):
            if val:
                for n in range(max(pos, base + 1), pos + length):
                    p = self.precommit(miner, n)
                    if p is not None:
                        out.append(p)
            pos += length
        return out

    def proving_deadline(self, miner: int) -> DeadlineInfo:
        return shapes.deadline_info(self._state("StateMinerProvingDeadline", self._addr(miner)))

    def deadline_partitions(self, miner: int, index: int) -> list[PartitionInfo]:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.policy.wpost_period_deadlines:
            raise ChainError(f"deadline index {index!r} must be in [0, {self.policy.wpost_period_deadlines})")
        addr = self._addr(miner)
        return self._partitions(addr, self._deadlines(addr, index + 1), index)

    def all_deadline_partitions(self, miner: int) -> list[list[PartitionInfo]]:
        """Every deadline's partitions (the status page's proving view): one StateMinerDeadlines
        and the 48 StateMinerPartitions side by side, not 96 calls one after another."""
        addr = self._addr(miner)
        deadlines = self._deadlines(addr, self.policy.wpost_period_deadlines)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="lotus-deadlines") as pool:
            return list(pool.map(lambda i: self._partitions(addr, deadlines, i), range(self.policy.wpost_period_deadlines)))

    def _deadlines(self, addr: str, at_least: int) -> list:
        deadlines = self._state("StateMinerDeadlines", addr)
        if not isinstance(deadlines, list) or len(deadlines) < at_least:
            raise ChainError(f"StateMinerDeadlines: expected {self.policy.wpost_period_deadlines} deadlines, got {deadlines!r:.200}")
        return deadlines

    def _partitions(self, addr: str, deadlines: list, index: int) -> list[PartitionInfo]:
        proven = set(shapes.numbers(shapes.field(deadlines[index], "PostSubmissions", "StateMinerDeadlines[]"),
                                    f"StateMinerDeadlines[{index}].PostSubmissions"))
        parts = self._state("StateMinerPartitions", addr, index) or []
        return [shapes.partition(i, p, i in proven, f"StateMinerPartitions[{i}]") for i, p in enumerate(parts)]

    def miner_power(self, miner: int) -> MinerPower:
        p = self._state("StateMinerPower", self._addr(miner))
        counts = self._state("StateMinerSectorCount", self._addr(miner)) or {}
        live = shapes.integer(counts.get("Live", 0), "StateMinerSectorCount.Live")
        active = shapes.integer(counts.get("Active", 0), "StateMinerSectorCount.Active")
        return shapes.power(p, active, shapes.integer(counts.get("Faulty", live - active), "StateMinerSectorCount.Faulty"))

    # ------------------------------------------------- a sector's end (expiry, extension, termination)

    def sector_expiration(self, miner: int, number: int) -> SectorExpiration | None:
        """StateSectorExpiration; a sector that is not live is an error on Lotus ("failed to find
        sector N", miner state GetSectorExpiration): None."""
        e = self._state_or_none("StateSectorExpiration", "failed to find sector", self._addr(miner), number)
        return None if e is None else shapes.sector_expiration(e)

    def sector_location(self, miner: int, number: int) -> SectorLocation | None:
        """StateSectorPartition; a sector in no partition is an error (builtin-actors' find_sector:
        "not due at any deadline"): None."""
        loc = self._state_or_none("StateSectorPartition", "not due at any deadline", self._addr(miner), number)
        return None if loc is None else shapes.sector_location(loc)

    def _state_or_none(self, method: str, absent: str, *params):
        """A state read whose "there is no such thing" Lotus answers as an error saying `absent`: None then."""
        try:
            return self._state(method, *params)
        except NodeError as exc:
            if absent in exc.message:
                return None
            raise

    def active_sectors(self, miner: int) -> list[SectorOnChain]:
        rows = self._state("StateMinerActiveSectors", self._addr(miner)) or []
        return sorted((shapes.sector(miner, s, "StateMinerActiveSectors[]") for s in rows), key=lambda s: s.number)

    def termination_fee(self, miner: int, numbers: list[int]) -> int | None:
        """The devnet's estimate (Devnet.TerminationFee); None from a node (no Lotus method gives it)."""
        fee = self._devnet("TerminationFee", self._addr(miner), shapes.runs(numbers), absent=None)
        return None if fee is None else shapes.big(fee, "Devnet.TerminationFee")

    # -------------------------------------------------------------------- messages

    def _sender(self, miner: int, policy: SendPolicy) -> str:
        if not policy.senders:
            return self.miner_info(miner).worker
        if len(policy.senders) == 1:
            return policy.senders[0]
        balances = [(shapes.big(self.call("WalletBalance", s), f"WalletBalance({s})"), s) for s in policy.senders]
        return max(balances, key=lambda b: b[0])[1]      # Damocles' SenderSelector: the largest balance

    def push_message(self, miner: int, method: str, params: dict, nonce: int | None = None, value: int = 0,
                     gas_limit: int | None = None, fee_cap: int | None = None, premium: int | None = None,
                     sender: str | None = None) -> str:
        """Encode and send; `nonce` (the outbox's) names the message for the node (MsgUuid), so
        that pushing it again returns the message already signed, never a second one. The gas
        fields given (the outbox's journalled spec) are the message's; those left out are the
        node's estimate with the section's policy (message.SendPolicy.apply_estimate). The same
        outbox nonce with a higher premium replaces the pooled message (_replace). `method`
        "Send" is a plain transfer (method 0) of `value` from `sender` (add-balance)."""
        from .. import actor_params       # the codec (PART codec of issue 17)
        section = SECTIONS.get(method)
        if section is None and method not in UNSECTIONED:
            raise ChainError(f"no sending policy section for method {method}")
        policy = self.send_policies.get((miner, section), SendPolicy())
        try:       # the outbox holds the actor's method and its params in go-state-types' JSON shape
            number, data = (0, b"") if method == "Send" else (actor_params.method_number(method),
                                                             actor_params.encode_params(method, params))
        except ValueError as exc:
            raise ChainError(f"{method} params: {exc}") from None
        given = {"GasLimit": gas_limit, "GasFeeCap": fee_cap, "GasPremium": premium}
        msg = message_json(self._addr(miner), sender or self._sender(miner, policy), number, data, value, 0)
        msg.update({k: (v if k == "GasLimit" else str(v)) for k, v in given.items() if v})
        msg_uuid = message_uuid(miner, nonce) if nonce is not None else None
        if self.messager is not None:       # the messager estimates gas, picks the nonce and signs
            return self.messager.push(msg_uuid or str(uuid.uuid4()), msg, policy)
        spec = policy.spec(msg_uuid or "00000000-0000-0000-0000-000000000000")
        try:
            if not all(given.values()):
                msg = policy.apply_estimate(self.call("GasEstimateMessageGas", msg, spec, TSK), given)
            signed = self.call("MpoolPushMessage", msg, spec)
        except NodeError as exc:       # the node's words name no sender ("mpool push: not enough funds: 0 < N")
            if "not enough funds" not in exc.message:
                raise
            raise ChainError(f"not enough funds in {msg['From']} for a message to f0{miner} ({method}): {exc}") from None
        sent = shapes.field(signed, "Message", "MpoolPushMessage")
        if (sent.get("Method"), sent.get("Params") or "", sent.get("To")) != (number, msg["Params"], msg["To"]):
            raise ChainError(f"MsgUuid {msg_uuid} of f0{miner} nonce {nonce} names another message on the node "
                             f"({sent.get('Method')}), not this {method}")
        cid = shapes.cid_str(shapes.field(signed, "CID", "MpoolPushMessage"), "MpoolPushMessage.CID")
        if premium and shapes.big(sent.get("GasPremium"), "MpoolPushMessage.GasPremium") < premium:
            return self._replace(cid, sent, msg)
        return cid

    def _replace(self, cid: str, pooled: dict, wanted: dict) -> str:
        """The node answered this MsgUuid with the message it signed first, at a lower premium:
        the outbox replaces it (Lotus' `mpool replace`: the same message and nonce with the new
        gas, signed by the node's wallet with WalletSignMessage, then MpoolPush). A message
        already executed is not replaced: its CID is the answer."""
        if self._search(cid) is not None:
            return cid
        body = {k: v for k, v in pooled.items() if k != "CID"}
        body.update({k: wanted[k] for k in ("GasLimit", "GasFeeCap", "GasPremium")})
        signed = self.call("WalletSignMessage", body["From"], body)
        new = shapes.cid_str(self.call("MpoolPush", signed), "MpoolPush")
        self._replaced[cid] = new
        log.info("message %s (nonce %s) replaced by %s (premium %s, fee cap %s)", cid, body.get("Nonce"), new,
                 body["GasPremium"], body["GasFeeCap"])
        return new

    # ------------------------------------------------------------------------ money

    def balance(self, address: str) -> int:
        return shapes.big(self.call("WalletBalance", address), "WalletBalance")

    def available_balance(self, miner: int) -> int:
        return shapes.big(self.call("StateMinerAvailableBalance", self._addr(miner), TSK), "StateMinerAvailableBalance")

    def locked_funds(self, miner: int) -> dict:
        """{"PreCommitDeposits": ..., "InitialPledge": ...} in attoFIL, from the miner actor's state."""
        what = "StateReadState"
        state = shapes.field(self.call(what, self._addr(miner), TSK), "State", what)
        return {k: shapes.big(shapes.field(state, k, f"{what}.State"), f"{what}.State.{k}")
                for k in ("PreCommitDeposits", "InitialPledge")}

    def _sector_template(self, miner: int) -> dict:
        """A SectorPreCommitInfo standing for 'a sector of this miner now': the deposit and pledge
        depend on its size, expiration and deals (none), not on its CIDs or number."""
        info = self.miner_info(miner)
        head = self.head()
        return {"SealProof": info.seal_proof, "SectorNumber": 0, "SealedCID": shapes.cid(TEMPLATE_SEALED_CID),
                "SealRandEpoch": max(0, head - 1), "DealIDs": [], "Expiration": head + TEMPLATE_LIFETIME, "UnsealedCid": None}

    def precommit_deposit(self, miner: int, sectors: int = 1) -> int:
        what = "StateMinerPreCommitDepositForPower"
        return sectors * shapes.big(self.call(what, self._addr(miner), self._sector_template(miner), TSK), what)

    def initial_pledge(self, miner: int, sectors: int = 1) -> int:
        what = "StateMinerInitialPledgeCollateral"
        return sectors * shapes.big(self.call(what, self._addr(miner), self._sector_template(miner), TSK), what)

    def base_fee(self) -> int | None:
        """The head block's ParentBaseFee: what messages included on the head pay (None when the
        node shows no blocks)."""
        blocks = shapes.field(self.call("ChainHead"), "Blocks", "ChainHead") or []
        if not blocks:
            return None
        return shapes.big(shapes.field(blocks[0], "ParentBaseFee", "ChainHead.Blocks[0]"), "ChainHead.Blocks[0].ParentBaseFee")

    def estimate_gas(self, miner: int, method: str, params: dict) -> int:
        """GasEstimateGasLimit from the miner's sender for the section (before over-estimation)."""
        from .. import actor_params
        policy = self.send_policies.get((miner, SECTIONS.get(method)), SendPolicy())
        try:
            number, data = (0, b"") if method == "Send" else (actor_params.method_number(method),
                                                             actor_params.encode_params(method, params))
        except ValueError as exc:
            raise ChainError(f"{method} params: {exc}") from None
        msg = message_json(self._addr(miner), self._sender(miner, policy), number, data, 0, 0)
        return shapes.integer(self.call("GasEstimateGasLimit", msg, TSK), "GasEstimateGasLimit")

    def receipt(self, message: str) -> Receipt | None:
        """The receipt once executed (StateSearchMsg, a replacement's included), None while the
        message is in the node's pool (MpoolPending: pending, or back there after a reorg took
        its receipt); MessageNotFound when it is neither (a reorg dropped it, or the node never
        had it). The chain is searched again after the pool: a message executed in between is
        not taken for lost."""
        if self.messager is not None:
            return self.messager.receipt(message)
        for first in (True, False):
            receipt = self._search(message)
            if receipt is not None:
                return receipt
            if first and self._pooled(message):
                return None
        raise MessageNotFound(f"message {message} not found: neither on chain nor in the node's pool (never pushed, or lost in a reorg)")

    def _search(self, message: str) -> Receipt | None:
        lookup = self.call("StateSearchMsg", TSK, shapes.cid(message), SEARCH_LIMIT, True)
        return None if lookup is None else shapes.receipt(message, lookup)

    def message_known(self, message: str) -> bool:
        """Whether the node has the message (pooled or on chain): ChainGetMessage finds it; a
        pending message and an unknown one both search as null (StateSearchMsg). With a messager,
        whose receipt() already refuses an unknown id, and on a node without the method: True."""
        if self.messager is not None:
            return True
        try:
            self.call("ChainGetMessage", shapes.cid(message))
        except NodeError as exc:
            return exc.code == METHOD_NOT_FOUND
        return True

    def _pooled(self, message: str) -> bool:
        """The message, or the replacement this client pushed for it, is in the node's pool."""
        pending = self.call("MpoolPending", TSK) or []
        if not isinstance(pending, list):
            raise ChainError(f"MpoolPending: expected a list of signed messages, got {pending!r:.200}")
        cids = {shapes.cid_str(shapes.field(m, "CID", "MpoolPending[]"), "MpoolPending[].CID") for m in pending}
        seen = set()
        while message not in cids and message in self._replaced and message not in seen:
            seen.add(message)
            message = self._replaced[message]
        return message in cids

    def wait_message(self, message: str, confidence: int) -> Receipt:
        """StateWaitMsg (Message.WaitMessage with a messager): blocks until the message has
        `confidence` epochs on it."""
        if self.messager is not None:
            return self.messager.wait(message, confidence)
        lookup = self.call("StateWaitMsg", shapes.cid(message), confidence, SEARCH_LIMIT, True)
        return shapes.receipt(message, lookup, "StateWaitMsg")

    # ------------------------------------------- what the devnet answers exactly, approximated

    def allocated(self, miner: int) -> list[tuple[bool, int]]:
        """StateMinerAllocated: every sector number the miner's actor has allocated, as runs."""
        try:
            return _bitfield.runs_from_json(self._state("StateMinerAllocated", self._addr(miner)), "StateMinerAllocated")
        except ValueError as exc:
            raise ChainError(str(exc)) from None

    def highest_sector_number(self, miner: int) -> int | None:
        runs = self.allocated(miner)
        total = sum(length for _, length in runs)
        return total - 1 if runs and runs[-1][0] else None

    def next_nonce(self, miner: int) -> int:
        """0: a node's nonces are its wallet's, not the outbox's; a resend is deduplicated by
        MsgUuid instead, so the outbox's nonces can never be behind the node."""
        return 0

    def message_at_nonce(self, miner: int, nonce: int) -> dict | None:
        return None          # never asked: next_nonce never reports the state behind

    def executed_messages(self, miner: int) -> list[dict]:
        """Not listed by a full node without scanning the chain: a rebuild takes sectors and
        PreCommits from state reads instead (recover_sectors)."""
        return []

    def miners(self) -> list[MinerInfo]:
        return []

    def create_miner(self, *args, **kwargs):
        raise ChainError("miners are created on the chain itself (lotus-miner init / sophon), not by the manager")

    # ------------------------------- the devnet's own methods (Devnet.*), absent from a node

    def _devnet(self, method: str, *params, absent=None, refusal: str | None = None):
        """A Devnet.* call when the node is the devnet's API; on a node without it (method not
        found) `absent`, or ChainError(`refusal`)."""
        if self._devnet_methods:
            try:
                return self.client.call(f"Devnet.{method}", *params)
            except NodeError as exc:
                if exc.code != METHOD_NOT_FOUND:
                    raise
                self._devnet_methods = False
        if refusal is not None:
            raise ChainError(refusal)
        return absent

    def takes_builtin_aggregate(self) -> bool:
        """Only the devnet's API takes the engine's stand-in aggregate (Devnet.TakesBuiltinAggregate);
        a node gets each sector's proof side by side. Asked once: the node does not change."""
        if self._takes_aggregate is None:
            self._takes_aggregate = bool(self._devnet("TakesBuiltinAggregate", absent=False))
        return self._takes_aggregate

    def external_proof_refusal(self, kind: str, proof: bytes, what: str, partitions: int | None = None) -> str | None:
        """The devnet's reason to refuse an external processor's Groth16 proof, which it cannot
        verify (unless its [Chain] TrustExternalProofs), asked before the message is paid for; a
        node verifies the proof itself: None, send it."""
        why = self._devnet("ExternalProofRefusal", kind, shapes.b64(proof), what, partitions, absent=None)
        if why is not None and not isinstance(why, str):
            raise ChainError(f"Devnet.ExternalProofRefusal: expected a reason or null, got {why!r:.200}")
        return why

    def publish_deal(self, miner: int, piece_cid: str, piece_size: int, start_epoch: int, end_epoch: int) -> int:
        return shapes.integer(self._devnet("PublishDeal", {
            "Provider": self._addr(miner), "PieceCID": shapes.cid(piece_cid), "PieceSize": piece_size,
            "StartEpoch": start_epoch, "EndEpoch": end_epoch},
            refusal="deals come from the market ([Common.API] Market), not from a Lotus chain"), "Devnet.PublishDeal")

    def deal(self, deal_id: int) -> dict | None:
        return self._devnet("Deal", deal_id)

    # ------------------------------------------------------------------- winning post

    def winning_election(self, miner: int, epoch: int) -> bool:
        """The devnet's election; a node: never (block production is lotus-miner's or venus-miner's)."""
        return bool(self._devnet("WinningElection", self._addr(miner), epoch, absent=False))

    def winning_post_randomness(self, miner: int, epoch: int) -> bytes:
        r = self._randomness(True, DST.WINNING_POST_CHALLENGE_SEED, epoch, miner_entropy(miner))
        return r[:31] + bytes([r[31] & 0x3F])

    def winning_post_sectors(self, miner: int, epoch: int) -> list[SectorOnChain]:
        rows = self._devnet("WinningPostSectors", self._addr(miner), epoch, absent=None)
        if rows is None:
            return self.sectors(miner)
        return [shapes.sector(miner, s, "Devnet.WinningPostSectors[]") for s in rows]

    def submit_winning_post(self, miner: int, epoch: int, proof: bytes) -> None:
        self._devnet("SubmitWinningPoSt", self._addr(miner), epoch, shapes.b64(proof),
                     refusal="blocks are produced by the block producer (venus-miner / lotus-miner), not the manager")
