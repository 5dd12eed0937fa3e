"""Processor entries (`[[processors.<stage>]]`), shared by the worker and the dedicated prover:
a pool of builtin processes pinned to a CPU set and NUMA node, or an external `bin` speaking the
vc-processors protocol; and the persist stores a role attaches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import ConfigError
from .cpuset import ANY_CPU, parse_cpuset
from .humantime import parse_humantime
from .validate import positive_int, table, warn_unknown


@dataclass(frozen=True)
class AttachedStore:
    name: str
    location: Path
    readonly: bool = False


@dataclass(frozen=True)
class ProcessorConfig:
    stage: str
    index: int
    bin: str | None = None
    args: tuple[str, ...] | None = None
    stable_wait: float = 5.0
    cpuset: tuple[int, ...] | None = None
    cpuset_text: str | None = None
    group_name: str = "vc-worker"
    envs: dict = field(default_factory=dict)
    numa_preferred: int | None = None
    concurrent: int | None = None
    locks: tuple[str, ...] = ()
    auto_restart: bool = True
    inherit_envs: bool = True
    timeout: float = 0.0        # external processors: seconds a task may take (0: no limit); our addition


def parse_processor(stage: str, index: int, e: dict, ext_locks: dict[str, int], warnings: list[str],
                    available_cpus: set[int] | None) -> ProcessorConfig:
    """One `[[processors.<stage>]]` entry (the worker's pools and the prover's window_post pools)."""
    where = f"[[processors.{stage}]][{index}]"
    e = table(e, where)
    warn_unknown(e, {"bin", "args", "stable_wait", "cgroup", "envs", "numa_preferred", "concurrent", "locks", "auto_restart",
               "inherit_envs", "timeout"}, where, warnings)
    cg = table(e.get("cgroup", {}), f"{where}.cgroup")
    # CPUs this machine lacks are checked against the given set only; without one they are a
    # finding of `damocles worker check` (and of the check at start), not a reason to refuse the file
    available = available_cpus if available_cpus is not None else ANY_CPU
    cpuset = parse_cpuset(cg["cpuset"], f"{where}.cgroup.cpuset", available) if "cpuset" in cg else None
    locks = tuple(e.get("locks", []))
    for lock in locks:
        if lock not in ext_locks:
            raise ConfigError(f"{where}.locks: {lock!r} is not declared in [processors.ext_locks]")
    envs = e.get("envs", {})
    if not isinstance(envs, dict) or not all(isinstance(v, str) for v in envs.values()):
        raise ConfigError(f"{where}.envs: expected a table of strings")
    numa = e.get("numa_preferred")
    if numa is not None and (isinstance(numa, bool) or not isinstance(numa, int) or numa < 0):
        raise ConfigError(f"{where}.numa_preferred: {numa!r} is not a NUMA node number")
    concurrent = e.get("concurrent")
    if concurrent is not None:
        try:
            concurrent = positive_int(concurrent)
        except ValueError as exc:
            raise ConfigError(f"{where}.concurrent: {exc}") from None
    durations = {}
    for key, default in (("stable_wait", "5s"), ("timeout", 0)):
        try:
            durations[key] = parse_humantime(e.get(key, default))
        except ValueError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    stable_wait, timeout = durations["stable_wait"], durations["timeout"]
    args = e.get("args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        raise ConfigError(f"{where}.args: expected a list of strings")
    return ProcessorConfig(stage, index, e.get("bin"), tuple(args) if args is not None else None, stable_wait, cpuset,
                           cg.get("cpuset"), cg.get("group_name", "vc-worker"), dict(envs), numa, concurrent, locks,
                           bool(e.get("auto_restart", True)), bool(e.get("inherit_envs", True)), timeout)
