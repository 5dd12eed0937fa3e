"""The pc1 and pc2 stages over the vc-processors protocol, in filecoin-proofs-api's types as serde
writes them (damocles-worker/vc-processors/src/builtin/tasks.rs `PC1`, `PC2`):

- pc1 task  {registered_proof, cache_path, in_path, out_path, prover_id: [32], sector_id,
             ticket: [32], piece_infos: [PieceInfo {commitment: [32], size: UNPADDED bytes}]}
  output    SealPreCommitPhase1Output {registered_proof, labels: {"StackedDrg<size>V1":
             {labels: [StoreConfig per layer], _h: null}}, config: StoreConfig of tree_d, comm_d}
- pc2 task  {pc1out: SealPreCommitPhase1Output, cache_dir, sealed_file}
  output    SealPreCommitPhase2Output {registered_proof, comm_r, comm_d}

StoreConfig is merkletree's {path, id, size: Option<usize>, rows_to_discard}; the ids are
rust-fil-proofs' CacheKey names ("layer-N", "tree-d"), whose files are `sc-02-data-<id>.dat`.
As rust-fil-proofs' seal_pre_commit_phase1, pc1 copies in_path to out_path and pc2 seals
out_path (which then holds the data) in place."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.files import atomic_output
from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.addpiece import build_tree_d
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from ..proofs.pc1 import generate_labels, replica_id
from ..proofs.pc2 import seal_pre_commit_phase2
from ..proofs.store import TREE_D
from .task_fields import (TaskError, b32 as _b32, obj as _obj, piece_infos as _task_piece_infos, piece_infos_json,
                          sector_of, seal_proof_name as _proof, string as _str, u64 as _int)

# ------------------------------------------------------------------------- serde names

def api_name(proof: SealProofType) -> str:
    """RegisteredSealProof as filecoin-proofs-api spells the variant (registry.rs)."""
    return proof.name.replace("V1_2_Feat_NiPoRep", "V1_2_Feat_NonInteractivePoRep")


def labels_variant(proof: SealProofType) -> str:
    """The `Labels` enum variant (filecoin-proofs-api seal.rs): one per sector size, named V1
    whatever the proof's version."""
    return f"StackedDrg{proof.size.name}V1"


def store_config(path, ident: str, size: int | None, rows_to_discard: int) -> dict:
    return {"path": str(path), "id": ident, "size": size, "rows_to_discard": rows_to_discard}


def label_configs(proof: SealProofType, cache: Path) -> list[dict]:
    """rust-fil-proofs create_label prepare_layers: one per layer, size = nodes, nothing discarded."""
    return [store_config(cache, f"layer-{layer}", proof.size.nodes, 0) for layer in range(1, proof.size.layers + 1)]


def tree_d_config(proof: SealProofType, cache: Path) -> dict:
    """seal_pre_commit_phase1's tree_d config: rows_to_discard 0, size = the binary tree's length."""
    return store_config(cache, "tree-d", 2 * proof.size.nodes - 1, 0)


def pc1_output(proof: SealProofType, cache: Path, comm_d: bytes) -> dict:
    """SealPreCommitPhase1Output as serde_json writes it."""
    return {"registered_proof": api_name(proof),
            "labels": {labels_variant(proof): {"labels": label_configs(proof, cache), "_h": None}},
            "config": tree_d_config(proof, cache), "comm_d": list(comm_d)}


# ------------------------------------------------------------------------------- readers

def _read_store_config(v, field: str, ident: str, size: int, rows_to_discard: int) -> None:
    v = _obj(v, field)
    _str(v.get("path"), f"{field}.path")
    if v.get("id") != ident:
        raise TaskError(f"{field}.id: {v.get('id')!r}, expected {ident!r}")
    if v.get("size") != size:
        raise TaskError(f"{field}.size: {v.get('size')!r}, expected {size}")
    if v.get("rows_to_discard") != rows_to_discard:
        raise TaskError(f"{field}.rows_to_discard: {v.get('rows_to_discard')!r}, expected {rows_to_discard}")


