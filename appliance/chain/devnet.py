"""The embedded devnet: a simulated Filecoin chain in its own SQLite database.

Epochs advance on a clock (`block_time` seconds each) or by hand (`advance`). Messages land
`message_delay` epochs after they are pushed and are executed by the miner actor's rules at that
epoch, in push order; each leaves a receipt with Filecoin's exit code. PreCommits not proven by
their deadline are removed as on chain. The ticket chain and the beacon are derived from a
genesis seed, so the same database always draws the same randomness. Restarting loses nothing:
every change is committed before it is reported.

Proving (docs/devnet.md): activated sectors get a WindowPoSt deadline and partition
(proving.py); the cron of a deadline whose window closes at epoch C runs after the messages that
landed at C-1 and before those landing at C, for every deadline with partitions, however far the
clock jumps; WinningPoSt elections and missed blocks are in winning.py. A sector's end (expiry at
its deadline's cron, ExtendSectorExpiration2, TerminateSectors) is in lifecycle_actor.py."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..core.db import Database, DatabaseError, Schema
from ..core.proof_types import seal_proof
from . import deadlines as dl
from . import clock, lifecycle_actor, market, money, proving, reorg, winning
from .devnet_money import DevnetMoney
from .interface import Chain
from .miner_actor import METHODS as SEALING_METHODS
from .snap_actor import METHODS as SNAP_METHODS
from .policy import ChainPolicy
from .randomness import DST, blake2b256, draw, miner_entropy
from .types import (ActorError, ChainError, DeadlineInfo, ExitCode, MessageNotFound, MinerInfo, MinerPower, PartitionInfo,
                    PreCommitOnChain, Receipt, SectorExpiration, SectorLocation, SectorOnChain)

METHODS = {**SEALING_METHODS, **proving.METHODS, **SNAP_METHODS, **lifecycle_actor.METHODS,
           "Send": lambda state, miner, params: None,        # a plain transfer: the value moved before the method
           "WithdrawBalance": lambda state, miner, params: money.withdraw_balance(state, miner, params, state.sender)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS miners (actor INTEGER PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, miner INTEGER NOT NULL,
    method TEXT NOT NULL, params TEXT NOT NULL, pushed_epoch INTEGER NOT NULL, land_epoch INTEGER NOT NULL,
    executed_epoch INTEGER, exit_code INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (land_epoch) WHERE executed_epoch IS NULL;
CREATE TABLE IF NOT EXISTS nonces (miner INTEGER NOT NULL, nonce INTEGER NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (miner, nonce));
CREATE TABLE IF NOT EXISTS allocated (miner INTEGER NOT NULL, number INTEGER NOT NULL, PRIMARY KEY (miner, number));
CREATE TABLE IF NOT EXISTS precommits (miner INTEGER NOT NULL, number INTEGER NOT NULL, info TEXT NOT NULL,
    deadline INTEGER NOT NULL, PRIMARY KEY (miner, number));
CREATE TABLE IF NOT EXISTS sectors (miner INTEGER NOT NULL, number INTEGER NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (miner, number));
""" + proving.SCHEMA + winning.SCHEMA + market.SCHEMA

# migrations[i] takes devnet.db from version i to i + 1; append, never edit a released one.
DEVNET_SCHEMA = Schema("devnet chain", [SCHEMA, money.MIGRATION, reorg.migration, lifecycle_actor.migration],
                       frozenset({"meta", "miners", "messages"}), frozenset({
    ("miners", "info"), ("messages", "params"), ("precommits", "info"), ("sectors", "info"), ("penalties", "sectors"),
    ("messages", "return_value")}), frozenset({
    ("accounts", "balance"), ("locked_funds", "amount"), ("messages", "value"), ("messages", "fee_cap"),
    ("messages", "premium"), ("terminated_sectors", "fee")}))


