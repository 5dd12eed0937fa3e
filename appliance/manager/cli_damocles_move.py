"""Moving sectors in and out, under Damocles' command names (cli_damocles.py wires them):
`util sealer sectors import`, `util storage attach`, `util sealer sectors export-to-lotus
metadata|files`, `util sealer sectors state import-json`. What each does: sector_import.py,
sector_export.py, sector_state_import.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.output import emit
from .cli_damocles_cmds import actor
from .cli_util import _client, _common


def _number_list(text: str) -> list[int]:
    """urfave/cli's Uint64SliceFlag: `--numbers 1 --numbers 2` or `--numbers 1,2`."""
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a sector number or a list of them (1,2,3)")
    return [int(t) for t in parts]


def _numbers(p, helptext: str) -> None:
    p.add_argument("--numbers", type=_number_list, action="extend", default=[], help=helptext + " (repeat, or 1,2,3)")


def _split_numbers(values) -> list[int] | None:
    return list(values) or None


def _import_lines(r: dict, verb: str) -> list[str]:
    lines = [f"store {r['Store']} ({r['Path']}):"]
    for key, word in (("Imported", verb), ("Reindexed", "indexed in this store"), ("Unchanged", "already there")):
        lines += [f"  {f['Sector']}: {word}{_upgrade_note(f)}" for f in r[key]]
    lines += [f"  {f['Sector']}: refused: {f['Reason']}" for f in r["Refused"]]
    lines.append(f"{len(r['Imported'])} imported, {len(r['Reindexed'])} indexed, {len(r['Unchanged'])} unchanged, "
                 f"{len(r['Refused'])} refused")
    return lines


def _upgrade_note(f: dict) -> str:
    """What was taken of a snap-upgraded sector: its update, and its sector key when beside it."""
    if f.get("Kind") != "upgrade":
        return ""
    if f.get("SectorKey"):
        return " (snap-upgraded: update/ and its sector key in sealed/)"
    why = f.get("SectorKeyReason")
    return " (snap-upgraded: update/" + (f"; sector key not taken: {why})" if why else ")")


def cmd_sectors_import(args) -> int:
    if not args.store:
        raise ValueError("import: reading sectors from a lotus-miner's API is not built; give --store PATH, the lotus "
                         "storage path (or Damocles persist store) holding the sectors, which must be one of the "
                         "manager's persist stores")
    store = args.store
    if store.startswith((".", "~")) or "/" in store:      # a path (the manager takes a store's name or absolute path)
        store = str(Path(store).expanduser().resolve())
    r = _client(args).call("Venus.ImportStoreSectors", store, _split_numbers(args.numbers), "*", args.override, False)
    emit(r, args.json, _import_lines(r, "imported"))
    return 1 if r["Refused"] else 0


def cmd_storage_attach(args) -> int:
    if args.allow_splitted:
        raise ValueError("attach: --allow-splitted is not supported: a sector's sealed file and cache are kept in one store here")
    path = Path(args.path).expanduser().resolve()
    r = _client(args).call("Venus.ImportStoreSectors", args.name or str(path), None, args.pattern, False, True)
    lines = _import_lines(r, "imported") if args.verbose or r["Refused"] else _import_lines(r, "imported")[-1:]
    emit(r, args.json, lines)
    return 1 if r["Refused"] else 0


def cmd_export_files(args) -> int:
    from .sector_export import export_files
    r = export_files(_client(args), actor(args.miner or args.group_miner, "--miner"), Path(args.dest_path),
                     _split_numbers(args.numbers), args.reserve)
    lines = [f"{'copy' if args.reserve else 'move'} sector {e['Sector']} files: "
             + ", ".join(f"{Path(f['To']).name} {f['Done']}" for f in e["Files"]) for e in r["Exported"]]
    lines += [f"export sector {f['Sector']}: {f['Reason']}" for f in r["Failed"]]
    if r["SectorStoreJSON"]["Written"]:
        lines.append(f"wrote {r['SectorStoreJSON']['Path']} (lotus: `lotus-miner storage attach {r['DestPath']}`)")
    lines.append(f"export failure counts: {len(r['Failed'])}, total: {len(r['Exported']) + len(r['Failed'])}")
    emit(r, args.json, lines)
    return 1 if r["Failed"] else 0


