"""bench pc2: PC2 on one prepared sector with 1 process and with N, Poseidon hashes per
second and the speed-up of N over one (measured back to back in the same run)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ..core.output import emit
from ..core.proof_types import default_seal_proof, sector_size
from ..proofs import ProofError
from ..proofs.pc1 import generate_labels
from ..proofs.pc2 import seal_pre_commit_phase2


def poseidon_hash_count(nodes: int, tree_count: int) -> int:
    """Column hashes + the internal nodes of tree_c and tree_r_last."""
    per_tree = nodes // tree_count
    internal = (per_tree - 1) // 7 * tree_count
    return nodes + 2 * internal


def cmd_bench_pc2(args) -> int:
    size = sector_size(args.size)
    if args.procs < 1:
        raise ProofError(f"--procs must be at least 1, got {args.procs}")
    proof = default_seal_proof(size)
    hashes = poseidon_hash_count(size.nodes, size.tree_count)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="damocles-bench-pc2-") as tmp:
        d = Path(tmp)
        (d / "cache").mkdir()
        staged = d / "staged"
        staged.write_bytes(bytes(size.bytes))
        generate_labels(proof, os.urandom(31) + b"\x01", d / "cache", d / "parents")
        for procs in sorted({1, args.procs}):
            t = time.perf_counter()
            seal_pre_commit_phase2(proof, staged, d / "cache", d / f"sealed-{procs}", procs)
            runs[procs] = time.perf_counter() - t
        if (d / "sealed-1").read_bytes() != (d / f"sealed-{args.procs}").read_bytes():
            raise ProofError("PC2 with several processes wrote a different replica than with one")
    speedup = runs[1] / runs[args.procs]
    result = {"size": size.name, "poseidon_hashes": hashes, "cpus": os.cpu_count(),
              "runs": {str(p): {"seconds": round(s, 3), "hashes_per_second": round(hashes / s)} for p, s in runs.items()},
              "procs": args.procs, "speedup": round(speedup, 3)}
    lines = [f"PC2 {size.name}: {hashes} Poseidon hashes"]
    lines += [f"  {p} process{'es' if p > 1 else ''}: {s:.2f}s = {hashes / s:,.0f} hashes/s" for p, s in runs.items()]
    lines.append(f"speed-up of {args.procs} over 1: {speedup:.2f}x")
    emit(result, args.json, lines)
    return 0