class Devnet(DevnetMoney, Chain):
    def __init__(self, path: str | os.PathLike, policy: ChainPolicy | None = None, now=time.time,
                 genesis_seed: bytes | None = None, create: bool = True):
        """Open (or create) the devnet database. `policy` applies to this run; `now` is the
        wall clock, replaceable in tests; `genesis_seed` (32 bytes) fixes the ticket chain and the
        beacon of a new database (a random one by default) and must match an existing one's.
        With `create` False a missing, empty or genesis-less database is refused (a manager
        that has sectors must not silently start a new chain)."""
        if genesis_seed is not None and (not isinstance(genesis_seed, bytes) or len(genesis_seed) != 32):
            raise ChainError("genesis seed must be 32 bytes")
        self.path = Path(path)
        self.policy = policy or ChainPolicy()
        self._now = now
        self.sender: str | None = None   # the sender of the message executing (WithdrawBalance checks it)
        try:
            self.database = Database(self.path, DEVNET_SCHEMA, create)
        except DatabaseError as exc:
            raise ChainError(str(exc)) from None
        try:
            self._open(genesis_seed, create)
            self.epoch = self.head()   # the epoch messages execute at (set while executing)
            self.miners()
        except (ValueError, TypeError, KeyError) as exc:     # a value SQLite's checks cannot judge
            self.database.close()
            raise ChainError(f"devnet chain database {self.path} is damaged ({type(exc).__name__}: {exc}); the file is "
                             f"kept as it is: restore it from a backup") from None
        except BaseException:
            self.database.close()
            raise

    def _open(self, genesis_seed: bytes | None, create: bool) -> None:
        with self._tx():
            if self._meta("genesis_seed") is None:
                if not create:
                    raise ChainError(f"devnet chain database {self.path} has no chain (no genesis): refusing to "
                                     f"start a new chain under a manager that has sectors")
                self._set_meta("genesis_seed", (genesis_seed or os.urandom(32)).hex())
                self._set_meta("clock_epoch", "0")
                self._set_meta("clock_time", repr(self._now()))
                self._set_meta("processed_epoch", "0")
            elif genesis_seed is not None and genesis_seed.hex() != self._meta("genesis_seed"):
                raise ChainError(f"devnet database {self.path} has another genesis seed")
            self._genesis = bytes.fromhex(self._meta("genesis_seed"))
            self._migrate()
            reorg.install_triggers(self.db)
            clock.anchor_on_open(self)

    def _migrate(self) -> None:
        """A database from before WindowPoSt: crons start at the last processed epoch and its
        sectors are assigned to deadlines as if activated then."""
        processed = int(self._meta("processed_epoch"))
        if self._meta("cron_epoch") is None:
            self._set_meta("cron_epoch", str(processed))
        if self._meta("winning_checked") is None:
            self._set_meta("winning_checked", str(processed - 1))
        self.epoch = processed
        for miner in [m.actor for m in self.miners()]:
            numbers = [n for (n,) in self.db.execute(     # an ended sector (terminated_sectors) stays ended
                "SELECT number FROM sectors WHERE miner = ? AND number NOT IN "
                "(SELECT number FROM sector_deadlines WHERE miner = ?) AND number NOT IN "   # ended sectors stay ended
                "(SELECT number FROM terminated_sectors WHERE miner = ?)", (miner, miner, miner))]
            proving.assign_sectors(self, miner, numbers)
        for info in self.miners():      # miners from before money: their genesis funds now
            money.grant_genesis(self, info.actor, info.worker)

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection, for the actor modules (writes only inside `_tx`)."""
        return self.database.conn()

    def external_proof_refusal(self, kind: str, proof: bytes, what: str, partitions: int | None = None) -> str | None:
        """The devnet cannot verify Groth16: refused unless TrustExternalProofs (external_proofs.py)."""
        from .external_proofs import refusal
        from ..proofs import ProofError
        try:
            return refusal(self.policy, kind, proof, what, partitions)
        except ProofError as exc:
            return str(exc)

    def takes_builtin_aggregate(self) -> bool:
        return True          # miner_actor.py decodes the engine's stand-in aggregate

    def close(self) -> None:
        self.database.close()

    # ---------------------------------------------------------------- storage helpers

    def _tx(self):
        """A write transaction (the chain's steps are serialized in the process)."""
        return self.database.tx()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    # -------------------------------------------------------------------------- clock

    def _clock_head(self) -> int:
        return clock.head(self)

    def head(self) -> int:
        with self._tx():
            return self._catch_up()

    def advance(self, epochs: int) -> int:
        """Admin: move the clock forward by `epochs` (executing what lands on the way)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ChainError(f"advance: {epochs!r} is not a non-negative number of epochs")
        with self._tx():
            head = self._catch_up() + epochs
            clock.set_anchor(self, head, self._now())
            return self._catch_up()

    def set_block_time(self, seconds: float) -> None:
        """Admin: change the epoch length from now on (0 stops the clock)."""
        if seconds < 0:
            raise ChainError(f"block time {seconds} is negative")
        with self._tx():
            head = self._catch_up()
            self.policy = replace(self.policy, block_time=float(seconds))
            clock.set_anchor(self, head, self._now())

    def _catch_up(self) -> int:
        """Execute every message that has landed by the clock's head, each at its own epoch,
        run the cron of every deadline (with partitions) that closed by then, drop expired
        PreCommits and record missed blocks; return the head. Runs inside a transaction.

        Order: by epoch; within epoch E the messages landing at E (push order) and then the crons
        of the deadlines closing at E+1 (the deadline's last epoch is E), i.e. a deadline's cron
        runs before anything landing at its close epoch, where a proof for it would be late."""
        head = self._clock_head()
        try:
            return self._execute_to(head)
        finally:
            reorg.recording(self.db, None)

    def _execute_to(self, head: int) -> int:
        """_catch_up's work, each change tagged in the undo log with the epoch that made it (reorg.py)."""
        pending = self.db.execute(
            "SELECT seq, id, miner, method, params, land_epoch FROM messages WHERE executed_epoch IS NULL "
            "AND replaced_by IS NULL AND land_epoch <= ? ORDER BY land_epoch, seq", (head,)).fetchall()
        if not pending and self._meta("processed_epoch") == str(head):
            return head          # this head was executed (every read asks for it): nothing landed since
        cron_done = int(self._meta("cron_epoch"))
        i, closes = 0, None
        while True:
            if closes is None:   # the next close of every deadline with partitions, after cron_done
                closes = sorted((dl.next_close_after(self.policy, offset, d, cron_done), m, d, offset)
                                for m, d, offset in proving.proving_deadlines(self))
            land = pending[i][5] if i < len(pending) else None
            if closes and closes[0][0] <= head and (land is None or closes[0][0] <= land):
                close = closes[0][0]
                self.epoch = close
                reorg.recording(self.db, close)
                while closes and closes[0][0] == close:
                    _, m, d, offset = closes.pop(0)
                    proving.close_deadline(self, m, d, close)
                    closes.append((dl.next_close_after(self.policy, offset, d, close), m, d, offset))
                closes.sort()
                cron_done = close
                self._set_meta("cron_epoch", str(cron_done))     # per cron, so that a reorg's undo stops at any epoch
                continue
            if land is None:
                break
            seq, _, miner, method, params, land = pending[i]
            i += 1
            reorg.recording(self.db, land)
            self._expire_precommits(land)
            if not self._execute(seq, miner, method, json.loads(params), land):
                if land + 1 <= head:     # its fee cap is below the base fee: it waits in the pool
                    bisect.insort(pending, (seq, _, miner, method, params, land + 1), i, key=lambda r: (r[5], r[0]))
                continue
            closes = None        # a message may have assigned sectors to new deadlines
        reorg.recording(self.db, head)
        self._set_meta("cron_epoch", str(max(cron_done, head)))
        self._expire_precommits(head)
        self.epoch = head
        checked = int(self._meta("winning_checked"))
        if checked < head - 1:
            winning.record_missed(self, checked + 1, head - 1)
            self._set_meta("winning_checked", str(head - 1))
        self._set_meta("processed_epoch", str(head))
        reorg.recording(self.db, None)
        reorg.prune(self.db, head)
        return head

    # -------------------------------------------------------------------------- reorg

    def reorg(self, depth: int, drop: bool = False) -> dict:
        """Admin: replace the last `depth` epochs by another fork (reorg.py). The state goes back
        to what it was when epoch head-depth was done; the messages executed after it lose their
        receipts and go back to the pool, landing again `message_delay` epochs after the head
        (with `drop`, they are gone from the chain instead, and their nonces free, as a message
        can be on a real fork); the re-made epochs draw other tickets and beacons. The head
        stays where it is and the re-made epochs are executed again (crons, elections). Deeper
        than reorg.FINALITY epochs is refused. Returns {head, fork_point, reorged, dropped}."""
        with self._tx():
            head = self._catch_up()
            fork_point = reorg.check_depth(self.db, head, depth)
            reorged = reorg.undo(self.db, fork_point)
            # a block won in a lost epoch is not on the new fork (blocks won are not logged: no execution)
            self.db.execute("DELETE FROM blocks WHERE epoch > ? AND won != 0", (fork_point,))
            if drop:
                for mid in reorged:
                    self.db.execute("DELETE FROM nonces WHERE message = ?", (mid,))
                    self.db.execute("DELETE FROM messages WHERE id = ?", (mid,))
            else:
                self.db.execute(f"UPDATE messages SET land_epoch = ? WHERE id IN ({','.join('?' * len(reorged))})",
                                (head + self.policy.message_delay, *reorged))
            self.db.execute("INSERT INTO forks (fork_point, depth, head, dropped) VALUES (?, ?, ?, ?)",
                            (fork_point, depth, head, int(drop)))
            self.epoch = fork_point
            self._catch_up()
            return {"head": head, "fork_point": fork_point, "reorged": reorged, "dropped": reorged if drop else []}

    def _expire_precommits(self, epoch: int) -> None:
        """Cron: PreCommits past their ProveCommit deadline are removed (their numbers stay
        allocated) once the clean-up delay has passed, as builtin-actors does."""
        expired = self.db.execute("SELECT miner, number FROM precommits WHERE deadline + ? < ?",
                                   (self.policy.expired_precommit_cleanup_delay, epoch)).fetchall()
        for miner, number in expired:
            market.release(self, miner, number)      # their deals are free again
        money.burn_expired_deposits(self, expired)
        self.db.execute("DELETE FROM precommits WHERE deadline + ? < ?", (self.policy.expired_precommit_cleanup_delay, epoch))

    def _execute(self, seq: int, miner: int, method: str, params: dict, epoch: int) -> bool:
        """Execute a landed message at `epoch`; False (nothing done, it moves to the next epoch)
        when its fee cap is below the base fee. Gas and value as chain/money.py describes."""
        self.epoch = epoch
        sender, value, gas_limit, fee_cap, premium = self.db.execute(
            "SELECT sender, value, gas_limit, fee_cap, premium FROM messages WHERE seq = ?", (seq,)).fetchone()
        gas = None
        if gas_limit is not None:            # messages from before money carry no gas: free
            fee_cap, premium, value = int(fee_cap), int(premium), int(value or 0)
            fee = money.base_fee(self, epoch)
            if fee_cap < fee:
                self.db.execute("UPDATE messages SET land_epoch = ? WHERE seq = ?", (epoch + 1, seq))
                return False
            money.record_gas(self, epoch, gas_limit)
            if money.balance(self, sender) < gas_limit * fee_cap:
                return self._receipt(seq, epoch, ExitCode.SENDER_STATE_INVALID, 0,
                                     f"actor balance less than needed: {money.format_fil(money.balance(self, sender))} < "
                                     f"{money.format_fil(gas_limit * fee_cap)}")
            gas = money.gas_used(self, miner, method, params)
            if gas > gas_limit:
                money.charge_gas(self, sender, gas_limit, fee, fee_cap, premium)
                return self._receipt(seq, epoch, ExitCode.OUT_OF_GAS, gas_limit,
                                     f"out of gas: {method} needs {gas}, gas limit {gas_limit}")
        self.sender = sender
        returned = None
        self.db.execute("SAVEPOINT message")
        try:
            handler = METHODS.get(method)
            if handler is None:
                raise ActorError(ExitCode.UNHANDLED_MESSAGE, f"unknown method {method}")
            if gas is not None and value:
                money.transfer(self, sender, f"f0{miner}", value)
            returned = handler(self, miner, params)
            code, error = ExitCode.OK, None
        except ActorError as exc:
            self.db.execute("ROLLBACK TO message")
            code, error = exc.code, str(exc)
        except ChainError as exc:
            self.db.execute("ROLLBACK TO message")
            code, error = ExitCode.NOT_FOUND, str(exc)
        except Exception as exc:  # a bug must fail the message, never wedge the chain
            self.db.execute("ROLLBACK TO message")
            code, error = ExitCode.ILLEGAL_STATE, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            self.sender = None
        self.db.execute("RELEASE message")
        if gas is not None:
            money.charge_gas(self, sender, gas, fee, fee_cap, premium)
        return self._receipt(seq, epoch, code, gas or 0, error,
                             returned if code == ExitCode.OK and isinstance(returned, dict) else None)

    def _receipt(self, seq: int, epoch: int, code: ExitCode, gas_used: int, error: str | None, returned=None) -> bool:
        self.db.execute("UPDATE messages SET executed_epoch = ?, exit_code = ?, error = ?, gas_used = ?, return_value = ? "
                        "WHERE seq = ?", (epoch, int(code), error, gas_used, lifecycle_actor.dumps(returned), seq))
        return True

    # --------------------------------------------------------------------- randomness

    def _fork_entropy(self, epoch: int) -> bytes:
        """Nothing for an epoch no reorg re-made (the draws of old databases stay the same), else
        the number of forks that re-made it: another fork, other tickets and beacons."""
        salt = reorg.fork_salt(self.db, epoch)
        return salt.to_bytes(8, "big") if salt else b""

    def _ticket_digest(self, epoch: int) -> bytes:
        vrf_proof = blake2b256(b"devnet-ticket" + self._genesis + epoch.to_bytes(8, "big", signed=True)
                               + self._fork_entropy(epoch))
        return blake2b256(vrf_proof)

    def _beacon_digest(self, epoch: int) -> bytes:
        return blake2b256(blake2b256(b"devnet-beacon" + self._genesis + epoch.to_bytes(8, "big", signed=True)
                                     + self._fork_entropy(epoch)))

    def draw_ticket(self, miner: int, epoch: int) -> bytes:
        """SealRandomness at `epoch` as seen at the current execution epoch (no transaction)."""
        self._check_drawable(epoch)
        return draw(DST.SEAL_RANDOMNESS, self._ticket_digest(epoch), epoch, miner_entropy(miner))

    def draw_seed(self, miner: int, epoch: int) -> bytes:
        self._check_drawable(epoch)
        return draw(DST.INTERACTIVE_SEAL_CHALLENGE_SEED, self._beacon_digest(epoch), epoch, miner_entropy(miner))

    def draw_window_post(self, miner: int, epoch: int) -> bytes:
        self._check_drawable(epoch)
        return _fr(draw(DST.WINDOWED_POST_CHALLENGE_SEED, self._beacon_digest(epoch), epoch, miner_entropy(miner)))

    def draw_chain_commit(self, epoch: int) -> bytes:
        self._check_drawable(epoch)
        return draw(DST.POST_CHAIN_COMMIT, self._ticket_digest(epoch), epoch, b"")

    def draw_winning_post(self, miner: int, epoch: int) -> bytes:
        self._check_drawable(epoch)
        return _fr(draw(DST.WINNING_POST_CHALLENGE_SEED, self._beacon_digest(epoch), epoch, miner_entropy(miner)))

    def draw_election(self, miner: int, epoch: int) -> bytes:
        return draw(DST.ELECTION_PROOF_PRODUCTION, self._beacon_digest(epoch), epoch, miner_entropy(miner))

    def _check_drawable(self, epoch: int) -> None:
        if epoch < 0:
            raise ChainError(f"cannot draw randomness from negative epoch {epoch}")
        if epoch > self.epoch:
            raise ChainError(f"cannot draw randomness from future epoch {epoch} (head {self.epoch})")

    def seal_randomness(self, miner: int, epoch: int) -> bytes:
        with self._tx():
            self._catch_up()
            return self.draw_ticket(miner, epoch)

    def interactive_seed(self, miner: int, epoch: int) -> bytes:
        with self._tx():
            self._catch_up()
            return self.draw_seed(miner, epoch)

    # ------------------------------------------------------------------------- miners

    def create_miner(self, actor: int, seal_proof_id: int, worker: str | None = None,
                     proving_period_start: int | None = None) -> MinerInfo:
        """Genesis-style miner creation (admin). The proving period offset is derived from the
        genesis seed unless given (tests)."""
        proof = seal_proof(seal_proof_id)
        period = self.policy.wpost_proving_period
        if proving_period_start is not None and not 0 <= proving_period_start < period:
            raise ChainError(f"proving period start {proving_period_start} must be in [0, {period})")
        with self._tx():
            if self.db.execute("SELECT 1 FROM miners WHERE actor = ?", (actor,)).fetchone():
                raise ChainError(f"miner f0{actor} already exists")
            offset = int.from_bytes(hashlib.sha256(self._genesis + actor.to_bytes(8, "big")).digest()[:8], "big")
            info = MinerInfo(actor, worker or f"f0{actor}-worker", proof.id, proof.window_post.id, proof.size.bytes,
                             offset % period if proving_period_start is None else proving_period_start)
            self.db.execute("INSERT INTO miners (actor, info) VALUES (?, ?)", (actor, json.dumps(asdict(info))))
            money.grant_genesis(self, actor, info.worker)
            return info

    def miner_info(self, miner: int) -> MinerInfo:
        row = self.db.execute("SELECT info FROM miners WHERE actor = ?", (miner,)).fetchone()
        if row is None:
            raise ChainError(f"miner f0{miner} not found")
        return MinerInfo(**json.loads(row[0]))

    def miners(self) -> list[MinerInfo]:
        return [MinerInfo(**json.loads(r[0])) for r in self.db.execute("SELECT info FROM miners ORDER BY actor")]

    # ----------------------------------------------------------------------- messages

    def push_message(self, miner: int, method: str, params: dict, nonce: int | None = None, value: int = 0,
                     gas_limit: int | None = None, fee_cap: int | None = None, premium: int | None = None,
                     sender: str | None = None) -> str:
        """Queue a message to the miner's actor from `sender` (the miner's worker by default).
        With a nonce (the sender's sequence number, as on Filecoin), pushing the same message
        again returns the same id instead of sending it twice; a different message with a used
        nonce is refused, except a replacement: the same message, still in the pool, with a
        premium at least 1.25x the old one (Lotus' replace-by-fee) takes its place and nonce.
        Gas left out is filled as Lotus' GasEstimateMessageGas does (chain/money.py); the sender
        must hold gas limit x fee cap + value (Lotus' mpool check), else ChainError."""
        info = self.miner_info(miner)
        sender = sender or info.worker
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ChainError(f"message value {value!r} is not a non-negative integer of attoFIL")
        try:
            body = json.dumps(params, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ChainError(f"message params are not JSON: {exc}") from None
        with self._tx():
            head = self._catch_up()
            gas_limit, fee_cap, premium = money.default_gas(self, miner, method, params, gas_limit, fee_cap, premium, head)
            replaces = None
            if nonce is not None:
                row = self.db.execute("SELECT n.message, m.method, m.params, m.value, m.premium, m.executed_epoch, m.gas_limit, "
                                      "m.fee_cap FROM nonces n JOIN messages m ON m.id = n.message "
                                      "WHERE n.miner = ? AND n.nonce = ?", (miner, nonce)).fetchone()
                if row is not None:
                    if (row[1], row[2], int(row[3] or 0)) != (method, body, value):
                        raise ChainError(f"nonce {nonce} of f0{miner} is already used by another message {row[0]}")
                    same_gas = (row[6], int(row[7] or 0), int(row[4] or 0)) == (gas_limit, fee_cap, premium)
                    if row[5] is not None or same_gas or row[6] is None:
                        return row[0]         # the chain has it (executed, or this very message in the pool)
                    if premium < money.min_replacement_premium(int(row[4])):
                        raise ChainError(f"replace-by-fee of nonce {nonce} of f0{miner}: premium {premium} is below "
                                         f"{money.min_replacement_premium(int(row[4]))} (1.25x the pooled message's)")
                    replaces = row[0]
            need = money.required_funds(gas_limit, fee_cap, value)
            have = money.balance(self, sender)
            if have < need:
                raise ChainError(f"not enough funds in {sender} for a message to f0{miner} ({method}): balance "
                                 f"{money.format_fil(have)}, required {money.format_fil(need)} (gas limit x fee cap + value)")
            seq = (self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]) + 1
            mid = "bafy2bzace" + hashlib.sha256(f"{seq}:{miner}:{method}:{body}".encode() + self._genesis).hexdigest()[:40]
            self.db.execute("INSERT INTO messages (seq, id, miner, method, params, pushed_epoch, land_epoch, sender, value, "
                            "gas_limit, fee_cap, premium) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (seq, mid, miner, method, body, head, head + self.policy.message_delay, sender, str(value),
                             gas_limit, str(fee_cap), str(premium)))
            if replaces is not None:
                self.db.execute("UPDATE messages SET replaced_by = ? WHERE id = ?", (mid, replaces))
                self.db.execute("UPDATE nonces SET message = ? WHERE miner = ? AND nonce = ?", (mid, miner, nonce))
            elif nonce is not None:
                self.db.execute("INSERT INTO nonces (miner, nonce, message) VALUES (?, ?, ?)", (miner, nonce, mid))
            return mid

    def messages(self, miner: int | None = None) -> list[dict]:
        """Every message pushed (admin/tests): id, miner, method, params, epochs, exit code."""
        rows = self.db.execute("SELECT id, miner, method, params, pushed_epoch, executed_epoch, exit_code, error FROM messages "
                                "WHERE ? IS NULL OR miner = ? ORDER BY seq", (miner, miner)).fetchall()
        return [{"id": r[0], "miner": r[1], "method": r[2], "params": json.loads(r[3]), "pushed_epoch": r[4],
                 "executed_epoch": r[5], "exit_code": r[6], "error": r[7]} for r in rows]

    def receipt(self, message: str) -> Receipt | None:
        """The receipt once executed, None while pending. A message replaced by fee answers with
        its replacement's receipt (Lotus StateSearchMsg with allowReplaced)."""
        with self._tx():
            self._catch_up()
            row = self._message_row(message)
        if row is None:
            raise MessageNotFound(f"message {message} not found")
        if row[0] is None:
            return None
        return Receipt(row[4], row[1], row[2], row[0], row[3] or 0, None if row[5] is None else json.loads(row[5]))

    def _message_row(self, message: str):
        """(executed_epoch, exit_code, error, gas_used, id, return_value) of the message or the one that replaced it."""
        for _ in range(1000):
            row = self.db.execute("SELECT executed_epoch, exit_code, error, gas_used, id, return_value, replaced_by "
                                  "FROM messages WHERE id = ?", (message,)).fetchone()
            if row is None or row[6] is None:
                return row and row[:6]
            message = row[6]
        raise ChainError(f"message {message}: replacement chain too long")

    # ------------------------------------------------- what the chain has already seen

    def highest_sector_number(self, miner: int) -> int | None:
        """The highest sector number the miner's actor has seen (allocated by a PreCommit or
        active), None if none: a manager must never allocate it or one below it again."""
        with self.database.read() as db:
            row = db.execute("SELECT MAX(n) FROM (SELECT MAX(number) AS n FROM allocated WHERE miner = ? "
                             "UNION ALL SELECT MAX(number) FROM sectors WHERE miner = ? "
                             "UNION ALL SELECT MAX(number) FROM precommits WHERE miner = ?)", (miner, miner, miner)).fetchone()
        return row[0]

    def next_nonce(self, miner: int) -> int:
        """The nonce the miner's next message must take (one past the highest the chain has seen)."""
        row = self.database.one("SELECT MAX(nonce) FROM nonces WHERE miner = ?", (miner,))
        return 0 if row[0] is None else row[0] + 1

    def precommits(self, miner: int) -> list[PreCommitOnChain]:
        """The miner's PreCommits still waiting for their proof (for a manager rebuilding its records)."""
        with self.database.read() as db:
            rows = db.execute("SELECT info FROM precommits WHERE miner = ? ORDER BY number", (miner,)).fetchall()
        return [PreCommitOnChain(**json.loads(r[0])) for r in rows]

    def executed_messages(self, miner: int) -> list[dict]:
        """The miner's messages that executed successfully, oldest first, with the nonce each
        took: id, method, params, executed_epoch, nonce (for a manager rebuilding its records)."""
        with self.database.read() as db:
            rows = db.execute("SELECT m.id, m.method, m.params, m.executed_epoch, n.nonce FROM messages m "
                              "LEFT JOIN nonces n ON n.message = m.id AND n.miner = m.miner "
                              "WHERE m.miner = ? AND m.exit_code = 0 ORDER BY m.seq", (miner,)).fetchall()
        return [{"id": r[0], "method": r[1], "params": json.loads(r[2]), "executed_epoch": r[3], "nonce": r[4]} for r in rows]

    def message_at_nonce(self, miner: int, nonce: int) -> dict | None:
        """The message the chain took at the miner's nonce: id, method, params (None if none)."""
        row = self.database.one("SELECT m.id, m.method, m.params FROM nonces n JOIN messages m ON m.id = n.message "
                                "WHERE n.miner = ? AND n.nonce = ?", (miner, nonce))
        return {"id": row[0], "method": row[1], "params": json.loads(row[2])} if row else None

    # ----------------------------------------------------------------- actor state

    def is_allocated(self, miner: int, number: int) -> bool:
        return self.db.execute("SELECT 1 FROM allocated WHERE miner = ? AND number = ?", (miner, number)).fetchone() is not None

    def allocate(self, miner: int, number: int) -> None:
        self.db.execute("INSERT INTO allocated (miner, number) VALUES (?, ?)", (miner, number))

    def put_precommit(self, pc: PreCommitOnChain) -> None:
        self.db.execute("INSERT INTO precommits (miner, number, info, deadline) VALUES (?, ?, ?, ?)",
                         (pc.miner, pc.number, json.dumps(asdict(pc)), self.policy.prove_commit_deadline(pc.precommit_epoch)))

    def get_precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        row = self.db.execute("SELECT info FROM precommits WHERE miner = ? AND number = ?", (miner, number)).fetchone()
        return PreCommitOnChain(**json.loads(row[0])) if row else None

    def delete_precommit(self, miner: int, number: int) -> None:
        self.db.execute("DELETE FROM precommits WHERE miner = ? AND number = ?", (miner, number))

    def put_sector(self, s: SectorOnChain) -> None:
        self.db.execute("INSERT INTO sectors (miner, number, info) VALUES (?, ?, ?)", (s.miner, s.number, json.dumps(asdict(s))))

    def get_sector(self, miner: int, number: int) -> SectorOnChain | None:
        row = self.db.execute("SELECT info FROM sectors WHERE miner = ? AND number = ?", (miner, number)).fetchone()
        return SectorOnChain(**json.loads(row[0])) if row else None

    def assign_deadlines(self, miner: int, numbers: list[int]) -> None:
        """Newly activated sectors get a deadline and a partition (proving.assign_sectors)."""
        proving.assign_sectors(self, miner, numbers)

    def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        with self._tx():
            self._catch_up()
            return self.get_precommit(miner, number)

    def sector(self, miner: int, number: int) -> SectorOnChain | None:
        with self._tx():
            self._catch_up()
            return self.get_sector(miner, number)

    def sectors_info(self, miner: int, numbers) -> dict[int, SectorOnChain]:
        with self._tx():
            self._catch_up()
            return {n: s for n in sorted(set(numbers)) if (s := self.get_sector(miner, n)) is not None}

    # ------------------------------------------------------------------------- market

    def publish_deal(self, miner: int, piece_cid: str, piece_size: int, start_epoch: int, end_epoch: int,
                     client: str = "devnet-client") -> int:
        """Admin: publish a storage deal with the miner as provider (the embedded market)."""
        with self._tx():
            self._catch_up()
            return market.publish(self, miner, piece_cid, piece_size, start_epoch, end_epoch, client)

    def deal(self, deal_id: int) -> dict | None:
        with self._tx():
            self._catch_up()
            return market.get(self, deal_id)

    def deals(self, miner: int | None = None) -> list[dict]:
        """Every deal with its state: published, precommitted, active or expired."""
        with self._tx():
            self._catch_up()
            return market.listing(self, miner)

    def sectors(self, miner: int | None = None) -> list[SectorOnChain]:
        with self._tx():
            self._catch_up()
            rows = self.db.execute("SELECT info FROM sectors WHERE ? IS NULL OR miner = ? ORDER BY miner, number",
                                    (miner, miner)).fetchall()
        return [SectorOnChain(**json.loads(r[0])) for r in rows]

    # ----------------------------------------------------------------------- proving

    def _proving_read(self, miner: int, fn, *args):
        with self._tx():
            self._catch_up()
            self.miner_info(miner)
            return fn(*args)

    def proving_deadline(self, miner: int) -> DeadlineInfo:
        return self._proving_read(miner, lambda: dl.current_deadline(
            self.policy, self.miner_info(miner).proving_period_start, self.epoch))

    def deadline_partitions(self, miner: int, index: int) -> list[PartitionInfo]:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.policy.wpost_period_deadlines:
            raise ChainError(f"deadline index {index!r} must be in [0, {self.policy.wpost_period_deadlines})")
        return self._proving_read(miner, proving.partitions, self, miner, index)

    def all_deadline_partitions(self, miner: int) -> list[list[PartitionInfo]]:
        """Every deadline's partitions, read in one transaction (48 reads of their own cost 48
        catch-ups: StateMinerDeadlines and the status page ask for all of them)."""
        return self._proving_read(miner, lambda: [proving.partitions(self, miner, i)
                                                  for i in range(self.policy.wpost_period_deadlines)])

    def window_post_randomness(self, miner: int, epoch: int) -> bytes:
        return self._proving_read(miner, self.draw_window_post, miner, epoch)

    def chain_commit_randomness(self, epoch: int) -> bytes:
        with self._tx():
            self._catch_up()
            return self.draw_chain_commit(epoch)

    def miner_power(self, miner: int) -> MinerPower:
        return self._proving_read(miner, proving.power, self, miner)

    # --------------------------------------------------------- a sector's end (lifecycle_actor.py)

    def sector_expiration(self, miner: int, number: int) -> SectorExpiration | None:
        found = self._proving_read(miner, lifecycle_actor.expiration, self, miner, number)
        return None if found is None else SectorExpiration(*found)

    def sector_location(self, miner: int, number: int) -> SectorLocation | None:
        found = self._proving_read(miner, lifecycle_actor.location, self, miner, number)
        return None if found is None else SectorLocation(*found)

    def active_sectors(self, miner: int) -> list[SectorOnChain]:
        return self._proving_read(miner, lambda: [self.get_sector(miner, n) for (n,) in self.db.execute(
            "SELECT number FROM sector_deadlines WHERE miner = ? AND faulty = 0 ORDER BY number", (miner,))])

    def ended_sectors(self, miner: int) -> list[dict]:
        """Admin/tests: every expired or terminated sector with its epoch, reason and fee."""
        return self._proving_read(miner, lifecycle_actor.ended_list, self, miner)

    def termination_fee(self, miner: int, numbers: list[int]) -> int | None:
        """The fee TerminateSectors would charge now for these live sectors (sum)."""
        def fee():
            live = {n for (n,) in self.db.execute("SELECT number FROM sector_deadlines WHERE miner = ?", (miner,))}
            missing = sorted(set(numbers) - live)
            if missing:
                raise ChainError(f"sectors {missing} of f0{miner} are not live: no termination fee")
            return sum(lifecycle_actor.termination_fee(self, miner, n) for n in numbers)
        return self._proving_read(miner, fee)

    def deadline_records(self, miner: int) -> list[dict]:
        """One row per deadline occurrence that closed with sectors due: period_start, index,
        close, partitions, partitions_proven, sectors, sectors_proven, sectors_faulty_new, penalty."""
        return self._proving_read(miner, proving.deadline_records, self, miner)

    def penalties(self, miner: int) -> list[dict]:
        """Every penalty: epoch, reason (fault-fee | missed-post | skipped), sectors, amount in
        fault-fee units, deadline, period_start."""
        return self._proving_read(miner, proving.penalties, self, miner)

    # ------------------------------------------------------------------- winning post

    def winning_election(self, miner: int, epoch: int) -> bool:
        def elected():
            self._check_drawable(epoch)
            return winning.elected(self, miner, epoch)
        return self._proving_read(miner, elected)

    def winning_post_randomness(self, miner: int, epoch: int) -> bytes:
        return self._proving_read(miner, self.draw_winning_post, miner, epoch)

    def winning_post_sectors(self, miner: int, epoch: int) -> list[SectorOnChain]:
        def sectors():
            self._check_drawable(epoch)
            return winning.sector_set(self, miner)
        return self._proving_read(miner, sectors)

    def winning_post_challenge(self, miner: int, epoch: int) -> list[SectorOnChain]:
        """The sector(s) of winning_post_sectors a WinningPoSt at `epoch` must prove."""
        return self._proving_read(miner, winning.challenged, self, miner, epoch)

    def submit_winning_post(self, miner: int, epoch: int, proof: bytes) -> None:
        self._proving_read(miner, winning.submit, self, miner, epoch, proof)

    def blocks(self, miner: int) -> list[dict]:
        """Blocks won (an accepted WinningPoSt) and missed (an elected epoch passed without one): {epoch, won}."""
        return self._proving_read(miner, lambda: [
            {"epoch": e, "won": bool(w)} for e, w in
            self.db.execute("SELECT epoch, won FROM blocks WHERE miner = ? ORDER BY epoch", (miner,))])


def _fr(randomness: bytes) -> bytes:
    """PoSt randomness as Lotus hands it to the proofs: the top two bits of byte 31 cleared."""
    return randomness[:31] + bytes([randomness[31] & 0x3F])
