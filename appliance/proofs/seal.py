"""A whole seal on one machine, stage by stage, as `damocles util seal` runs it, plus the full
check that recomputes a sector from its data and ticket and compares every file.

A sector lives in `<workdir>/s-t0<miner>-<number>/`: `staged` (unsealed, fr32-padded data),
`sealed`, `cache/` (Filecoin's file names), `c1.bin`, `proof.bin` (C2) and `sector.json`
(public inputs and commitments, see docs/formats.md). It is built in a `.tmp` directory and
renamed into place only when every stage, verification included, has succeeded."""

from __future__ import annotations

import filecmp
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.proof_types import SealProofType, seal_proof
from ..core.sector import SectorID, sector_name
from . import ProofError
from .addpiece import add_pieces, build_tree_d
from .c2 import seal_commit_phase2, verify_seal
from .cid import commd_to_cid, commr_to_cid
from .pc1 import generate_labels, replica_id
from .pc2 import seal_pre_commit_phase2, t_aux_bytes
from .porep import seal_commit_phase1

SECTOR_META = "sector.json"
META_VERSION = 1


@dataclass
class SealReport:
    proof: SealProofType
    sector: SectorID
    sector_dir: Path
    replica_id: bytes
    comm_d: bytes
    comm_r: bytes
    proof_bytes: int
    verified: bool
    stage_seconds: dict[str, float] = field(default_factory=dict)
    pieces: list[dict] = field(default_factory=list)
    full_check: list[str] | None = None

    def to_json(self) -> dict:
        return {
            "proof": self.proof.name, "proof_id": self.proof.id,
            "miner": self.sector.miner, "sector": self.sector.number, "sector_dir": str(self.sector_dir),
            "replica_id": self.replica_id.hex(),
            "comm_d": self.comm_d.hex(), "comm_d_cid": commd_to_cid(self.comm_d),
            "comm_r": self.comm_r.hex(), "comm_r_cid": commr_to_cid(self.comm_r),
            "proof_bytes": self.proof_bytes, "proof_succinct": False, "verified": self.verified,
            "stage_seconds": {k: round(v, 6) for k, v in self.stage_seconds.items()},
            "pieces": self.pieces,
            "full_check": None if self.full_check is None else {"ok": not self.full_check, "mismatches": self.full_check},
        }


def sector_dir_name(sector: SectorID) -> str:
    return sector_name(sector.miner, sector.number)


def seal_sector(proof: SealProofType, sector: SectorID, ticket: bytes, seed: bytes, workdir: Path,
                pieces: list[Path] | None = None, parent_cache_dir=None, pc2_procs: int = 1,
                full: bool = False) -> SealReport:
    for what, v in (("ticket", ticket), ("seed", seed)):
        if len(v) != 32:
            raise ProofError(f"{what} must be 32 bytes (64 hex digits), got {len(v)} bytes")
    if seed == bytes(32):
        raise ProofError("seed must not be all zeros (rust-fil-proofs refuses it)")
    workdir = Path(workdir)
    final = workdir / sector_dir_name(sector)
    if final.exists():
        raise ProofError(f"{final} already exists: remove it or choose another --sector")
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=workdir))
    try:
        report = _seal_into(proof, sector, ticket, seed, tmp, final, pieces or [], parent_cache_dir, pc2_procs, full)
        tmp.rename(final)
        report.sector_dir = final
        return report
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _seal_into(proof, sector, ticket, seed, d: Path, final: Path, pieces, parent_cache_dir, pc2_procs, full) -> SealReport:
    times: dict[str, float] = {}
    cache = d / "cache"
    cache.mkdir()

    def stage(name, fn, *args, **kw):
        t = time.perf_counter()
        out = fn(*args, **kw)
        times[name] = time.perf_counter() - t
        return out

    staged = stage("add_piece", add_pieces, proof.size, pieces, d / "staged")
    comm_d = stage("tree_d", build_tree_d, proof.size, d / "staged", cache, [p.info for p in staged])
    rid = replica_id(sector, ticket, comm_d, proof)
    stage("pc1", generate_labels, proof, rid, cache, parent_cache_dir)
    pc2 = stage("pc2", seal_pre_commit_phase2, proof, d / "staged", cache, d / "sealed", pc2_procs, final / "cache")
    c1 = stage("c1", seal_commit_phase1, proof, sector, ticket, seed, comm_d, pc2.comm_c, pc2.comm_r_last, cache, d / "sealed")
    c2 = stage("c2", seal_commit_phase2, c1)
    stage("verify", verify_seal, proof, sector, comm_d, pc2.comm_r, ticket, seed, c2)
    (d / "proof.bin").write_bytes(c2)
    piece_json = [{"cid": commd_to_cid(p.info.commitment), "padded_size": p.info.size, "payload_size": p.payload_size,
                   "offset": p.offset} for p in staged]
    meta = {"version": META_VERSION, "proof": proof.name, "miner": sector.miner, "number": sector.number,
            "ticket": ticket.hex(), "seed": seed.hex(), "comm_d": comm_d.hex(), "comm_r": pc2.comm_r.hex(),
            "pieces": piece_json}
    (d / SECTOR_META).write_text(json.dumps(meta, indent=2) + "\n")
    report = SealReport(proof, sector, d, rid, comm_d, pc2.comm_r, len(c2), True, times, piece_json)
    if full:
        report.full_check = stage("full_check", full_check, d, parent_cache_dir, proof)
    return report


