"""The worker process: checks its config against the machine and the manager, locks its
locations, runs one sealing thread per `[[sealing_thread]]`, pings the manager with a summary,
and stops on SIGTERM (a step in flight is redone from its start at the next run)."""

from __future__ import annotations

import logging
import threading
import time
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..rpc import RPCError
from ..rpc.client import RPCClient, TransportError
from .config import AttachedStore, SealingConfig, ThreadConfig, WorkerConfig
from .control import RefusedThread
from .journal import JournalError, LocationLock
from .processors import Processors, TaskLog, TaskRecord
from .thread import SealingThread
from .rebuild import RebuildThread
from .snapup import SnapUpThread
from .unseal import UnsealThread
from .wdpost import WdPostThread

log = logging.getLogger("damocles.worker")


class StageLimits:
    """`[processors.limitation.concurrent]` and `.staggered`: at most N tasks of a stage at once,
    and starts of a stage at least S seconds apart."""

    def __init__(self, concurrent: dict[str, int], staggered: dict[str, float]):
        self._sem = {k: threading.BoundedSemaphore(v) for k, v in concurrent.items()}
        self._staggered = staggered
        self._last_start: dict[str, float] = {}
        self._lock = threading.Lock()
        self._entered: dict[str, int] = {}    # tasks of a stage asked for (waiting or running): the metrics
        self._running: dict[str, int] = {}    # past the limits
        self._count = threading.Lock()

    def _add(self, counts: dict[str, int], stage: str, n: int) -> None:
        with self._count:
            counts[stage] = counts.get(stage, 0) + n

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._count:
            return dict(self._entered), dict(self._running)

    def _stagger(self, stage: str) -> None:
        """Take the stage's next start slot under the lock, then wait for it without the lock:
        one stage's stagger never delays another stage, and starts of a stage stay `gap` apart."""
        gap = self._staggered.get(stage)
        if not gap:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._last_start.get(stage, now - gap) + gap)
            self._last_start[stage] = slot
        if slot > now:
            time.sleep(slot - now)

    def run(self, stage: str, fn, *args):
        self._add(self._entered, stage, 1)
        sem = self._sem.get(stage)
        try:
            if sem:
                sem.acquire()
            try:
                self._stagger(stage)
                self._add(self._running, stage, 1)
                try:
                    return fn(*args)
                finally:
                    self._add(self._running, stage, -1)
            finally:
                if sem:
                    sem.release()
        finally:
            self._add(self._entered, stage, -1)


