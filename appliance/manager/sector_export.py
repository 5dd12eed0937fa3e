"""Moving sectors out to lotus-miner (`util sealer sectors export-to-lotus files|metadata`), run
where the persist stores are mounted, as Damocles' command is.

`files` writes lotus' storage layout under `--dest-path`: `sealed/<name>` and `cache/<name>/` (or
`update/`, `update-cache/` for a snap-upgraded replica), every file byte for byte, and a lotus
`sectorstore.json` (storiface.LocalStorageMeta, CanStore) when the path has none, so that
`lotus-miner storage attach` takes it. As Damocles' command, it moves the files unless `--reserve`
(then it copies those the destination lacks or has with another size). A file is written under a
temporary name and renamed, so an interrupted export leaves no half file under a sector's name.

`metadata`: lotus-miner keeps its sectors in a LevelDB datastore (`<repo>/datastore/metadata`,
CBOR SectorInfo under `/sectors/<number>`, the next number under `/storage/nextid`), which Damocles
writes with Go's LevelDB. This build has no LevelDB writer, so it does not write that datastore;
it writes what can be written honestly instead: `<dest-repo>/damocles-export/sectors-f0<miner>.json`,
each sector's fields under lotus' SectorInfo names with its on-chain info, and the next sector
number lotus-miner must start from. Importing that into lotus-miner's datastore is left to the
operator's tools (docs/operations.md)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from ..core.files import atomic_write
from ..core.sector import sector_name


def lotus_store_meta() -> dict:
    """A lotus storage path's sectorstore.json for sealed sectors (LocalStorageMeta, as Go's
    encoding/json writes it: nil slices as null)."""
    return {"ID": str(uuid.uuid4()), "Weight": 10, "CanSeal": False, "CanStore": True, "MaxStorage": 0, "Groups": None,
            "AllowTo": None, "AllowTypes": None, "DenyTypes": None, "AllowMiners": None, "DenyMiners": None}


def _sectors(client, miner: int, numbers: list[int] | None) -> list[dict]:
    wanted = set(numbers or [])
    out = [s for s in client.call("Venus.ListSectors", "offline", 0)
           if s["ID"]["Miner"] == miner and (not wanted or s["ID"]["Number"] in wanted)]
    return sorted(out, key=lambda s: s["ID"]["Number"])


def _place(src: Path, dst: Path, reserve: bool) -> str:
    """Copy (reserve) or move `src` to `dst` through a temporary name; what was done."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if reserve:
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            return "kept"              # Damocles compares sizes only
        tmp = dst.with_name(f".{dst.name}.export-tmp")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        return "copied"
    try:
        os.replace(src, dst)           # the same file system: a rename
    except OSError:
        tmp = dst.with_name(f".{dst.name}.export-tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        src.unlink()
    return "moved"


def export_files(client, miner: int, dest: Path, numbers: list[int] | None = None, reserve: bool = False) -> dict:
    """{Exported: [{Sector, Files}], Failed: [{Sector, Reason}], SectorStoreJSON}."""
    dest = dest.expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    meta = dest / "sectorstore.json"
    wrote_meta = not meta.exists()
    if wrote_meta:
        atomic_write(meta, json.dumps(lotus_store_meta(), indent=2) + "\n")
    exported, failed = [], []
    for s in _sectors(client, miner, numbers):
        name = sector_name(miner, s["ID"]["Number"])
        if s.get("AbortReason"):
            failed.append({"Sector": name, "Reason": f"aborted: {s['AbortReason']}"})
            continue
        if s.get("Removed"):
            failed.append({"Sector": name, "Reason": "its files were removed"})
            continue
        try:
            loc = client.call("Venus.ProvingSectorInfo", s["ID"])["Private"]
        except Exception as exc:      # RPCError: not on chain; the reason is the manager's
            failed.append({"Sector": name, "Reason": f"find sector location: {exc}"})
            continue
        if not loc["SealedSectorPath"]:
            failed.append({"Sector": name, "Reason": "not in any persist store (sector index)"})
            continue
        sealed, cache = Path(loc["SealedSectorPath"]), Path(loc["CacheDirPath"])
        sealed_dir, cache_dir = ("update", "update-cache") if sealed.parent.name == "update" else ("sealed", "cache")
        try:
            files = [(sealed, dest / sealed_dir / name)]
            files += [(f, dest / cache_dir / name / f.name) for f in sorted(cache.iterdir())
                      if f.is_file() and ".json" not in f.name]        # as Damocles: the cache's JSON files stay
            done = [{"From": str(a), "To": str(b), "Done": _place(a, b, reserve)} for a, b in files]
        except OSError as exc:
            failed.append({"Sector": name, "Reason": f"{exc.strerror or exc}: {exc.filename}"})
            continue
        exported.append({"Sector": name, "Files": done})
    return {"Miner": miner, "DestPath": str(dest), "Exported": exported, "Failed": failed,
            "SectorStoreJSON": {"Path": str(meta), "Written": wrote_meta}}


def _lotus_info(s: dict, on_chain: dict | None) -> dict:
    """A sector under lotus' SectorInfo names (storage/pipeline/types.go), with its on-chain info."""
    ticket, seed, pre, proof = s.get("Ticket") or {}, s.get("Seed") or {}, s.get("Pre") or {}, s.get("Proof") or {}
    msgs = s.get("MessageInfo") or {}
    upgraded = s.get("UpgradedInfo") or {}
    return {"State": "Proving", "SectorNumber": s["ID"]["Number"], "SectorType": s["SectorType"],
            "Pieces": [{"Piece": p["Piece"], "DealInfo": {"DealID": (p.get("DealInfo") or {}).get("DealID")}}
                       for p in s.get("Pieces") or []],
            "TicketValue": ticket.get("Ticket"), "TicketEpoch": ticket.get("Epoch"),
            "CommD": pre.get("CommD"), "CommR": pre.get("CommR"), "Proof": proof.get("Proof"),
            "PreCommitMessage": msgs.get("PreCommitCid"), "SeedValue": seed.get("Seed"), "SeedEpoch": seed.get("Epoch"),
            "CommitMessage": msgs.get("CommitCid"), "CCUpdate": bool(s.get("Upgraded")),
            "UpdateSealed": upgraded.get("SealedCID"), "UpdateUnsealed": upgraded.get("UnsealedCID"),
            "OnChain": on_chain}


def export_metadata(client, miner: int | None, dest_repo: Path, next_number: int | None = None,
                    only_next_number: bool = False) -> dict:
    """Write `<dest-repo>/damocles-export/sectors-f0<miner>.json` (module docstring)."""
    if only_next_number and next_number is None:
        raise ValueError("flag next-number must be set when only update the value of it")
    sectors, failed, highest = [], [], 0
    if not only_next_number:
        if miner is None:
            raise ValueError("--miner is required")
        for s in _sectors(client, miner, None):
            name = sector_name(miner, s["ID"]["Number"])
            if s.get("AbortReason"):
                continue
            try:
                on_chain = client.call("Venus.ProvingSectorInfo", s["ID"])["OnChain"]
            except Exception as exc:
                failed.append({"Sector": name, "Reason": f"not on chain: {exc}"})
                on_chain = None
            sectors.append(_lotus_info(s, on_chain))
            highest = max(highest, s["ID"]["Number"])
    nxt = max(highest, next_number or 0)
    out_dir = dest_repo.expanduser() / "damocles-export"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"sectors-f0{miner if miner is not None else 'unknown'}.json"
    doc = {"Miner": miner, "NextNumber": nxt, "Sectors": sectors, "Failed": failed,
           "NotWritten": "lotus-miner's metadata datastore (LevelDB, <repo>/datastore/metadata): this build has no LevelDB "
                         "writer; the sectors' records are in this file under lotus' SectorInfo names"}
    atomic_write(target, json.dumps(doc, indent=2) + "\n")
    return {"File": str(target), "Sectors": len(sectors), "Failed": failed, "NextNumber": nxt,
            "DatastoreWritten": False}
