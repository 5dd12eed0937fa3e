"""Damocles' protocol constants, shared by the manager and the worker so the two never disagree:
SubmitResult and OnChainState codes (damocles-manager core/types), and the sealer plan's state
names (damocles-worker's sealer states)."""

from __future__ import annotations

from enum import IntEnum


class SubmitResult(IntEnum):
    """The answer to SubmitPreCommit, SubmitProof and SubmitSnapUpProof."""
    ACCEPTED = 1
    DUPLICATE_SUBMIT = 2
    MISMATCHED_SUBMISSION = 3
    REJECTED = 4
    FILES_MISSED = 5


class OnChainState(IntEnum):
    """The answer to PollPreCommitState, PollProofState and SnapUpState."""
    PENDING = 1
    PACKED = 2
    LANDED = 3
    NOT_FOUND = 4
    FAILED = 5
    PERM_FAILED = 6
    SHOULD_ABORT = 7


# the sealer plan's states, in the order a sector passes them (then the two terminal ones)
SEALER_STATES = ("Empty", "Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done",
                 "PC2Done", "PCSubmitted", "PCLanded", "Persisted", "PersistanceSubmitted", "SeedAssigned", "C1Done",
                 "C2Done", "ProofSubmitted", "Finished", "Aborted")
TERMINAL_STATES = ("Finished", "Aborted")
# every state Damocles' worker reports (its State enum: the sealer plan's, synthetic PoRep's and
# those of its snapup, rebuild and unseal plans), which ReportState takes
WORKER_STATES = SEALER_STATES + ("SyntheticPoRepNeeded", "SnapEncoded", "SnapProved", "SealedChecked", "SnapPieceAdded",
                                 "SnapTreeDBuilt", "SnapDone", "Unsealed")
