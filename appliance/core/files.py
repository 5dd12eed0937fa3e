"""Writing files so that a crash never leaves a half-written file under its final name: write a
temporary file beside it (same directory, so the rename is atomic), fsync it, rename it over the
final name, fsync the directory (so the rename itself survives a power cut). A failure removes
the temporary file and leaves any previous file untouched."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """The temporary name beside `path`: hidden, and unique to this process and thread."""
    import threading
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_output(path: str | os.PathLike, mode: int | None = None, replace: bool = True):
    """`with atomic_output(p) as tmp:` write `tmp` (a Path) however you like; on a clean exit it
    becomes `p`. `mode` sets its permissions before it is visible (0o600 for files holding
    secrets). `replace=False` refuses to replace an existing `p` (FileExistsError), atomically."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        fsync_file(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)      # fails if `path` exists, unlike rename
            tmp.unlink()
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | str, mode: int | None = None,
                 replace: bool = True) -> None:
    """Write `data` to `path` atomically and durably (see atomic_output)."""
    with atomic_output(path, mode, replace) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is not None else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
