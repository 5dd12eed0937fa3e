"""`damocles store sealing-init|file-init`: prepare a sealing location (`meta/`, `data/`) or a
persist store (`sectorstore.json`, `sealed/`, `cache/`), as Damocles' worker does."""

from __future__ import annotations

import argparse
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


def add_parsers(store: argparse._SubParsersAction) -> None:
    p = store.add_parser("sealing-init", help="prepare sealing locations (one per sealing thread)")
    p.add_argument("-l", "--location", type=Path, action="append", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sealing_init)
    p = store.add_parser("file-init", help="prepare a persist store")
    p.add_argument("-l", "--location", type=Path, required=True)
    p.add_argument("--name")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_file_init)


def cmd_sealing_init(args) -> int:
    try:
        results = [sealing_init(loc.expanduser()) for loc in args.location]
    except JournalError as exc:
        raise ValueError(str(exc)) from None
    emit({"locations": results}, args.json, [f"initialised {r['location']}" for r in results])
    return 0


def cmd_file_init(args) -> int:
    r = file_init(args.location.expanduser(), args.name, args.read_only)
    emit(r, args.json, [f"{'initialised' if r['initialised'] else 'already initialised'} persist store {r['Name']} at {r['location']}"])
    return 0