@dataclass
class ThreadContext:
    rpc: RPCClient
    sealing: SealingConfig
    location: Path
    attached: list[AttachedStore]
    parent_cache: Path | None
    worker_name: str
    limits: StageLimits
    processors: Processors | None = None
    pc2_procs: int = 1
    tasklog: TaskLog = field(default_factory=TaskLog)
    local_pieces_dirs: list[Path] = field(default_factory=list)
    unseal_output_dirs: list[Path] = field(default_factory=list)     # where file:// unseal destinations may be

    def external(self, stage: str) -> bool:
        return self.processors is not None and self.processors.external(stage)

    def run_task(self, stage: str, task: dict):
        """A task in Damocles' shape for the stage's external processor, under the stage's limits."""
        return self.limits.run(stage, self.processors.run_task, stage, task)

    def run_stage(self, stage: str, fn, *args):
        """Run a stage's work under the stage's limits: in its processor pool when
        `[[processors.<stage>]]` has entries, otherwise in this thread (as Damocles does)."""
        if self.processors is not None and self.processors.has(stage):
            return self.limits.run(stage, self.processors.run, stage, fn, *args)
        return self.limits.run(stage, self._inline, stage, fn, *args)

    def _inline(self, stage: str, fn, *args):
        # CPU of this thread only: helpers a step starts itself are not counted
        started, cpu = time.time(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.tasklog.add(TaskRecord(stage, os.getpid(), started, time.time(), time.thread_time() - cpu))


class WorkerService:
    def __init__(self, config: WorkerConfig, parent_cache: Path | None = None):
        self.config = config
        for w in config.warnings:
            log.warning(w)
        if not config.threads:
            raise ValueError("worker.toml has no [[sealing_thread]]")
        if not config.attached:
            raise ValueError("worker.toml has no [[attached]] persist store")
        self._check_machine(config)
        self.rpc = RPCClient(config.manager_urls, config.manager_token)
        from ..metrics.worker import WorkerMetrics
        self.metrics = WorkerMetrics(config.name)
        self.rpc.observer = self.metrics.on_call
        self.exporter = None
        for a in config.attached:
            if not a.location.is_dir():
                raise ValueError(f"[[attached]] {a.name}: {a.location} is not a directory")
            try:
                if self.rpc.call("Venus.StoreBasicInfo", a.name) is None:
                    raise ValueError(f"[[attached]] {a.name}: the manager has no persist store of that name")
            except TransportError as exc:
                raise ValueError(f"cannot reach the manager at {config.manager_url}: {exc}") from None
            except RPCError as exc:
                raise ValueError(f"the manager refused StoreBasicInfo: {exc.message}") from None
        self.locks: list[LocationLock] = []
        try:
            for t in config.threads:
                if t.location is not None:
                    self.locks.append(LocationLock(t.location))
        except JournalError as exc:
            self.release()
            raise ValueError(str(exc)) from None
        self.limits = StageLimits(config.concurrent, config.staggered)
        self.tasklog = self.metrics.tasklog      # a TaskLog that also feeds the stage-duration histograms
        try:
            self.processors = Processors(config.processors, config.ext_locks, self.tasklog)
        except Exception:
            self.release()
            raise
        # a PC2 task hashes with as many processes as its entry's cpuset has CPUs
        pc2 = config.processors.get("pc2", [])
        pc2_procs = max((len(p.cpuset) if p.cpuset else 1) for p in pc2) if pc2 else 1
        self.parent_cache, self.pc2_procs = parent_cache, pc2_procs
        self.threads = [self._make_thread(i, t) for i, t in enumerate(config.threads)]
        self._stop = threading.Event()
        self._runners: list[threading.Thread] = []

    def _make_thread(self, i: int, t):
        """The thread for a `[[sealing_thread]]` (or for the plan a hot config switched it to)."""
        config = self.config
        if t.refused:
            return RefusedThread(i, t)
        if t.plan == "wdpost":
            return WdPostThread(i, config.name, config.manager_urls, config.manager_token, config.attached,
                                t.sealing, self.processors.pools.get("window_post"), self.rpc,
                                self.processors.externals.get("window_post"))
        cls = {"unseal": UnsealThread, "rebuild": RebuildThread, "snapup": SnapUpThread}.get(t.plan, SealingThread)
        ctx = ThreadContext(self.rpc, t.sealing, t.location, config.attached, self.parent_cache, config.name, self.limits,
                            self.processors, self.pc2_procs, self.tasklog, config.local_pieces_dirs,
                            config.unseal_output_dirs)
        return cls(i, ctx, t)

    def _run_thread(self, i: int) -> None:
        """Run sealing thread i; when it hands its location to another plan (a hot config's
        `plan`, taken between sectors), go on with that plan's thread in its place."""
        while True:
            t = self.threads[i]
            t.run(self._stop)
            plan = getattr(t, "switch_to", None)
            if plan is None or self._stop.is_set():
                return
            try:
                nxt = self._make_thread(i, ThreadConfig(t.location, plan, t.ctx.sealing))
            except Exception as exc:  # noqa: BLE001 - the thread stops and says why; the others go on
                t.status, t.last_error = "Paused", f"crit: cannot switch to plan {plan}: {exc}"
                log.error("thread %d: %s", i, t.last_error)
                return
            nxt.adopt(t)
            self.threads[i] = nxt

    @staticmethod
    def _check_machine(config: WorkerConfig) -> None:
        """`damocles worker check` before anything starts: errors stop the worker, warnings are
        logged (DAMOCLES_SKIP_HW_CHECK=1 skips it)."""
        from ..hw.check import check_at_start
        try:
            report = check_at_start(config)
        except Exception as exc:       # noqa: BLE001 - reading the machine must not stop a worker that would run
            log.warning("machine check skipped: the machine could not be read: %s", exc)
            return
        if report is None:
            return
        for f in report.warnings:
            if f.where != "worker.toml":      # the config's own warnings are logged above
                log.warning("machine check: %s", f)
        if report.errors:
            raise ValueError("worker.toml does not fit this machine (`damocles worker check -c <file>` shows the same):\n"
                             + "\n".join(f"  {f}" for f in report.errors))

    def start(self) -> None:
        from .rpc import build_server, reachable_host
        from ..metrics import exposition, route as route_metrics, serve_exporter
        self.server = build_server(self)
        self.metrics.service = self
        self.server.observer = self.metrics.on_rpc
        route_metrics(self.server, lambda: exposition(self.metrics.registry))          # /metrics on the RPC port (read token)
        if self.config.metrics_enable:                             # [metrics]: Damocles' exporter, no token
            self.exporter = serve_exporter(self.config.metrics_listen, self.metrics.registry)
            log.info("metrics on http://%s:%d/metrics", *self.exporter.server_address[:2])
        host, port = self.server.serve(self.config.rpc_host, self.config.rpc_port)
        self.dest = f"{reachable_host(host, self.config.manager_url)}:{port}"
        for t in self.threads:
            r = threading.Thread(target=self._run_thread, args=(t.index,), name=f"sealing-{t.index}", daemon=True)
            r.start()
            self._runners.append(r)
        p = threading.Thread(target=self._ping_loop, name="ping", daemon=True)
        p.start()

    def _ping_loop(self) -> None:
        while not self._stop.is_set():
            states = [t.status for t in self.threads]
            summary = {"Threads": len(states), "Empty": sum(1 for t in self.threads if t.rec.state == "Empty"),
                       "Paused": states.count("Paused"), "Running": states.count("Running"),
                       "Waiting": states.count("Waiting"), "Errors": sum(1 for t in self.threads if t.last_error)}
            try:
                self.rpc.call("Venus.WorkerPing", {"Name": self.config.name, "Dest": self.dest,
                                                   "Version": __version__, "Summary": summary})
            except (TransportError, RPCError) as exc:
                log.warning("WorkerPing failed: %s", exc)
            self._stop.wait(self.config.ping_interval)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking steps; a step in flight is abandoned after `timeout` (its transition is
        not journaled, so the next run redoes it)."""
        self._stop.set()
        if getattr(self, "server", None):
            self.server.shutdown()
        if getattr(self, "exporter", None):
            self.exporter.shutdown()
            self.exporter.server_close()
        deadline = time.monotonic() + timeout
        for r in self._runners:
            r.join(timeout=max(0.0, deadline - time.monotonic()))
        self.release()

    def release(self) -> None:
        if getattr(self, "processors", None) is not None:
            self.processors.close()
            self.processors = None
        for lock in self.locks:
            lock.release()
        self.locks = []

