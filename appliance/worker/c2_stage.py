"""The c2 stage over vc-processors: Damocles' task `C2 {c1out: SealCommitPhase1Output, prover_id,
sector_id, miner_id}` and output `SealCommitPhase2Output {proof: [bytes]}`
(damocles-worker/vc-processors/src/builtin/tasks.rs; filecoin-proofs-api src/seal.rs), the
builtin runner behind `damocles processor c2`, and the worker's reader of the answer."""

from __future__ import annotations

from ..core.sector import SectorID
from ..proofs import ProofError, c1_json
from ..proofs.c2 import seal_commit_phase2
from ..proofs.porep import C1Output
from .task_fields import TaskError, b32 as _b32, obj as _obj, u64 as _int

MAX_U64 = (1 << 64) - 1


def c2_task(c1: C1Output) -> dict:
    """The task for a C1 output; the sector is the C1 output's."""
    s = c1.sector
    return {"c1out": c1_json.to_json(c1), "prover_id": list(s.prover_id), "sector_id": s.number, "miner_id": s.miner}


def task_sector(task: dict) -> SectorID:
    """SectorID from miner_id and sector_id; prover_id must be that miner's (to_prover_id)."""
    miner = _int(task.get("miner_id"), "task.miner_id")
    number = _int(task.get("sector_id"), "task.sector_id")
    if miner > MAX_U64 or number > MAX_U64:
        raise TaskError("task.miner_id / task.sector_id: out of the u64 range")
    sector = SectorID(miner, number)
    if _b32(task.get("prover_id"), "task.prover_id") != sector.prover_id:
        raise TaskError(f"task.prover_id: is not the prover id of miner_id {miner}")
    return sector


def run_c2(task: dict) -> dict:
    """The builtin C2: the vanilla proofs checked for shape, wrapped as the builtin proof."""
    sector = task_sector(task)
    try:
        c1 = c1_json.from_json(task.get("c1out"), sector)
    except ProofError as exc:
        raise TaskError(f"task.c1out: {exc}") from None
    return {"proof": list(seal_commit_phase2(c1))}


def read_c2_output(out) -> bytes:
    """The proof bytes of a SealCommitPhase2Output (an array of numbers)."""
    proof = _obj(out, "c2 output").get("proof")
    if not isinstance(proof, list) or not proof or not all(type(b) is int and 0 <= b <= 255 for b in proof):
        raise TaskError("c2 output.proof: expected a non-empty array of integers 0..255")
    return bytes(proof)