def read_pc1out(v, field: str = "pc1out") -> tuple[SealProofType, bytes]:
    """(proof, comm_d) of a SealPreCommitPhase1Output; its labels and tree_d config must be the
    ones rust-fil-proofs writes for the proof's size (the files our pc2 and theirs read)."""
    v = _obj(v, field)
    proof = _proof(v.get("registered_proof"), f"{field}.registered_proof")
    labels = _obj(v.get("labels"), f"{field}.labels")
    want = labels_variant(proof)
    if list(labels) != [want]:
        raise TaskError(f"{field}.labels: expected the variant {want!r} for {proof.name}, got {sorted(labels)}")
    configs = _obj(labels[want], f"{field}.labels.{want}").get("labels")
    if not isinstance(configs, list) or len(configs) != proof.size.layers:
        raise TaskError(f"{field}.labels.{want}.labels: expected {proof.size.layers} store configs")
    for i, c in enumerate(configs):
        _read_store_config(c, f"{field}.labels.{want}.labels[{i}]", f"layer-{i + 1}", proof.size.nodes, 0)
    _read_store_config(v.get("config"), f"{field}.config", "tree-d", 2 * proof.size.nodes - 1, 0)
    return proof, _b32(v.get("comm_d"), f"{field}.comm_d")


def is_pc1out(v) -> bool:
    """Whether a journaled pc1out is a SealPreCommitPhase1Output (records of older versions
    hold our former shape, {registered_proof, comm_d, replica_id, staged_file, layers})."""
    try:
        read_pc1out(v)
        return True
    except TaskError:
        return False


def read_pc1_output(out, proof: SealProofType, comm_d: bytes) -> dict:
    """A pc1 answer for the sector: the proof type and comm_d must be the sector's."""
    got, got_comm_d = read_pc1out(out, "pc1 output")
    if got.id != proof.id:
        raise TaskError(f"pc1 output.registered_proof: {out.get('registered_proof')!r}, expected {api_name(proof)}")
    if got_comm_d != comm_d:
        raise TaskError(f"pc1 output.comm_d: {got_comm_d.hex()}, the sector's is {comm_d.hex()}")
    return out


def read_pc2_output(out, proof: SealProofType, comm_d: bytes) -> bytes:
    """comm_r from a SealPreCommitPhase2Output for the sector."""
    out = _obj(out, "pc2 output")
    if out.get("registered_proof") != api_name(proof):
        raise TaskError(f"pc2 output.registered_proof: {out.get('registered_proof')!r}, expected {api_name(proof)}")
    if _b32(out.get("comm_d"), "pc2 output.comm_d") != comm_d:
        raise TaskError(f"pc2 output.comm_d: not the sector's {comm_d.hex()}")
    return _b32(out.get("comm_r"), "pc2 output.comm_r")


# -------------------------------------------------------------------------- task builders

def pc1_task(proof, cache: Path, staged: Path, sealed: Path, sector: SectorID, ticket: bytes, pieces: list[PieceInfo],
             parent_cache=None) -> dict:
    task = {"registered_proof": api_name(proof), "cache_path": str(cache), "in_path": str(staged), "out_path": str(sealed),
            "prover_id": list(sector.prover_id), "sector_id": sector.number, "ticket": list(ticket),
            "piece_infos": piece_infos_json(pieces)}
    if parent_cache:     # our addition (serde ignores it); rust-fil-proofs reads FIL_PROOFS_PARENT_CACHE
        task["parent_cache_dir"] = str(parent_cache)
    return task


def pc2_task(pc1out: dict, cache: Path, sealed: Path, procs: int) -> dict:
    """procs (our addition, serde ignores it): the processes our pc2 hashes with, as in a pool."""
    return {"pc1out": pc1out, "cache_dir": str(cache), "sealed_file": str(sealed), "procs": procs}


