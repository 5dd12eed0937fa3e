"""Stage tasks in Damocles' vc-processors shapes (Damocles' vc-processors crate), their builtin
implementations (what `damocles processor <stage>` runs), and strict readers of their outputs.
Inputs follow Damocles (snake_case, proof types by name, 32-byte values as int arrays); outputs
of the builtin stages are our own documented shapes (docs/processors.md)."""

from __future__ import annotations

import base64

from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.c2 import seal_commit_phase2
from ..proofs.porep import decode_c1

SUPPORTED = ("pc1", "pc2", "c2")


class TaskError(ValueError):
    """A task or an output that does not have the expected shape; names the field."""


def _b32(v, field: str) -> bytes:
    if not isinstance(v, list) or len(v) != 32 or not all(isinstance(x, int) and 0 <= x <= 255 for x in v):
        raise TaskError(f"{field}: expected an array of 32 integers 0..255")
    return bytes(v)


def _int(v, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TaskError(f"{field}: expected a non-negative integer, got {v!r}")
    return v


def _str(v, field: str) -> str:
    if not isinstance(v, str) or not v:
        raise TaskError(f"{field}: expected a non-empty string, got {v!r}")
    return v


def _proof(v, field: str):
    try:
        return seal_proof(_str(v, field))
    except ValueError as exc:
        raise TaskError(f"{field}: {exc}") from None


def _obj(v, field: str) -> dict:
    if not isinstance(v, dict):
        raise TaskError(f"{field}: expected an object")
    return v


# ------------------------------------------------------------------------ task builders

def c2_task(c1: bytes, sector: SectorID) -> dict:
    return {"c1out": base64.b64encode(c1).decode(), "prover_id": list(sector.prover_id), "sector_id": sector.number,
            "miner_id": sector.miner}


# ---------------------------------------------------------------- builtin implementations

def run_task(stage: str, task: dict) -> dict:
    """The builtin engine behind the protocol."""
    task = _obj(task, "task")
    if stage in ("pc1", "pc2"):
        from . import stage_seal     # it reads fields with this module's helpers
        return stage_seal.run_pc1(task) if stage == "pc1" else stage_seal.run_pc2(task)
    if stage == "c2":
        try:
            c1 = decode_c1(base64.b64decode(_str(task.get("c1out"), "task.c1out"), validate=True))
        except (ValueError, ProofError) as exc:
            raise TaskError(f"task.c1out: {exc}") from None
        return {"proof": base64.b64encode(seal_commit_phase2(c1)).decode()}
    raise TaskError(f"stage {stage!r} has no builtin processor (supported: {', '.join(SUPPORTED)})")


def _miner_from_prover_id(pid: bytes) -> int:
    n, shift = 0, 0
    for b in pid:
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n
    raise TaskError("task.prover_id: not an ID address payload")


# -------------------------------------------------------------------------- output readers

def read_c2_output(out) -> bytes:
    out = _obj(out, "c2 output")
    try:
        return base64.b64decode(_str(out.get("proof"), "c2 output.proof"), validate=True)
    except ValueError as exc:
        raise TaskError(f"c2 output.proof: {exc}") from None
