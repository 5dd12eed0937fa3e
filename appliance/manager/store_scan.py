"""A storage path laid out as lotus-miner and Damocles lay out their persist stores, read sector by
sector and checked against the chain before anything is imported from it.

The layout (lotus' storiface.SectorFileType names, Damocles' util.SectorPath): `sealed/<name>`,
`cache/<name>/` (p_aux, t_aux, `sc-02-data-tree-r-last[-i].dat`), and for a snap-upgraded sector
`update/<name>`, `update-cache/<name>/`; `unsealed/<name>` may be there too and is not needed for
proving. `<name>` is `s-t0<miner>-<number>`.

A sector is good when the chain has it active, its replica file has the sector size, its cache
holds every file WindowPoSt reads, and the CommR its p_aux gives (Poseidon(comm_c, comm_r_last))
is the chain's sealed CID, with tree_r_last's root and t_aux agreeing (the poster's pre-check,
proofs.post.check_sector). Anything else is refused with the reason. A snap-upgraded sector is
checked from update/ and update-cache/ against the chain's (new) sealed CID; a sector key kept
beside it in sealed/ and cache/ is checked the same way against the chain's sector key CID and
taken only when it passes (Found.sector_key, or sector_key_reason saying why not)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from ..chain.types import ChainError
from ..core.proof_types import seal_proof
from ..core.sector import sector_name
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..proofs.pc2 import read_p_aux
from ..proofs.poseidon import hash_nodes
from ..proofs.post import PrivateSector, check_sector
from ..proofs.store import shape_of, tree_r_last_path

NAME = re.compile(r"s-t0(\d+)-(\d+)")
DIRS = {"normal": ("sealed", "cache"), "upgrade": ("update", "update-cache")}


@dataclass
class Found:
    """One `s-t0M-N` entry of a store: where its files are, or why it cannot be taken."""
    name: str
    miner: int | None = None
    number: int | None = None
    kind: str = "normal"            # "upgrade": a snap-upgraded replica (update/, update-cache/)
    reason: str | None = None       # None: good
    sector_key: bool = False        # an upgraded sector's sector key is in sealed/ and cache/ too, and checked
    sector_key_reason: str | None = None    # why the sealed/ and cache/ beside an update are not taken

    def to_json(self) -> dict:
        return {"Sector": self.name, "Miner": self.miner, "Number": self.number, "Kind": self.kind, "Reason": self.reason,
                "SectorKey": self.sector_key, "SectorKeyReason": self.sector_key_reason}


def names_in(root: Path, pattern: str = "*") -> list[str]:
    """The sector names a store holds a replica or a cache of (sealed/, cache/, update/,
    update-cache/), matching the glob `pattern` (Damocles' attach --pattern), sorted by miner
    and number; entries that are not sector names are returned too (refused by the caller)."""
    seen: set[str] = set()
    for sub in ("sealed", "cache", "update", "update-cache"):
        d = root / sub
        if d.is_dir():
            seen.update(p.name for p in d.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def key(name: str):
        m = NAME.fullmatch(name)
        return (0, int(m.group(1)), int(m.group(2)), "") if m else (1, 0, 0, name)
    return sorted(seen, key=key)


def check_store_sector(chain, root: Path, name: str) -> Found:
    """Check the sector `name` of the store at `root` against the chain (module docstring)."""
    m = NAME.fullmatch(name)
    if m is None:
        return Found(name, reason="not a sector name (expected s-t0<miner>-<number>)")
    miner, number = int(m.group(1)), int(m.group(2))
    if name != sector_name(miner, number):       # s-t001000-05: not how lotus or Damocles names it
        return Found(name, miner, number, reason=f"not a sector name as lotus writes it (expected {sector_name(miner, number)})")
    found = Found(name, miner, number)
    try:
        on_chain = chain.sector(miner, number)
    except ChainError as exc:
        found.reason = f"the chain cannot say: {exc}"
        return found
    if on_chain is None:
        found.reason = f"not an active sector of f0{miner} on chain (never proven, expired or terminated)"
        return found
    found.kind = "upgrade" if on_chain.sector_key_cid else "normal"
    sealed_dir, cache_dir = DIRS[found.kind]
    try:
        proof = seal_proof(on_chain.seal_proof)
    except (KeyError, ValueError):
        found.reason = f"the chain's seal proof type {on_chain.seal_proof} is not one this manager knows"
        return found
    label = "snap-upgraded replica" if found.kind == "upgrade" else "sealed file"
    missing = (" (the chain has the sector snap-upgraded: WindowPoSt proves its update/ replica)"
               if found.kind == "upgrade" else "")
    found.reason = _replica_reason(root, name, sealed_dir, cache_dir, proof, number, on_chain.sealed_cid,
                                   label, "sealed CID", missing)
    if found.reason is None and found.kind == "upgrade" and ((root / "sealed" / name).exists() or (root / "cache" / name).exists()):
        # the sector key (the CC replica the update was encoded into) kept beside it: taken only when
        # it is the chain's sector key, so that the record never names files that are not this sector's
        found.sector_key_reason = _replica_reason(root, name, "sealed", "cache", proof, number, on_chain.sector_key_cid,
                                                  "sector key", "sector key CID", "")
        found.sector_key = found.sector_key_reason is None
    return found


def _replica_reason(root: Path, name: str, sealed_dir: str, cache_dir: str, proof, number: int, cid: str, label: str,
                    cid_label: str, missing_note: str) -> str | None:
    """Why the replica `sealed_dir/name` and its cache `cache_dir/name/` are not the sector whose
    CommR is `cid` (None: they are)."""
    sealed, cache = root / sealed_dir / name, root / cache_dir / name
    if not sealed.is_file():
        return f"{sealed_dir}/{name} is missing{missing_note}"
    size = sealed.stat().st_size
    if size != proof.size.bytes:
        return f"{label} {sealed_dir}/{name} has {size} bytes, the sector size is {proof.size.bytes}"
    if not cache.is_dir():
        return f"{cache_dir}/{name}/ is missing"
    count = shape_of(proof).tree_count
    needed = ["p_aux", "t_aux"] + [tree_r_last_path(cache, i, count).name for i in range(count)]
    absent = [f for f in needed if not (cache / f).is_file()]
    if absent:
        return f"{cache_dir}/{name}/ lacks {', '.join(absent)} (WindowPoSt reads them)"
    comm_r = cid_to_commitment(cid)[1]
    try:
        comm_c, comm_r_last = read_p_aux(cache)
        from_files = hash_nodes([comm_c, comm_r_last])
        if from_files != comm_r:
            return f"CommR from {cache_dir}/{name}/p_aux ({from_files.hex()}) is not the on-chain {cid_label}'s ({comm_r.hex()}, {cid})"
        check_sector(proof, PrivateSector(number, comm_r, cache, sealed))
    except ProofError as exc:
        return f"{cache_dir}/{name}: {exc}"
    return None
