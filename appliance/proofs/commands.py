"""`damocles util commp|seal|post|parent-cache|verify|unseal`: the proof engine by hand, like
lotus-bench's simple commands (`snap-*` are registered from snap_commands.py). Each prints
text, or one JSON document with --json (keys documented in docs/cli.md)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from ..core.files import atomic_write
from ..core.output import emit
from ..core.proof_types import default_seal_proof, seal_proof, sector_size
from ..core.sector import SectorID
from . import ProofError
from .cid import commd_to_cid, commr_to_cid
from .commitment import commp_file
from .graph import cache_id, write_parent_cache
from .post import PrivateSector, PublicSector, decode_post, encode_post, generate_window_post, verify_post
from .seal import find_sectors, full_check, read_sector_meta, seal_sector
from .snap_commands import add_parsers as add_snap_parsers
from .unseal import unseal_range

DEFAULT_TICKET = bytes(32)         # lotus-bench's published 2KiB example used a zero ticket
DEFAULT_SEED = bytes([1]) * 32     # lotus-bench's seed; all-zero seeds are refused


def hex32(text: str) -> bytes:
    """argparse type: 32 bytes as 64 hex digits (an optional 0x prefix allowed)."""
    t = text[2:] if text.lower().startswith("0x") else text
    try:
        b = bytes.fromhex(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex") from None
    if len(b) != 32:
        raise argparse.ArgumentTypeError(f"{text!r} is {len(b)} bytes, expected 32 (64 hex digits)")
    return b


def add_parsers(util: argparse._SubParsersAction) -> None:
    p = util.add_parser("commp", help="piece CID and sizes of a file")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_commp)

    p = util.add_parser("seal", help="seal one sector end to end (AddPiece .. C2 + verification)")
    p.add_argument("--size", default="2KiB", help="sector size (default 2KiB)")
    p.add_argument("--proof", help="RegisteredSealProof name or number (default: the V1_1 type of --size)")
    p.add_argument("--miner", type=int, default=1000, help="miner actor id (default 1000)")
    p.add_argument("--sector", type=int, default=1, help="sector number (default 1)")
    p.add_argument("--ticket", type=hex32, default=DEFAULT_TICKET, help="32-byte ticket, hex (default all zero)")
    p.add_argument("--seed", type=hex32, default=DEFAULT_SEED, help="32-byte interactive seed, hex (default 01..01)")
    p.add_argument("--piece", type=Path, action="append", default=[], help="piece payload file (repeatable); none = CC")
    p.add_argument("--workdir", type=Path, help="where the sector directory goes (default: a temporary one, removed)")
    p.add_argument("--parent-cache", type=Path, help="parent cache directory (default $FIL_PROOFS_PARENT_CACHE or /var/tmp/filecoin-parents)")
    p.add_argument("--pc2-procs", type=int, default=1, help="processes PC2 hashes with (default 1)")
    p.add_argument("--full", action="store_true", help="also recompute the sector and compare every file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_seal)

    p = util.add_parser("post", help="prove and verify a WindowPoSt over the sealed sectors in a directory")
    p.add_argument("--size", default="2KiB")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--randomness", type=hex32, required=True, help="32 bytes, hex, a canonical field element")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_post)

    p = util.add_parser("parent-cache", help="write the SDR parent cache of a proof type")
    p.add_argument("--proof", required=True)
    p.add_argument("--dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_parent_cache)

    p = util.add_parser("verify", help="verify a sealed sector directory's proof (--full: recompute everything)")
    p.add_argument("sector_dir", type=Path)
    p.add_argument("--full", action="store_true")
    p.add_argument("--parent-cache", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = util.add_parser("unseal", help="decode a range of a sealed sector back to the piece bytes")
    p.add_argument("sector_dir", type=Path)
    p.add_argument("--offset", type=int, default=0, help="unpadded byte offset, a multiple of 127")
    p.add_argument("--length", type=int, help="unpadded bytes, a multiple of 127 (default: the whole sector)")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--parent-cache", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_unseal)

    add_snap_parsers(util)   # snap-encode|snap-prove|snap-verify|snap-decode


def cmd_commp(args) -> int:
    info, payload = commp_file(args.file)
    result = {"piece_cid": commd_to_cid(info.commitment), "commitment": info.commitment.hex(),
              "padded_size": info.size, "payload_size": payload, "unpadded_size": info.size - info.size // 128}
    emit(result, args.json)
    return 0


def cmd_seal(args) -> int:
    size = sector_size(args.size)
    proof = seal_proof(args.proof) if args.proof else default_seal_proof(size)
    if proof.size != size:
        raise ProofError(f"--proof {proof.name} is for {proof.size.name} sectors, not {size.name}")
    if args.pc2_procs < 1:
        raise ProofError(f"--pc2-procs must be at least 1, got {args.pc2_procs}")
    sector = SectorID(args.miner, args.sector)
    workdir, temporary = args.workdir, args.workdir is None
    if temporary:
        workdir = Path(tempfile.mkdtemp(prefix="damocles-seal-"))
    try:
        report = seal_sector(proof, sector, args.ticket, args.seed, workdir, args.piece, args.parent_cache,
                             args.pc2_procs, args.full)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    result = report.to_json()
    if temporary:
        result["sector_dir"] = None
    ok = report.verified and not report.full_check
    lines = [f"proof:       {proof.name}", f"sector:      {sector}",
             f"replica_id:  {report.replica_id.hex()}",
             f"comm_d:      {commd_to_cid(report.comm_d)} ({report.comm_d.hex()})",
             f"comm_r:      {commr_to_cid(report.comm_r)} ({report.comm_r.hex()})",
             f"proof size:  {report.proof_bytes} bytes (builtin C2: the vanilla proof, not succinct)",
             "stages:      " + ", ".join(f"{k} {v * 1000:.1f}ms" for k, v in report.stage_seconds.items()),
             f"verified:    {'yes' if report.verified else 'NO'}"]
    if report.full_check is not None:
        lines.append("full check:  " + ("ok" if not report.full_check else "; ".join(report.full_check)))
    lines.append(f"sector dir:  {report.sector_dir if not temporary else '(temporary, removed)'}")
    emit(result, args.json, lines)
    return 0 if ok else 1


def cmd_post(args) -> int:
    size = sector_size(args.size)
    metas = [m for m in find_sectors(args.workdir) if m.proof.size == size]
    if not metas:
        raise ProofError(f"no sealed {size.name} sectors in {args.workdir}")
    miners = {m.sector.miner for m in metas}
    if len(miners) > 1:
        raise ProofError(f"{args.workdir} holds sectors of several miners ({sorted(miners)}): one PoSt is for one miner")
    seal = metas[0].proof
    pt = seal.window_post
    t = time.perf_counter()
    result = generate_window_post(pt, seal, [PrivateSector(m.sector.number, m.comm_r, m.dir / "cache", m.dir / "sealed")
                                             for m in metas], args.randomness)
    prove_s = time.perf_counter() - t
    proof_bytes = encode_post(result)
    t = time.perf_counter()
    verified, error = True, None
    try:
        verify_post(pt, args.randomness, [PublicSector(m.sector.number, m.comm_r) for m in metas
                                          if m.sector.number not in result.faults], decode_post(proof_bytes, pt))
    except ProofError as exc:
        verified, error = False, str(exc)
    verify_s = time.perf_counter() - t
    out = {"proof_type": pt.name, "miner": metas[0].sector.miner,
           "sectors": [m.sector.number for m in metas], "proven": [sp.number for p in result.partitions for sp in p],
           "faults": {str(k): v for k, v in sorted(result.faults.items())}, "partitions": len(result.partitions),
           "proof_bytes": len(proof_bytes), "verified": verified, "error": error,
           "prove_seconds": round(prove_s, 6), "verify_seconds": round(verify_s, 6)}
    lines = [f"proof type:  {pt.name}", f"sectors:     {out['sectors']}", f"proven:      {out['proven']}",
             f"partitions:  {out['partitions']}", f"proof size:  {len(proof_bytes)} bytes",
             f"prove:       {prove_s * 1000:.1f}ms", f"verify:      {verify_s * 1000:.1f}ms",
             f"verified:    {'yes' if verified else 'NO: ' + str(error)}"]
    lines += [f"FAULT:       sector {k}: {v}" for k, v in sorted(result.faults.items())]
    emit(out, args.json, lines)
    if not verified:
        return 1
    return 3 if result.faults else 0


def cmd_parent_cache(args) -> int:
    proof = seal_proof(args.proof)
    t = time.perf_counter()
    path, digest = write_parent_cache(proof, args.dir)
    result = {"proof": proof.name, "path": str(path), "id": cache_id(proof), "sha256": digest,
              "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - t, 3)}
    emit(result, args.json)
    return 0


def cmd_verify(args) -> int:
    from .c2 import verify_seal
    meta = read_sector_meta(args.sector_dir)
    error = None
    try:
        verify_seal(meta.proof, meta.sector, meta.comm_d, meta.comm_r, meta.ticket, meta.seed,
                    (args.sector_dir / "proof.bin").read_bytes())
    except (ProofError, FileNotFoundError) as exc:
        error = str(exc)
    mismatches = full_check(args.sector_dir, args.parent_cache) if args.full else None
    result = {"sector_dir": str(args.sector_dir), "proof": meta.proof.name, "miner": meta.sector.miner,
              "sector": meta.sector.number, "comm_r_cid": commr_to_cid(meta.comm_r), "proof_valid": error is None,
              "error": error, "full_check": None if mismatches is None else {"ok": not mismatches, "mismatches": mismatches}}
    lines = [f"proof:      {'valid' if error is None else 'INVALID: ' + error}"]
    if mismatches is not None:
        lines.append("full check: " + ("ok" if not mismatches else "FAILED"))
        lines += [f"  {m}" for m in mismatches]
    emit(result, args.json, lines)
    return 0 if error is None and not mismatches else 1


def cmd_unseal(args) -> int:
    meta = read_sector_meta(args.sector_dir)
    length = args.length if args.length is not None else meta.proof.size.unpadded_bytes - args.offset
    data = unseal_range(meta.proof, meta.sector, meta.ticket, meta.comm_d, args.sector_dir / "sealed",
                        args.offset, length, args.parent_cache)
    atomic_write(args.output, data)
    emit({"output": str(args.output), "offset": args.offset, "bytes": len(data)}, args.json,
         [f"wrote {len(data)} bytes (unpadded offset {args.offset}) to {args.output}"])
    return 0
