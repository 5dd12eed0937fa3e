"""The sector record a thread journals: one typed, immutable value per plan step. Steps read it
and return what they produced; only the runner makes a new record (`with_outputs`) once the
plan accepted the step's event. On disk it stays a JSON document (fields at their default are
left out, so records written by earlier versions read back unchanged); a field this version
does not know is refused with its name, never dropped."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace


class RecordError(ValueError):
    """A journaled record that this version cannot read (names the field)."""


@dataclass(frozen=True)
class SectorRecord:
    state: str = "Empty"
    retry: int = 0                      # temp failures in a row in this state
    paused: bool = False
    last_error: str | None = None
    # the sector (every plan)
    plan: str | None = None             # the plan that started it (and finishes it); None: the thread's own
    name: str | None = None             # s-t0<miner>-<number>
    miner: int | None = None
    number: int | None = None
    proof: int | None = None            # RegisteredSealProof
    deals: list | None = None           # [{id, piece_cid, piece_size, payload_size?, offset?}]
    # sealer (and rebuild) step outputs
    comm_d: str | None = None           # hex
    ticket: dict | None = None          # {Ticket: base64, Epoch}
    pc1out: dict | None = None          # an external pc1 processor's output
    comm_r: str | None = None
    resubmit_pc: bool = False
    persist_store: str | None = None
    seed: dict | None = None            # {Seed: base64, Epoch}
    resubmit_proof: bool = False
    # the end of a sector
    abort_reason: str | None = None
    abort_reported: bool = False        # the manager aborted it itself, or ReportAborted was answered
    # task plans: the manager's task as it was handed out, and snapup's outputs
    task: dict | None = None
    comm_r_old: str | None = None
    comm_r_new: str | None = None
    comm_d_new: str | None = None

    def with_outputs(self, outputs, **changes) -> "SectorRecord":
        """A new record with a step's outputs (None: back to the field's default) and changes."""
        merged = {k: (_default(k) if v is None else v) for k, v in outputs.items()}
        unknown = set(merged) - _FIELDS.keys()
        if unknown:
            raise RecordError(f"a step produced fields the sector record does not have: {sorted(unknown)}")
        return replace(self, **merged, **changes)

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in _FIELDS if f == "state" or getattr(self, f) != _default(f)}

    @classmethod
    def from_json(cls, raw: dict, where: str) -> "SectorRecord":
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: the sector record is not an object")
        unknown = set(raw) - _FIELDS.keys()
        if unknown:
            raise RecordError(f"{where}: the sector record has fields this version does not know: {sorted(unknown)}")
        if not isinstance(raw.get("state", "Empty"), str):
            raise RecordError(f"{where}: the sector record's state is not a string: {raw.get('state')!r}")
        return cls(**raw)


_FIELDS = {f.name: f for f in fields(SectorRecord)}


def _default(name: str):
    f = _FIELDS[name]
    return None if f.default is MISSING else f.default


EMPTY = SectorRecord()
