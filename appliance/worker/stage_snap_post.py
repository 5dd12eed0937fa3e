"""snap_encode, snap_prove, window_post and winning_post over the vc-processors protocol: task
builders, the builtin runners behind `damocles processor <stage>`, and strict readers of the
answers. Shapes follow Damocles' vc-processors (damocles-worker/vc-processors/src/builtin/tasks.rs,
src/fil_proofs/mod.rs) with filecoin-proofs-api types as serde writes them: proof types by
variant name, `[u8; 32]` and `Vec<u8>` as arrays of numbers, `SnarkProof` (b64serde::BytesVec)
as a base64 string, PieceInfo sizes unpadded.

`snap_prove.vannilla_proofs` holds one element per partition, each
`bincode::serialize(&PartitionProof<Tree>)` as filecoin-proofs-api makes it (src/update.rs
generate_partition_proofs; proofs/snap_bincode.py), so a rust-fil-proofs snap_prove processor reads
our worker's task and ours reads a Rust worker's. Where ours differs from rust-fil-proofs: proofs
(update, PoSt) are our builtin non-succinct ones unless an external processor answers a Groth16
proof, which is passed on as it is for the chain to judge."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from ..core.extproc import post_task
from ..core.proof_types import PoStProofType, api_post_name, default_seal_proof, post_proof
from ..core.sector import sector_name
from ..proofs import ProofError
from ..proofs.commitment import PieceInfo, comm_d_from_pieces
from ..proofs.pc2 import read_p_aux
from ..proofs.poseidon import hash_nodes
from ..proofs.post import (POST_MAGIC, PrivateSector, PublicSector, decode_post, encode_post, generate_window_post,
                           generate_winning_post, verify_post)
from ..proofs.snap import UpdateProofType, update_proof
from ..proofs.snap_encode import UpdateEncoded, encode_into
from ..proofs.snap_bincode import encode_partitions, vanilla_from_partitions
from ..proofs.snap_proof import (PROOF_MAGIC, VANILLA_MAGIC, UpdateVanilla, generate_update_proof,
                                 verify_update_partitions, verify_update_proof)
from .task_fields import (TaskError, array as _list, b32 as _b32, byte_array as _bytes, obj as _obj, path as _path,
                          piece_infos as _pieces, piece_infos_json, string as _str, u64 as _int)

log = logging.getLogger("damocles.worker.stage_snap_post")

SUPPORTED = ("snap_encode", "snap_prove", "window_post", "winning_post")


# ----------------------------------------------------------------------------- value shapes

def _update_proof(v, field: str) -> UpdateProofType:
    try:
        return update_proof(_str(v, field))
    except ValueError as exc:
        raise TaskError(f"{field}: {exc}") from None


def _post_proof(v, field: str, winning: bool) -> PoStProofType:
    try:
        pt = post_proof(_str(v, field))
    except ValueError as exc:
        raise TaskError(f"{field}: {exc}") from None
    if pt.winning != winning:
        raise TaskError(f"{field}: {v} is not a {'WinningPoSt' if winning else 'WindowPoSt'} proof type")
    return pt


# ------------------------------------------------------------------------------- snap_encode

def snap_encode_task(proof: UpdateProofType, new_replica: Path, new_cache: Path, sector_key: Path,
                     sector_key_cache: Path, staged: Path, pieces: list[PieceInfo]) -> dict:
    """vc-processors SnapEncode."""
    return {"registered_proof": proof.name, "new_replica_path": str(new_replica), "new_cache_path": str(new_cache),
            "sector_path": str(sector_key), "sector_cache_path": str(sector_key_cache),
            "staged_data_path": str(staged), "piece_infos": piece_infos_json(pieces)}


def _run_snap_encode(task: dict) -> dict:
    proof = _update_proof(task.get("registered_proof"), "task.registered_proof")
    pieces = _pieces(task.get("piece_infos"), "task.piece_infos")
    enc = encode_into(proof, _path(task.get("new_replica_path"), "task.new_replica_path"),
                      _path(task.get("new_cache_path"), "task.new_cache_path"),
                      _path(task.get("sector_path"), "task.sector_path"),
                      _path(task.get("sector_cache_path"), "task.sector_cache_path"),
                      _path(task.get("staged_data_path"), "task.staged_data_path"), pieces or None,
                      len(os.sched_getaffinity(0)))     # every CPU this processor was pinned to
    return {"comm_r_new": list(enc.comm_r_new), "comm_r_last_new": list(enc.comm_r_last_new),
            "comm_d_new": list(enc.comm_d_new)}


def read_snap_encode_output(out, task: dict, proof: UpdateProofType, pieces: list[PieceInfo]) -> UpdateEncoded:
    """SnapEncodeOutput {comm_r_new, comm_r_last_new, comm_d_new}, checked against the task: comm_d_new
    is the pieces', comm_r_last_new is what the new cache's p_aux says, comm_r_new = Poseidon(comm_c
    of the sector key, comm_r_last_new), the new replica has the sector's size."""
    out = _obj(out, "snap_encode output")
    comm_r_new = _b32(out.get("comm_r_new"), "snap_encode output.comm_r_new")
    comm_r_last_new = _b32(out.get("comm_r_last_new"), "snap_encode output.comm_r_last_new")
    comm_d_new = _b32(out.get("comm_d_new"), "snap_encode output.comm_d_new")
    if pieces and comm_d_new != comm_d_from_pieces(pieces, proof.size.bytes):
        raise TaskError("snap_encode output.comm_d_new is not the CommD of the task's piece_infos")
    try:
        comm_c, comm_r_last_old = read_p_aux(Path(task["sector_cache_path"]))
        new_c, new_r_last = read_p_aux(Path(task["new_cache_path"]))
    except ProofError as exc:
        raise TaskError(f"snap_encode: {exc}") from None
    if new_c != comm_c:
        raise TaskError("snap_encode: p_aux in new_cache_path does not carry the sector key's comm_c")
    if new_r_last != comm_r_last_new:
        raise TaskError("snap_encode output.comm_r_last_new differs from the p_aux in new_cache_path")
    if comm_r_new != hash_nodes([comm_c, comm_r_last_new]):
        raise TaskError("snap_encode output.comm_r_new != Poseidon(comm_c of the sector key, comm_r_last_new)")
    replica = Path(task["new_replica_path"])
    if not replica.is_file() or replica.stat().st_size != proof.size.bytes:
        raise TaskError(f"snap_encode: new_replica_path {replica} is missing or not {proof.size.bytes} bytes")
    return UpdateEncoded(comm_r_new, comm_r_last_new, comm_d_new, hash_nodes([comm_c, comm_r_last_old]), comm_c)


