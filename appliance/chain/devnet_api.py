"""The devnet's Filecoin API: the subset of Lotus' full-node JSON-RPC methods LotusChain uses,
with Lotus' names and JSON shapes (build/openrpc/full.json at Lotus b835fab7), served on its
own endpoint (POST /rpc/v1 and /rpc/v0, a bearer token signed with the devnet's secret).

Messages: MpoolPushMessage takes a Lotus Message (params as CBOR, base64): a miner method from
that miner's worker, its params decoded with the codec (actor_params.decode_params) and handed
to the devnet's actor rules as decoded, or a plain Send (method 0) with a Value from any address.
Gas left zero is estimated as Lotus does and the sender must hold gas limit x fee cap + value
(devnet_api_money.py); the message goes to Devnet.push_message with its value and gas, and the
answer is the message with its nonce and real CID (dag-cbor, blake2b-256, as Lotus'
Message.Cid). A second push with the same MsgUuid answers the message already queued, as Lotus'
MessageSigner does. A replacement (same nonce, premium 1.25x) comes as WalletSignMessage then
MpoolPush of the re-signed message, as `lotus mpool replace` sends it. What the devnet lacks,
said where it shows: no signatures (Signature.Type 0, empty), a head tipset of one block whose
CIDs are derived from its epoch, no block contents beyond height, parents and ParentBaseFee."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from ..rpc import INVALID_PARAMS, RPCError
from ..proofs.external_snark import KINDS as PROOF_KINDS
from ..rpc.server import RPCServer
from .devnet import Devnet
from ..core.db import Schema
from .lotus import shapes
from . import devnet_api_money as money_api
from .lotus.message import message_cid
from .randomness import DST, draw
from .types import ChainError, MessageNotFound

NETWORK_VERSION = 25               # what StateNetworkVersion answers (the digest randomness methods exist)
WORKER_ID_BASE = 1_000_000_000     # a devnet miner's worker is the ID address f0<base + actor>
WAIT_LIMIT = 25.0                  # StateWaitMsg answers within this (below the server's request timeout)
# MsgUuid -> the devnet nonce it took (written before the push, so that a crash in between re-pushes
# the same nonce, which the devnet answers with the same message), then its CID and answer
UUID_SCHEMA = """CREATE TABLE IF NOT EXISTS pushed (uuid TEXT PRIMARY KEY, miner INTEGER NOT NULL, nonce INTEGER NOT NULL,
    cid TEXT UNIQUE, devnet_id TEXT, signed TEXT, UNIQUE (miner, nonce));
