"""bench pc1: labelling (hashing) time of every layer (best of --repeat runs, each in a fresh
process), against the floor of hashlib hashing as many
prebuilt 1248-byte messages (one call each) in the same run; the parent cache's generation
time; and PC1's peak memory, measured in a child process that runs PC1 as a worker would."""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path

from ..core.output import emit
from ..core.proof_types import default_seal_proof, sector_size
from ..proofs.graph import write_parent_cache
from ..proofs.pc1 import PC1Stats, generate_labels
from ..proofs.pc2 import mp_context


def _pc1_child(proof_id: int, cache_dir: str, parent_dir: str, queue) -> None:
    from ..core.proof_types import seal_proof
    proof = seal_proof(proof_id)
    stats = PC1Stats()
    generate_labels(proof, os.urandom(31) + b"\x01", cache_dir, parent_dir, stats)
    queue.put((stats.label_seconds, stats.total_seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def hashlib_floor(count: int, pool_size: int = 4096) -> float:
    msgs = [os.urandom(1248) for _ in range(min(pool_size, count))]
    sha = hashlib.sha256
    n = len(msgs)
    t = time.perf_counter()
    for i in range(count):
        sha(msgs[i % n]).digest()
    return time.perf_counter() - t


def cmd_bench_pc1(args) -> int:
    size = sector_size(args.size)
    proof = default_seal_proof(size)
    with tempfile.TemporaryDirectory(prefix="damocles-bench-pc1-") as tmp:
        parents = Path(tmp) / "parents"
        t = time.perf_counter()
        write_parent_cache(proof, parents)
        cache_s = time.perf_counter() - t
        (Path(tmp) / "cache").mkdir()
        ctx = mp_context()
        runs = []
        for _ in range(args.repeat):
            q = ctx.Queue()
            child = ctx.Process(target=_pc1_child, args=(proof.id, str(Path(tmp) / "cache"), str(parents), q))
            child.start()
            runs.append(q.get())
            child.join()
    pc1_s, total_s, peak = min(runs)
    labels = size.nodes * size.layers
    floor_s = min(hashlib_floor(labels) for _ in range(args.repeat))
    limit = 2 * size.bytes + 100 * 2**20
    result = {"size": size.name, "proof": proof.name, "labels": labels,
              "label_seconds": round(pc1_s, 3), "pc1_total_seconds": round(total_s, 3),
              "labels_per_second": round(labels / pc1_s),
              "hashlib_floor_seconds": round(floor_s, 3), "ratio_to_floor": round(pc1_s / floor_s, 3),
              "parent_cache_seconds": round(cache_s, 3),
              "pc1_peak_rss_bytes": peak, "peak_limit_bytes": limit, "peak_within_limit": peak <= limit}
    lines = [f"PC1 {size.name} ({proof.name}): {labels} labels in {pc1_s:.2f}s = {labels / pc1_s:,.0f} labels/s "
             f"({total_s:.2f}s with loading the parent cache and writing the layers)",
             f"hashlib floor: {floor_s:.2f}s for {labels} prebuilt 1248-byte messages",
             f"ratio to floor: {pc1_s / floor_s:.2f}",
             f"parent cache: {cache_s:.2f}s",
             f"PC1 peak RSS: {peak / 2**20:.1f} MiB (limit 2 x sector + 100 MiB = {limit / 2**20:.0f} MiB)"]
    emit(result, args.json, lines)
    return 0
