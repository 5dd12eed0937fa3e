"""Persisting a sector: copy the replica and the cache files PoSt needs into a persist store.

Each file is streamed in chunks (memory stays at one chunk whatever the sector size: a 32GiB
replica is never held in RAM), hashed as it is read, written under a temporary name, fsynced,
read back from the disk and hashed again; only when both digests match is it renamed to its
final name and the directory fsynced. A copy cut short (a crash, a full disk) is never under the
final name, so it can never be taken as persisted."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

from ..core.files import atomic_output
from .failure import Temp

PERSISTED_CACHE_FILES = ("p_aux", "t_aux")
CHUNK = 8 << 20                  # bytes read and written at a time
_FULL = {errno.ENOSPC, errno.EDQUOT}


class StoreFull(Temp):
    """The persist store has no room (ENOSPC, EDQUOT). Retried every `recover_interval` without
    using up `max_retries`: the sector resumes on its own once space returns, as it does when
    the manager has no store with room."""
    counts = False


def persist(p, store: Path, name: str, replica: Path | None = None, cache: Path | None = None,
            dirs: tuple[str, str] = ("sealed", "cache"), ctx=None) -> None:
    """Copy the replica and the cache files PoSt needs into `store`, as `sealed/<name>` and
    `cache/<name>/` (a snap upgrade: `update/` and `update-cache/`). `p` is the sector's Paths.
    With a `ctx` whose `[[processors.transfer]]` has `bin`, the external transfer processor
    copies them (Damocles' Transfer task, one route a file)."""
    replica, cache = replica or p.sealed, cache or p.cache
    files = [(replica, store / dirs[0] / name)]
    files += [(f, store / dirs[1] / name / f.name) for f in sorted(cache.glob("sc-02-data-tree-r-last*.dat"))]
    files += [(cache / f, store / dirs[1] / name / f) for f in PERSISTED_CACHE_FILES]
    if ctx is not None and ctx.external("transfer"):
        from .stage_data import transfer_stage
        transfer_stage(ctx, files, store)
        return
    for src, dst in files:
        copy_verified(src, dst, store)


def copy_verified(src: Path, dst: Path, store: Path) -> str:
    """Stream `src` to `dst` (temporary name, fsync, read back, compare digests, rename, fsync
    the directory); returns the sha256. Raises StoreFull or Temp naming the store and the file."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(dst) as tmp:           # renamed (and the directory fsynced) only on a match
            digest, size = _copy(src, tmp)
            copied, copied_size = _hash_file(tmp)
            if (copied, copied_size) != (digest, size):
                raise Temp(f"persisting {src.name} to {store_label(store)}: the copy ({copied_size} bytes, sha256 "
                           f"{copied[:16]}…) differs from the original ({size} bytes, sha256 {digest[:16]}…); not persisted")
        return digest
    except OSError as exc:
        where = f"persisting {src.name} to {store_label(store)}"
        if exc.errno in _FULL:
            raise StoreFull(f"{where}: the store is full ({errno.errorcode[exc.errno]}: {exc.strerror}); "
                            f"the partial copy was removed, retrying when space returns") from None
        code = f"{errno.errorcode.get(exc.errno, exc.errno)}: " if exc.errno else ""
        raise Temp(f"{where}: {code}{exc.strerror or exc} ({exc.filename or src})") from None


def _copy(src: Path, tmp: Path) -> tuple[str, int]:
    """Copy in CHUNK-sized pieces through one reused buffer; returns (sha256 of what was read, size)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            h.update(view[:n])
            written = 0
            while written < n:
                written += fout.write(view[written:n])
            size += n
        os.fsync(fout.fileno())
        _drop_cached(fout.fileno())
    return h.hexdigest(), size


def _hash_file(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, read back in CHUNK-sized pieces."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def _drop_cached(fd: int) -> None:
    """After fsync the pages are clean: dropping them makes the read-back come from the disk,
    not from the page cache that the copy itself filled."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass      # advice only: a file system that refuses it is still verified, from the cache


def store_label(store: Path) -> str:
    """`persist store NAME (PATH)`, the name from the store's sectorstore.json when it has one."""
    try:
        name = json.loads((store / "sectorstore.json").read_text()).get("Name")
    except (OSError, ValueError, AttributeError):
        name = None
    return f"persist store {name} ({store})" if name else f"persist store {store}"