def cmd_export_metadata(args) -> int:
    from .sector_export import export_metadata
    miner = None if args.only_next_number else actor(args.miner or args.group_miner, "--miner")
    r = export_metadata(_client(args) if not args.only_next_number else None, miner, Path(args.dest_repo),
                        args.next_number, args.only_next_number)
    emit(r, args.json, [f"wrote {r['Sectors']} sectors to {r['File']}", f"export failure counts: {len(r['Failed'])}",
                        f"next sector number: {r['NextNumber']}",
                        "not written: lotus-miner's metadata datastore (LevelDB); see docs/operations.md"])
    return 0


def cmd_state_import_json(args, path: str) -> int:
    """`state import-json FILE [--override] [--really-do-it]`: without --really-do-it it shows the
    state, as Damocles does."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"read json file({path}): {exc}") from None
    if not isinstance(state, dict) or not isinstance(state.get("ID"), dict):
        raise ValueError(f"{path}: not a sector state (a JSON object with ID {{Miner, Number}})")
    if not args.really_do_it:
        from .cli_damocles_sealer import state_lines
        print("\n".join(state_lines(state)))
        print("(pass --really-do-it to import it)")
        return 0
    ws = "offline" if state.get("Finalized") else "online"
    imported = _client(args).call("Venus.ImportSector", ws, state, args.override)
    if not imported:
        raise ValueError("not imported, perhaps you need to set --override flag")
    emit({"imported": True, "ID": state["ID"]}, args.json, [f"imported s-t0{state['ID']['Miner']}-{state['ID']['Number']}"])
    return 0


def add_import(sectors) -> None:
    p = sectors.add_parser("import", help="Import the sectors of a lotus-miner storage path or Damocles persist store")
    p.add_argument("--store", help="the storage path (or the name of the persist store) holding the sectors")
    _numbers(p, "import the specified sector numbers only")
    p.add_argument("--override", action="store_true", help="override the previous sector state")
    _common(p)
    p.set_defaults(func=cmd_sectors_import)


def add_export_to_lotus(sectors) -> None:
    parent = sectors.add_parser("export-to-lotus", help="Commands for export sector infos to the given lotus-miner instance")
    parent.add_argument("--miner", dest="group_miner", help="miner actor id")
    sub = parent.add_subparsers(dest="export_cmd", metavar="CMD")
    sub.required = True
    m = sub.add_parser("metadata", help="Export metadata of the sectors (as JSON: see docs/operations.md)")
    m.add_argument("--miner", help="miner actor id (here or before the command)")
    m.add_argument("--dest-repo", default="~/.lotusminer")
    m.add_argument("--next-number", type=int, help="Specify the sector number of the new sector")
    m.add_argument("--only-next-number", action="store_true", help="Only update the next sector number")
    _common(m)
    m.set_defaults(func=cmd_export_metadata)
    f = sub.add_parser("files", help="Export the files of the sectors (lotus' storage layout)")
    f.add_argument("--miner", help="miner actor id (here or before the command)")
    f.add_argument("--dest-path", required=True)
    _numbers(f, "Export the specified sector numbers only")
    f.add_argument("--reserve", action="store_true", help="Reserve source files (copy, do not move)")
    _common(f)
    f.set_defaults(func=cmd_export_files)


def add_attach(storage) -> None:
    p = storage.add_parser("attach", help="Attach local storage path and import sectors in this path")
    p.add_argument("path", metavar="<storage path>")
    p.add_argument("--name", help="the persist store's name (default: the one whose Path it is)")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--read-only", action="store_true", help="accepted: read-only is the store's config (ReadOnly)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--allow-splitted", action="store_true", help="not supported here (refused)")
    p.add_argument("--pattern", default="*", help="the glob pattern for matching target sectors. e.g. s-t01000-1[0-9]")
    _common(p)
    p.set_defaults(func=cmd_storage_attach)