# ------------------------------------------------------------------ builtin implementations

def copy_data(src: Path, dst: Path, size: int) -> None:
    """in_path to out_path, extended with zeros to the sector size, atomically."""
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
        with open(tmp, "r+b") as f:
            f.truncate(size)


def _tree_d_root(proof: SealProofType, cache: Path) -> bytes | None:
    path = cache / TREE_D
    if not path.is_file() or path.stat().st_size != (2 * proof.size.nodes - 1) * 32:
        return None
    with open(path, "rb") as f:
        f.seek(-32, os.SEEK_END)
        return f.read(32)


def run_pc1(task: dict) -> dict:
    """rust-fil-proofs seal_pre_commit_phase1: copy the data to out_path, tree_d in the cache
    (kept when it is already there), check the pieces against comm_d, then the SDR layers."""
    proof = _proof(task.get("registered_proof"), "task.registered_proof")
    cache = Path(_str(task.get("cache_path"), "task.cache_path"))
    staged = Path(_str(task.get("in_path"), "task.in_path"))
    sealed = Path(_str(task.get("out_path"), "task.out_path"))
    sector = sector_of(_b32(task.get("prover_id"), "task.prover_id"), _int(task.get("sector_id"), "task.sector_id"),
                       "task.prover_id")
    ticket = _b32(task.get("ticket"), "task.ticket")
    pieces = _task_piece_infos(task.get("piece_infos"), "task.piece_infos")
    if not cache.is_dir():
        raise TaskError(f"task.cache_path: {cache} is not a directory")
    if not staged.is_file():
        raise TaskError(f"task.in_path: {staged} is not a file")
    try:
        piece_comm_d = comm_d_from_pieces(pieces, proof.size.bytes)
    except ProofError as exc:
        raise TaskError(f"task.piece_infos: {exc}") from None
    try:
        copy_data(staged, sealed, proof.size.bytes)
        comm_d = _tree_d_root(proof, cache) or build_tree_d(proof.size, sealed, cache)
        if comm_d != piece_comm_d:
            raise TaskError(f"task.piece_infos: the pieces' comm_d {piece_comm_d.hex()} is not the data's {comm_d.hex()}")
        generate_labels(proof, replica_id(sector, ticket, comm_d, proof), cache, task.get("parent_cache_dir"))
    except ProofError as exc:
        raise TaskError(f"pc1: {exc}") from None
    return pc1_output(proof, cache, comm_d)


def run_pc2(task: dict) -> dict:
    """rust-fil-proofs seal_pre_commit_phase2: trees, p_aux, t_aux; sealed_file (holding the
    data pc1 copied there) becomes the replica. Hashes with as many processes as this process
    may use CPUs (its cpuset)."""
    proof, comm_d = read_pc1out(task.get("pc1out"), "task.pc1out")
    cache = Path(_str(task.get("cache_dir"), "task.cache_dir"))
    sealed = Path(_str(task.get("sealed_file"), "task.sealed_file"))
    root = _tree_d_root(proof, cache)
    if root is None:
        raise TaskError(f"task.cache_dir: {cache / TREE_D} is missing or not a {proof.size.name} tree_d")
    if root != comm_d:
        raise TaskError(f"task.pc1out.comm_d: {comm_d.hex()} is not the root of {cache / TREE_D} ({root.hex()})")
    procs = _int(task["procs"], "task.procs") if task.get("procs") is not None else len(os.sched_getaffinity(0))
    try:
        out = seal_pre_commit_phase2(proof, sealed, cache, sealed, max(procs, 1))
    except ProofError as exc:     # a layer file missing or short, a sealed_file of the wrong size
        raise TaskError(f"pc2: {exc}") from None
    return {"registered_proof": api_name(proof), "comm_r": list(out.comm_r), "comm_d": list(comm_d)}