def external_encoder(run_task):
    """An encoder with encode_into's signature that hands the work to the snap_encode processor,
    for snap_encode.encode_files (which builds under temporary names and renames)."""
    def encode(proof, new_replica, new_cache, sector_key, sector_key_cache, staged, pieces=None, procs=1):
        # prepared as Damocles' worker does: the cache directory made, the replica allocated
        Path(new_cache).mkdir(parents=True, exist_ok=True)
        with open(new_replica, "wb") as f:
            f.truncate(proof.size.bytes)
        task = snap_encode_task(proof, new_replica, new_cache, sector_key, sector_key_cache, staged, pieces or [])
        try:
            return read_snap_encode_output(run_task("snap_encode", task), task, proof, pieces or [])
        except TaskError as exc:
            raise ProofError(f"snap_encode processor: {exc}") from None
    return encode


# -------------------------------------------------------------------------------- snap_prove

def snap_prove_task(vanilla: UpdateVanilla) -> dict:
    """vc-processors SnapProve; `vannilla_proofs` (sic) holds one bincode PartitionProof per partition."""
    return {"registered_proof": vanilla.proof_type.name,
            "vannilla_proofs": [list(b) for b in encode_partitions(vanilla)],
            "comm_r_old": list(vanilla.comm_r_old), "comm_r_new": list(vanilla.comm_r_new),
            "comm_d_new": list(vanilla.comm_d_new)}


