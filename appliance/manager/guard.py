"""Opening the manager's two databases so that its state can never go backwards.

- A manager state that has allocated numbers or journalled messages next to a missing or empty
  devnet database is refused: starting a new chain under it would lose every sector.
- A manager state behind its chain (the chain has seen a sector number this state would allocate
  again, or a message nonce it would use again: manager.db deleted, zeroed, or restored from an
  older copy) is refused, naming the file, unless the operator asks to rebuild the counters and
  nonces from the chain (`damocles manager run --rebuild-from-chain`); the rebuild also re-creates
  the records of the sectors the chain has and the state lost (manager.recover)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..chain.devnet import Devnet
from ..chain.types import ChainError
from ..core.db import DatabaseError
from .home_lock import HomeLock
from .legacy_messages import is_old_form
from .recover import recover_sectors
from .state import ManagerState

log = logging.getLogger("damocles.manager")


class StateBehindChain(DatabaseError):
    """The manager's state would reuse a number or nonce the chain has already seen."""


@dataclass(frozen=True)
class Lag:
    miner: int
    next_number: int          # what the state would allocate next
    chain_number: int | None  # the highest number the chain has seen
    next_nonce: int           # what the state's next message would take
    chain_nonce: int          # the nonce the chain expects next

    def describe(self) -> str:
        parts = []
        if self.chain_number is not None and self.chain_number >= self.next_number:
            parts.append(f"its next sector number is {self.next_number} but the chain has already seen "
                         f"s-t0{self.miner}-{self.chain_number}")
        if self.chain_nonce > self.next_nonce:
            parts.append(f"its next message nonce is {self.next_nonce} but the chain has already used "
                         f"nonces up to {self.chain_nonce - 1}")
        return f"miner f0{self.miner}: " + " and ".join(parts)


def lags(state: ManagerState, chain, miners: list[int]) -> list[Lag]:
    """The miners whose counters in `state` are behind what `chain` has seen."""
    numbers, nonces = state.next_numbers(), state.next_nonces()
    out = []
    for miner in miners:
        lag = Lag(miner, numbers.get(miner, 0), chain.highest_sector_number(miner), nonces.get(miner, 0),
                  chain.next_nonce(miner))
        if (lag.chain_number is not None and lag.chain_number >= lag.next_number) or lag.chain_nonce > lag.next_nonce:
            out.append(lag)
    return out


def adopt_sent(state: ManagerState, chain, found: list[Lag]) -> list[tuple[int, int, str]]:
    """Messages this state journalled but never saw sent (the copy was taken between the two),
    that the chain took at their nonce: recorded as sent with the chain's id, not sent again
    under a new nonce. Returns [(miner, nonce, message)]."""
    behind = {lag.miner: lag.chain_nonce for lag in found}
    adopted = []
    for m in state.unsent():
        if m["nonce"] >= behind.get(m["miner"], 0):
            continue
        on_chain = chain.message_at_nonce(m["miner"], m["nonce"])
        if on_chain and ((on_chain["method"], on_chain["params"]) == (m["method"], m["params"])
                         or is_old_form(state, m["miner"], on_chain, m["method"], m["params"])):
            state.record_sent(m["miner"], m["nonce"], on_chain["id"])
            log.warning("f0%s: message at nonce %s was sent before the state was lost (%s): recorded, not sent again",
                        m["miner"], m["nonce"], on_chain["id"])
            adopted.append((m["miner"], m["nonce"], on_chain["id"]))
    return adopted


def rebuild_from_chain(state: ManagerState, found: list[Lag]) -> None:
    for lag in found:
        chain_next = lag.chain_number + 1 if lag.chain_number is not None else 0
        next_number = max(lag.next_number, chain_next)
        moved = state.raise_counters(lag.miner, next_number, lag.chain_nonce)
        log.warning("rebuilt f0%s's counters from the chain: next sector number %s, next nonce %s%s", lag.miner,
                    next_number, max(lag.next_nonce, lag.chain_nonce),
                    f"; unsent messages moved to new nonces {moved}" if moved else "")


