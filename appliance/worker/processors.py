"""Processor pools: each `[[processors.<stage>]]` entry is a pool of `concurrent` processes that
the worker starts itself (spawned, non-daemonic, so a PC2 process may start helpers of its own).
Before taking work each process pins itself to `cgroup.cpuset` (sched_setaffinity), prefers
`numa_preferred` for its memory (set_mempolicy; a warning where the kernel or machine cannot),
applies `envs`, and asks the kernel to kill it when the worker dies (PR_SET_PDEATHSIG). A process
that dies fails its task as temp and is replaced. `multiprocessing.Pool` is not used: its
workers are daemonic and it hangs when one is killed."""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import queue
import resource
import signal
import threading
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass

from ..config.cpuset import format_cpuset
from ..proofs.pc2 import mp_context
from . import runtime_env
from .config import ProcessorConfig
from ..core.crash import crash_point
from .failure import Temp

log = logging.getLogger("damocles.worker.processors")
PR_SET_PDEATHSIG = 1
MPOL_PREFERRED = 1
START_ATTEMPTS = 3     # a process that dies before it is ready is started again this many times in all


class ProcessorStartError(ValueError):
    """A processor process keeps dying before it reports ready: the worker cannot run the stage."""


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def set_preferred_node(node: int) -> str | None:
    """set_mempolicy(MPOL_PREFERRED, {node}); returns a warning instead of failing."""
    libc = _libc()
    if libc is None or not hasattr(libc, "syscall"):
        return "set_mempolicy is not available here"
    nodes = sorted(int(d[4:]) for d in os.listdir("/sys/devices/system/node") if d.startswith("node") and d[4:].isdigit()) \
        if os.path.isdir("/sys/devices/system/node") else []
    if node not in nodes:
        return f"NUMA node {node} does not exist on this machine (nodes: {nodes or 'none'}); memory policy left as is"
    mask = ctypes.c_ulong(1 << node)
    nr = 238   # __NR_set_mempolicy on x86_64
    if os.uname().machine in ("aarch64", "arm64"):
        nr = 237
    if libc.syscall(nr, MPOL_PREFERRED, ctypes.byref(mask), ctypes.c_ulong(64)) != 0:
        return f"set_mempolicy(MPOL_PREFERRED, node {node}) failed: {os.strerror(ctypes.get_errno())}"
    return None


def _serve(conn, cpuset, numa, envs, name) -> None:
    """The body of a processor process: prepare, then run tasks until told to stop."""
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)   # die with the worker
    try:
        os.environ.update(envs)
        if cpuset:
            os.sched_setaffinity(0, cpuset)
        if numa is not None:
            warning = set_preferred_node(numa)
            if warning:
                print(f"processor {name}: {warning}", flush=True, file=__import__("sys").stderr)
    except Exception as exc:    # the worker names the reason instead of seeing a closed pipe
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    crash_point("processor.before_ready")
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args, env_changes = msg
        runtime_env.apply(env_changes, envs)       # the operator's WorkerSetEnv / WorkerRemoveEnv so far
        started, cpu = time.time(), _cpu_seconds()
        try:
            result = fn(*args)
            conn.send(("ok", result, started, time.time(), _cpu_seconds() - cpu))
        except BaseException as exc:   # the task's error goes back to the thread that asked
            conn.send(("err", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}", started, time.time(),
                       _cpu_seconds() - cpu))


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (PC2's helpers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class TaskRecord:
    stage: str
    pid: int
    start: float       # wall clock, seconds since the epoch
    end: float
    cpu: float | None  # CPU seconds, None where it cannot be known (external processors)


class TaskLog:
    """The last tasks the worker ran, every stage and pool: what `bench pipeline` measures."""

    def __init__(self, keep: int = 100_000):
        self.tasks: collections.deque[TaskRecord] = collections.deque(maxlen=keep)

    def add(self, record: TaskRecord) -> None:
        self.tasks.append(record)      # deque.append is atomic

    def of(self, stage: str) -> list[TaskRecord]:
        return [t for t in list(self.tasks) if t.stage == stage]


@dataclass
class _Proc:
    process: object
    conn: object
    pid: int


class _Spawner:
    """Every processor process is started from this one long-lived thread: the kernel sends
    PR_SET_PDEATHSIG when the *thread* that forked a child exits, so children started from a
    sealing thread would die with that thread rather than with the worker."""

    def __init__(self):
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, name="processor-spawner", daemon=True).start()

    def _loop(self) -> None:
        while True:
            fn, fut = self._q.get()
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def call(self, fn):
        fut: Future = Future()
        self._q.put((fn, fut))
        return fut.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        return _spawner