def _run_snap_prove(task: dict) -> list[int]:
    proof = _update_proof(task.get("registered_proof"), "task.registered_proof")
    comm_r_old = _b32(task.get("comm_r_old"), "task.comm_r_old")
    comm_r_new = _b32(task.get("comm_r_new"), "task.comm_r_new")
    comm_d_new = _b32(task.get("comm_d_new"), "task.comm_d_new")
    elements = [_bytes(e, f"task.vannilla_proofs[{k}]")
                for k, e in enumerate(_list(task.get("vannilla_proofs"), "task.vannilla_proofs"))]
    try:
        vanilla = vanilla_from_partitions(proof, comm_r_old, comm_r_new, comm_d_new, elements, "task.vannilla_proofs")
    except ProofError as exc:
        if any(e[:6] == VANILLA_MAGIC + b"\x01\x00" for e in elements):
            # what builds before this one sent: a worker of an older build is talking to this processor
            raise TaskError("task.vannilla_proofs: holds the \"DMU1\" container of all partitions that older "
                            "damocles workers sent; this processor takes one rust-fil-proofs bincode PartitionProof "
                            "per partition (upgrade the worker)") from None
        raise TaskError(str(exc)) from None
    try:
        verify_update_partitions(proof, comm_r_old, comm_r_new, comm_d_new, vanilla)
    except ProofError as exc:
        raise TaskError(f"task.vannilla_proofs do not prove the task's comm_r_old/comm_r_new/comm_d_new: {exc}") from None
    return list(generate_update_proof(vanilla))


def read_snap_prove_output(out, proof: UpdateProofType, comm_r_old: bytes, comm_r_new: bytes, comm_d_new: bytes) -> bytes:
    """SnapProveOutput (Vec<u8>): our builtin update proof, which must verify, or a Groth16 proof of
    the type's length (192 bytes a partition) from a SNARK processor, passed on for the chain to judge."""
    data = _bytes(out, "snap_prove output")
    if data.startswith(PROOF_MAGIC):
        try:
            verify_update_proof(proof, comm_r_old, comm_r_new, comm_d_new, data)
        except ProofError as exc:
            raise TaskError(f"snap_prove output does not verify: {exc}") from None
    elif len(data) == proof.snark_proof_bytes:
        log.info("snap_prove output is a %d-byte SNARK; it cannot be checked here, the chain will", len(data))
    else:
        raise TaskError(f"snap_prove output: {len(data)} bytes, neither a builtin update proof nor a "
                        f"{proof.snark_proof_bytes}-byte Groth16 proof of {proof.name}")
    return data


# ------------------------------------------------------------------ window_post / winning_post

def job_task(job_input: dict, stores: dict[str, str]) -> tuple[dict, list[int]]:
    """A WdPoSt job (Damocles' WdPoStInput) as a WindowPoSt task, as Damocles' wdpost planner builds
    it: each sector's sealed file and cache directory from the stores its Accesses name (update/ and
    update-cache/ for an upgraded sector). A sector in a store not attached here is a fault."""
    proof_type = post_proof(job_input["ProofType"])
    sectors, faults = [], []
    for s in job_input["Sectors"] or ():
        sealed_store, cache_store = stores.get(s["Accesses"]["SealedFile"]), stores.get(s["Accesses"]["CacheDir"])
        if sealed_store is None or cache_store is None:
            faults.append(s["SectorId"])
            continue
        name = sector_name(job_input["MinerId"], s["SectorId"])
        sealed, cache = ("update", "update-cache") if s.get("Upgrade") else ("sealed", "cache")
        sectors.append(PrivateSector(s["SectorId"], bytes(s["CommR"]), Path(cache_store) / cache / name,
                                     Path(sealed_store) / sealed / name))
    return post_task(job_input["MinerId"], proof_type, sectors, bytes(job_input["Seed"])), faults


def _post_input(task: dict, winning: bool) -> tuple[PoStProofType, list[PrivateSector], bytes]:
    _int(task.get("miner_id"), "task.miner_id")
    pt = _post_proof(task.get("proof_type"), "task.proof_type", winning)
    seed = _b32(task.get("seed"), "task.seed")
    sectors, seen = [], set()
    for i, r in enumerate(_list(task.get("replicas"), "task.replicas")):
        f = f"task.replicas[{i}]"
        r = _obj(r, f)
        number = _int(r.get("sector_id"), f"{f}.sector_id")
        if number in seen:
            raise TaskError(f"{f}.sector_id: sector {number} is listed twice")
        seen.add(number)
        sectors.append(PrivateSector(number, _b32(r.get("comm_r"), f"{f}.comm_r"), _path(r.get("cache_dir"), f"{f}.cache_dir"),
                                     _path(r.get("sealed_file"), f"{f}.sealed_file")))
    return pt, sectors, seed


