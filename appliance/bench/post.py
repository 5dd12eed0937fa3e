"""bench post: the time to prove N sectors in ONE WindowPoSt job (one generate_window_post call
over all of them, as a prover does for a partition's worth of sectors: 2349 is the partition
size of 32GiB sectors), the time to verify that proof, and the ratio of proving to a floor
measured in the same run: reading, straight from the files, only what the proof needs.

Sectors. One real sector is sealed with the engine (add piece, PC1, PC2, C1, C2, verified), and N
sector directories `s-t0<miner>-<n>`, n = 1..N, are laid out that reuse its files: hard links
where the file system allows, else copies; only `sector.json` is written anew, with the
directory's own sector number. WindowPoSt challenges depend on the sector number (leaf =
sha256(randomness ‖ sector number ‖ n) mod nodes), so every copy is challenged at its own
leaves and the prover does the same work as for N distinct sectors. The proof only opens
tree_r_last at those leaves against comm_r_last and checks Poseidon(comm_c, comm_r_last) ==
comm_r; nothing in it ties the replica to the sector number (the replica_id that does is
checked once, by the PoRep at ProveCommit, which the copies have not passed under their own
numbers), so the copies prove and verify correctly. The proof must verify, or the command fails.

Floor. Before the timer, the challenges of every sector are derived and turned into a read
plan: per sector `cache/p_aux` (64 bytes), the root of every base tree file when there are
several (the sub/top levels of 32GiB and 64GiB), and per challenge the segment of the replica
below the cached rows of tree_r_last (8^(1 + rows_to_discard) nodes: the challenged leaf and
every node the discarded rows' path nodes are rebuilt from) and the arity-8 group of each
stored row of the tree_r_last file below its root; identical reads of one sector are done once.
The timed floor opens each file once per sector and preads the plan, with no hashing and no
verification: the least I/O any prover must do.

Page cache. Before either timed run, every file either of them opens (each sector's p_aux,
sealed and tree_r_last files) is read in full, untimed, so both find the same data in the page
cache (with hard links the sectors share one set of inodes anyway), and the ratio compares the
proof's computation (Poseidon hashing of the discarded rows, the path checks) with bare reads,
not disk with cache. A real farm's sectors are distinct files that may come from disk. The
floor is cheap and short, so it is run three times and the best counts; the proof is run once.

The WindowPoSt deadline window is 30 minutes (WPoStChallengeWindow: 60 epochs of 30 s); the
proof of a deadline's partitions has to be generated and landed inside it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..core.output import emit
from ..core.proof_types import PoStProofType, SealProofType, SectorSize, default_seal_proof, sector_size
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.post import (PrivateSector, PublicSector, challenge_index, decode_post, encode_post,
                           generate_window_post, leaf_challenge, verify_post)
from ..proofs.seal import SECTOR_META, find_sectors, sector_dir_name, seal_sector
from ..proofs.store import open_tree_r_last

DEADLINE_WINDOW_SECONDS = 30 * 60   # WPoStChallengeWindow: 60 epochs x 30 s
MINER = 1000
FLOOR_RUNS = 3

ReadPlan = list[tuple[str, list[tuple[int, int]]]]   # per file: (offset, length) in bytes


def lay_out_copies(src: Path, root: Path, numbers: list[int]) -> dict[str, int]:
    """Sector directories under `root` for `numbers` that reuse the files of the sealed sector
    `src` (hard links, else copies), each with its own sector.json. Returns how many files were
    linked and copied."""
    meta = json.loads((src / SECTOR_META).read_text())
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and p.name != SECTOR_META)
    counts = {"linked": 0, "copied": 0}
    for n in numbers:
        d = root / sector_dir_name(SectorID(meta["miner"], n))
        d.mkdir(parents=True)
        for rel in files:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src / rel, d / rel)
                counts["linked"] += 1
            except OSError:
                shutil.copyfile(src / rel, d / rel)
                counts["copied"] += 1
        (d / SECTOR_META).write_text(json.dumps({**meta, "number": n}, indent=2) + "\n")
    return counts


def read_plan(post: PoStProofType, seal: SealProofType, sector: PrivateSector, sector_index: int,
              randomness: bytes) -> ReadPlan:
    """What proving `sector` has to read, by file: see the module docstring."""
    tree = open_tree_r_last(seal, sector.cache_dir, sector.sealed)
    shape = tree.shape
    reads: dict[str, dict[tuple[int, int], None]] = {str(Path(sector.cache_dir) / "p_aux"): {(0, 64): None}}
    if shape.tree_count > 1:
        for t in tree.trees:
            reads.setdefault(str(t.path), {})[((sum(t.row_lengths[t.first_row:]) - 1) * 32, 32)] = None
    for n in range(post.challenge_count):
        leaf = leaf_challenge(randomness, sector.number, challenge_index(post, sector_index, n), post.size.nodes)
        which, index = divmod(leaf, shape.base_leaves)
        t = tree.trees[which]
        seg = t.arity ** t.first_row
        start = index - index % seg
        reads.setdefault(str(t.leaf_path), {})[((t.leaf_offset + start) * 32, seg * 32)] = None
        idx = index // seg
        for row in range(t.first_row, t.rows - 1):
            g = idx - idx % t.arity
            offset = sum(t.row_lengths[t.first_row:row]) + g
            reads.setdefault(str(t.path), {})[(offset * 32, t.arity * 32)] = None
            idx //= t.arity
    return [(path, sorted(r)) for path, r in reads.items()]


def read_floor(plans: list[ReadPlan]) -> tuple[float, int]:
    """Seconds to read every plan (one open per file per sector, a pread per range), and bytes read."""
    total = 0
    pread = os.pread
    t0 = time.perf_counter()
    for plan in plans:
        for path, ranges in plan:
            fd = os.open(path, os.O_RDONLY)
            try:
                for offset, length in ranges:
                    got = len(pread(fd, length, offset))
                    if got != length:
                        raise ProofError(f"{path}: short read at byte {offset} ({got} of {length} bytes)")
                    total += got
            finally:
                os.close(fd)
    return time.perf_counter() - t0, total


def warm_page_cache(plans: list[ReadPlan], sectors: list[PrivateSector], seal: SealProofType) -> None:
    """Read in full every file the proof and the floor open (untimed)."""
    paths = {p for plan in plans for p, _ in plan}
    for s in sectors:
        paths.add(str(s.sealed))
        paths.update(str(t.path) for t in open_tree_r_last(seal, s.cache_dir, s.sealed).trees)
    for p in sorted(paths):
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def cmd_bench_post(args) -> int:
    size = sector_size(args.size)
    if args.sectors < 1:
        raise ValueError(f"--sectors must be at least 1, got {args.sectors}")
    seal = default_seal_proof(size)
    post = seal.window_post
    keep = Path(args.keep) if args.keep else None
    if keep is not None:
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise ValueError(f"--keep {keep}: not an empty directory")
        keep.mkdir(parents=True, exist_ok=True)
        work = keep
    else:
        work = Path(tempfile.mkdtemp(prefix="damocles-bench-post-"))
    try:
        result, lines = _run(size, seal, post, args.sectors, work)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    result["kept"] = str(keep) if keep is not None else None
    if keep is not None:
        lines.append(f"sectors kept in {keep}")
    emit(result, args.json, lines)
    return 0


def _run(size: SectorSize, seal: SealProofType, post: PoStProofType, count: int, work: Path) -> tuple[dict, list[str]]:
    t = time.perf_counter()
    ticket = os.urandom(32)
    seed = os.urandom(31) + b"\x01"
    real = seal_sector(seal, SectorID(MINER, 1), ticket, seed, work / "sealed-once")
    seal_s = time.perf_counter() - t
    layout = lay_out_copies(real.sector_dir, work / "sectors", list(range(1, count + 1)))
    metas = find_sectors(work / "sectors")
    if len(metas) != count or any(m.comm_r != real.comm_r for m in metas):
        raise ProofError(f"laid out {len(metas)} sector directories, expected {count} of comm_r {real.comm_r.hex()}")
    private = [PrivateSector(m.sector.number, m.comm_r, m.dir / "cache", m.dir / "sealed") for m in metas]
    public = [PublicSector(m.sector.number, m.comm_r) for m in metas]
    randomness = bytearray(os.urandom(32))
    randomness[31] &= 0x3F   # a canonical field element, as Lotus makes it
    randomness = bytes(randomness)

    plans = [read_plan(post, seal, s, i, randomness) for i, s in enumerate(private)]   # ascending numbers
    warm_page_cache(plans, private, seal)
    floor_s, floor_bytes = min(read_floor(plans) for _ in range(FLOOR_RUNS))

    t = time.perf_counter()
    proof = generate_window_post(post, seal, private, randomness)
    gen_s = time.perf_counter() - t
    if proof.faults:
        first = next(iter(sorted(proof.faults.items())))
        raise ProofError(f"WindowPoSt reported {len(proof.faults)} faulty sectors (sector {first[0]}: {first[1]})")
    encoded = encode_post(proof)
    decoded = decode_post(encoded, post)
    t = time.perf_counter()
    try:
        verify_post(post, randomness, public, decoded)
    except ProofError as exc:
        raise ProofError(f"the WindowPoSt of {count} sectors did not verify: {exc}") from None
    verify_s = time.perf_counter() - t

    ratio = gen_s / floor_s
    fraction = gen_s / DEADLINE_WINDOW_SECONDS
    how = ("hard links" if not layout["copied"] else "copies" if not layout["linked"] else "hard links and copies")
    result = {"size": size.name, "proof_type": post.name, "seal_proof": seal.name,
              "sectors": count, "partitions": len(proof.partitions),
              "sectors_per_partition": post.sectors_per_partition,
              "challenges_per_sector": post.challenge_count,
              "generate_seconds": round(gen_s, 3), "sectors_per_second": round(count / gen_s, 2),
              "floor_seconds": round(floor_s, 8), "floor_bytes_read": floor_bytes,
              "ratio_to_floor": round(ratio, 2),
              "verify_seconds": round(verify_s, 3), "verified": True, "proof_bytes": len(encoded),
              "deadline_window_seconds": DEADLINE_WINDOW_SECONDS, "window_fraction": round(fraction, 5),
              "seal_seconds": round(seal_s, 3), "layout": how}
    lines = [f"WindowPoSt {post.name}: {count} sectors x {post.challenge_count} challenges in one job "
             f"({len(proof.partitions)} partitions of up to {post.sectors_per_partition})",
             f"  generate:  {gen_s:.2f}s = {count / gen_s:,.1f} sectors/s",
             f"  floor:     {floor_s * 1000:.3f}ms reading {floor_bytes:,} bytes (p_aux, challenged leaves, tree_r_last path "
             f"nodes; no hashing; best of {FLOOR_RUNS})",
             f"  ratio:     {ratio:,.1f} (generate / floor)",
             f"  verify:    {verify_s:.2f}s (verified)",
             f"  proof:     {len(encoded):,} bytes",
             f"  window:    {fraction:.2%} of the {DEADLINE_WINDOW_SECONDS}s (30-minute) WindowPoSt deadline window",
             f"sectors: one real {size.name} sector sealed in {seal_s:.2f}s, laid out {count} times with {how}"]
    return result, lines
