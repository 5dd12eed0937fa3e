"""A small real file system for disk-full tests: a tmpfs mounted on a test's folder (needs root
and mount permission; the test is skipped, saying why, elsewhere), and a filler that takes all
its space."""

import contextlib
import errno
import os
import subprocess

import pytest


@contextlib.contextmanager
def mounted_tmpfs(path, size: str):
    """Mount a tmpfs of `size` (such as "64k") on the folder `path` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path, name: str = "filler"):
    """Write to `path/name` until the file system is full; returns that file."""
    filler = path / name
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\1" * 4096)
        except OSError as exc:
            assert exc.errno in (errno.ENOSPC, errno.EDQUOT), exc
    return filler