def _run_window_post(task: dict) -> dict:
    pt, sectors, seed = _post_input(task, winning=False)
    try:
        result = generate_window_post(pt, default_seal_proof(pt.size), sectors, seed)
    except ProofError as exc:
        raise TaskError(f"task.seed: {exc}") from None
    for number, why in sorted(result.faults.items()):
        log.warning("window_post: sector %d is faulty: %s", number, why)
    return {"proofs": [base64.b64encode(encode_post(result)).decode()], "faults": sorted(result.faults)}


def _run_winning_post(task: dict) -> dict:
    pt, sectors, seed = _post_input(task, winning=True)
    if len(sectors) != pt.sectors_per_partition:
        raise TaskError(f"task.replicas: {len(sectors)} sectors, {api_post_name(pt)} proves {pt.sectors_per_partition}")
    try:
        result = generate_winning_post(pt, default_seal_proof(pt.size), sectors[0], seed)
    except ProofError as exc:
        raise TaskError(f"task.seed: {exc}") from None
    if result.faults:     # as rust-fil-proofs: a winning proof with a faulty sector is an error
        raise TaskError("; ".join(f"sector {n} is faulty: {why}" for n, why in sorted(result.faults.items())))
    return {"proofs": [base64.b64encode(encode_post(result)).decode()]}


def _snark_proofs(out: dict, what: str) -> list[bytes]:
    proofs = []
    for i, p in enumerate(_list(out.get("proofs"), f"{what}.proofs")):
        try:
            proofs.append(base64.b64decode(_str(p, f"{what}.proofs[{i}]"), validate=True))
        except ValueError as exc:
            raise TaskError(f"{what}.proofs[{i}]: not base64 ({exc})") from None
    return proofs


def _check_post_proofs(proofs: list[bytes], what: str, task: dict, left: set[int]) -> None:
    """Our builtin PoSt proofs must verify over the sectors not reported faulty; anything else is a
    SNARK from a rust-fil-proofs processor, passed on for the chain to judge."""
    pt = post_proof(task["proof_type"])
    public = [PublicSector(r["sector_id"], bytes(r["comm_r"])) for r in task["replicas"] if r["sector_id"] in left]
    for i, data in enumerate(proofs):
        if not data.startswith(POST_MAGIC):
            log.info("%s.proofs[%d] is a %d-byte SNARK; it cannot be checked here, the chain will", what, i, len(data))
            continue
        try:
            verify_post(pt, bytes(task["seed"]), public, decode_post(data, pt))
        except ProofError as exc:
            raise TaskError(f"{what}.proofs[{i}] does not verify: {exc}") from None


def read_window_post_output(out, task: dict) -> dict:
    """WindowPoStOutput {proofs: [base64], faults: [sector numbers]} checked against the task: the
    faults are sectors of the task, a proof of ours verifies over the others; no proof at all only
    when sectors are faulty (what a rust-fil-proofs processor answers then)."""
    out = _obj(out, "window_post output")
    proofs = _snark_proofs(out, "window_post output")
    asked = {r["sector_id"] for r in task["replicas"]}
    faults = []
    for i, n in enumerate(_list(out.get("faults"), "window_post output.faults")):
        if _int(n, f"window_post output.faults[{i}]") not in asked:
            raise TaskError(f"window_post output.faults[{i}]: sector {n} is not in the task")
        faults.append(n)
    if not proofs and not faults and asked:
        raise TaskError("window_post output.proofs: no proof and no faulty sector")
    _check_post_proofs(proofs, "window_post output", task, asked - set(faults))
    return {"proofs": [base64.b64encode(p).decode() for p in proofs], "faults": sorted(faults)}


def read_winning_post_output(out, task: dict) -> list[bytes]:
    """WinningPoStOutput {proofs: [base64]}: at least one proof; ours must verify."""
    out = _obj(out, "winning_post output")
    proofs = _snark_proofs(out, "winning_post output")
    if not proofs:
        raise TaskError("winning_post output.proofs: empty")
    _check_post_proofs(proofs, "winning_post output", task, {r["sector_id"] for r in task["replicas"]})
    return proofs


# ------------------------------------------------------------------------------------ builtin

_RUNNERS = {"snap_encode": _run_snap_encode, "snap_prove": _run_snap_prove, "window_post": _run_window_post,
            "winning_post": _run_winning_post}


def run_task(stage: str, task: dict):
    """The builtin engine behind `damocles processor <stage>` for these stages."""
    try:
        return _RUNNERS[stage](_obj(task, "task"))
    except ProofError as exc:
        raise TaskError(f"{stage}: {exc}") from None
