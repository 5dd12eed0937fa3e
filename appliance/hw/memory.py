"""Memory: total, available and swap (psutil on the live machine, <root>/proc/meminfo in a
capture), hugepages (<root>/sys/kernel/mm/hugepages) and memory per NUMA node
(<root>/sys/devices/system/node/nodeN/meminfo)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .sources import Root, read, read_int


@dataclass
class HugePages:
    page_size: int       # bytes
    total: int           # pages
    free: int

    @property
    def reserved_bytes(self) -> int:
        return self.page_size * self.total


@dataclass
class Memory:
    total: int
    available: int
    swap_total: int
    hugepages: list[HugePages] = field(default_factory=list)
    source: str = ""

    @property
    def hugepages_bytes(self) -> int:
        """Memory the kernel holds for hugepages: not available to ordinary allocations."""
        return sum(h.reserved_bytes for h in self.hugepages)


@dataclass
class NodeMemory:
    total: int | None      # as the node's meminfo reports it
    free: int | None
    usable: int = 0        # what planning counts on (see node_memory)
    hugepages: list[HugePages] = field(default_factory=list)


def meminfo(root: Root) -> dict[str, int]:
    """/proc/meminfo as bytes (the "kB" fields times 1024; counts such as HugePages_Total as is)."""
    out = {}
    for line in (read(root.proc("meminfo")) or "").splitlines():
        m = re.match(r"(\S+):\s+(\d+)(\s*kB)?", line)
        if m:
            out[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return out


def memory(root: Root) -> Memory:
    info = meminfo(root)
    hp = hugepages(root.sys("kernel", "mm", "hugepages"))
    if root.live:
        try:
            import psutil
            vm, sw = psutil.virtual_memory(), psutil.swap_memory()
            return Memory(vm.total, vm.available, sw.total, hp, "psutil")
        except Exception:            # noqa: BLE001 - fall back to meminfo below
            pass
    if "MemTotal" not in info:
        raise ValueError(f"{root.label}: no MemTotal in {root.proc('meminfo')}")
    return Memory(info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0)), info.get("SwapTotal", 0), hp,
                  str(root.proc("meminfo")))


def hugepages(directory) -> list[HugePages]:
    out = []
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError:
        return out
    for name in names:
        m = re.fullmatch(r"hugepages-(\d+)kB", name)
        if m:
            out.append(HugePages(int(m.group(1)) * 1024, read_int(directory / name / "nr_hugepages", 0) or 0,
                                 read_int(directory / name / "free_hugepages", 0) or 0))
    return out


def node_memory(root: Root, nodes: dict[int, list[int]], mem: Memory, notes: list[str]) -> dict[int, NodeMemory]:
    """Memory of each NUMA node. Where the nodes' meminfo adds up to less than 90% of the
    machine's (virtual machines with hot-added memory report it so: the captured H200 and EPYC
    guests list 4 GiB on node 0 of 126 GiB and 23.5 GiB), the machine's total is shared out
    in proportion to what the nodes report (by CPU count where they report nothing), and a note
    says so."""
    out: dict[int, NodeMemory] = {}
    for n in nodes:
        d = root.sys("devices", "system", "node", f"node{n}")
        fields = {}
        for line in (read(d / "meminfo") or "").splitlines():
            m = re.match(r"Node\s+\d+\s+(\S+):\s+(\d+)(\s*kB)?", line)
            if m:
                fields[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
        out[n] = NodeMemory(fields.get("MemTotal"), fields.get("MemFree"), 0, hugepages(d / "hugepages"))
    reported = {n: m.total for n, m in out.items() if m.total}
    total = sum(reported.values())
    if len(reported) == len(out) and total >= 0.9 * mem.total:
        for n, m in out.items():
            m.usable = m.total or 0
        return out
    if reported and len(reported) == len(out):
        weights = reported
        how = "in proportion to what the nodes report"
    else:
        weights = {n: len(c) for n, c in nodes.items()}
        how = "by CPU count"
    share = sum(weights.values())
    for n, m in out.items():
        m.usable = mem.total * weights[n] // share
    if len(out) == 1:
        notes.append(f"NUMA node {next(iter(out))} reports {_gib(total)} of the machine's {_gib(mem.total)} "
                     "(memory added to a virtual machine after boot is often not listed per node): "
                     "the machine's total is used")
    else:
        notes.append(f"the NUMA nodes report {_gib(total)} of the machine's {_gib(mem.total)}: the total is shared "
                     f"out {how}")
    return out


def _gib(n: int | None) -> str:
    return f"{(n or 0) / (1 << 30):.1f} GiB"