# ---------------------------------------------------------------------------------- metadata

@dataclass
class SectorMeta:
    proof: SealProofType
    sector: SectorID
    ticket: bytes
    seed: bytes
    comm_d: bytes
    comm_r: bytes
    dir: Path


def read_sector_meta(sector_dir: Path, proof: SealProofType | None = None) -> SectorMeta:
    """sector.json of a sector directory; `proof` overrides the registered type its name gives."""
    path = Path(sector_dir) / SECTOR_META
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProofError(f"{path} is missing: not a sealed sector directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProofError(f"{path}: not valid JSON ({exc})") from None
    try:
        if raw.get("version") != META_VERSION:
            raise ProofError(f"{path}: unknown version {raw.get('version')!r}")
        if proof is not None and raw["proof"] != proof.name:
            raise ProofError(f"{path}: sector is {raw['proof']}, not {proof.name}")
        meta = SectorMeta(proof or seal_proof(raw["proof"]), SectorID(raw["miner"], raw["number"]),
                          bytes.fromhex(raw["ticket"]), bytes.fromhex(raw["seed"]), bytes.fromhex(raw["comm_d"]),
                          bytes.fromhex(raw["comm_r"]), Path(sector_dir))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProofError(f"{path}: invalid sector metadata ({exc!r})") from None
    for name in ("ticket", "seed", "comm_d", "comm_r"):
        if len(getattr(meta, name)) != 32:
            raise ProofError(f"{path}: {name} is not 32 bytes")
    return meta


def find_sectors(workdir: Path) -> list[SectorMeta]:
    """Sealed sectors in workdir (itself, or its direct sub-directories), by sector number."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ProofError(f"{workdir} is not a directory")
    dirs = [workdir] if (workdir / SECTOR_META).exists() else sorted(
        p for p in workdir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / SECTOR_META).exists())
    return sorted((read_sector_meta(p) for p in dirs), key=lambda m: (m.sector.miner, m.sector.number))


# -------------------------------------------------------------------------------- full check

def full_check(sector_dir: Path, parent_cache_dir=None, proof: SealProofType | None = None) -> list[str]:
    """Recompute the sector from `staged` and the ticket in a scratch directory and compare every
    file and commitment. Returns the list of mismatches (empty when the sector is sound)."""
    meta = read_sector_meta(sector_dir, proof)
    d = Path(sector_dir)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="damocles-check-") as tmp:
        t = Path(tmp)
        (t / "cache").mkdir()
        staged = d / "staged"
        if not staged.exists():
            return [f"{staged} is missing: the full check needs the unsealed data"]
        comm_d = build_tree_d(meta.proof.size, staged, t / "cache")
        if comm_d != meta.comm_d:
            problems.append("comm_d recomputed from staged differs from sector.json")
        rid = replica_id(meta.sector, meta.ticket, meta.comm_d, meta.proof)
        generate_labels(meta.proof, rid, t / "cache", parent_cache_dir)
        out = seal_pre_commit_phase2(meta.proof, staged, t / "cache", t / "sealed")
        if out.comm_r != meta.comm_r:
            problems.append("comm_r recomputed from the data and ticket differs from sector.json")
        (t / "cache" / "t_aux").write_bytes(t_aux_bytes(meta.proof, _t_aux_recorded_path(d / "cache" / "t_aux")))
        for f in sorted(p.relative_to(t) for p in t.rglob("*") if p.is_file()):
            have = d / f
            if not have.exists():
                if f.parent.name == "cache" and f.name.startswith(("sc-02-data-layer-", "sc-02-data-tree-c", "sc-02-data-tree-d")):
                    continue   # cleared after sealing, as Filecoin does; nothing to compare
                problems.append(f"{f} is missing")
            elif not filecmp.cmp(have, t / f, shallow=False):
                problems.append(f"{f} differs from the recomputed file{_first_diff(have, t / f)}")
    return problems


def _t_aux_recorded_path(t_aux: Path) -> str:
    """The cache path a t_aux records (informational: sectors move to persist stores, and
    rust-fil-proofs replaces it on load), so that the comparison is of everything else."""
    try:
        raw = t_aux.read_bytes()
        n = int.from_bytes(raw[8:16], "little")
        return raw[16:16 + n].decode()
    except (OSError, UnicodeDecodeError):
        return str(t_aux.parent)


def _first_diff(a: Path, b: Path) -> str:
    x, y = a.read_bytes(), b.read_bytes()
    if len(x) != len(y):
        return f" (length {len(x)}, expected {len(y)})"
    i = next(i for i in range(len(x)) if x[i] != y[i])
    return f" (first difference at byte {i})"
