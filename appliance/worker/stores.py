"""What `damocles store sealing-init|file-init` do (worker/commands.py wires them): prepare a sealing location (`meta/`, `data/`) or a
persist store (`sectorstore.json`, `sealed/`, `cache/`), as Damocles' worker does; and
`[worker] scan_persist_stores`: the persist stores found under glob patterns."""

from __future__ import annotations

import glob
import json
import uuid
from pathlib import Path

from ..core.files import atomic_write
from ..core.output import emit
from .journal import Journal, JournalError, LocationLock


def sealing_init(location: Path) -> dict:
    lock = LocationLock(location)          # refuses a location another worker holds
    try:
        for d in ("meta", "data"):
            (location / d).mkdir(parents=True, exist_ok=True)
        Journal(location).close()          # creates the journal, or refuses an unreadable one
    finally:
        lock.release()
    return {"location": str(location), "initialised": True}


def file_init(location: Path, name: str | None, read_only: bool) -> dict:
    meta = location / "sectorstore.json"
    if meta.exists():
        try:
            existing = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{meta} exists but cannot be read: {exc}") from None
        return {"location": str(location), **existing, "initialised": False}
    for d in ("sealed", "cache"):
        (location / d).mkdir(parents=True, exist_ok=True)
    info = {"ID": str(uuid.uuid4()), "Name": name or location.name, "ReadOnly": read_only}
    atomic_write(meta, json.dumps(info, indent=2) + "\n")
    return {"location": str(location), **info, "initialised": True}


def scan_persist_stores(patterns: list[str], where: str) -> list[tuple[str, Path, bool]]:
    """Every directory a pattern matches that holds a `sectorstore.json`, as Damocles' worker
    scans them: (name, location, readonly), the name being the file's `Name`, else its `ID`, else
    the location. Matches in pattern order, each pattern's sorted; a `sectorstore.json` that
    cannot be read is an error naming it (ValueError), never a store silently left out."""
    found = []
    for pattern in patterns:
        for match in sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True, include_hidden=True)):
            location = Path(match)
            meta = location / "sectorstore.json"
            if not location.is_dir() or not meta.is_file():
                continue
            try:
                info = json.loads(meta.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{where}: {meta} (matched by {pattern!r}) cannot be read: {exc}") from None
            if not isinstance(info, dict):
                raise ValueError(f"{where}: {meta} (matched by {pattern!r}) is not a JSON object")
            name = next((v for v in (info.get("Name"), info.get("ID")) if isinstance(v, str) and v), str(location))
            readonly = info.get("ReadOnly", False)
            if not isinstance(readonly, bool):
                raise ValueError(f"{where}: {meta}: ReadOnly is {readonly!r}, not true or false")
            found.append((name, location, readonly))
    return found


def cmd_sealing_init(args) -> int:
    try:
        results = [sealing_init(loc.expanduser()) for loc in args.location]
    except JournalError as exc:
        raise ValueError(str(exc)) from None
    emit({"locations": results}, args.json, [f"initialised {r['location']}" for r in results])
    return 0
