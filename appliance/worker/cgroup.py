"""`cgroup.cpuset` of an external processor, applied as Damocles does it (vc-processors
src/sys/cgroup.rs): the child runs in its own control group `<group_name>/sub-<stage>-<worker
pid>-<index>` whose `cpuset.cpus` is the entry's cpuset. Here the worker makes the group and puts
the child in it before the child's program starts, so any processor binary is held to its CPUs,
not only one that reads Damocles' VC_CG_* variables.

Only a cgroup v2 hierarchy is used, and only where this process may write it (root, or a
delegated subtree): `DAMOCLES_CGROUP_ROOT` names the hierarchy's directory (default
/sys/fs/cgroup). Where that is not so, the child pins itself with sched_setaffinity, as the
builtin pools do, and the reason is kept for `damocles worker list`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config.cpuset import format_cpuset

log = logging.getLogger("damocles.worker.cgroup")
ROOT_ENV = "DAMOCLES_CGROUP_ROOT"
DEFAULT_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Placement:
    """How a child is held to its cpuset: `how` is "cgroup", "sched_setaffinity" or "none";
    `group` the cgroup directory (cgroup only); `note` why a cgroup was not used."""
    how: str
    cpuset: tuple[int, ...] | None = None
    group: Path | None = None
    note: str = ""

    @property
    def procs_file(self) -> Path | None:
        return self.group / "cgroup.procs" if self.group else None

    def text(self) -> str:
        if self.how == "cgroup":
            return f"cgroup {self.group} (cpuset.cpus {format_cpuset(self.cpuset)})"
        if self.how == "sched_setaffinity":
            return f"sched_setaffinity {format_cpuset(self.cpuset)}" + (f" ({self.note})" if self.note else "")
        return "not pinned"

    def fallback(self, note: str) -> "Placement":
        return Placement("sched_setaffinity", self.cpuset, None, note)


def cgroup_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _enable_cpuset(group: Path) -> None:
    """cpuset for the children of `group` (its cgroup.subtree_control), unless already on."""
    control = group / "cgroup.subtree_control"
    current = control.read_text() if control.exists() else ""     # a cgroupfs has it in every group
    if "cpuset" not in current.replace("+", " ").split():
        control.write_text("+cpuset")


def place(group_name: str, stage: str, index: int, cpuset: tuple[int, ...] | None) -> Placement:
    """The cgroup for a child of entry `stage`/`index`, made and given its cpuset, or the
    sched_setaffinity fallback with the reason."""
    if not cpuset:
        return Placement("none")
    pinned = Placement("sched_setaffinity", tuple(cpuset))
    root = cgroup_root()
    controllers = root / "cgroup.controllers"
    if not controllers.is_file():
        return pinned.fallback(f"no cgroup v2 hierarchy at {root}")
    try:
        if "cpuset" not in controllers.read_text().split():
            return pinned.fallback(f"the cpuset controller is not available in {root}")
        group = root / group_name
        leaf = group / f"sub-{stage}-{os.getpid()}-{index}"
        _enable_cpuset(root)
        group.mkdir(exist_ok=True)
        _enable_cpuset(group)
        leaf.mkdir(exist_ok=True)
        (leaf / "cpuset.cpus").write_text(format_cpuset(cpuset))
    except OSError as exc:
        return pinned.fallback(f"cgroup v2 at {root} is not delegated to this user: {exc.strerror or exc}")
    return Placement("cgroup", tuple(cpuset), leaf)


def joiner(placement: Placement):
    """What the child calls before its program starts: into the cgroup, else pinned by affinity
    (a cgroup that refuses the child must not leave it unpinned). Everything is prepared here, in
    the parent: the child runs between fork and exec and only makes raw system calls."""
    procs = os.fsencode(placement.procs_file) if placement.how == "cgroup" else None
    cpuset = placement.cpuset

    def join() -> None:
        if procs is not None:
            try:
                fd = os.open(procs, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)     # as open(procs, "w")
                try:
                    os.write(fd, b"%d" % os.getpid())
                finally:
                    os.close(fd)
                return
            except OSError:
                pass
        if cpuset:
            os.sched_setaffinity(0, cpuset)
    return join


def check(placement: Placement, pid: int) -> Placement:
    """After the start: the child is in its cgroup's cgroup.procs, else it pinned itself by
    affinity (join's fallback), which is what `worker list` then shows."""
    if placement.how != "cgroup":
        return placement
    try:
        members = placement.procs_file.read_text().split()
    except OSError as exc:
        members, why = [], str(exc)
    else:
        why = "the child is not in its cgroup.procs"
    if str(pid) in members:
        return placement
    log.warning("processor pid %d: could not join cgroup %s (%s); pinned by sched_setaffinity", pid, placement.group, why)
    return placement.fallback(f"could not join cgroup {placement.group}: {why}")


def remove(placement: Placement) -> None:
    """The child's cgroup once the child is gone (a real cgroup directory is removed empty)."""
    if placement.how == "cgroup" and placement.group is not None:
        try:
            placement.group.rmdir()
        except OSError:
            pass   # still holds a process (it is removed with the next start), or not a cgroupfs
