"""The machine as discovery sees it, and its tree view (package, NUMA node, L3 groups and their
CPUs, GPUs, disks), after Damocles' `damocles-worker-util hwinfo`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..core.units import format_bytes
from ..config.cpuset import format_cpuset
from . import cpu as cpu_mod
from . import disks as disk_mod
from . import gpu as gpu_mod
from . import memory as mem_mod
from .sources import Root


@dataclass
class Machine:
    root: Root
    identity: cpu_mod.CPUIdentity
    topology: cpu_mod.Topology
    memory: mem_mod.Memory
    nodes: dict[int, mem_mod.NodeMemory]
    gpu_reading: gpu_mod.GPUReading
    devices: list[disk_mod.BlockDevice] = field(default_factory=list)
    mounts: list[disk_mod.Mount] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # --- the questions the planner and the checker ask
    @property
    def cpus(self) -> list[int]:
        return self.topology.cpus

    @property
    def cores(self) -> list[cpu_mod.Core]:
        return self.topology.cores

    @property
    def l3_groups(self) -> list[cpu_mod.L3Group]:
        return self.topology.l3_groups

    @property
    def node_cpus(self) -> dict[int, list[int]]:
        return self.topology.node_cpus

    @property
    def gpus(self) -> list[gpu_mod.GPU]:
        return self.gpu_reading.gpus

    def node_of(self, cpu: int) -> int | None:
        return next((n for n, cpus in self.node_cpus.items() if cpu in cpus), None)

    def group_of(self, cpu: int) -> cpu_mod.L3Group | None:
        return next((g for g in self.l3_groups if cpu in g.cpus), None)

    def space_for(self, path) -> disk_mod.Space:
        return disk_mod.space_for(path, self.root, self.mounts)

    @property
    def smt(self) -> int:
        return max((len(c.cpus) for c in self.cores), default=1)

    def to_dict(self) -> dict:
        t = self.topology
        return {
            "source": self.root.label,
            "cpu": {"model": self.identity.model, "vendor": self.identity.vendor, "sha_extensions": self.identity.sha_extensions,
                    "mhz": self.identity.mhz, "flags": list(self.identity.flags), "source": self.identity.source},
            "cpus": format_cpuset(t.cpus), "cpu_count": len(t.cpus), "core_count": len(t.cores), "smt": self.smt,
            "packages": [{"id": p, "cpus": format_cpuset(c), "nodes": sorted({self.node_of(x) for x in c})}
                         for p, c in t.packages.items()],
            "numa_nodes": [{"id": n, "cpus": format_cpuset(c), "memory_reported": self.nodes[n].total,
                            "memory_usable": self.nodes[n].usable,
                            "hugepages": [asdict(h) for h in self.nodes[n].hugepages if h.total]}
                           for n, c in t.node_cpus.items()],
            "l3_groups": [{"index": g.index, "cpus": format_cpuset(g.cpus), "size": g.size, "kind": g.source,
                           "cores": sum(1 for c in t.cores if c.l3 == g.index),
                           "nodes": sorted({self.node_of(x) for x in g.cpus})} for g in t.l3_groups],
            "cores": [list(c.cpus) for c in t.cores],
            "memory": {"total": self.memory.total, "available": self.memory.available, "swap": self.memory.swap_total,
                       "hugepages": [asdict(h) for h in self.memory.hugepages], "source": self.memory.source},
            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid, "memory": g.memory_total, "pci_bus_id": g.pci_bus_id,
                      "cpus": format_cpuset(g.cpus), "numa_node": g.numa_node, "numa_source": g.numa_source,
                      "compute_capability": list(g.compute_capability) if g.compute_capability else None,
                      "source": g.source} for g in self.gpus],
            "gpu_driver": self.gpu_reading.driver, "gpu_reason": self.gpu_reading.reason,
            "disks": [asdict(d) for d in self.devices],
            "mounts": [asdict(m) for m in self.mounts],
            "notes": self.notes,
        }

    def tree(self) -> list[str]:
        t = self.topology
        lines = [f"Machine ({_gib(self.memory.total)}, {len(t.packages)} package(s), {len(t.node_cpus)} NUMA node(s), "
                 f"{len(t.cores)} cores, {len(t.cpus)} CPUs) [{self.root.label}]"]
        sha = "sha_ni" if self.identity.sha_extensions else "NO SHA extensions: PC1 will be slow"
        pkgs = list(t.packages.items())
        for pi, (p, pcpus) in enumerate(pkgs):
            last_p = pi == len(pkgs) - 1
            lines.append(f"{'└──' if last_p else '├──'} Package {p} ({self.identity.model}, {sha})")
            pre = "    " if last_p else "│   "
            nodes = [n for n in t.node_cpus if set(t.node_cpus[n]) & set(pcpus)]
            for ni, n in enumerate(nodes):
                last_n = ni == len(nodes) - 1
                nm = self.nodes[n]
                lines.append(f"{pre}{'└──' if last_n else '├──'} NUMANode #{n} ({_gib(nm.usable)}"
                             f"{'' if nm.total == nm.usable else f', reported {_gib(nm.total)}'})")
                npre = pre + ("    " if last_n else "│   ")
                items = []
                for g in t.l3_groups:
                    cpus = [c for c in g.cpus if c in t.node_cpus[n] and c in pcpus]
                    if not cpus:
                        continue
                    cores = [c for c in t.cores if c.l3 == g.index and c.node == n]
                    pus = " + ".join("PU #" + "/".join(map(str, c.cpus)) for c in cores) if len(cores) <= 8 else \
                        f"{len(cores)} cores: PUs {format_cpuset(cpus)}"
                    size = f" {format_bytes(g.size)}" if g.size else ""
                    items.append((f"{g.source} (#{g.index}{size})", pus))
                for gpu in self.gpus:
                    if gpu.numa_node == n:
                        items.append((f"GPU {gpu.index} {gpu.name} ({_gib(gpu.memory_total)}, {gpu.pci_bus_id}, "
                                      f"CPUs {format_cpuset(gpu.cpus) or '?'}, node from {gpu.numa_source})", None))
                for ii, (head, child) in enumerate(items):
                    last_i = ii == len(items) - 1
                    lines.append(f"{npre}{'└──' if last_i else '├──'} {head}")
                    if child:
                        lines.append(f"{npre}{'    ' if last_i else '│   '}└── {child}")
        loose = [g for g in self.gpus if g.numa_node is None]
        lines.append("")
        lines.append("GPUs:" if self.gpus else f"GPUs: none ({self.gpu_reading.reason})")
        for g in self.gpus:
            cc = f", compute {g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else ""
            lines.append(f"  {g.index}  {g.name}  {_gib(g.memory_total)}  {g.uuid}  {g.pci_bus_id}  CPUs "
                         f"{format_cpuset(g.cpus) or '?'}  NUMA {g.numa_node if g.numa_node is not None else '?'}{cc}"
                         f"{'  (NUMA node unknown)' if g in loose else ''}")
        lines.append("")
        lines.append("Disks:")
        for d in self.devices:
            lines.append(f"  {d.name:<10} {d.kind:<5} {'HDD' if d.rotational else 'SSD'}  {_gib(d.size):>12}  {d.model}")
        if self.mounts:
            lines.append("Mounts:")
            for m in self.mounts:
                space = f"{_gib(m.free)} free of {_gib(m.total)}" if m.total is not None else "space unknown"
                kind = "" if m.rotational is None else ("HDD" if m.rotational else "SSD")
                lines.append(f"  {m.mountpoint:<24} {m.device:<22} {m.fstype:<6} {kind:<3}  {space}")
        mem = self.memory
        hp = ", ".join(f"{h.total} x {format_bytes(h.page_size)} ({h.free} free)" for h in mem.hugepages if h.total) or "none"
        lines.append("")
        lines.append(f"Memory: {_gib(mem.total)} total, {_gib(mem.available)} available, swap {_gib(mem.swap_total)}, "
                     f"hugepages {hp}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return lines


def discover(root: Root | str | os.PathLike | None = None, *, identity: bool = False, gpus: bool = True,
             storage: bool = True, mount_space: bool = True) -> Machine:
    """Read the machine (or a captured tree). `identity` asks py-cpuinfo on the live machine
    (about a second); `gpus` and `storage` can be skipped where they are not needed, and
    `mount_space=False` reads the mount table without statvfs of every mount."""
    root = root if isinstance(root, Root) else Root(root)
    topo = cpu_mod.topology(root)
    notes = list(root.notes) + topo.notes
    ident = cpu_mod.identity(root, identity)
    mem = mem_mod.memory(root)
    nodes = mem_mod.node_memory(root, topo.node_cpus, mem, notes)
    reading = gpu_mod.gpus(root, topo.node_cpus) if gpus else gpu_mod.GPUReading([], "not looked for")
    devices = disk_mod.block_devices(root) if storage else []
    mounts = disk_mod.mounts(root, devices, mount_space) if storage else []
    if not ident.sha_extensions:
        notes.append("the CPU has no SHA extensions (sha_ni): PC1, which is SHA-256 bound, will be several times slower")
    return Machine(root, ident, topo, mem, nodes, reading, devices, mounts, notes)


def _gib(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1 << 40:
        return f"{n / (1 << 40):.2f} TiB"
    return f"{n / (1 << 30):.1f} GiB"
