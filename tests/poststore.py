"""Sealed 2KiB sectors laid out in a persist store as the worker persists them:
`sealed/s-t0M-N` and `cache/s-t0M-N/` (tree_r_last, p_aux, t_aux)."""

import os
import shutil
from pathlib import Path

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID, sector_name
from appliance.proofs.seal import seal_sector

P2K = seal_proof("StackedDrg2KiBV1_1")


def seal_into_store(store: Path, miner: int, number: int, work: Path, parent_cache: Path) -> bytes:
    """Seal a CC sector and persist its PoSt files into `store`; returns comm_r."""
    report = seal_sector(P2K, SectorID(miner, number), os.urandom(31) + b"\0", b"\1" * 32, work, parent_cache_dir=parent_cache)
    name = sector_name(miner, number)
    (store / "sealed").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report.sector_dir / "sealed", store / "sealed" / name)
    cache = store / "cache" / name
    cache.mkdir(parents=True, exist_ok=True)
    for f in list((report.sector_dir / "cache").glob("sc-02-data-tree-r-last*.dat")) + [
            report.sector_dir / "cache" / "p_aux", report.sector_dir / "cache" / "t_aux"]:
        shutil.copyfile(f, cache / f.name)
    return report.comm_r
