"""Stage tasks in Damocles' vc-processors shapes (Damocles' vc-processors crate), their builtin
implementations (what `damocles processor <stage>` runs), and strict readers of their outputs.
Inputs follow Damocles (snake_case, proof types by name, 32-byte values as int arrays); outputs
of the builtin stages are our own documented shapes (docs/processors.md)."""

from __future__ import annotations

import base64
from pathlib import Path

from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.c2 import seal_commit_phase2
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from ..proofs.pc1 import generate_labels, replica_id
from ..proofs.pc2 import seal_pre_commit_phase2
from ..proofs.porep import decode_c1

SUPPORTED = ("pc1", "pc2", "c2", "snap_encode", "snap_prove", "window_post", "winning_post")


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

def pc1_task(proof, cache: Path, staged: Path, sealed: Path, sector: SectorID, ticket: bytes, parent_cache) -> dict:
    return {"registered_proof": proof.name, "cache_path": str(cache), "in_path": str(staged), "out_path": str(sealed),
            "prover_id": list(sector.prover_id), "sector_id": sector.number, "ticket": list(ticket), "piece_infos": [],
            "parent_cache_dir": str(parent_cache) if parent_cache else None}


def pc2_task(pc1out: dict, cache: Path, sealed: Path, procs: int) -> dict:
    return {"pc1out": pc1out, "cache_dir": str(cache), "sealed_file": str(sealed), "procs": procs}


def c2_task(c1: bytes, sector: SectorID) -> dict:
    return {"c1out": base64.b64encode(c1).decode(), "prover_id": list(sector.prover_id), "sector_id": sector.number,
            "miner_id": sector.miner}


# ---------------------------------------------------------------- builtin implementations

def run_task(stage: str, task: dict) -> dict:
    """The builtin engine behind the protocol."""
    if stage in ("snap_encode", "snap_prove", "window_post", "winning_post"):
        from .stage_snap_post import run_task as run_snap_post     # imported here: it imports this module
        return run_snap_post(stage, task)
    task = _obj(task, "task")
    if stage == "pc1":
        proof = _proof(task.get("registered_proof"), "task.registered_proof")
        miner_bytes = _b32(task.get("prover_id"), "task.prover_id")
        sector = SectorID(_miner_from_prover_id(miner_bytes), _int(task.get("sector_id"), "task.sector_id"))
        pieces = [PieceInfo(_int(_obj(p, f"task.piece_infos[{i}]").get("size"), f"task.piece_infos[{i}].size"),
                            _b32(p.get("commitment"), f"task.piece_infos[{i}].commitment"))
                  for i, p in enumerate(task.get("piece_infos") or [])]
        comm_d = comm_d_from_pieces(pieces, proof.size.bytes)
        rid = replica_id(sector, _b32(task.get("ticket"), "task.ticket"), comm_d, proof)
        generate_labels(proof, rid, Path(_str(task.get("cache_path"), "task.cache_path")), task.get("parent_cache_dir"))
        return {"registered_proof": proof.name, "comm_d": list(comm_d), "replica_id": list(rid),
                "staged_file": _str(task.get("in_path"), "task.in_path"), "layers": proof.size.layers}
    if stage == "pc2":
        pc1out = _obj(task.get("pc1out"), "task.pc1out")
        proof = _proof(pc1out.get("registered_proof"), "task.pc1out.registered_proof")
        out = seal_pre_commit_phase2(proof, Path(_str(pc1out.get("staged_file"), "task.pc1out.staged_file")),
                                     Path(_str(task.get("cache_dir"), "task.cache_dir")),
                                     Path(_str(task.get("sealed_file"), "task.sealed_file")), int(task.get("procs") or 1))
        return {"registered_proof": proof.name, "comm_r": list(out.comm_r), "comm_d": pc1out.get("comm_d"),
                "comm_c": list(out.comm_c), "comm_r_last": list(out.comm_r_last)}
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

def read_pc2_output(out, proof) -> tuple[bytes, bytes, bytes]:
    """(comm_r, comm_c, comm_r_last) from a pc2 output; refuses anything malformed."""
    out = _obj(out, "pc2 output")
    if out.get("registered_proof") != proof.name:
        raise TaskError(f"pc2 output.registered_proof: {out.get('registered_proof')!r}, expected {proof.name}")
    return (_b32(out.get("comm_r"), "pc2 output.comm_r"), _b32(out.get("comm_c"), "pc2 output.comm_c"),
            _b32(out.get("comm_r_last"), "pc2 output.comm_r_last"))


def read_c2_output(out) -> bytes:
    out = _obj(out, "c2 output")
    try:
        return base64.b64decode(_str(out.get("proof"), "c2 output.proof"), validate=True)
    except ValueError as exc:
        raise TaskError(f"c2 output.proof: {exc}") from None