class ProcessorPool:
    def __init__(self, cfg: ProcessorConfig, name: str | None = None, tasklog: TaskLog | None = None):
        self.cfg = cfg
        self.tasklog = tasklog if tasklog is not None else TaskLog()
        self.name = name or f"{cfg.stage}-{cfg.index}"
        self.size = cfg.concurrent or 1
        self._ctx = mp_context()
        self._idle: list[_Proc] = []
        self._all: list[_Proc] = []
        self._cond = threading.Condition()
        self.busy_seconds = 0.0
        try:
            for _ in range(self.size):
                self._add(spawner().call(self._spawn))
        except BaseException:
            self.close()      # the processes already started do not outlive a pool that failed
            raise

    def _spawn(self) -> _Proc:
        """A ready process; one that dies before it is ready is started again, up to
        START_ATTEMPTS times, then the stage cannot run here and the error says why."""
        reasons = []
        for _ in range(START_ATTEMPTS):
            proc, reason = self._spawn_once()
            if proc is not None:
                return proc
            reasons.append(reason)
            log.warning("processor %s (stage %s) %s; starting it again", self.name, self.cfg.stage, reason)
        raise ProcessorStartError(f"processor {self.name} for stage {self.cfg.stage} did not start: "
                                  f"{START_ATTEMPTS} attempts failed ({'; '.join(reasons)})")

    def _spawn_once(self) -> tuple[_Proc | None, str]:
        parent, child = self._ctx.Pipe()
        p = self._ctx.Process(target=_serve, name=f"damocles-{self.name}",
                              args=(child, self.cfg.cpuset, self.cfg.numa_preferred, self.cfg.envs, self.name))
        p.daemon = False
        p.start()
        child.close()
        if not parent.poll(60):
            p.kill()
            p.join(timeout=5)
            parent.close()
            return None, "did not report ready within 60s"
        try:
            tag, detail = parent.recv()
        except (EOFError, OSError):
            p.join(timeout=5)
            parent.close()
            return None, f"exited before it was ready (exit code {p.exitcode})"
        if tag != "ready":
            p.join(timeout=5)
            parent.close()
            return None, f"failed before it was ready: {detail}"
        return _Proc(p, parent, detail), ""

    def _add(self, proc: _Proc) -> None:
        with self._cond:
            self._all.append(proc)
            self._idle.append(proc)
            self._cond.notify()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._all]

    def free(self) -> int:
        return len(self._idle)

    def run(self, fn, *args):
        with self._cond:
            while not self._idle:
                self._cond.wait()
            proc = self._idle.pop()
        try:
            proc.conn.send((fn, args, runtime_env.changes()))
            reply = proc.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._replace(proc)
            raise Temp(f"processor {self.name} (pid {proc.pid}) died while running {fn.__name__}") from None
        with self._cond:
            self._idle.append(proc)
            self._cond.notify()
        status, payload, started, ended, cpu = reply
        self.tasklog.add(TaskRecord(self.cfg.stage, proc.pid, started, ended, cpu))
        self.busy_seconds += ended - started
        if status == "err":
            raise Temp(f"processor {self.name}: {payload}")
        return payload

    def _replace(self, dead: _Proc) -> None:
        dead.process.join(timeout=5)
        log.warning("processor %s: pid %d died (exit %s); starting a new one", self.name, dead.pid, dead.process.exitcode)
        with self._cond:
            self._all.remove(dead)
        self._add(spawner().call(self._spawn))

    def close(self) -> None:
        for p in self._all:
            try:
                p.conn.send(None)
            except OSError:
                pass
        for p in self._all:
            p.process.join(timeout=5)
            if p.process.is_alive():
                p.process.kill()
                p.process.join(timeout=5)


class ExtLocks:
    """`[processors.ext_locks]`: named counters shared by every entry that lists the lock."""

    def __init__(self, locks: dict[str, int]):
        self._sem = {k: threading.BoundedSemaphore(v) for k, v in locks.items()}

    def acquire(self, names) -> None:
        for n in sorted(names):        # a fixed order: no deadlock between entries
            self._sem[n].acquire()

    def release(self, names) -> None:
        for n in sorted(names, reverse=True):
            self._sem[n].release()


class Processors:
    """All pools of a worker; `run(stage, fn, *args)` picks the entry with the most free
    processes and holds its ext_locks for the task."""

    def __init__(self, entries: dict[str, list[ProcessorConfig]], ext_locks: dict[str, int],
                 tasklog: TaskLog | None = None):
        from .external import ExternalProcessor
        self.tasklog = tasklog if tasklog is not None else TaskLog()
        self.locks = ExtLocks(ext_locks)
        self.pools: dict[str, list[ProcessorPool]] = {}
        self.externals: dict[str, list[ExternalProcessor]] = {}
        try:
            for stage, cfgs in entries.items():
                internal = [c for c in cfgs if not c.bin]
                if internal:
                    self.pools[stage] = [ProcessorPool(c, tasklog=self.tasklog) for c in internal]
                external = [c for c in cfgs if c.bin]
                if external:
                    self.externals[stage] = [ExternalProcessor(c) for c in external]
        except BaseException:
            self.close()
            raise

    def has(self, stage: str) -> bool:
        return stage in self.pools

    def external(self, stage: str) -> bool:
        return stage in self.externals

    def run(self, stage: str, fn, *args):
        pool = max(self.pools[stage], key=lambda p: p.free())
        self.locks.acquire(pool.cfg.locks)
        try:
            return pool.run(fn, *args)
        finally:
            self.locks.release(pool.cfg.locks)

    def run_task(self, stage: str, task: dict):
        """A task for an external processor of the stage (the one with the fewest tasks in flight)."""
        ext = min(self.externals[stage], key=lambda e: len(e._pending))
        self.locks.acquire(ext.cfg.locks)
        started = time.time()
        try:
            return ext.call(task)
        finally:
            self.locks.release(ext.cfg.locks)
            pid = ext.proc.pid if getattr(ext, "proc", None) else 0
            self.tasklog.add(TaskRecord(stage, pid, started, time.time(), None))

    def describe(self) -> list[dict]:
        """Every entry, for `damocles worker list`: how it runs and how it is pinned."""
        rows = []
        for pools in self.pools.values():
            for p in pools:
                pinning = f"sched_setaffinity {format_cpuset(p.cfg.cpuset)}" if p.cfg.cpuset else "not pinned"
                rows.append({"entry": p.cfg.where, "stage": p.cfg.stage, "kind": "builtin", "pids": p.pids,
                             "pinning": "sched_setaffinity" if p.cfg.cpuset else "none", "pinning_detail": pinning})
        for exts in self.externals.values():
            rows.extend(e.describe() for e in exts)
        return rows

    def close(self) -> None:
        for pools in self.pools.values():
            for p in pools:
                p.close()
        for exts in getattr(self, "externals", {}).values():
            for e in exts:
                e.close()
