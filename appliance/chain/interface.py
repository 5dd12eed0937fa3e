"""What the manager may ask of a chain. The devnet implements it; a Lotus/Venus full-node client
behind the same methods is a later step."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .types import MinerInfo, PreCommitOnChain, Receipt, SectorOnChain


class Chain(ABC):
    @abstractmethod
    def head(self) -> int:
        """The current epoch."""

    @abstractmethod
    def seal_randomness(self, miner: int, epoch: int) -> bytes:
        """The ticket: SealRandomness drawn from the ticket chain at `epoch` (≤ head)."""

    @abstractmethod
    def interactive_seed(self, miner: int, epoch: int) -> bytes:
        """InteractiveSealChallengeSeed drawn from the beacon at `epoch` (≤ head)."""

    @abstractmethod
    def miner_info(self, miner: int) -> MinerInfo:
        ...

    @abstractmethod
    def push_message(self, miner: int, method: str, params: dict, nonce: int | None = None) -> str:
        """Queue a message from the miner's worker; returns its id. Pushing the same message
        with the same nonce again returns the same id (never a second message)."""

    @abstractmethod
    def receipt(self, message: str) -> Receipt | None:
        """The receipt once the message executed, None while it is pending."""

    @abstractmethod
    def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        ...

    @abstractmethod
    def sector(self, miner: int, number: int) -> SectorOnChain | None:
        ...
