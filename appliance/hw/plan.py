"""The worker config planner: from the machine, the sector size and the sealing stores to a
complete worker.toml, with the reason for every number (docs/hardware.md has the rules).

Per NUMA node the physical cores are split into
- PC1: whole L3 groups (or, where the node has a single L3 group, the first cores of it), one
  `[[processors.pc1]]` per node with `numa_preferred`; as many at once as there are cores and
  as the node's memory holds (Lotus' per-size PC1 memory);
- per GPU close to the node: GPU_FEEDER_CORES cores shared by that GPU's pc2 and c2 entries,
  which take turns on the GPU through an ext_lock; without any GPU a CPU pc2 and c2 pair per
  node takes CPU_PROVE_SHARE of the cores;
- the system and the worker: the rest, at least SYSTEM_CORE_SHARE of the node.
Sealing threads: 1.6 per PC1 slot, as many as the sealing stores hold."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.proof_types import SectorSize
from ..config.cpuset import format_cpuset
from . import needs
from .cpu import Core
from .disks import Space
from .machine import Machine
from .needs import gib


class PlanError(ValueError):
    """The machine cannot run what was asked; the message says what is missing."""


@dataclass
class Entry:
    stage: str
    cpus: list[int]
    numa: int | None
    concurrent: int
    why: str
    envs: dict[str, str] = field(default_factory=dict)
    locks: list[str] = field(default_factory=list)

    @property
    def cpus_text(self) -> str:
        return format_cpuset(self.cpus)


@dataclass
class Thread:
    location: str
    store: str


@dataclass
class WorkerPlan:
    size: SectorSize
    manager_url: str
    token: str | None
    name: str | None
    threads: list[Thread]
    attached: list[tuple[str, str]]
    entries: list[Entry]
    ext_locks: dict[str, int]
    limits: dict[str, int]
    explain: list[str]
    machine_summary: str
    rpc_port: int | None = None

    def toml(self) -> str:
        from .render import worker_toml
        return worker_toml(self)


@dataclass
class NodeSplit:
    node: int
    pc1: list[Core]
    feeders: dict[int, list[Core]]      # GPU index -> cores for its pc2/c2
    prove: list[Core]                   # CPU pc2/c2 (machines without a usable GPU)
    system: list[Core]
    pc1_groups: list[int]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cpus_of(cores: list[Core]) -> list[int]:
    return sorted(c for core in cores for c in core.cpus)


def summary(m: Machine) -> str:
    gpus = ", ".join(f"{g.name}" for g in m.gpus) or "no GPU"
    return (f"{m.identity.model}: {len(m.topology.packages)} package(s), {len(m.node_cpus)} NUMA node(s), "
            f"{len(m.l3_groups)} L3 group(s), {len(m.cores)} cores / {len(m.cpus)} CPUs, {gib(m.memory.total)}, {gpus}")


def gpu_nodes(m: Machine) -> dict[int, int]:
    """The node each GPU is planned on: its NUMA node, else the node holding most of its CPU
    affinity, else the first node."""
    out = {}
    for g in m.gpus:
        if g.numa_node in m.node_cpus:
            out[g.index] = g.numa_node
        else:
            near = max(m.node_cpus, key=lambda n: (len(set(g.cpus) & set(m.node_cpus[n])), -n))
            out[g.index] = near
    return out


def usable_gpus(m: Machine, size: SectorSize, explain: list[str]) -> list:
    out = []
    for g in m.gpus:
        need = needs.gpu_min_memory(size)
        if g.memory_total < need:
            explain.append(f"GPU {g.index} ({g.name}, {gib(g.memory_total)}) is left out: PC2 at {size.name} wants at least "
                           f"{gib(need)} of GPU memory (filecoin-docs sealing-pipeline)")
            continue
        out.append(g)
    if not m.gpus:
        explain.append(f"no GPU ({m.gpu_reading.reason or 'none found'}): PC2 and C2 run on CPU cores")
    return out


def split_node(m: Machine, n: int, gpus: list, cpu_prove: bool, explain: list[str]) -> NodeSplit:
    cores = sorted((c for c in m.cores if c.node == n), key=lambda c: c.first)
    reserve = needs.system_cores(len(cores), len(m.cores))
    feeders_each = needs.GPU_FEEDER_CORES
    if gpus:
        room = len(cores) - reserve - 1               # keep at least one core for PC1
        if room < feeders_each * len(gpus):
            feeders_each = max(1, room // len(gpus))
            explain.append(f"node {n}: only {max(room, 0)} cores to spare for {len(gpus)} GPU(s): {feeders_each} core(s) "
                           f"each instead of {needs.GPU_FEEDER_CORES}")
    prove = max(1, round(needs.CPU_PROVE_SHARE * (len(cores) - reserve))) if cpu_prove else 0
    other = min(reserve + feeders_each * len(gpus) + prove, len(cores))
    by_group: dict[int, list[Core]] = {}
    for core in cores:                                # in order of each group's first core
        by_group.setdefault(core.l3, []).append(core)
    groups = list(by_group.items())
    if other == 0:
        pc1, rest, pc1_groups = list(cores), [], [g for g, _ in groups]
    elif len(groups) == 1:                            # one L3 group: any part of it is aligned
        pc1, rest = cores[:len(cores) - other], cores[len(cores) - other:]
        pc1_groups = [groups[0][0]] if pc1 else []
    else:
        taken, rest_groups = 0, []
        for gi in range(len(groups) - 1, -1, -1):
            if taken >= other:
                break
            rest_groups.insert(0, groups[gi])
            taken += len(groups[gi][1])
        keep = groups[:len(groups) - len(rest_groups)]
        pc1 = [c for _, cs in keep for c in cs]
        rest = [c for _, cs in rest_groups for c in cs]
        pc1_groups = [g for g, _ in keep]
    feeders, i = {}, 0
    for g in gpus:
        feeders[g.index] = rest[i:i + feeders_each]
        i += feeders_each
    if any(not f for f in feeders.values()):
        raise PlanError(f"NUMA node {n} has {len(cores)} cores: too few for its {len(gpus)} GPU(s) and PC1")
    prove_cores = rest[i:i + prove]
    i += prove
    system = rest[i:]
    return NodeSplit(n, pc1, feeders, prove_cores, system, pc1_groups)


def plan_worker(m: Machine, size: SectorSize, sealing: list[Space], persist: tuple[str, str], manager_url: str,
                name: str | None = None, token: str | None = None) -> WorkerPlan:
    """`sealing`: the sealing directories with their filesystems' space; `persist`: (name,
    location) of the persist store."""
    explain: list[str] = [f"machine: {summary(m)}"]
    if not sealing:
        raise PlanError("give at least one --sealing-dir")
    gpus = usable_gpus(m, size, explain)
    where = gpu_nodes(m)
    pc1_need, pair_mem = needs.pc1(size), needs.prove_pair_memory(size)
    hp = m.memory.hugepages_bytes
    sys_mem = needs.system_memory(m.memory.total)
    usable_total = sum(nm.usable for nm in m.nodes.values()) or m.memory.total
    entries: list[Entry] = []
    ext_locks: dict[str, int] = {}
    pc1_entries: list[Entry] = []
    cpu_prove = not gpus
    prove_lock = lambda n: "prove" if len(m.node_cpus) == 1 else f"prove{n}"   # noqa: E731
    for n in m.node_cpus:
        node_gpus = [g for g in gpus if where[g.index] == n]
        split = split_node(m, n, node_gpus, cpu_prove, explain)
        nm = m.nodes[n]
        node_hp = sum(h.reserved_bytes for h in nm.hugepages) if nm.hugepages else hp * nm.usable // max(usable_total, 1)
        node_sys = sys_mem * nm.usable // max(usable_total, 1)
        pairs = len(node_gpus) + (1 if split.prove else 0)
        pair_total = pairs * (pair_mem + 2 * needs.PROCESS_OVERHEAD)
        avail = nm.usable - node_hp - node_sys - pair_total
        for g in node_gpus:
            lock = f"gpu{g.index}"
            ext_locks[lock] = 1
            cpus = cpus_of(split.feeders[g.index])
            why = (f"GPU {g.index} ({g.name}, {gib(g.memory_total)}, NUMA node {n} from {g.numa_source or 'default'}): "
                   f"its pc2 and c2 take turns on it (ext_lock {lock} = 1) on {plural(len(split.feeders[g.index]), 'core')} of "
                   f"node {n} (Lotus gives a GPU task {needs.GPU_FEEDER_CORES} CPU threads)")
            if g.cpus and not set(cpus) <= set(g.cpus):
                why += f"; note: cores {format_cpuset(cpus)} are outside the GPU's CPU affinity {format_cpuset(g.cpus)}"
            envs = {"CUDA_VISIBLE_DEVICES": str(g.index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            for stage in ("pc2", "c2"):
                entries.append(Entry(stage, cpus, n, 1, why, dict(envs), [lock]))
            explain.append(f"[[processors.pc2]] and [[processors.c2]] for GPU {g.index}: cpuset {format_cpuset(cpus)}, "
                           f"CUDA_VISIBLE_DEVICES={g.index}, locks [{lock}]: {why}")
        if split.prove:
            lock = prove_lock(n)
            ext_locks[lock] = 1
            cpus = cpus_of(split.prove)
            why = (f"no GPU: pc2 and c2 of node {n} share {plural(len(split.prove), 'core')} ({int(needs.CPU_PROVE_SHARE * 100)}% of "
                   f"the node's cores after the system's, at least one) and take turns (ext_lock {lock} = 1)")
            for stage in ("pc2", "c2"):
                entries.append(Entry(stage, cpus, n, 1, why, {}, [lock]))
            explain.append(f"[[processors.pc2]] and [[processors.c2]] node {n}: cpuset {format_cpuset(cpus)}, "
                           f"locks [{lock}]: {why}")
        by_cores = len(split.pc1)
        by_mem = needs.pc1_slots_for_memory(avail, size)
        slots = min(by_cores, by_mem)
        groups = ", ".join(f"#{g}" for g in split.pc1_groups)
        mem_text = (f"node {n} has {gib(nm.usable)}; less {gib(node_sys)} for the system"
                    + (f", {gib(node_hp)} of hugepages" if node_hp else "")
                    + (f", {gib(pair_total)} for {pairs} pc2/c2 pair(s) ({size.name} C2: MinMemory + parameters "
                       f"{gib(needs.c2(size).memory)}, {needs.LOTUS}; processes {gib(2 * needs.PROCESS_OVERHEAD)})"
                       if pairs else "")
                    + f" leaves {gib(max(avail, 0))}: room for {by_mem} PC1 at {gib(pc1_need.min_memory)} + "
                      f"{gib(needs.PROCESS_OVERHEAD)} each ({size.name} PC1 MinMemory, {needs.LOTUS})")
        if split.system:
            explain.append(f"node {n}: cores {format_cpuset(cpus_of(split.system))} ({len(split.system)}) stay with the "
                           f"system and the worker (at least {needs.system_cores(len([c for c in m.cores if c.node == n]), len(m.cores))}:"
                           f" {int(needs.SYSTEM_CORE_SHARE * 100)}% of the node's cores, as Lotus keeps 8% of threads out of its "
                           "tasks; more where whole L3 groups were left over)")
        elif len(m.cores) < needs.SYSTEM_CORES_FROM:
            explain.append(f"node {n}: {len(m.cores)} cores are too few to keep one for the system: the worker and the OS "
                           "share them with the processors")
        if slots <= 0:
            explain.append(f"node {n}: no PC1 here: {'no cores left for it' if not by_cores else mem_text}")
            continue
        cpus = cpus_of(split.pc1)
        smt = f" (with their SMT siblings: {len(cpus)} CPUs)" if len(cpus) > len(split.pc1) else ""
        why = (f"PC1 on NUMA node {n}: L3 group(s) {groups}, {plural(by_cores, 'physical core')}{smt}, one PC1 per core "
               f"(SHA-256 bound: SMT siblings add little); {slots} at once: "
               + ("the cores allow it and " if slots == by_cores else f"the cores would allow {by_cores} but ")
               + mem_text)
        e = Entry("pc1", cpus, n, slots, why)
        explain.append(f"[[processors.pc1]] node {n}: cpuset {format_cpuset(cpus)}, numa_preferred {n}, concurrent {slots}: {why}")
        pc1_entries.append(e)
        entries.append(e)
    total_pc1 = sum(e.concurrent for e in pc1_entries)
    if total_pc1 == 0:
        raise PlanError(f"this machine cannot run a {size.name} PC1: " + "; ".join(x for x in explain if "no PC1" in x)
                        + f" (one {size.name} PC1 needs {gib(pc1_need.memory + needs.PROCESS_OVERHEAD)} of memory, "
                        f"{needs.LOTUS}; the machine has {gib(m.memory.total)})")
    threads = plan_threads(size, sealing, total_pc1, explain)
    if len(threads) < total_pc1:
        _trim(pc1_entries, len(threads))
        entries = [e for e in entries if e.stage != "pc1" or e.concurrent > 0]
        held = f"PC1 is held to {len(threads)} at once: the sealing stores hold {len(threads)} sectors"
        for e in pc1_entries:
            e.why += f"; {held}"
        explain.append(held)
        total_pc1 = len(threads)
    limits = {"pc1": total_pc1, "pc2": sum(1 for e in entries if e.stage == "pc2"),
              "c2": sum(1 for e in entries if e.stage == "c2")}
    explain.append(f"[processors.limitation.concurrent]: pc1 = {limits['pc1']} (the pc1 entries' sum), pc2 = {limits['pc2']}, "
                   f"c2 = {limits['c2']} (one per entry); add_pieces, tree_d and c1 run in the sealing threads")
    if gpus:
        explain.append("the builtin engine computes PC2 and C2 on the CPU: give the GPU entries a `bin` (a GPU processor "
                       "speaking vc-processors) to use the GPUs; CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA number the GPUs "
                       "as NVML and nvidia-smi do")
    if not m.identity.sha_extensions:
        explain.append("the CPU has no SHA extensions: PC1 will be several times slower than on a CPU with sha_ni")
    return WorkerPlan(size, manager_url, token, name, threads, [persist], entries, ext_locks, limits, explain, summary(m))


def _trim(entries: list[Entry], limit: int) -> None:
    while sum(e.concurrent for e in entries) > limit:
        biggest = max(entries, key=lambda e: e.concurrent)
        biggest.concurrent -= 1
    entries[:] = [e for e in entries if e.concurrent > 0]


def plan_threads(size: SectorSize, sealing: list[Space], pc1_slots: int, explain: list[str]) -> list[Thread]:
    per = needs.sealing_space(size)
    wanted = math.ceil(pc1_slots * needs.THREADS_PER_PC1)
    left: dict[str, int] = {}
    for s in sealing:
        left.setdefault(s.fs, s.free // per)
    capacity = sum(left.values())
    if capacity == 0:
        raise PlanError(f"the sealing dirs have no room for one {size.name} sector (it needs {gib(per)}: "
                        + ", ".join(f"{s.path}: {gib(s.free)} free" for s in sealing) + ")")
    threads: list[Thread] = []
    i = 0
    while len(threads) < wanted and any(left[s.fs] > 0 for s in sealing):
        s = sealing[i % len(sealing)]
        i += 1
        if left[s.fs] > 0:
            left[s.fs] -= 1
            threads.append(Thread(os.path.join(s.path, f"thread-{len(threads)}"), s.path))
    stores = "; ".join(f"{s.path}: {gib(s.free)} free on {s.mountpoint} ({s.source})" for s in sealing)
    explain.append(f"sealing threads: {len(threads)} = min({wanted} wanted: {needs.THREADS_PER_PC1} per PC1 slot, as a "
                   f"32GiB sector spends ~177 of ~282 min of its thread's time in PC1 (Damocles docs/en/12); {capacity} "
                   f"that the stores hold at {gib(per)} a sector ({size.layers} layers + data, tree_d, tree_c, sealed)); "
                   f"{stores}")
    return threads


def persist_store(path: str, name: str | None = None) -> tuple[str, str]:
    """(name, location): the name the manager knows the store by: given, else the `Name` in the
    store's sectorstore.json (damocles store file-init), else the directory's name."""
    if name:
        return name, path
    meta = Path(path) / "sectorstore.json"
    if meta.exists():
        import json
        try:
            got = json.loads(meta.read_text()).get("Name")
            if got:
                return str(got), path
        except (OSError, ValueError):
            pass
    return Path(path).name or "persist", path