CREATE TABLE IF NOT EXISTS replaced (cid TEXT PRIMARY KEY, devnet_id TEXT NOT NULL, body TEXT, signed TEXT)"""


def _api_v1(db) -> None:
    for statement in UUID_SCHEMA.split(";"):
        db.execute(statement)


# devnet-api.db, for the manager's backups: it belongs with devnet.db (the MsgUuid -> nonce record
# that keeps a resend from becoming a second message), so an archive holds both, from one moment.
DEVNET_API_SCHEMA = Schema("devnet API", [_api_v1], frozenset({"pushed", "replaced"}))


def worker_address(actor: int) -> str:
    return shapes.id_address(WORKER_ID_BASE + actor)


def _any(v, field):
    return v


def _addr(v, field) -> int:
    try:
        return shapes.actor_id(v, field)
    except ChainError as exc:
        raise RPCError(INVALID_PARAMS, str(exc)) from None


def _uint(v, field) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise RPCError(INVALID_PARAMS, f"{field}: expected an unsigned integer, got {v!r}")
    return v


def _epoch(v, field) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise RPCError(INVALID_PARAMS, f"{field}: expected an epoch, got {v!r}")
    return v


def _flag(v, field) -> bool:
    if not isinstance(v, bool):
        raise RPCError(INVALID_PARAMS, f"{field}: expected true or false, got {v!r}")
    return v


def _cid(v, field) -> str:
    try:
        return shapes.cid_str(v, field)
    except ChainError as exc:
        raise RPCError(INVALID_PARAMS, str(exc)) from None


def _bytes(v, field) -> bytes:
    try:
        return shapes.unb64(v, field)
    except ChainError as exc:
        raise RPCError(INVALID_PARAMS, str(exc)) from None


def _proof_kind(v, field) -> str:
    if v not in PROOF_KINDS:
        raise RPCError(INVALID_PARAMS, f"{field}: expected one of {', '.join(PROOF_KINDS)}, got {v!r}")
    return v


def _text(v, field) -> str:
    if not isinstance(v, str):
        raise RPCError(INVALID_PARAMS, f"{field}: expected a string, got {v!r}")
    return v


def _partitions(v, field) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise RPCError(INVALID_PARAMS, f"{field}: expected a partition count of at least 1 or null, got {v!r}")
    return v


class DevnetAPI:
    """The Filecoin.* methods over one Devnet; `register` puts them on an RPCServer."""

    def __init__(self, devnet: Devnet, state_path: Path):
        self.devnet = devnet
        self._db = sqlite3.connect(str(state_path), check_same_thread=False, isolation_level=None)
        self._db.executescript(UUID_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(replaced)")}
        for column in ("body", "signed"):       # a devnet-api.db from before ChainGetMessage / MpoolPending
            if column not in have:
                self._db.execute(f"ALTER TABLE replaced ADD COLUMN {column} TEXT")
        self._push_lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def register(self, rpc: RPCServer) -> None:
        tsk = ("tsk", _any)
        m = [("ChainHead", self.chain_head, []),
             ("StateNetworkVersion", self.network_version, [tsk]),
             ("StateGetRandomnessDigestFromTickets", lambda e: self.digest(False, e), [("randEpoch", _epoch), tsk]),
             ("StateGetRandomnessDigestFromBeacon", lambda e: self.digest(True, e), [("randEpoch", _epoch), tsk]),
             ("StateGetRandomnessFromTickets", lambda p, e, b: self.randomness(False, p, e, b),
              [("personalization", _uint), ("randEpoch", _epoch), ("entropy", _bytes), tsk]),
             ("StateGetRandomnessFromBeacon", lambda p, e, b: self.randomness(True, p, e, b),
              [("personalization", _uint), ("randEpoch", _epoch), ("entropy", _bytes), tsk]),
             ("StateMinerInfo", self.miner_info, [("miner", _addr), tsk]),
             ("StateMinerProvingDeadline", self.proving_deadline, [("miner", _addr), tsk]),
             ("StateMinerDeadlines", self.deadlines, [("miner", _addr), tsk]),
             ("StateMinerPartitions", self.partitions, [("miner", _addr), ("dlIdx", _uint), tsk]),
             ("StateSectorGetInfo", self.sector, [("miner", _addr), ("sectorNumber", _uint), tsk]),
             ("StateSectorPreCommitInfo", self.precommit, [("miner", _addr), ("sectorNumber", _uint), tsk]),
             ("StateMinerSectors", self.sectors, [("miner", _addr), ("sectors", _any), tsk]),
             ("StateMinerActiveSectors", self.active_sectors, [("miner", _addr), tsk]),
             ("StateSectorExpiration", self.sector_expiration, [("miner", _addr), ("sectorNumber", _uint), tsk]),
             ("StateSectorPartition", self.sector_partition, [("miner", _addr), ("sectorNumber", _uint), tsk]),
             ("StateMinerSectorAllocated", self.allocated, [("miner", _addr), ("sectorNumber", _uint), tsk]),
             ("StateMinerAllocated", self.all_allocated, [("miner", _addr), tsk]),
             ("StateMinerSectorCount", self.sector_count, [("miner", _addr), tsk]),
             ("StateMinerPower", self.power, [("miner", _addr), tsk]),
             ("StateLookupID", self.lookup_id, [("address", _any), tsk]),
             ("ChainGetMessage", self.get_chain_message, [("messageCid", _cid)]),
             ("StateSearchMsg", lambda t, c, limit, replaced: self.search(c), [("from", _any), ("msg", _cid), ("limit", _epoch),
                                                                                ("allowReplaced", _any)]),
             ("StateWaitMsg", lambda c, conf, limit, replaced: self.wait(c, conf), [("cid", _cid), ("confidence", _uint),
                                                                                    ("limit", _epoch), ("allowReplaced", _any)]),
             ("WalletBalance", self.wallet_balance, [("address", _any)]),
             ("StateReadState", self.read_state, [("actor", _addr), tsk]),
             ("StateMinerAvailableBalance", lambda a: str(self.devnet.available_balance(a)), [("miner", _addr), tsk]),
             ("StateMinerPreCommitDepositForPower", lambda a, info: self.per_sector(self.devnet.precommit_deposit, a, info),
              [("miner", _addr), ("pci", _any), tsk]),
             ("StateMinerInitialPledgeCollateral", lambda a, info: self.per_sector(self.devnet.initial_pledge, a, info),
              [("miner", _addr), ("pci", _any), tsk]),
             ("GasEstimateGasLimit", self.estimate_limit, [("msg", _any), tsk]),
             ("GasEstimateMessageGas", self.estimate, [("msg", _any), ("spec", _any), tsk]),
             ("MpoolPending", self.pending, [tsk]),
             ("MpoolPushMessage", self.push, [("msg", _any), ("spec", _any)]),
             ("WalletSignMessage", self.sign, [("address", _any), ("msg", _any)]),
             ("MpoolPush", self.push_signed, [("smsg", _any)])]
        for name, func, params in m:
            perm = "sign" if name in ("MpoolPushMessage", "WalletSignMessage") else "write" if name == "MpoolPush" else "read"
            rpc.register(f"Filecoin.{name}", _chain_errors(func, bool(params) and params[-1] is tsk), perm, params)
        for name, func, params in (
                ("HasMessageByUid", self.has_message, [("id", _any)]),
                ("PushMessageWithId", self.push_with_id, [("id", _any), ("msg", _any), ("meta", _any)]),
                ("GetMessageByUid", self.get_message, [("id", _any)]),
                ("WaitMessage", self.wait_message, [("id", _any), ("confidence", _uint)])):
            rpc.register(f"Message.{name}", _chain_errors(func, False), "write" if name.startswith("Push") else "read", params)
        # the devnet's own, beyond Lotus' API: block production and the embedded market, which
        # on a real chain are the block producer's and the market's (LotusChain uses them when a
        # node has them, docs/chain.md)
        for name, func, perm, params in (
                ("WinningElection", lambda m, e: self.devnet.winning_election(m, e), "read", [("miner", _addr), ("epoch", _epoch)]),
                ("WinningPostSectors", lambda m, e: [shapes.sector_json(s) for s in self.devnet.winning_post_sectors(m, e)],
                 "read", [("miner", _addr), ("epoch", _epoch)]),
                ("SubmitWinningPoSt", lambda m, e, proof: self.devnet.submit_winning_post(m, e, proof), "sign",
                 [("miner", _addr), ("epoch", _epoch), ("proof", _bytes)]),
                ("PublishDeal", self.publish_deal, "sign", [("deal", _any)]),
                ("Deal", lambda deal_id: self.devnet.deal(deal_id), "read", [("dealID", _uint)]),
                # no Lotus method estimates a termination fee (lotus-shed computes it from the state)
                # the builtin engine's aggregate is a stand-in for SnarkPack that only the devnet decodes
                ("TakesBuiltinAggregate", lambda: self.devnet.takes_builtin_aggregate(), "read", []),
                ("TerminationFee", lambda m, ns: str(self.devnet.termination_fee(m, list(shapes.numbers(ns, "sectors")))),
                 "read", [("miner", _addr), ("sectors", _any)]),
                # the devnet cannot verify Groth16: why it would refuse an external processor's
                # proof (None: it takes it), asked before the manager pays for the message
                ("ExternalProofRefusal", self.devnet.external_proof_refusal, "read",
                 [("kind", _proof_kind), ("proof", _bytes), ("what", _text), ("partitions", _partitions)])):
            rpc.register(f"Devnet.{name}", _chain_errors(func, False), perm, params)
        # the devnet's admin reorg (reorg.py), for tests and `damocles util chain reorg`: no Lotus method does this
        rpc.register("Devnet.Reorg", _chain_errors(self.reorg, False), "admin", [("depth", _uint), ("drop", _flag)])
        # the clock moved by hand (a devnet served with --block-time 0), for tests: the new head's epoch
        rpc.register("Devnet.Advance", _chain_errors(self.devnet.advance, False), "admin", [("epochs", _uint)])
        if "/rpc/v1" not in rpc.rpc_paths:
            rpc.rpc_paths = (*rpc.rpc_paths, "/rpc/v1")

    # ------------------------------------------------------------------------ reads

    def chain_head(self) -> dict:
        """One block a tipset, carrying the base fee the head's messages pay (ParentBaseFee)."""
        head = self.devnet.head()
        fee = self.devnet.base_fee()
        block = money_api.block_header(shapes.id_address(0), head, [shapes.cid(self._tipset_cid(head - 1))], fee)
        return {"Cids": [shapes.cid(self._tipset_cid(head))], "Blocks": [block], "Height": head}

    def _tipset_cid(self, epoch: int) -> str:
        # a re-made epoch (a reorg) is another tipset: its key differs, as a real fork's does
        digest = hashlib.blake2b(b"devnet-tipset" + self.devnet._genesis + epoch.to_bytes(8, "big", signed=True)
                                 + self.devnet._fork_entropy(epoch), digest_size=32).digest()
        raw = bytes([0x01, 0x71, 0xA0, 0xE4, 0x02, 0x20]) + digest
        return "b" + base64.b32encode(raw).decode().lower().rstrip("=")

    def network_version(self) -> int:
        return NETWORK_VERSION

    def _drawable(self, epoch: int) -> None:
        head = self.devnet.head()
        if epoch < 0 or epoch > head:
            raise ChainError(f"cannot draw randomness from epoch {epoch} (head {head})")

    def digest(self, beacon: bool, epoch: int) -> str:
        self._drawable(epoch)
        d = self.devnet._beacon_digest(epoch) if beacon else self.devnet._ticket_digest(epoch)
        return shapes.b64(d)

    def randomness(self, beacon: bool, tag: int, epoch: int, entropy: bytes) -> str:
        self._drawable(epoch)
        try:
            dst = DST(tag)
        except ValueError:
            raise RPCError(INVALID_PARAMS, f"personalization: {tag} is not a DomainSeparationTag") from None
        d = self.devnet._beacon_digest(epoch) if beacon else self.devnet._ticket_digest(epoch)
        return shapes.b64(draw(dst, d, epoch, entropy))

    def miner_info(self, miner: int) -> dict:
        info = self.devnet.miner_info(miner)
        worker = worker_address(miner)
        owner = shapes.id_address(miner)
        return {"Owner": owner, "Worker": worker, "NewWorker": None, "ControlAddresses": [],
                "WorkerChangeEpoch": -1, "PeerId": None, "Multiaddrs": [], "WindowPoStProofType": info.window_post_proof,
                "SectorSize": info.sector_size, "WindowPoStPartitionSectors": _partition_sectors(info),
                "ConsensusFaultElapsed": -1, "PendingOwnerAddress": None, "Beneficiary": owner,
                "BeneficiaryTerm": {"Quota": "0", "UsedQuota": "0", "Expiration": 0}, "PendingBeneficiaryTerm": None}

    def proving_deadline(self, miner: int) -> dict:
        return shapes.deadline_json(self.devnet.proving_deadline(miner), self.devnet.policy)

    def deadlines(self, miner: int) -> list[dict]:
        return [{"PostSubmissions": shapes.runs(p.index for p in parts if p.proven), "DisputableProofCount": 0, "DailyFee": "0"}
                for parts in self.devnet.all_deadline_partitions(miner)]

    def partitions(self, miner: int, index: int) -> list[dict]:
        if index >= self.devnet.policy.wpost_period_deadlines:
            raise RPCError(INVALID_PARAMS, f"dlIdx: {index} is not a deadline (0..{self.devnet.policy.wpost_period_deadlines - 1})")
        return [shapes.partition_json(p) for p in self.devnet.deadline_partitions(miner, index)]

    def sector(self, miner: int, number: int) -> dict | None:
        s = self.devnet.sector(miner, number)
        return None if s is None else shapes.sector_json(s)

    def precommit(self, miner: int, number: int) -> dict | None:
        p = self.devnet.precommit(miner, number)
        return None if p is None else shapes.precommit_json(p)

    def sectors(self, miner: int, numbers) -> list[dict]:
        self.devnet.miner_info(miner)
        if numbers is None:
            return [shapes.sector_json(s) for s in self.devnet.sectors(miner)]
        found = self.devnet.sectors_info(miner, shapes.numbers(numbers, "sectors"))     # those asked, not every sector
        return [shapes.sector_json(found[n]) for n in sorted(found)]

    def active_sectors(self, miner: int) -> list[dict]:
        return [shapes.sector_json(s) for s in self.devnet.active_sectors(miner)]

    def sector_expiration(self, miner: int, number: int) -> dict:
        """Lotus answers an error for a sector that is not live (ended, or never activated)."""
        e = self.devnet.sector_expiration(miner, number)
        if e is None:
            raise ChainError(f"failed to find sector {number}")
        return shapes.sector_expiration_json(e)

    def sector_partition(self, miner: int, number: int) -> dict:
        """Lotus answers an error for a sector in no partition (builtin-actors' find_sector)."""
        loc = self.devnet.sector_location(miner, number)
        if loc is None:
            raise ChainError(f"sector {number} not due at any deadline")
        return shapes.sector_location_json(loc)

    def allocated(self, miner: int, number: int) -> bool:
        self.devnet.head()
        return self.devnet.is_allocated(miner, number)

    def all_allocated(self, miner: int) -> list[int]:
        self.devnet.miner_info(miner)
        self.devnet.head()
        rows = self.devnet.database.query("SELECT number FROM allocated WHERE miner = ? UNION SELECT number FROM sectors "
                                          "WHERE miner = ?", (miner, miner))
        return shapes.runs(n for (n,) in rows)

    def sector_count(self, miner: int) -> dict:
        p = self.devnet.miner_power(miner)
        return {"Live": p.active_sectors + p.faulty_sectors, "Active": p.active_sectors, "Faulty": p.faulty_sectors}

    def power(self, miner: int) -> dict:
        mine = self.devnet.miner_power(miner)
        total = [self.devnet.miner_power(m.actor) for m in self.devnet.miners()]
        return {"MinerPower": {"RawBytePower": str(mine.raw_bytes), "QualityAdjPower": str(mine.qa_bytes)},
                "TotalPower": {"RawBytePower": str(sum(p.raw_bytes for p in total)),
                               "QualityAdjPower": str(sum(p.qa_bytes for p in total))},
                "HasMinPower": mine.raw_bytes > 0}

    def lookup_id(self, address) -> str:
        actor = _addr(address, "address")
        known = {m.actor for m in self.devnet.miners()}
        if actor not in known and actor - WORKER_ID_BASE not in known:
            raise ChainError(f"actor not found: {address}")
        return address

    def _account(self, address: str) -> str:
        """The devnet's account behind an address: a miner's worker (f0<1e9 + actor>) is its
        MinerInfo.worker; any other address is its own account."""
        try:
            actor = shapes.actor_id(address)
        except ChainError:
            return address
        if actor >= WORKER_ID_BASE:
            try:
                return self.devnet.miner_info(actor - WORKER_ID_BASE).worker
            except ChainError:
                pass
        return address

    def wallet_balance(self, address) -> str:
        """0 for an address the devnet never saw, as Lotus answers for an actor not found."""
        return str(self.devnet.balance(self._account(money_api.check_address(address, "address"))))

    def read_state(self, miner: int) -> dict:
        """StateReadState of a miner actor: its balance and the money fields of its state (Lotus
        answers the whole miner state; the devnet has no actor code, its Code is null)."""
        locked = self.devnet.locked_funds(miner)
        return {"Balance": str(self.devnet.balance(shapes.id_address(miner))), "Code": None,
                "State": {"PreCommitDeposits": str(locked["PreCommitDeposits"]), "LockedFunds": "0", "FeeDebt": "0",
                          "InitialPledge": str(locked["InitialPledge"])}}

    def per_sector(self, amount, miner: int, info) -> str:
        """StateMinerPreCommitDepositForPower / StateMinerInitialPledgeCollateral for one sector:
        the devnet's amount for the miner's sector size (the SectorPreCommitInfo's SealProof must
        be of that size; its expiration and deals do not change it on the devnet)."""
        if not isinstance(info, dict) or "SealProof" not in info:
            raise RPCError(INVALID_PARAMS, "pci: expected a SectorPreCommitInfo with SealProof")
        from ..core.proof_types import seal_proof
        try:
            size = seal_proof(_uint(info["SealProof"], "pci.SealProof")).size.bytes
        except (KeyError, ValueError):
            raise RPCError(INVALID_PARAMS, f"pci.SealProof: {info['SealProof']!r} is not a seal proof type") from None
        if size != self.devnet.miner_info(miner).sector_size:
            raise ChainError(f"pci.SealProof: {info['SealProof']} is not for the {self.devnet.miner_info(miner).sector_size}"
                             f"-byte sectors of f0{miner}")
        return str(amount(miner, 1))

    # -------------------------------------------------------------------- messages

    def _lookup(self, cid: str):
        row = (self._db.execute("SELECT devnet_id FROM pushed WHERE cid = ?", (cid,)).fetchone()
               or self._db.execute("SELECT devnet_id FROM replaced WHERE cid = ?", (cid,)).fetchone())
        if row is None or row[0] is None:
            return None, None
        try:
            return row[0], self.devnet.receipt(row[0])
        except MessageNotFound:      # dropped by a reorg made on the Devnet itself (its administration)
            return None, None

    def _dropped(self, devnet_id: str) -> bool:
        """The devnet lost the message (or the replacement that took its place) in a reorg."""
        try:
            self.devnet.receipt(devnet_id)
        except MessageNotFound:
            return True
        return False

    def _cid_of(self, devnet_id: str, asked: str) -> str:
        """The CID of the message the devnet executed (a replacement's, when one replaced `asked`)."""
        row = (self._db.execute("SELECT cid FROM pushed WHERE devnet_id = ?", (devnet_id,)).fetchone()
               or self._db.execute("SELECT cid FROM replaced WHERE devnet_id = ?", (devnet_id,)).fetchone())
        return row[0] if row else asked

    def get_chain_message(self, cid: str) -> dict:
        """ChainGetMessage: a message pushed or replaced through this API (pooled or executed), as
        Lotus finds it in its blockstore; any other CID is not found, with Lotus' words."""
        row = self._db.execute("SELECT signed FROM pushed WHERE cid = ?", (cid,)).fetchone()
        body = json.loads(row[0])["Message"] if row and row[0] else None
        if body is None:
            row = self._db.execute("SELECT body FROM replaced WHERE cid = ?", (cid,)).fetchone()
            body = json.loads(row[0]) if row and row[0] else None
        if body is None:
            raise ChainError(f"failed to load message: ipld: could not find {cid}")
        return {k: v for k, v in body.items() if k != "CID"}

    def search(self, cid: str) -> dict | None:
        devnet_id, receipt = self._lookup(cid)
        if receipt is None:
            return None
        return self._msg_lookup(cid, receipt)

    def _msg_lookup(self, cid: str, receipt) -> dict:
        executed = self._cid_of(receipt.message, cid)       # allowReplaced: the replacement's CID
        returned = None
        if receipt.returned is not None:
            (method,) = self.devnet.database.one("SELECT method FROM messages WHERE id = ?", (receipt.message,))
            returned = shapes.return_cbor(method, receipt.returned)
        return {"Message": shapes.cid(executed), "Receipt": {"ExitCode": receipt.exit_code, "Return": returned,
                                                             "GasUsed": receipt.gas_used, "EventsRoot": None},
                "ReturnDec": receipt.returned, "TipSet": [shapes.cid(self._tipset_cid(receipt.epoch))], "Height": receipt.epoch}

    def wait(self, cid: str, confidence: int) -> dict:
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            devnet_id, receipt = self._lookup(cid)
            if devnet_id is None:
                raise ChainError(f"message {cid} not found")
            if receipt is not None and self.devnet.head() >= receipt.epoch + confidence:
                return self._msg_lookup(cid, receipt)
            if time.monotonic() > deadline:
                raise ChainError(f"message {cid} not executed with {confidence} confirmations within {WAIT_LIMIT:g}s; ask again")
            time.sleep(min(0.2, max(0.01, self.devnet.policy.block_time / 4)))

    def _decode(self, msg) -> tuple[int, str, dict, str]:
        """(miner, the actor's method name, its params as decoded, the devnet account paying): a
        miner method from that miner's worker, or a plain Send (method 0) from any address."""
        from . import actor_params        # the codec (PART codec of issue 17)
        if not isinstance(msg, dict):
            raise RPCError(INVALID_PARAMS, "msg: expected a Message object")
        miner = _addr(msg.get("To"), "msg.To")
        info = self.devnet.miner_info(miner)
        number = _uint(msg.get("Method"), "msg.Method")
        if number == money_api.SEND:
            if msg.get("Params"):
                raise RPCError(INVALID_PARAMS, "msg.Params: a Send (method 0) takes no params")
            return miner, "Send", {}, self._account(money_api.check_address(msg.get("From"), "msg.From"))
        if msg.get("From") not in (worker_address(miner), info.worker):
            raise ChainError(f"msg.From: {msg.get('From')} is not the worker of f0{miner} ({worker_address(miner)})")
        try:
            method = actor_params.method_name(number)
            params = actor_params.decode_params(method, _bytes(msg.get("Params") or "", "msg.Params"))
        except (ValueError, KeyError) as exc:
            raise RPCError(INVALID_PARAMS, f"msg.Params: {exc}") from None
        return miner, method, params, info.worker

    def estimate_limit(self, msg) -> int:
        """GasEstimateGasLimit: the gas the message would use at head (the devnet's gas model)."""
        miner, method, params, _ = self._decode(msg)
        return self.devnet.estimate_gas(miner, method, params)

    def estimate(self, msg, spec) -> dict:
        miner, method, params, _ = self._decode(msg)
        return money_api.estimate_message_gas(self.devnet, miner, method, params, msg, spec)

    def push(self, msg: dict, spec) -> dict:
        msg_uuid = spec.get("MsgUuid") if isinstance(spec, dict) else None
        if not msg_uuid or msg_uuid == "00000000-0000-0000-0000-000000000000":
            msg_uuid = None
        return self._push(msg, msg_uuid, spec)

    def _push(self, msg: dict, msg_uuid: str | None, spec=None) -> dict:
        """As Lotus' MpoolPushMessage: the same MsgUuid answers the message signed the first time;
        otherwise gas left zero is estimated, the sender must hold gas limit x fee cap + value,
        and the message takes the next nonce."""
        miner, method, params, sender = self._decode(msg)
        with self._push_lock:
            row = self._db.execute("SELECT nonce, signed, devnet_id FROM pushed WHERE uuid = ?",
                                   (msg_uuid,)).fetchone() if msg_uuid else None
            if row is not None and row[1] is not None and not self._dropped(row[2]):
                return json.loads(row[1])
            sent = {k: msg.get(k) for k in ("To", "From", "Value", "GasLimit", "GasFeeCap", "GasPremium", "Method", "Params")}
            sent["Value"] = str(money_api.parse_big(sent["Value"] or "0", "msg.Value"))
            sent = money_api.estimate_message_gas(self.devnet, miner, method, params, sent, spec)
            money_api.check_funds(self.devnet.balance(sender), sent)
            if row is not None:
                nonce = row[0]
            else:
                taken = self._db.execute("SELECT MAX(nonce) FROM pushed WHERE miner = ?", (miner,)).fetchone()[0]
                nonce = max(self.devnet.next_nonce(miner), -1 if taken is None else taken + 1)
                self._db.execute("INSERT INTO pushed (uuid, miner, nonce) VALUES (?, ?, ?)",
                                 (msg_uuid or f"none:{miner}:{nonce}", miner, nonce))
            devnet_id = self._devnet_push(miner, method, params, nonce, sent, sender)
            sent.update(Version=0, Nonce=nonce)
            cid = message_cid(sent)
            signed = _signed(sent, cid)
            self._db.execute("UPDATE pushed SET cid = ?, devnet_id = ?, signed = ? WHERE miner = ? AND nonce = ?",
                             (cid, devnet_id, json.dumps(signed), miner, nonce))
            return signed

    def _devnet_push(self, miner: int, method: str, params: dict, nonce: int, msg: dict, sender: str) -> str:
        return self.devnet.push_message(miner, method, params, nonce, value=int(msg["Value"]), gas_limit=int(msg["GasLimit"]),
                                        fee_cap=int(msg["GasFeeCap"]), premium=int(msg["GasPremium"]), sender=sender)

    def sign(self, address, msg) -> dict:
        """WalletSignMessage: the devnet's wallet holds its workers' keys but signs nothing (the
        Signature is empty, Type 0); what it checks is that it would be the signer."""
        self._decode(msg)
        if address != msg.get("From"):
            raise ChainError(f"address: {address} is not the message's From ({msg.get('From')})")
        body = {k: msg.get(k) for k in ("Version", "To", "From", "Nonce", "Value", "GasLimit", "GasFeeCap", "GasPremium",
                                        "Method", "Params")}
        try:
            return _signed(body, message_cid(body))
        except (KeyError, TypeError, ValueError) as exc:
            raise RPCError(INVALID_PARAMS, f"msg: {exc}") from None

    def push_signed(self, smsg) -> dict:
        """MpoolPush of a signed message: on the devnet, the replacement of a pooled message (what
        `lotus mpool replace` sends: the same nonce, a premium at least 1.25x the old); a message at
        a nonce the devnet never pooled is refused (new messages go through MpoolPushMessage)."""
        msg = smsg.get("Message") if isinstance(smsg, dict) else None
        miner, method, params, sender = self._decode(msg)
        nonce = _uint(msg.get("Nonce"), "smsg.Message.Nonce")
        body = {k: msg.get(k) for k in ("Version", "To", "From", "Nonce", "Value", "GasLimit", "GasFeeCap", "GasPremium",
                                        "Method", "Params")}
        money_api.parse_gas_limit(body["GasLimit"])
        for key in ("Value", "GasFeeCap", "GasPremium"):
            body[key] = str(money_api.parse_big(body[key] or "0", f"smsg.Message.{key}"))
        cid = message_cid(body)
        with self._push_lock:
            row = self._db.execute("SELECT cid, devnet_id FROM pushed WHERE miner = ? AND nonce = ?", (miner, nonce)).fetchone()
            if row is None or row[1] is None:
                raise ChainError(f"MpoolPush: no message of f0{miner} at nonce {nonce} to replace (new messages go "
                                 "through MpoolPushMessage on the devnet)")
            if cid == row[0] or self._db.execute("SELECT 1 FROM replaced WHERE cid = ?", (cid,)).fetchone():
                return shapes.cid(cid)
            receipt = self.devnet.receipt(row[1])
            if receipt is not None:
                raise ChainError(f"MpoolPush: nonce {nonce} of f0{miner} is already on chain ({self._cid_of(receipt.message, row[0])}): "
                                 "minimum expected nonce is higher")
            money_api.check_funds(self.devnet.balance(sender), body)
            devnet_id = self._devnet_push(miner, method, params, nonce, body, sender)
            self._db.execute("INSERT OR REPLACE INTO replaced (cid, devnet_id, body, signed) VALUES (?, ?, ?, ?)",
                             (cid, devnet_id, json.dumps(body), json.dumps(_signed(body, cid))))
        return shapes.cid(cid)

    def pending(self) -> list[dict]:
        """MpoolPending: the signed messages pushed through this API that the devnet holds
        unexecuted (a replaced one as its replacement), oldest first. A message a reorg took back
        is here again; one it dropped is not."""
        self.devnet.head()          # what is due is executed first
        ids = self.devnet.database.query("SELECT id FROM messages WHERE executed_epoch IS NULL AND replaced_by IS NULL "
                                         "ORDER BY seq")
        out = []
        for (devnet_id,) in ids:
            row = (self._db.execute("SELECT signed FROM replaced WHERE devnet_id = ?", (devnet_id,)).fetchone()
                   or self._db.execute("SELECT signed FROM pushed WHERE devnet_id = ?", (devnet_id,)).fetchone())
            if row is not None and row[0] is not None:
                out.append(json.loads(row[0]))
        return out

    def reorg_cids(self, depth: int, drop: bool) -> dict:
        """Devnet.reorg with the messages named by the CIDs this API gave them (what a manager
        knows them by): {head, fork_point, reorged, dropped}. A dropped message's pushed answer
        is forgotten but its nonce kept: a push with the same MsgUuid takes the same nonce again,
        never a second one."""
        out = self.devnet.reorg(depth, drop)
        cids = {}
        for devnet_id in out["reorged"]:
            row = (self._db.execute("SELECT cid FROM pushed WHERE devnet_id = ?", (devnet_id,)).fetchone()
                   or self._db.execute("SELECT cid FROM replaced WHERE devnet_id = ?", (devnet_id,)).fetchone())
            cids[devnet_id] = row[0] if row else devnet_id
        for devnet_id in out["dropped"]:
            self._db.execute("UPDATE pushed SET cid = NULL, devnet_id = NULL, signed = NULL WHERE devnet_id = ?", (devnet_id,))
        return {**out, "reorged": [cids[m] for m in out["reorged"]], "dropped": [cids[m] for m in out["dropped"]]}

    def reorg(self, depth: int, drop: bool) -> dict:
        """Devnet.Reorg: reorg_cids in Lotus' shapes."""
        out = self.reorg_cids(depth, drop)
        return {"Head": out["head"], "ForkPoint": out["fork_point"],
                "Reorged": [shapes.cid(c) for c in out["reorged"]], "Dropped": [shapes.cid(c) for c in out["dropped"]]}

    def publish_deal(self, deal) -> int:
        keys = ("Provider", "PieceCID", "PieceSize", "StartEpoch", "EndEpoch")
        if not isinstance(deal, dict) or any(k not in deal for k in keys):
            raise RPCError(INVALID_PARAMS, f"deal: expected an object with {', '.join(keys)}")
        return self.devnet.publish_deal(_addr(deal["Provider"], "deal.Provider"), _cid(deal["PieceCID"], "deal.PieceCID"),
                                        _uint(deal["PieceSize"], "deal.PieceSize"), _epoch(deal["StartEpoch"], "deal.StartEpoch"),
                                        _epoch(deal["EndEpoch"], "deal.EndEpoch"))

    # ------------------------------------- sophon-messager's Message.* (the devnet as messager)

    def has_message(self, msg_id) -> bool:
        return self._db.execute("SELECT 1 FROM pushed WHERE uuid = ? AND signed IS NOT NULL", (str(msg_id),)).fetchone() is not None

    def push_with_id(self, msg_id, msg: dict, meta) -> str:
        if not isinstance(msg_id, str) or not msg_id:
            raise RPCError(INVALID_PARAMS, "id: expected a non-empty string")
        if self.has_message(msg_id):
            raise ChainError(f"message id {msg_id} already exists")      # as the messager's store refuses it
        if not isinstance(msg, dict):
            raise RPCError(INVALID_PARAMS, "msg: expected a Message object")
        self._push(msg, msg_id)
        return msg_id

    def get_message(self, msg_id) -> dict:
        row = self._db.execute("SELECT cid, devnet_id, signed FROM pushed WHERE uuid = ? AND signed IS NOT NULL",
                               (str(msg_id),)).fetchone()
        if row is None:
            raise ChainError(f"message {msg_id} not found")
        cid, devnet_id, signed = row[0], row[1], json.loads(row[2])
        receipt, head = self.devnet.receipt(devnet_id), self.devnet.head()
        body = {k: v for k, v in signed["Message"].items() if k != "CID"}
        return {"ID": msg_id, "UnsignedCid": shapes.cid(cid), "SignedCid": shapes.cid(cid), **body,
                "Signature": signed["Signature"], "Height": receipt.epoch if receipt else 0,
                "Confidence": head - receipt.epoch if receipt else 0,
                "Receipt": None if receipt is None else {"ExitCode": receipt.exit_code, "Return": None, "GasUsed": receipt.gas_used,
                                                         "EventsRoot": None},
                "TipSetKey": [shapes.cid(self._tipset_cid(receipt.epoch))] if receipt else [], "Meta": None,
                "WalletName": "", "State": 3 if receipt else 2, "ErrorMsg": "",
                "CreatedAt": "0001-01-01T00:00:00Z", "UpdatedAt": "0001-01-01T00:00:00Z"}

    def wait_message(self, msg_id, confidence: int) -> dict:
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            m = self.get_message(msg_id)
            if m["State"] == 3 and m["Confidence"] >= confidence:
                return m
            if time.monotonic() > deadline:
                raise ChainError(f"message {msg_id} not on chain with {confidence} confirmations within {WAIT_LIMIT:g}s; ask again")
            time.sleep(min(0.2, max(0.01, self.devnet.policy.block_time / 4)))


