"""What the manager may ask of a chain. Two implementations: LotusChain (chain/lotus/), a
Lotus/Venus full node's API, which the manager always uses (to its embedded devnet's API by
default), and the Devnet object itself, read directly only by `damocles bench chain` and tests."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext

from .types import (ChainError, DeadlineInfo, MinerInfo, MinerPower, PartitionInfo, PreCommitOnChain, Receipt,
                    SectorExpiration, SectorLocation, SectorOnChain)


class Chain(ABC):
    def pinned_head(self):
        """A context in which this thread's state reads are made at one head and may be answered
        from memory (LotusChain); a chain read in process answers each read at its head."""
        return nullcontext()

    def external_proof_refusal(self, kind: str, proof: bytes, what: str, partitions: int | None = None) -> str | None:
        """Why this chain would refuse `proof`, a Groth16 SNARK of an external processor that the
        manager cannot verify (None: send it, the chain decides). A chain of real nodes verifies it."""
        return None

    def takes_builtin_aggregate(self) -> bool:
        """Whether this chain takes the builtin engine's aggregate of seal proofs (the devnet's
        stand-in for SnarkPack). A chain of real nodes needs SnarkPack, which the engine does not
        make: proofs then go to it side by side, one per sector."""
        return False

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
    def push_message(self, miner: int, method: str, params: dict, nonce: int | None = None, **send) -> str:
        """Queue a message from the miner's worker; returns its id. Pushing the same message
        with the same nonce again returns the same id (never a second message). `send` may
        carry value, gas_limit, fee_cap, premium (attoFIL; what is left out the node fills); the
        same message at a pooled nonce with a premium 1.25x higher replaces it."""

    # ------------------------------------------------------------------ money (optional)
    # None: this chain cannot tell; the manager then sends and lets the chain decide.

    def balance(self, address: str) -> int | None:
        """An address's balance, attoFIL (Lotus WalletBalance)."""
        return None

    def available_balance(self, miner: int) -> int | None:
        """The miner actor's balance less locked funds (Lotus StateMinerAvailableBalance)."""
        return None

    def precommit_deposit(self, miner: int, sectors: int = 1) -> int | None:
        """The deposit `sectors` PreCommits need now (StateMinerPreCommitDepositForPower)."""
        return None

    def initial_pledge(self, miner: int, sectors: int = 1) -> int | None:
        """The initial pledge `sectors` sectors need now (StateMinerInitialPledgeCollateral)."""
        return None

    def base_fee(self) -> int | None:
        """The base fee at head, attoFIL per gas unit."""
        return None

    def estimate_gas(self, miner: int, method: str, params: dict) -> int | None:
        """Gas the message would use at head (GasEstimateGasLimit before over-estimation)."""
        return None

    @abstractmethod
    def receipt(self, message: str) -> Receipt | None:
        """The receipt once the message executed, None while it is pending."""

    @abstractmethod
    def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        ...

    @abstractmethod
    def sector(self, miner: int, number: int) -> SectorOnChain | None:
        ...

    def sectors_info(self, miner: int, numbers) -> dict[int, SectorOnChain]:
        """The on-chain info of these sectors, by number (a sector the chain lacks is absent), in
        one read where the chain allows it (Lotus: StateMinerSectors with a bitfield): the poster
        asks for a whole deadline's sectors at once."""
        out = {}
        for n in numbers:
            s = self.sector(miner, n)
            if s is not None:
                out[n] = s
        return out

    # ------------------------------------------------- a sector's end (expiry, extension, termination)
    # Deadline partitions (PartitionInfo.terminated) say which sectors ended; the receipt of a
    # TerminateSectors carries its Return ({"Done": true} once nothing is left queued).

    def sector_expiration(self, miner: int, number: int) -> SectorExpiration | None:
        """When a live sector leaves (Lotus StateSectorExpiration); None if it is not live."""
        raise ChainError(f"{type(self).__name__} cannot read sector expirations")

    def sector_location(self, miner: int, number: int) -> SectorLocation | None:
        """The deadline and partition of an activated sector, live or ended (StateSectorPartition); None if none."""
        raise ChainError(f"{type(self).__name__} cannot read sector locations")

    def active_sectors(self, miner: int) -> list[SectorOnChain]:
        """The miner's active sectors (live, not faulty), ascending (StateMinerActiveSectors)."""
        raise ChainError(f"{type(self).__name__} cannot list active sectors")

    def termination_fee(self, miner: int, numbers: list[int]) -> int | None:
        """The early-termination fee, attoFIL, for terminating these live sectors now; None when
        the chain cannot tell (no Lotus method gives it: the devnet's API does)."""
        return None

    # ------------------------------------------------------------------------ WindowPoSt

    @abstractmethod
    def proving_deadline(self, miner: int) -> DeadlineInfo:
        """The miner's WindowPoSt deadline in progress at head (Lotus StateMinerProvingDeadline)."""

    @abstractmethod
    def deadline_partitions(self, miner: int, index: int) -> list[PartitionInfo]:
        """The partitions of deadline `index` (0..47): sectors, faults, recoveries, and whether
        a proof for it was accepted in the current proving period."""

    @abstractmethod
    def window_post_randomness(self, miner: int, epoch: int) -> bytes:
        """WindowedPoStChallengeSeed from the beacon at `epoch` (a deadline's challenge epoch,
        ≤ head), byte 31 masked with 0x3f as Lotus hands it to the proofs."""

    @abstractmethod
    def chain_commit_randomness(self, epoch: int) -> bytes:
        """PoStChainCommit from the ticket chain at `epoch` (≤ head), no entropy: the
        SubmitWindowedPoSt ChainCommitRand for ChainCommitEpoch `epoch`."""

    @abstractmethod
    def miner_power(self, miner: int) -> MinerPower:
        """Raw and quality-adjusted power of the miner's active (non-faulty) sectors."""

    # ----------------------------------------------------------------------- WinningPoSt

    @abstractmethod
    def winning_election(self, miner: int, epoch: int) -> bool:
        """Whether the miner is elected to produce a block at `epoch` (≤ head)."""

    @abstractmethod
    def winning_post_randomness(self, miner: int, epoch: int) -> bytes:
        """WinningPoStChallengeSeed from the beacon at `epoch` (≤ head), byte 31 masked."""

    @abstractmethod
    def winning_post_sectors(self, miner: int, epoch: int) -> list[SectorOnChain]:
        """The sector set WinningPoSt at `epoch` challenges from: active sectors, ascending. The
        challenged one is winning_sector_indices(prover_id, randomness, len(set))."""

    @abstractmethod
    def submit_winning_post(self, miner: int, epoch: int, proof: bytes) -> None:
        """Claim the block of `epoch` (only while head == epoch); raises ChainError when refused."""