def open_chain(home: Path, chain_config, chain_api, create: bool, seal_proofs: dict[int, int] | None = None,
               in_process: bool = False):
    """The chain the manager talks to, and the home's devnet when it runs one: (chain, embedded).

    - `[Common.API] Chain` set (chain_api): a Lotus/Venus node through LotusChain; embedded None.
    - Otherwise the home's devnet, served on loopback with its Filecoin API (EmbeddedDevnet) and
      reached through LotusChain as a node would be.
    - `in_process` (internal, never a user setting): the Devnet object itself as the chain, no
      API in between; only `damocles bench chain` uses it, to measure what the API costs."""
    if chain_api is None and in_process:
        return Devnet(home / "devnet.db", chain_config, create=create), None
    embedded = None
    if chain_api is None:
        from .embedded_devnet import EmbeddedDevnet
        embedded = EmbeddedDevnet(home, chain_config, seal_proofs, create)
        chain_api = embedded.chain_api
    try:
        return _lotus_chain(chain_config, chain_api), embedded
    except BaseException:
        if embedded is not None:
            embedded.close()
        raise


def _lotus_chain(chain_config, chain_api):
    from ..chain.lotus.chain import LotusChain
    from ..chain.lotus.client import LotusClient
    from ..chain.lotus.messager import Messager
    try:
        endpoint, messager = chain_api.chain_endpoint(), chain_api.messager_endpoint()
    except ValueError as exc:
        raise ChainError(str(exc)) from None
    return LotusChain(LotusClient(endpoint), chain_config, chain_api.send_policies, chain_api.seal_proofs,
                      messager=Messager(LotusClient(messager)) if messager else None)


def open_stores(home: Path, chain_config, miners: list[int], rebuild: bool = False, persist_stores=(),
                piece_stores=(), chain_api=None, seal_proofs: dict[int, int] | None = None, in_process: bool = False,
                store=None, home_lock: HomeLock | None = None, state: ManagerState | None = None):
    """The manager's state, its chain and the home's embedded devnet if any (open_chain),
    checked against each other (see the module's doc), with the home's lock held until the
    state is closed (manager.home_lock). A rebuild also re-creates the records of sectors the
    chain has and the state lost, their files looked for in `persist_stores` (manager.recover).
    Against a node the nonce check never fires (LotusChain.next_nonce: the node deduplicates
    resends by MsgUuid); the sector-number check reads StateMinerAllocated. The embedded
    devnet is checked on its own records (embedded_devnet.RecoveryView): numbers, outbox nonces
    and the messages' CIDs. `home_lock` and `state`: the home's lock and the state, opened
    already (manager run opens them before the lease). Returns (state, chain, embedded)."""
    lock = home_lock or HomeLock(home)      # one manager per home: refused naming the holder's pid
    try:
        # store: [Common.DB] (None: manager.db). One state per process: a second connection's file
        # checks would open and close manager.db, and closing any descriptor of a file drops the
        # process's POSIX locks on it, the first connection's included (SQLite's WAL then breaks)
        state = state or ManagerState(home / "manager.db", store=store)
    except BaseException:
        lock.release()
        raise
    state.home_lock = lock
    if chain_api is None and state.sql.row_locks and state.has_history() and not (home / "devnet.db").exists():
        state.close()       # a server's state, written by a manager with another home's embedded devnet
        raise DatabaseError(f"manager state {state.db.path} has sectors and messages, and {home} has no devnet.db: the "
                            f"embedded devnet's chain lives in the home of the manager that started it. Start the "
                            f"manager in that home, or give every manager on this database one external chain "
                            f"([Common.API] Chain: `damocles devnet serve`, or a Lotus/Venus node)")
    try:
        chain, embedded = open_chain(home, chain_config, chain_api, not state.has_history(), seal_proofs, in_process)
    except ChainError as exc:       # damaged, newer, or missing under a state with sectors
        state.close()
        raise DatabaseError(str(exc)) from None
    except BaseException:
        state.close()
        raise
    # the embedded devnet is compared through its own records (RecoveryView), as a node cannot be
    checked = embedded.recovery_view() if embedded is not None else chain
    try:
        found = lags(state, checked, miners)
        if found and not rebuild:
            raise StateBehindChain(
                f"manager state {state.db.path} is behind the chain ({'; '.join(l.describe() for l in found)}): it was "
                f"deleted, damaged or restored from an older copy. Restore the newest backup, or start once with "
                f"'damocles manager run --rebuild-from-chain' to take the counters and nonces from the chain")
        if found:
            adopt_sent(state, checked, found)
            rebuild_from_chain(state, found)
            recover_sectors(state, checked, persist_stores, miners, piece_stores)
    except BaseException:
        state.close()
        chain.close()
        if embedded is not None:
            embedded.close()
        raise
    return state, chain, embedded
