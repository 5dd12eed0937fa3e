"""The sealer plan: Damocles' states and events and the table between them
(research/damocles.md section 4). `plan(state, event)` is pure; the sealing thread journals the
result before it acts on it."""

from __future__ import annotations

SEALER_STATES = ("Empty", "Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned", "PC1Done",
                 "PC2Done", "PCSubmitted", "PCLanded", "Persisted", "PersistanceSubmitted", "SeedAssigned", "C1Done",
                 "C2Done", "ProofSubmitted", "Finished", "Aborted")

SEALER_PLAN: dict[tuple[str, str], str] = {
    ("Empty", "Allocate"): "Allocated",
    ("Allocated", "AcquireDeals"): "DealsAcquired",
    ("DealsAcquired", "AddPiece"): "PieceAdded",
    ("PieceAdded", "BuildTreeD"): "TreeDBuilt",
    ("TreeDBuilt", "AssignTicket"): "TicketAssigned",
    ("TicketAssigned", "PC1"): "PC1Done",
    ("PC1Done", "PC2"): "PC2Done",
    ("PC2Done", "SubmitPC"): "PCSubmitted",
    ("PCSubmitted", "CheckPC"): "PCLanded",
    ("PCSubmitted", "ReSubmitPC"): "PC2Done",
    ("PCLanded", "Persist"): "Persisted",
    ("Persisted", "SubmitPersistance"): "PersistanceSubmitted",
    ("PersistanceSubmitted", "AssignSeed"): "SeedAssigned",
    ("SeedAssigned", "C1"): "C1Done",
    ("C1Done", "C2"): "C2Done",
    ("C2Done", "SubmitProof"): "ProofSubmitted",
    ("ProofSubmitted", "ReSubmitProof"): "C2Done",
    ("ProofSubmitted", "Finish"): "Finished",
}

# what the step that leaves a state is called when listed (Damocles' State::stage for the sealer)
STAGE_OF = {"TreeDBuilt": "AssignTicket", "PCSubmitted": "WaitPCLanded", "PersistanceSubmitted": "WaitSeed"}


class PlanError(Exception):
    pass


def plan(state: str, event: str) -> str:
    """The next state; SetState:<S> (an operator's resume) jumps to S directly."""
    if event.startswith("SetState:"):
        target = event.split(":", 1)[1]
        if target not in SEALER_STATES:
            raise PlanError(f"cannot set state {target!r}: not a sealer state")
        return target
    if event == "Abort":
        return "Aborted"
    try:
        return SEALER_PLAN[(state, event)]
    except KeyError:
        raise PlanError(f"event {event} is not allowed in state {state}") from None
