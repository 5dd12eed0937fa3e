"""Values that cross the chain interface, in Filecoin's terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ChainError(Exception):
    """A request the chain cannot answer (unknown miner, message, future randomness...)."""


class MessageNotFound(ChainError):
    """The chain has no such message, neither executed nor pooled (never pushed, or lost in a reorg)."""


class ExitCode(IntEnum):
    """FVM / builtin-actors exit codes that sealing messages end with (go-state-types exitcode)."""
    OK = 0
    SENDER_STATE_INVALID = 2       # SysErrSenderStateInvalid: the sender cannot cover gas limit x fee cap
    SYS_INSUFFICIENT_FUNDS = 6     # SysErrInsufficientFunds: the sender cannot pay the value sent
    OUT_OF_GAS = 7                 # SysErrOutOfGas: the method needs more than the gas limit
    ILLEGAL_ARGUMENT = 16
    NOT_FOUND = 17
    FORBIDDEN = 18
    INSUFFICIENT_FUNDS = 19
    ILLEGAL_STATE = 20
    SERIALIZATION = 21
    UNHANDLED_MESSAGE = 22


class ActorError(Exception):
    """Raised inside a message's execution: the message fails with this exit code."""

    def __init__(self, code: ExitCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MinerInfo:
    actor: int
    worker: str
    seal_proof: int             # RegisteredSealProof the miner seals with
    window_post_proof: int
    sector_size: int
    proving_period_start: int   # offset of the miner's proving period


@dataclass(frozen=True)
class Receipt:
    message: str
    exit_code: int
    error: str | None
    epoch: int                  # the epoch the message was executed at
    gas_used: int = 0
    returned: dict | None = None    # the method's decoded return (Lotus' ReturnDec), e.g. TerminateSectors' {"Done": true}

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


@dataclass(frozen=True)
class PreCommitOnChain:
    miner: int
    number: int
    seal_proof: int
    sealed_cid: str
    unsealed_cid: str
    seal_rand_epoch: int
    expiration: int
    precommit_epoch: int
    deal_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SectorOnChain:
    miner: int
    number: int
    seal_proof: int
    sealed_cid: str
    unsealed_cid: str
    activation: int
    expiration: int
    deal_ids: list[int] = field(default_factory=list)
    sector_key_cid: str | None = None     # after a replica update (SnapDeals): the CC replica's sealed CID


# ------------------------------------------------------------------------------ proving

@dataclass(frozen=True)
class DeadlineInfo:
    """A WindowPoSt deadline as Lotus' dline.Info gives it, for one proving period."""
    current_epoch: int
    period_start: int
    index: int
    open: int            # the first epoch a proof for it may land
    close: int           # the first epoch it may not
    challenge: int       # the epoch its randomness is drawn from (open - WPoStChallengeLookback)
    fault_cutoff: int    # faults and recoveries for it must land before this epoch

    @property
    def is_open(self) -> bool:
        return self.open <= self.current_epoch < self.close

    @property
    def elapsed(self) -> bool:
        return self.current_epoch >= self.close

    @property
    def fault_cutoff_passed(self) -> bool:
        return self.current_epoch >= self.fault_cutoff


def deadline_info(period_start: int, index: int, current_epoch: int, challenge_window: int = 60,
                  challenge_lookback: int = 20, fault_cutoff: int = 70) -> DeadlineInfo:
    open_ = period_start + index * challenge_window
    return DeadlineInfo(current_epoch, period_start, index, open_, open_ + challenge_window, open_ - challenge_lookback,
                        open_ - fault_cutoff)


@dataclass(frozen=True)
class PartitionInfo:
    index: int
    sectors: tuple[int, ...]        # every live sector of the partition, ascending
    faulty: tuple[int, ...]         # declared or detected faults (no power)
    recovering: tuple[int, ...]     # faulty sectors declared recovered, power back after their next proof
    proven: bool = False            # a WindowPoSt for it was accepted in the current proving period
    terminated: tuple[int, ...] = ()    # ended sectors (expired or terminated) still in the partition

    @property
    def active(self) -> tuple[int, ...]:
        faulty = set(self.faulty)
        return tuple(n for n in self.sectors if n not in faulty)


@dataclass(frozen=True)
class SectorExpiration:
    """When a live sector leaves (Lotus' miner.SectorExpiration): OnTime is its expiration
    quantised to its deadline's last epoch; Early, if not 0, an earlier epoch a fault ends it."""
    on_time: int
    early: int = 0


@dataclass(frozen=True)
class SectorLocation:
    deadline: int
    partition: int


@dataclass(frozen=True)
class MinerPower:
    raw_bytes: int
    qa_bytes: int
    active_sectors: int
    faulty_sectors: int
