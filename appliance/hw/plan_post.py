"""The prover config planner (`damocles plan --role post`): post.toml for a machine that only
proves WindowPoSt: one `[[processors.window_post]]` per GPU (CUDA_VISIBLE_DEVICES, the cores of
the GPU's NUMA node shared out among that node's GPUs) or, without a GPU, one per NUMA node on
that node's cores; `[prover].concurrency` as many jobs as there are entries and as memory holds
(Lotus' WindowPoSt MinMemory plus parameters)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.proof_types import SectorSize
from ..config.cpuset import format_cpuset
from . import needs
from .machine import Machine
from .needs import gib
from .plan import Entry, PlanError, cpus_of, gpu_nodes, plural, summary


@dataclass
class PostPlan:
    size: SectorSize
    manager_url: str
    token: str | None
    name: str | None
    attached: list[tuple[str, str]]
    entries: list[Entry]
    concurrency: int
    concurrency_why: str
    explain: list[str]
    machine_summary: str

    def toml(self) -> str:
        from .render import post_toml
        return post_toml(self)


def plan_post(m: Machine, size: SectorSize, persist: list[tuple[str, str]], manager_url: str, name: str | None = None,
              token: str | None = None) -> PostPlan:
    if not persist:
        raise PlanError("give at least one --persist-dir: the prover reads sealed sectors from the persist stores")
    names = [n for n, _ in persist]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"persist stores need distinct names (the manager's): {', '.join(dup)} given twice; "
                        "use --persist-name or `damocles store file-init --name`")
    explain = [f"machine: {summary(m)}"]
    where = gpu_nodes(m)
    entries: list[Entry] = []
    need = needs.window_post(size)
    for n in m.node_cpus:
        cores = sorted((c for c in m.cores if c.node == n), key=lambda c: c.first)
        reserve = needs.system_cores(len(cores), len(m.cores))
        usable = cores[:len(cores) - reserve] if reserve else cores
        if reserve:
            explain.append(f"node {n}: cores {format_cpuset(cpus_of(cores[len(cores) - reserve:]))} stay with the system "
                           f"({int(needs.SYSTEM_CORE_SHARE * 100)}% of the node's cores, as Lotus keeps 8% of threads out of its tasks)")
        node_gpus = [g for g in m.gpus if where[g.index] == n]
        if node_gpus:
            share = max(1, len(usable) // len(node_gpus))
            for i, g in enumerate(node_gpus):
                part = usable[i * share:(i + 1) * share] if i < len(node_gpus) - 1 else usable[i * share:]
                part = part or usable[-1:]
                why = (f"WindowPoSt on GPU {g.index} ({g.name}, NUMA node {n} from {g.numa_source or 'default'}): "
                       f"{plural(len(part), 'core')} of node {n}"
                       + (f", shared out among its {len(node_gpus)} GPUs" if len(node_gpus) > 1 else ""))
                entries.append(Entry("window_post", cpus_of(part), n, 1, why,
                                     {"CUDA_VISIBLE_DEVICES": str(g.index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}))
        elif not m.gpus:
            entries.append(Entry("window_post", cpus_of(usable), n, 1,
                                 f"WindowPoSt on the CPU cores of NUMA node {n} ({plural(len(usable), 'core')}): no GPU "
                                 f"({m.gpu_reading.reason or 'none found'})"))
    if not entries:
        raise PlanError("no cores for WindowPoSt")
    avail = m.memory.total - m.memory.hugepages_bytes - needs.system_memory(m.memory.total)
    per = need.min_memory + needs.PROCESS_OVERHEAD
    slots = max(0, (avail - need.base_memory) // per)
    if slots == 0:
        raise PlanError(f"this machine cannot prove {size.name} WindowPoSt: it needs {gib(need.memory + needs.PROCESS_OVERHEAD)} "
                        f"(MinMemory + parameters, {needs.LOTUS}), {gib(max(avail, 0))} is left after the system's "
                        f"{gib(needs.system_memory(m.memory.total))}")
    concurrency = min(len(entries), slots)
    if concurrency < len(entries):
        entries = entries[:concurrency]
    why = (f"concurrency = {concurrency}: one job per window_post entry ({len(entries)}), as memory allows ({slots} at "
           f"{gib(need.min_memory)} + {gib(needs.PROCESS_OVERHEAD)} each and {gib(need.base_memory)} of parameters once: "
           f"{size.name} WindowPoSt, {needs.LOTUS}; {gib(avail)} after the system's {gib(needs.system_memory(m.memory.total))})")
    explain.append(why)
    for e in entries:
        explain.append(f"[[processors.window_post]] cpuset {format_cpuset(e.cpus)}, numa_preferred {e.numa}: {e.why}")
    if m.gpus:
        explain.append("the builtin engine proves on the CPU (a GPU prover as `bin` is not supported by the prover role yet): "
                       "the GPU entries keep CUDA_VISIBLE_DEVICES for when it is")
    return PostPlan(size, manager_url, token, name, list(persist), entries, concurrency, why, explain, summary(m))
