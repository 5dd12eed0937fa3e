"""Where discovery reads from. A `Root` is either the live machine ("/") or a captured tree
(the capture layout, as in tests/fixtures: `hwcap/root/{sys,proc}` mirrors sysfs and procfs, and the
files beside `root/` hold tool output: `nvml.json`, `nvml.err`, `nvidia_smi_q.xml`,
`nvidia_topo.txt`, `lscpu.txt`, `df.txt` ...). Every sysfs/procfs path goes through
`Root.sys()` / `Root.proc()`; tool output is read from the capture instead of running the tool
when the root is a capture. A `.tgz` archive of such a tree is accepted too (extracted to a
temporary directory that is removed at exit)."""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
from pathlib import Path


class Root:
    def __init__(self, path: str | os.PathLike | None = None):
        self.notes: list[str] = []
        given = Path(path) if path is not None else Path("/")
        self.archive: Path | None = None
        if given.is_file() and tarfile.is_tarfile(given):
            self.archive = given
            given = _extract(given)
        if not given.exists():
            raise ValueError(f"hardware root {given} does not exist")
        if str(given.resolve()) == "/":
            self.live = True
            self.base = Path("/")
            self.capture: Path | None = None
            return
        self.live = False
        d = given
        if (d / "hwcap").is_dir():
            d = d / "hwcap"
        if (d / "root").is_dir() and ((d / "root" / "sys").is_dir() or (d / "root" / "proc").is_dir()):
            self.base, self.capture = d / "root", d
        elif (d / "sys").is_dir() or (d / "proc").is_dir():
            self.base = d
            parent = d.parent
            self.capture = parent if any((parent / f).exists() for f in ("nvml.json", "nvml.err", "lscpu.txt")) else None
        else:
            raise ValueError(f"{path}: not a captured machine (expected sys/ and proc/ under it, or hwcap/root/)")

    def __repr__(self) -> str:
        return "Root(/)" if self.live else f"Root({self.base})"

    @property
    def label(self) -> str:
        return "this machine" if self.live else f"captured tree {self.archive or self.capture or self.base}"

    def sys(self, *parts: str) -> Path:
        return self.base.joinpath("sys", *parts)

    def proc(self, *parts: str) -> Path:
        return self.base.joinpath("proc", *parts)

    def captured(self, name: str) -> Path | None:
        """A tool's captured output beside the tree (None on the live machine or when absent)."""
        if self.live or self.capture is None:
            return None
        p = self.capture / name
        return p if p.exists() else None


def read(path: Path, default: str | None = None) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return default


def read_int(path: Path, default: int | None = None) -> int | None:
    text = read(path)
    if text is None:
        return default
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return default


def parse_cpulist(text: str | None) -> list[int]:
    """The kernel's CPU list format: "0-3,8,10-11" ("" is no CPU)."""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return sorted(set(out))


def parse_size_kb(text: str | None) -> int | None:
    """sysfs cache sizes: "32768K", "1024K", "16M"."""
    if not text:
        return None
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        return int(t.rstrip("KMG")) * mult
    except ValueError:
        return None


def _extract(archive: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="damocles-hw-"))
    atexit.register(shutil.rmtree, d, True)
    with tarfile.open(archive) as tf:
        tf.extractall(d, filter="data")
    return d
