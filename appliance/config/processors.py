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
    # external processors, our additions: seconds a task may take (None: the stage's default,
    # DEFAULT_TIMEOUTS; 0: no limit), and where malformed answers are dumped (None: the default)
    timeout: float | None = None
    dump_dir: Path | None = None

    @property
    def task_timeout(self) -> float | None:
        """Seconds to wait for one answer; None waits forever (an explicit `timeout = 0`)."""
        limit = default_timeout(self.stage) if self.timeout is None else self.timeout
        return limit or None

    @property
    def where(self) -> str:
        return f"[[processors.{self.stage}]][{self.index}]"


# The default `timeout` of an external processor's task, per stage, sized for the largest
# sector (64GiB) on a slow host, so that only a processor that dropped or hung on a task hits
# it: a Rust processor that cannot parse a task logs it and never answers, and without a limit
# the sealing thread would wait forever. `timeout = 0` in an entry still means no limit.
DEFAULT_TIMEOUTS = {
    "add_pieces": 4 * 3600,      # 64GiB of pieces read from remote storage at ~30 MB/s: ~40 min
    "tree_d": 4 * 3600,          # sha256 tree over 64GiB: tens of minutes on one core
    "pc1": 48 * 3600,            # 11 SDR layers of 64GiB: 6-10 h on a fast CPU, 20+ h on a slow one
    "pc2": 24 * 3600,            # tree_c + tree_r_last of 64GiB: ~30 min on a GPU, many hours on CPUs
    "c2": 12 * 3600,             # the Groth16 SNARK, 10 partitions: tens of minutes on a GPU, hours on CPUs
    "synth_proof": 12 * 3600,    # as C2's vanilla side
    "snap_encode": 24 * 3600,    # re-encoding + tree_r_last of 64GiB: as PC2
    "snap_prove": 12 * 3600,     # 16 partition SNARKs: as C2
    "transfer": 12 * 3600,       # ~75 GiB (sealed + cache) over a slow link
    "unseal": 48 * 3600,         # regenerates the SDR layers: as PC1
    "window_post": 2 * 3600,     # a deadline's challenge window is 30 min; 2 h covers a slow CPU prover
    "winning_post": 30 * 60,     # due within an epoch (30 s); a prover silent for 30 min is broken
}


def default_timeout(stage: str) -> float:
    return float(DEFAULT_TIMEOUTS.get(stage, 12 * 3600))


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
    for key, default in (("stable_wait", "5s"), ("timeout", None)):
        try:
            durations[key] = None if e.get(key, default) is None else parse_humantime(e.get(key, default))
        except ValueError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    stable_wait, timeout = durations["stable_wait"], durations["timeout"]
    if stable_wait <= 0:
        raise ConfigError(f"{where}.stable_wait: {e['stable_wait']!r}: the child needs some time to print its ready line")
    args = e.get("args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        raise ConfigError(f"{where}.args: expected a list of strings")
    return ProcessorConfig(stage, index, e.get("bin"), tuple(args) if args is not None else None, stable_wait, cpuset,
                           cg.get("cpuset"), cg.get("group_name", "vc-worker"), dict(envs), numa, concurrent, locks,
                           bool(e.get("auto_restart", True)), bool(e.get("inherit_envs", True)), timeout)
