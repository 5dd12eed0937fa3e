"""Values that cross the chain interface, in Filecoin's terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ChainError(Exception):
    """A request the chain cannot answer (unknown miner, message, future randomness...)."""


class ExitCode(IntEnum):
    """FVM / builtin-actors exit codes that sealing messages end with."""
    OK = 0
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
