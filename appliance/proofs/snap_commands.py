"""`damocles util snap-encode|snap-prove|snap-verify|snap-decode`: SnapDeals (ReplicaUpdate) by
hand on a sector directory written by `damocles util seal` (keys in docs/cli.md, files in
docs/formats.md). The update goes next to the sector key: `update-staged` (the new data),
`update`, `update-cache/`, `update.json`, and `update-proof.bin` once proven."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..core.files import atomic_write
from ..core.output import emit
from . import ProofError
from .addpiece import add_pieces
from .cid import commd_to_cid, commr_to_cid
from .pc2 import read_p_aux
from .poseidon import hash_nodes
from .seal import read_sector_meta
from .snap import UpdateProofType, update_proof, update_proof_for_seal
from .snap_encode import SectorFiles, encode_files, unseal_update_range
from .snap_proof import (decode_update_proof, generate_update_proof, prove_update_partitions,
                         verify_update_partitions, verify_update_proof)

UPDATE_META = "update.json"
UPDATE_STAGED = "update-staged"
UPDATE_PROOF = "update-proof.bin"
META_VERSION = 1


def add_parsers(util: argparse._SubParsersAction) -> None:
    p = util.add_parser("snap-encode", help="SnapDeals: encode pieces into a sealed (CC) sector directory")
    p.add_argument("sector_dir", type=Path, help="a sector directory written by `damocles util seal`")
    p.add_argument("--piece", type=Path, action="append", default=[], required=True,
                   help="piece payload file (repeatable)")
    p.add_argument("--procs", type=int, default=1, help="processes the encoding hashes with (default 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snap_encode)

    p = util.add_parser("snap-prove", help="SnapDeals: vanilla update proofs of an encoded sector, verified")
    p.add_argument("sector_dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snap_prove)

    p = util.add_parser("snap-verify", help="SnapDeals: verify an update proof against update.json")
    p.add_argument("sector_dir", type=Path)
    p.add_argument("--proof", type=Path, help=f"the proof file (default SECTOR_DIR/{UPDATE_PROOF})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snap_verify)

    p = util.add_parser("snap-decode", help="SnapDeals: decode a range of an updated sector back to piece bytes")
    p.add_argument("sector_dir", type=Path)
    p.add_argument("--offset", type=int, default=0, help="unpadded byte offset, a multiple of 127")
    p.add_argument("--length", type=int, help="unpadded bytes, a multiple of 127 (default: the rest of the sector)")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_snap_decode)


def _files(d: Path) -> SectorFiles:
    return SectorFiles(d / "sealed", d / "cache", d / "update", d / "update-cache")


def _hex32(raw: dict, key: str, path: Path) -> bytes:
    try:
        v = bytes.fromhex(raw[key])
    except (KeyError, TypeError, ValueError):
        raise ProofError(f"{path}: {key} is missing or not hex") from None
    if len(v) != 32:
        raise ProofError(f"{path}: {key} is not 32 bytes")
    return v


def read_update_meta(sector_dir: Path) -> tuple[UpdateProofType, bytes, bytes, bytes]:
    """(update proof type, comm_r_old, comm_r_new, comm_d_new) of update.json."""
    path = Path(sector_dir) / UPDATE_META
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProofError(f"{path} is missing: run `damocles util snap-encode` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProofError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("version") != META_VERSION:
        raise ProofError(f"{path}: unknown version {raw.get('version') if isinstance(raw, dict) else raw!r}")
    try:
        proof = update_proof(raw.get("update_proof"))
    except (ValueError, TypeError) as exc:
        raise ProofError(f"{path}: {exc}") from None
    return proof, _hex32(raw, "comm_r_old", path), _hex32(raw, "comm_r_new", path), _hex32(raw, "comm_d_new", path)


def cmd_snap_encode(args) -> int:
    d = args.sector_dir
    meta = read_sector_meta(d)
    proof = update_proof_for_seal(meta.proof)
    if args.procs < 1:
        raise ProofError(f"--procs must be at least 1, got {args.procs}")
    for name in (UPDATE_META, "update", "update-cache"):
        if (d / name).exists():
            raise ProofError(f"{d / name} already exists: the sector was updated already")
    comm_c, comm_r_last = read_p_aux(d / "cache")
    if hash_nodes([comm_c, comm_r_last]) != meta.comm_r:
        raise ProofError(f"{d / 'cache' / 'p_aux'} does not match the comm_r of {d / 'sector.json'}")
    staged_path = d / UPDATE_STAGED
    t = time.perf_counter()
    try:
        staged = add_pieces(meta.proof.size, args.piece, staged_path)
        enc = encode_files(proof, _files(d), staged_path, [s.info for s in staged], args.procs)
    except BaseException:
        staged_path.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t
    pieces = [{"cid": commd_to_cid(s.info.commitment), "padded_size": s.info.size, "payload_size": s.payload_size,
               "offset": s.offset} for s in staged]
    record = {"version": META_VERSION, "update_proof": proof.name, "comm_r_old": enc.comm_r_old.hex(),
              "comm_d_new": enc.comm_d_new.hex(), "comm_r_new": enc.comm_r_new.hex(),
              "comm_r_last_new": enc.comm_r_last_new.hex(), "pieces": pieces}
    atomic_write(d / UPDATE_META, (json.dumps(record, indent=2) + "\n").encode())
    result = {"sector_dir": str(d), "update_proof": proof.name, "update_proof_id": proof.id,
              "miner": meta.sector.miner, "sector": meta.sector.number,
              "comm_r_old": enc.comm_r_old.hex(), "comm_r_old_cid": commr_to_cid(enc.comm_r_old),
              "comm_d_new": enc.comm_d_new.hex(), "comm_d_new_cid": commd_to_cid(enc.comm_d_new),
              "comm_r_new": enc.comm_r_new.hex(), "comm_r_new_cid": commr_to_cid(enc.comm_r_new),
              "pieces": pieces, "seconds": round(seconds, 6)}
    emit(result, args.json, [f"update proof: {proof.name}", f"sector:       {meta.sector}",
                              f"comm_r_old:   {commr_to_cid(enc.comm_r_old)}",
                              f"comm_d_new:   {commd_to_cid(enc.comm_d_new)}",
                              f"comm_r_new:   {commr_to_cid(enc.comm_r_new)}",
                              f"encoded in    {seconds * 1000:.1f}ms into {d / 'update'}"])
    return 0


def cmd_snap_prove(args) -> int:
    d = args.sector_dir
    proof, comm_r_old, comm_r_new, comm_d_new = read_update_meta(d)
    f = _files(d)
    t = time.perf_counter()
    vanilla = prove_update_partitions(proof, comm_r_old, comm_r_new, comm_d_new, f.sealed, f.cache, f.update,
                                      f.update_cache)
    data = generate_update_proof(vanilla)
    prove_s = time.perf_counter() - t
    t = time.perf_counter()
    verify_update_partitions(proof, comm_r_old, comm_r_new, comm_d_new, decode_update_proof(data, proof))
    verify_s = time.perf_counter() - t
    atomic_write(d / UPDATE_PROOF, data)
    result = {"sector_dir": str(d), "update_proof": proof.name, "proof_file": str(d / UPDATE_PROOF),
              "partitions": proof.partitions, "challenges_per_partition": proof.challenges_per_partition,
              "proof_bytes": len(data), "proof_succinct": False, "snark_proof_bytes": proof.snark_proof_bytes,
              "verified": True, "prove_seconds": round(prove_s, 6), "verify_seconds": round(verify_s, 6)}
    emit(result, args.json, [f"update proof: {proof.name}, {proof.partitions} partition(s) x "
                              f"{proof.challenges_per_partition} challenges",
                              f"proof size:   {len(data)} bytes (builtin: the vanilla proofs, not succinct; "
                              f"a SNARK would be {proof.snark_proof_bytes})",
                              f"prove:        {prove_s * 1000:.1f}ms", f"verify:       {verify_s * 1000:.1f}ms",
                              f"written to    {d / UPDATE_PROOF}"])
    return 0


def cmd_snap_verify(args) -> int:
    d = args.sector_dir
    proof, comm_r_old, comm_r_new, comm_d_new = read_update_meta(d)
    path = args.proof or d / UPDATE_PROOF
    error = None
    t = time.perf_counter()
    try:
        verify_update_proof(proof, comm_r_old, comm_r_new, comm_d_new, path.read_bytes())
    except ProofError as exc:
        error = str(exc)
    except FileNotFoundError:
        error = f"{path} is missing: run `damocles util snap-prove` first"
    result = {"sector_dir": str(d), "update_proof": proof.name, "proof_file": str(path),
              "comm_r_old_cid": commr_to_cid(comm_r_old), "comm_r_new_cid": commr_to_cid(comm_r_new),
              "comm_d_new_cid": commd_to_cid(comm_d_new), "proof_valid": error is None, "error": error,
              "seconds": round(time.perf_counter() - t, 6)}
    emit(result, args.json, [f"update proof: {'valid' if error is None else 'INVALID: ' + error}"])
    return 0 if error is None else 1


def cmd_snap_decode(args) -> int:
    d = args.sector_dir
    proof, comm_r_old, _, comm_d_new = read_update_meta(d)
    length = args.length if args.length is not None else proof.size.unpadded_bytes - args.offset
    data = unseal_update_range(proof, comm_r_old, comm_d_new, d / "update", d / "sealed", args.offset, length)
    atomic_write(args.output, data)
    emit({"output": str(args.output), "offset": args.offset, "bytes": len(data)}, args.json,
         [f"wrote {len(data)} bytes (unpadded offset {args.offset}) to {args.output}"])
    return 0
