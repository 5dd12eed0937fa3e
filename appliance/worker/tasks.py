"""Stage tasks in Damocles' vc-processors shapes (Damocles' vc-processors crate), their builtin
implementations (what `damocles processor <stage>` runs), and strict readers of their outputs.
Inputs follow Damocles (snake_case, proof types by name, 32-byte values as int arrays); outputs
of the builtin stages are our own documented shapes (docs/processors.md)."""

from __future__ import annotations

from ..core.proof_types import seal_proof

SUPPORTED = ("pc1", "pc2", "c2", "add_pieces", "tree_d", "transfer", "unseal", "snap_encode", "snap_prove",
             "window_post", "winning_post")


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



# ---------------------------------------------------------------- builtin implementations

def run_task(stage: str, task: dict) -> dict:
    """The builtin engine behind the protocol."""
    if stage in ("snap_encode", "snap_prove", "window_post", "winning_post"):
        from .stage_snap_post import run_task as run_snap_post     # imported here: it imports this module
        return run_snap_post(stage, task)
    task = _obj(task, "task")
    if stage in ("add_pieces", "tree_d", "transfer", "unseal"):
        from .stage_data import run as run_data_stage        # the data stages: stage_data.py
        return run_data_stage(stage, task)
    if stage in ("pc1", "pc2"):
        from . import stage_seal     # it reads fields with this module's helpers
        return stage_seal.run_pc1(task) if stage == "pc1" else stage_seal.run_pc2(task)
    if stage == "c2":
        from .c2_stage import run_c2     # c2_stage uses this module's validators
        return run_c2(task)
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

