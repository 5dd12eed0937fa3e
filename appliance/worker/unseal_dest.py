"""Where an unseal task may write: `file:///path` only inside a configured
`[worker] unseal_output_dirs` directory (none configured: refused), `store://NAME/rel` only inside
a writable attached store. A path with `..`, or whose directories lead (by a symlink) outside its
root, is refused; an existing file is never replaced (an identical one counts as written: the
task ran before a crash)."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.files import atomic_write


class DestinationError(ValueError):
    pass


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([path, root]) == str(root)


def resolve_destination(dest: str, output_dirs: list[Path], attached) -> tuple[Path, Path]:
    """(the file to write, the root it must stay inside) for a `file://` or `store://` destination."""
    if dest.startswith("file://"):
        raw = dest[len("file://"):]
        if not raw.startswith("/"):
            raise DestinationError(f"destination {dest!r} is not an absolute path (file:///dir/name)")
        if not output_dirs:
            raise DestinationError(f"destination {dest!r} refused: this worker has no [worker] unseal_output_dirs, "
                                   "so it writes unsealed pieces only to the piece store or an attached store")
        parts = raw.split("/")
        _plain(dest, parts)
        path = Path(raw)
        root = next((d for d in output_dirs if _inside(Path(os.path.normpath(raw)), Path(os.path.abspath(d)))), None)
        if root is None:
            raise DestinationError(f"destination {dest!r} is outside the worker's unseal_output_dirs "
                                   f"({', '.join(str(d) for d in output_dirs)})")
    elif dest.startswith("store://"):
        name, _, rel = dest[len("store://"):].partition("/")
        store = next((a for a in attached if a.name == name), None)
        if store is None:
            raise DestinationError(f"destination store {name!r} is not attached to this worker")
        if store.readonly:
            raise DestinationError(f"destination store {name!r} is attached read-only")
        if not rel or rel.startswith("/"):
            raise DestinationError(f"destination {dest!r} needs a relative path inside the store")
        parts, root = rel.split("/"), store.location
        _plain(dest, parts)
        path = root / rel
    else:
        raise DestinationError(f"destination {dest!r} is not file:///path, store://name/path or piecestore")
    return path, Path(os.path.abspath(root))


def _plain(dest: str, parts: list[str]) -> None:
    if ".." in parts or parts[-1] in ("", "."):
        raise DestinationError(f"destination {dest!r}: '..' and a path ending in '/' or '.' are not allowed")


def write_new_file(path: Path, root: Path, payload: bytes, make_dirs: bool) -> None:
    """Create `path` (and, with `make_dirs`, its missing directories) with `payload`, refusing to leave `root`
    through a symlink or to replace an existing file."""
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        raise DestinationError(f"the output directory {root} does not exist")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not _inside(Path(os.path.realpath(existing)), real_root):
        raise DestinationError(f"cannot write {path}: {existing} leads outside {root} (a symlink)")
    if make_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(Path(os.path.realpath(path.parent)), real_root):       # checked again: made just now
        raise DestinationError(f"cannot write {path}: its directory leads outside {root} (a symlink)")
    if os.path.lexists(path):
        if not path.is_symlink() and path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
            return                      # written before a crash: the same bytes
        raise DestinationError(f"cannot write {path}: it already exists (unseal never replaces a file)")
    try:
        atomic_write(path, payload, replace=False)      # a link, refused if the name appeared meanwhile
    except FileExistsError:
        raise DestinationError(f"cannot write {path}: it already exists (unseal never replaces a file)") from None
