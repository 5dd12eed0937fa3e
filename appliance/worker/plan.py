"""Plans as tables, as Damocles' planners: typed states and events and the table between them.
`Plan.next(state, event)` is pure; the runner (thread.py) journals the result, with the outputs
the step's Event carries, before it acts on it. The sealer plan has Damocles' states and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from ..core.protocol import SEALER_STATES


@dataclass(frozen=True)
class Event:
    """What a step returns: the event that leaves its state and what it produced. The runner
    writes `outputs` into the record only once the plan accepted the event (a None value
    removes the field)."""
    name: str
    outputs: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "outputs", MappingProxyType(dict(self.outputs)))


def as_event(value) -> Event:
    return value if isinstance(value, Event) else Event(value)

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


@dataclass(frozen=True)
class Plan:
    name: str
    states: tuple[str, ...]
    table: dict[tuple[str, str], str]

    def next(self, state: str, event: str) -> str:
        """The next state; SetState:<S> (an operator's resume) jumps to S directly; Abort and
        Finish end any state of the plan."""
        if event.startswith("SetState:"):
            target = event.split(":", 1)[1]
            if target not in self.states:
                raise PlanError(f"cannot set state {target!r}: not a {self.name} state")
            return target
        if event == "Abort":
            return "Aborted"
        try:
            return self.table[(state, event)]
        except KeyError:
            raise PlanError(f"event {event} is not allowed in state {state} of the {self.name} plan") from None


SEALER = Plan("sealer", SEALER_STATES, SEALER_PLAN)


def plan(state: str, event: str) -> str:
    return SEALER.next(state, event)