def _signed(body: dict, cid: str) -> dict:
    """A SignedMessage as Lotus writes it; the devnet signs nothing (Type 0, no data)."""
    return {"Message": {**body, "CID": shapes.cid(cid)}, "Signature": {"Type": 0, "Data": ""}, "CID": shapes.cid(cid)}


def _partition_sectors(info) -> int:
    from ..core.proof_types import seal_proof
    return seal_proof(info.seal_proof).window_post.sectors_per_partition


def _chain_errors(func, at_head: bool):
    """A ChainError (unknown miner, future epoch, refused message) answered as an error, not a
    crash. `at_head`: the last param is a TipSetKey, dropped: the devnet answers at its head."""
    def call(*args):
        try:
            return func(*(args[:-1] if at_head else args))
        except ChainError as exc:
            raise RPCError(1, str(exc)) from None
    return call


class DevnetAPIServer:
    """The devnet's API on its own RPC server: the chain database, the API's own small database
    (MsgUuid -> message) and a token secret, all in `home`."""

    def __init__(self, home: Path, policy=None, genesis_seed: bytes | None = None, create: bool = True):
        """`create` False: a missing devnet.db is refused (Devnet's rule for a manager with sectors)."""
        from ..rpc.auth import SecretFile, issue_token, load_or_create_secret
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        load_or_create_secret(self.home / "devnet-secret")
        self.secret = SecretFile(self.home / "devnet-secret")
        self.devnet = Devnet(self.home / "devnet.db", policy, genesis_seed=genesis_seed, create=create)
        try:
            self.api = DevnetAPI(self.devnet, self.home / "devnet-api.db")
        except BaseException:
            self.devnet.close()
            raise
        self.rpc = RPCServer(self.secret)
        self.rpc.name = "devnet-api"
        self.api.register(self.rpc)
        self.token = issue_token(self.secret, "admin", "devnet")
        self.address: tuple[str, int] | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self.address = self.rpc.serve(host, port)
        return self.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/rpc/v1"

    def api_info(self) -> str:
        """Lotus' FULLNODE_API_INFO form, TOKEN:MULTIADDR (what [Common.API] Chain takes)."""
        host, port = self.address
        return f"{self.token}:/ip4/{host}/tcp/{port}/http"

    def close(self) -> None:
        self.rpc.shutdown()
        self.api.close()
        self.devnet.close()
