"""`damocles worker check`: a worker.toml (or post.toml) against the machine. Errors are what
makes a worker fail or crash (what Damocles' operators report): CPUs that
do not exist, a cpuset spanning NUMA nodes or off its `numa_preferred` node, pc1 cpusets that cut
L3 groups, GPUs that are not there, stores missing or too small for their threads, memory too
small for the PC1 concurrency. Warnings are what wastes the machine: overlapping cpusets of
stages that run together, a GPU shared without a lock or given to nobody, a processor far from
its GPU, memory tight at the peak. docs/hardware.md lists every finding."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.proof_types import SectorSize, post_proof, sector_size
from ..config.cpuset import format_cpuset
from ..config.processors import ProcessorConfig
from . import needs
from .disks import captured_space
from .machine import Machine
from .needs import gib


@dataclass(frozen=True)
class Finding:
    level: str          # "error" or "warning"
    where: str          # the config key
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


@dataclass
class Report:
    kind: str                                   # "worker" or "post"
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def error(self, where: str, message: str) -> None:
        self.findings.append(Finding("error", where, message))

    def warn(self, where: str, message: str) -> None:
        self.findings.append(Finding("warning", where, message))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ok": not self.errors,
                "errors": [{"where": f.where, "message": f.message} for f in self.errors],
                "warnings": [{"where": f.where, "message": f.message} for f in self.warnings], "notes": self.notes}


def where_of(p: ProcessorConfig) -> str:
    return f"[[processors.{p.stage}]][{p.index}]"


# ------------------------------------------------------------------------------------ entries

def check_entry(p: ProcessorConfig, m: Machine, r: Report) -> None:
    w = where_of(p)
    cpus = set(m.cpus)
    if p.numa_preferred is not None and p.numa_preferred not in m.node_cpus:
        r.error(f"{w}.numa_preferred", f"NUMA node {p.numa_preferred} does not exist (nodes: "
                f"{', '.join(map(str, m.node_cpus))})")
    if p.cpuset:
        missing = sorted(set(p.cpuset) - cpus)
        if missing:
            r.error(f"{w}.cgroup.cpuset", f"CPU {format_cpuset(missing)} {'does' if len(missing) == 1 else 'do'} not exist "
                    f"(this machine has CPUs {format_cpuset(m.cpus)})")
        else:
            _check_numa(p, m, r)
            if p.stage == "pc1":
                _check_l3(p, m, r)
    _check_gpus(p, m, r)


def _check_numa(p: ProcessorConfig, m: Machine, r: Report) -> None:
    w = where_of(p)
    nodes = sorted({m.node_of(c) for c in p.cpuset})
    if p.numa_preferred is None or p.numa_preferred not in m.node_cpus:
        return
    if len(nodes) > 1:
        parts = "; ".join(f"node {n}: {format_cpuset([c for c in p.cpuset if m.node_of(c) == n])}" for n in nodes)
        r.error(f"{w}.cgroup.cpuset", f"{p.cpuset_text or format_cpuset(p.cpuset)} spans NUMA nodes "
                f"{', '.join(map(str, nodes))} ({parts}) while numa_preferred = {p.numa_preferred}: keep an entry on one "
                "node, one entry per node (Damocles fails such processors with \"Once instance has previously been "
                "poisoned\")")
    elif nodes[0] != p.numa_preferred:
        r.error(f"{w}.numa_preferred", f"{p.numa_preferred}, but the cpuset {format_cpuset(p.cpuset)} is on NUMA node "
                f"{nodes[0]} (CPUs {format_cpuset(m.node_cpus[nodes[0]])}): its memory would be remote to its CPUs; "
                f"set numa_preferred = {nodes[0]}")


def _check_l3(p: ProcessorConfig, m: Machine, r: Report) -> None:
    """Multicore SDR (rust-fil-proofs cores.rs) splits the visible cores into L3 groups of equal
    size and asserts `core_count % group_count == 0`: a cpuset that takes part of an L3 group
    along with other groups breaks it. Part of one single group is fine (one group is seen)."""
    chosen = set(p.cpuset)
    touched = []
    for g in m.l3_groups:
        cores = [c for c in m.cores if c.l3 == g.index]
        inside = [c for c in cores if chosen & set(c.cpus)]
        if inside:
            touched.append((g, cores, inside))
    if len(touched) < 2:
        return
    partial = [(g, cores, inside) for g, cores, inside in touched if len(inside) < len(cores)]
    if partial:
        g, cores, inside = partial[0]
        out = sorted(c for core in cores if core not in inside for c in core.cpus)
        r.error(f"{where_of(p)}.cgroup.cpuset", f"{p.cpuset_text or format_cpuset(p.cpuset)} takes {len(inside)} of the "
                f"{len(cores)} cores of L3 group #{g.index} (CPUs {format_cpuset(g.cpus)}; {format_cpuset(out)} left out) "
                f"along with {len(touched) - 1} other group(s): PC1's multicore SDR needs whole L3 groups (rust-fil-proofs "
                "cores.rs panics on unequal groups); use whole groups, see `damocles hwinfo`")


def cuda_devices(p: ProcessorConfig) -> list[str] | None:
    v = p.envs.get("CUDA_VISIBLE_DEVICES")
    if v is None:
        return None
    return [x.strip() for x in v.split(",") if x.strip()]


def gpu_of(token: str, m: Machine):
    if token.isdigit():
        i = int(token)
        return next((g for g in m.gpus if g.index == i), None)
    if token.upper().startswith("GPU-"):
        return next((g for g in m.gpus if g.uuid.lower().startswith(token.lower())), None)
    return None


def _check_gpus(p: ProcessorConfig, m: Machine, r: Report) -> None:
    devices = cuda_devices(p)
    if not devices:
        return
    w = f"{where_of(p)}.envs.CUDA_VISIBLE_DEVICES"
    for token in devices:
        if token in ("-1", "NoDevFiles") or token.upper().startswith("MIG-"):
            continue
        g = gpu_of(token, m)
        if g is None:
            have = (", ".join(f"{x.index} ({x.name})" for x in m.gpus) if m.gpus
                    else f"none: {m.gpu_reading.reason or 'no NVIDIA GPU found'}")
            r.error(w, f"GPU {token} is not present (GPUs here: {have})")
            continue
        if p.cpuset and g.cpus and not set(p.cpuset) & set(g.cpus):
            r.warn(w, f"GPU {g.index} is close to CPUs {format_cpuset(g.cpus)} (NUMA node {g.numa_node}), the entry "
                   f"runs on {format_cpuset(p.cpuset)}: data crosses the socket interconnect; use cores near the GPU")


def check_overlaps(entries: list[ProcessorConfig], ext_locks: dict[str, int], r: Report) -> None:
    """Entries of stages that can run at the same time must not share CPUs, nor a GPU, unless a
    lock of count 1 makes them take turns."""
    pinned = [p for p in entries if p.cpuset]
    for i, a in enumerate(pinned):
        for b in pinned[i + 1:]:
            shared = set(a.cpuset) & set(b.cpuset)
            if shared and not _serialised(a, b, ext_locks):
                r.warn(f"{where_of(b)}.cgroup.cpuset", f"shares CPUs {format_cpuset(shared)} with {where_of(a)}, and the "
                       "two can run at once: they slow each other down; give them separate cores, or a common "
                       "ext_lock of 1 if they should take turns")
    named = [(p, d) for p in entries for d in (cuda_devices(p) or [])]
    for i, (a, da) in enumerate(named):
        for b, db in named[i + 1:]:
            if a is not b and da == db and not _serialised(a, b, ext_locks):
                r.warn(f"{where_of(b)}.envs.CUDA_VISIBLE_DEVICES", f"GPU {db} is also given to {where_of(a)} and no "
                       "ext_lock of 1 makes them take turns: both load the GPU at once (GPU memory, slow tasks)")


def _serialised(a: ProcessorConfig, b: ProcessorConfig, ext_locks: dict[str, int]) -> bool:
    return any(ext_locks.get(lock) == 1 for lock in set(a.locks) & set(b.locks))


def check_unused_gpus(entries: list[ProcessorConfig], m: Machine, r: Report) -> None:
    """Where the config names GPUs at all (CUDA_VISIBLE_DEVICES), the GPUs it names none of sit
    idle; a config that names none leaves every GPU visible to every processor."""
    named = {g.index for p in entries for d in (cuda_devices(p) or []) if (g := gpu_of(d, m)) is not None}
    if not named:
        return
    for g in m.gpus:
        if g.index not in named:
            r.warn("[processors]", f"GPU {g.index} ({g.name}) is given to no processor (no CUDA_VISIBLE_DEVICES names it): "
                   "it may sit idle")


# ------------------------------------------------------------------------------------ worker

def check_worker(cfg, m: Machine) -> Report:
    r = Report("worker")
    for w in cfg.warnings:
        r.warn("worker.toml", w)
    entries = [p for ps in cfg.processors.values() for p in ps]
    for p in entries:
        check_entry(p, m, r)
    sealers = [t for t in cfg.threads if t.plan != "wdpost"]
    if len(sealers) > 1 or (sealers and len(sealers) < len(cfg.threads)):
        check_overlaps(entries, cfg.ext_locks, r)
    else:
        r.notes.append("one sealing thread: stages run one after another, overlapping cpusets do not matter")
    if m.gpus:
        check_unused_gpus(entries, m, r)
    sizes = {s for t in cfg.threads for s in (t.sealing.allowed_sizes or ())}
    size = max((sector_size(s) for s in sizes), key=lambda s: s.bytes, default=None)
    if size is None:
        r.warn("[sealing].allowed_sizes", "not set: the memory and store space checks need the sector size (set it, "
               "e.g. allowed_sizes = [\"32GiB\"])")
    _check_stores(cfg, sealers, size, m, r)
    if size is not None:
        _check_memory(cfg, entries, len(sealers), size, m, r)
    return r


def _check_stores(cfg, sealers, size: SectorSize | None, m: Machine, r: Report) -> None:
    by_fs: dict[str, list] = {}
    for i, t in enumerate(cfg.threads):
        if t.location is None:
            continue
        w = f"[[sealing_thread]][{i}].location"
        loc = Path(t.location)
        captured = None if m.root.live else captured_space(loc, m.mounts)
        if not m.root.live and not loc.parent.exists():
            if captured is None:
                r.notes.append(f"{w}: {loc} is on the captured machine, which has no mount for it: not looked at")
            elif size is not None and t.plan != "wdpost":
                by_fs.setdefault(captured.fs, []).append((i, loc, captured))
            continue
        if not loc.exists():
            existing = loc.parent
            while not existing.exists():
                existing = existing.parent
            if not existing.is_dir():
                r.error(w, f"{loc} cannot be created: {existing} is not a directory")
                continue
            if not os.access(existing, os.W_OK | os.X_OK):
                r.error(w, f"{loc} does not exist and {existing} is not writable: the worker cannot create it")
                continue
            if existing != loc.parent:
                r.warn(w, f"{loc}: {loc.parent} does not exist either; the worker will create them on "
                       f"{m.space_for(existing).mountpoint} (is the disk meant for it mounted?)")
        elif not loc.is_dir():
            r.error(w, f"{loc} is not a directory")
            continue
        if size is not None and t.plan != "wdpost":
            space = m.space_for(loc)
            by_fs.setdefault(space.fs, []).append((i, loc, space))
    if size is not None:
        per = needs.sealing_space(size)
        for fs, items in by_fs.items():
            space = items[0][2]
            used = sum(_used(loc) for _, loc, _ in items)
            need = len(items) * per
            if space.free + used < need:
                idx = ", ".join(str(i) for i, _, _ in items)
                r.error(f"[[sealing_thread]][{idx}].location",
                        f"{len(items)} thread(s) on {space.mountpoint} need {gib(need)} for {size.name} sectors "
                        f"({gib(per)} each) but it has {gib(space.free)} free"
                        + (f" (+ {gib(used)} they already use)" if used else "") + f" of {gib(space.total)} "
                        f"({space.source}): fewer threads there, or more room")
    for i, a in enumerate(cfg.attached):
        w = f"[[attached]][{i}].location"
        space = None if m.root.live else captured_space(a.location, m.mounts)
        if m.root.live or a.location.exists():
            if not a.location.is_dir():
                r.error(w, f"{a.location} ({a.name}) is not a directory: the worker refuses to start without its "
                        "persist store")
                continue
            space = space or m.space_for(a.location)
        elif space is None:
            r.notes.append(f"{w}: {a.location} is on the captured machine, which has no mount for it: not looked at")
        if size is not None and not a.readonly and space is not None:
            if space.free < needs.persist_space(size):
                r.warn(w, f"{a.location} has {gib(space.free)} free: not enough for one more {size.name} sector "
                       f"({gib(needs.persist_space(size))})")


def _used(loc: Path) -> int:
    total = 0
    if not loc.exists():
        return 0
    for dirpath, _, files in os.walk(loc):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def pc1_concurrency(cfg, sealers: int) -> tuple[int, str]:
    pools = cfg.processors.get("pc1", [])
    if pools:
        slots = sum(p.concurrent or (64 if p.bin else 1) for p in pools)
        how = f"{slots} in the pc1 entries"
    else:
        slots, how = sealers, "PC1 runs in the sealing threads"
    limit = cfg.concurrent.get("pc1")
    conc = min(x for x in (slots, sealers, limit) if x is not None)
    parts = [how, f"{sealers} sealing threads"] + ([f"limitation {limit}"] if limit else [])
    return conc, ", ".join(parts)


def _check_memory(cfg, entries, sealers: int, size: SectorSize, m: Machine, r: Report) -> None:
    conc, how = pc1_concurrency(cfg, sealers)
    if conc == 0:
        return
    need = needs.pc1(size)
    per = need.min_memory + needs.PROCESS_OVERHEAD
    sys_mem = needs.system_memory(m.memory.total)
    avail = m.memory.total - m.memory.hugepages_bytes - sys_mem
    pc1_total = conc * per + need.base_memory
    hp = f", {gib(m.memory.hugepages_bytes)} of hugepages" if m.memory.hugepages_bytes else ""
    if pc1_total > avail:
        fits = max(0, (avail - need.base_memory) // per)
        r.error("[processors.limitation.concurrent].pc1", f"{conc} {size.name} PC1 at once ({how}) need {gib(pc1_total)} "
                f"({gib(need.min_memory)} + {gib(needs.PROCESS_OVERHEAD)} each, {needs.LOTUS}); the machine has "
                f"{gib(m.memory.total)}, {gib(max(avail, 0))} after the system's {gib(sys_mem)}{hp}: at most {fits} fit")
        return
    usable_total = sum(nm.usable for nm in m.nodes.values()) or m.memory.total
    for n in m.node_cpus:
        on_node = [p for p in cfg.processors.get("pc1", []) if p.numa_preferred == n]
        if not on_node:
            continue
        count = min(conc, sum(p.concurrent or 1 for p in on_node))
        node_need = count * per
        node_avail = m.nodes[n].usable - sys_mem * m.nodes[n].usable // max(usable_total, 1)
        if node_need > node_avail:
            r.warn(f"[[processors.pc1]] numa_preferred = {n}", f"{count} PC1 need "
                   f"{gib(node_need)}, node {n} has {gib(node_avail)} after its share of the system's: memory will come "
                   "from other nodes (slower)")
    # the peak: every stage busy at once, entries under one lock of 1 counted once
    groups: dict[str, int] = {}
    other = 0
    for p in entries:
        if p.stage == "pc1":
            continue
        mem = {"pc2": needs.pc2(size).memory, "c2": needs.c2(size).memory,
               "window_post": needs.window_post(size).memory}.get(p.stage, 0) + needs.PROCESS_OVERHEAD
        one = [lock for lock in p.locks if cfg.ext_locks.get(lock) == 1]
        if one:
            groups[one[0]] = max(groups.get(one[0], 0), mem * (p.concurrent or 1))
        else:
            other += mem * (p.concurrent or 1)
    peak = pc1_total + other + sum(groups.values())
    if peak > avail:
        r.warn("[processors]", f"at the peak (PC1 x{conc} with every pc2/c2 entry busy) the stages need {gib(peak)}, "
               f"{gib(avail)} is there after the system's {gib(sys_mem)}{hp}: a C2 may run out of memory")


# ------------------------------------------------------------------------------------ prover

def check_post(cfg, m: Machine) -> Report:
    r = Report("post")
    for w in cfg.warnings:
        r.warn("post.toml", w)
    for p in cfg.processors:
        check_entry(p, m, r)
    if cfg.concurrency > 1:
        check_overlaps(cfg.processors, {}, r)
    if m.gpus and cfg.processors:
        check_unused_gpus(cfg.processors, m, r)
    for i, a in enumerate(cfg.attached):
        if m.root.live or a.location.exists():
            if not a.location.is_dir():
                r.error(f"[[attached]][{i}].location", f"{a.location} ({a.name}) is not a directory: the prover "
                        "cannot read sealed sectors from it")
        else:
            r.notes.append(f"[[attached]][{i}].location: {a.location} is on the captured machine: not looked at")
    sizes = []
    for t in cfg.allowed_proof_types or []:
        try:
            sizes.append(post_proof(t).size)
        except ValueError:
            pass
    if not sizes:
        r.notes.append("no [prover].allowed_proof_types: the sector size is unknown, memory is not checked")
        return r
    size = max(sizes, key=lambda s: s.bytes)
    need = needs.window_post(size)
    total = cfg.concurrency * (need.min_memory + needs.PROCESS_OVERHEAD) + need.base_memory
    avail = m.memory.total - m.memory.hugepages_bytes - needs.system_memory(m.memory.total)
    if total > avail:
        r.error("[prover].concurrency", f"{cfg.concurrency} {size.name} WindowPoSt jobs at once need {gib(total)} "
                f"({needs.LOTUS}), {gib(max(avail, 0))} is there after the system's")
    return r


# ------------------------------------------------------------------------------------ entry points

ALL_CPUS = set(range(1 << 16))


def check_file(path, m: Machine) -> Report:
    """Read a worker.toml or post.toml (post when it has [prover]) allowing any CPU number, so
    that CPUs this machine lacks are findings rather than a refusal to read the file."""
    from ..config import load_toml
    raw = load_toml(path)
    if "prover" in raw:
        from ..post.config import parse_post_config
        return check_post(parse_post_config(raw, ALL_CPUS), m)
    from ..worker.config import parse_worker_config
    return check_worker(parse_worker_config(raw, ALL_CPUS), m)


def check_at_start(cfg) -> Report | None:
    """The worker's own check before it starts anything (WorkerService). None where the
    machine could not be read or DAMOCLES_SKIP_HW_CHECK=1."""
    if os.environ.get("DAMOCLES_SKIP_HW_CHECK") == "1":
        return None
    from .machine import discover
    return check_worker(cfg, discover(mount_space=False))    # statvfs only of the config's own paths
