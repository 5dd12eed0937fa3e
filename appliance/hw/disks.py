"""Block devices (<root>/sys/block: size, rotational, model) and mounted filesystems with their
capacity and free space (live: <root>/proc/mounts and statvfs; captured: `df.txt`, the output
of `df -B1`, with <root>/proc/mounts where captured). `space_for(path)` answers how much room
the filesystem that holds (or would hold) a path has."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .sources import Root, read, read_int

_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "zfs", "ceph", "glusterfs", "lustre", "beegfs", "gpfs", "fuse.juicefs")


@dataclass
class BlockDevice:
    name: str
    size: int                  # bytes
    rotational: bool
    kind: str                  # disk, partition-less virtual disk, loop, zram, md, dm ...
    model: str = ""


@dataclass
class Mount:
    device: str
    mountpoint: str
    fstype: str
    total: int | None = None   # bytes
    free: int | None = None    # bytes available to unprivileged users
    rotational: bool | None = None
    block: str | None = None   # the block device under it


@dataclass
class Space:
    """Room for a path: its filesystem's capacity and free space."""
    path: str
    fs: str                    # identifies the filesystem (device id or mount point)
    mountpoint: str
    total: int
    free: int
    rotational: bool | None
    source: str


def block_devices(root: Root) -> list[BlockDevice]:
    base = root.sys("block")
    out = []
    try:
        names = sorted(p.name for p in base.iterdir())
    except OSError:
        return out
    for name in names:
        size = (read_int(base / name / "size", 0) or 0) * 512      # always 512-byte units in sysfs
        if size == 0:
            continue                                               # unused loop devices, empty zram
        kind = next((k for k in ("loop", "zram", "ram", "md", "dm-", "sr", "nbd") if name.startswith(k)), "disk").rstrip("-")
        out.append(BlockDevice(name, size, read(base / name / "queue" / "rotational") == "1", kind,
                               read(base / name / "device" / "model") or ""))
    return out


def mounts(root: Root, devices: list[BlockDevice], space: bool = True) -> list[Mount]:
    """`space=False` leaves out statvfs of every mount (a hung network filesystem would block)."""
    by_point: dict[str, Mount] = {}
    for line in (read(root.proc("mounts")) or "").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        dev, point, fstype = parts[0], _unescape(parts[1]), parts[2]
        if dev.startswith("/dev/") or fstype in _NETWORK_FS or fstype.startswith("nfs"):
            by_point[point] = Mount(dev, point, fstype)
    df = root.captured("df.txt")
    if df:
        for dev, total, free, point in _parse_df(read(df) or ""):
            m = by_point.get(point)
            if m is None:
                if not dev.startswith("/dev/"):
                    continue
                m = by_point[point] = Mount(dev, point, "")
            m.total, m.free = total, free
    elif root.live and space:
        for m in by_point.values():
            try:
                st = os.statvfs(m.mountpoint)
            except OSError:
                continue
            m.total, m.free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    rot = {d.name: d.rotational for d in devices}
    for m in by_point.values():
        m.block = _block_of(root, m.device)
        if m.block in rot:
            m.rotational = rot[m.block]
        elif m.block:
            m.rotational = read(root.sys("block", m.block, "queue", "rotational")) == "1"
    return sorted(by_point.values(), key=lambda m: m.mountpoint)


def captured_space(path: str | os.PathLike, mount_list: list[Mount]) -> Space | None:
    """The captured mount (with df numbers) with the longest prefix of the path, if any."""
    p = Path(os.path.abspath(os.path.expanduser(path)))
    best = None
    for m in mount_list:
        if m.total is None:
            continue
        mp = m.mountpoint.rstrip("/") or "/"
        if (str(p) == mp or str(p).startswith(mp.rstrip("/") + "/")) and (best is None or len(mp) > len(best.mountpoint)):
            best = m
    if best is None:
        return None
    return Space(str(p), best.mountpoint, best.mountpoint, best.total, best.free or 0, best.rotational,
                 f"captured df ({best.mountpoint})")


def space_for(path: str | os.PathLike, root: Root, mount_list: list[Mount]) -> Space:
    """Capacity and free space of the filesystem a path is on (or would be created on). On the
    live machine: statvfs of its nearest existing directory. In a capture: the captured mount
    with the longest prefix of the path; where the capture has no such mount, the path is
    looked at on this machine (the source says so)."""
    p = Path(os.path.abspath(os.path.expanduser(path)))
    if not root.live:
        got = captured_space(p, mount_list)
        if got is not None:
            return got
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    st = os.statvfs(existing)
    dev = os.stat(existing).st_dev
    live_mounts = mount_list if root.live else mounts(Root("/"), block_devices(Root("/")), space=False)
    mp = max((m for m in live_mounts if str(existing) == m.mountpoint or str(existing).startswith(m.mountpoint.rstrip("/") + "/")),
             key=lambda m: len(m.mountpoint), default=None)
    source = "statvfs" if root.live else "statvfs on this machine (the capture has no mount for it)"
    return Space(str(p), f"dev:{dev}", mp.mountpoint if mp else "?", st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize,
                 mp.rotational if mp else None, source)


def _parse_df(text: str):
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit() and parts[3].isdigit():
            yield parts[0], int(parts[1]), int(parts[3]), " ".join(parts[5:])


def _block_of(root: Root, device: str) -> str | None:
    if not device.startswith("/dev/"):
        return None
    dev = device
    if root.live:
        try:
            dev = os.path.realpath(device)          # /dev/mapper/x, /dev/disk/by-uuid/... -> /dev/dm-0, /dev/sda1
        except OSError:
            pass
    name = dev[len("/dev/"):]
    if (root.sys("block", name)).exists():
        return name
    m = re.match(r"(nvme\d+n\d+|mmcblk\d+|[a-z]+?)(p?\d+)$", name)
    if m and root.sys("block", m.group(1)).exists():
        return m.group(1)                          # a partition: the disk it is on
    return name if m is None else m.group(1)


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
