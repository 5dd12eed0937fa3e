"""CPUs: model and flags (/proc/cpuinfo, and py-cpuinfo on the live machine), and the topology
from sysfs: online CPUs, packages (sockets), physical cores with their SMT siblings, L3 cache
groups and NUMA nodes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .sources import Root, parse_cpulist, parse_size_kb, read, read_int


@dataclass
class CPUIdentity:
    model: str = "unknown"
    vendor: str = ""
    flags: tuple[str, ...] = ()
    mhz: float | None = None
    source: str = ""

    @property
    def sha_extensions(self) -> bool:
        """SHA-256 in hardware (x86 `sha_ni`, ARMv8 `sha2`): PC1 is SHA-256 bound, and without
        it each layer takes several times longer."""
        return "sha_ni" in self.flags or "sha2" in self.flags


@dataclass(frozen=True)
class Core:
    """One physical core: its logical CPUs (SMT siblings), package, NUMA node and L3 group."""
    cpus: tuple[int, ...]
    package: int
    node: int
    l3: int

    @property
    def first(self) -> int:
        return self.cpus[0]


@dataclass
class L3Group:
    index: int                   # our numbering: by first CPU, from 0
    cpus: tuple[int, ...]
    size: int | None = None      # bytes
    cache_id: int | None = None  # sysfs cache id, where the kernel gives one
    source: str = "L3"           # "L3", or what stood in for it ("L2", "package")


@dataclass
class Topology:
    cpus: list[int]
    cores: list[Core]
    l3_groups: list[L3Group]
    node_cpus: dict[int, list[int]]
    packages: dict[int, list[int]]
    notes: list[str] = field(default_factory=list)


def identity(root: Root, use_cpuinfo_lib: bool = False) -> CPUIdentity:
    """From <root>/proc/cpuinfo; on the live machine py-cpuinfo adds to it when asked (hwinfo) or
    where /proc/cpuinfo gives no flags (other platforms). py-cpuinfo takes about a second."""
    ident = _from_proc_cpuinfo(root)
    if root.live and (use_cpuinfo_lib or not ident.flags):
        try:
            import cpuinfo           # py-cpuinfo: brand and flags where /proc/cpuinfo lacks them
            info = cpuinfo.get_cpu_info()
            flags = tuple(sorted(set(ident.flags) | set(info.get("flags", []))))
            ident = CPUIdentity(info.get("brand_raw") or ident.model, info.get("vendor_id_raw") or ident.vendor, flags,
                                ident.mhz or (info.get("hz_advertised", [0])[0] / 1e6 or None), "py-cpuinfo")
        except Exception as exc:     # noqa: BLE001 - py-cpuinfo is a nicety; /proc/cpuinfo stands
            ident.source += f" (py-cpuinfo failed: {exc})"
    return ident


def _from_proc_cpuinfo(root: Root) -> CPUIdentity:
    text = read(root.proc("cpuinfo")) or ""
    first = text.split("\n\n", 1)[0]
    kv = {}
    for line in first.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            kv.setdefault(k.strip().lower(), v.strip())
    model = kv.get("model name") or kv.get("cpu model") or kv.get("hardware") or kv.get("processor", "unknown")
    flags = tuple(sorted((kv.get("flags") or kv.get("features") or "").split()))
    try:
        mhz = float(kv["cpu mhz"]) if "cpu mhz" in kv else None
    except ValueError:
        mhz = None
    return CPUIdentity(model, kv.get("vendor_id", ""), flags, mhz, str(root.proc("cpuinfo")) if text else "none")


def topology(root: Root) -> Topology:
    notes: list[str] = []
    cpu_dir = root.sys("devices", "system", "cpu")
    online = read(cpu_dir / "online")
    cpus = parse_cpulist(online) if online is not None else sorted(
        int(m.group(1)) for d in _listdir(cpu_dir) if (m := re.fullmatch(r"cpu(\d+)", d)))
    if not cpus:
        raise ValueError(f"{root.label}: no CPUs found under {cpu_dir}")
    if root.live:
        allowed = set(os.sched_getaffinity(0))
        if not set(cpus) <= allowed:
            notes.append(f"this process may use CPUs {_fmt(sorted(allowed & set(cpus)))} only (of {_fmt(cpus)} online): "
                         "the rest are left out")
            cpus = sorted(set(cpus) & allowed)
    cpuset = set(cpus)

    node_cpus: dict[int, list[int]] = {}
    node_dir = root.sys("devices", "system", "node")
    for d in _listdir(node_dir):
        m = re.fullmatch(r"node(\d+)", d)
        if m:
            members = [c for c in parse_cpulist(read(node_dir / d / "cpulist")) if c in cpuset]
            if members:
                node_cpus[int(m.group(1))] = members
    if not node_cpus:
        node_cpus = {0: list(cpus)}
        notes.append("no NUMA information in sysfs: one node assumed")
    node_of = {c: n for n, members in node_cpus.items() for c in members}
    for c in cpus:
        if c not in node_of:
            node_of[c] = min(node_cpus)
            node_cpus[node_of[c]].append(c)

    packages: dict[int, list[int]] = {}
    sibling_sets: dict[int, tuple[int, ...]] = {}
    l3_sets: dict[tuple[int, ...], tuple[int | None, int | None, str]] = {}
    l3_of: dict[int, tuple[int, ...]] = {}
    for c in cpus:
        t = cpu_dir / f"cpu{c}" / "topology"
        pkg = read_int(t / "physical_package_id", 0)
        pkg = 0 if pkg is None or pkg < 0 else pkg
        packages.setdefault(pkg, []).append(c)
        sib = [s for s in parse_cpulist(read(t / "thread_siblings_list") or read(t / "core_cpus_list") or str(c))
               if s in cpuset] or [c]
        sibling_sets[c] = tuple(sorted(set(sib) | {c}))
        l3 = _last_level_cache(cpu_dir / f"cpu{c}" / "cache", cpuset)
        if l3 is None:
            key, info = None, None
        else:
            key, info = l3
            l3_sets.setdefault(key, info)
        if key is not None:
            l3_of[c] = key
    missing = [c for c in cpus if c not in l3_of]
    if missing:
        notes.append(f"no shared cache listed for CPUs {_fmt(missing)}: their package stands in for the L3 group")
        for c in missing:
            key = tuple(p for p in packages[next(k for k, v in packages.items() if c in v)])
            l3_of[c] = key
            l3_sets.setdefault(key, (None, None, "package"))
    kinds = {info[2] for info in l3_sets.values()}
    if kinds - {"L3", "package"}:
        notes.append(f"no L3 cache: the {'/'.join(sorted(kinds - {'L3', 'package'}))} cache groups the cores instead")

    groups = []
    for i, key in enumerate(sorted(l3_sets, key=lambda k: k[0])):
        cache_id, size, kind = l3_sets[key]
        groups.append(L3Group(i, key, size, cache_id, kind))
    group_index = {g.cpus: g.index for g in groups}
    pkg_of = {c: p for p, members in packages.items() for c in members}
    cores, seen = [], set()
    for c in cpus:
        sib = sibling_sets[c]
        if sib in seen:
            continue
        seen.add(sib)
        cores.append(Core(sib, pkg_of[c], node_of[c], group_index[l3_of[c]]))
    for members in list(node_cpus.values()) + list(packages.values()):
        members.sort()
    return Topology(cpus, cores, groups, dict(sorted(node_cpus.items())), dict(sorted(packages.items())), notes)


def _last_level_cache(cache_dir, cpuset: set[int]):
    """The L3 cache of a CPU (shared CPUs, id, size), or the highest level found."""
    best = None
    for d in _listdir(cache_dir):
        if not d.startswith("index"):
            continue
        level = read_int(cache_dir / d / "level")
        ctype = read(cache_dir / d / "type") or ""
        if level is None or ctype == "Instruction":
            continue
        if best is None or level > best[0]:
            best = (level, d)
    if best is None:
        return None
    level, d = best
    shared = tuple(c for c in parse_cpulist(read(cache_dir / d / "shared_cpu_list")) if c in cpuset)
    if not shared:
        return None
    return shared, (read_int(cache_dir / d / "id"), parse_size_kb(read(cache_dir / d / "size")), f"L{level}")


def _listdir(path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _fmt(cpus) -> str:
    from ..config.cpuset import format_cpuset
    return format_cpuset(cpus)
