"""The worker's metrics (names and meanings in docs/observability.md). As Damocles' worker
exporter, each series carries `worker_name`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from ..worker.processors import TaskLog, TaskRecord
from . import RPC_BUCKETS, STAGE_BUCKETS


class MeteredTaskLog(TaskLog):
    """The worker's task log, observing each task's wall and CPU time as it is added."""

    def __init__(self, metrics: "WorkerMetrics", keep: int = 100_000):
        super().__init__(keep)
        self._m = metrics

    def add(self, record: TaskRecord) -> None:
        super().add(record)
        self._m.task_seconds.labels(self._m.name, record.stage).observe(max(0.0, record.end - record.start))
        if record.cpu is not None:
            self._m.task_cpu.labels(self._m.name, record.stage).inc(max(0.0, record.cpu))


class WorkerMetrics:
    def __init__(self, name: str):
        self.name = name
        self.service = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        w = ["worker_name"]
        self.task_seconds = Histogram("damocles_worker_task_duration_seconds", "Wall seconds of a stage task "
                                      "(pc1, pc2, c2, ...), in its processor pool or in the sealing thread",
                                      w + ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.task_cpu = Counter("damocles_worker_task_cpu_seconds", "CPU seconds stage tasks used (builtin processors)",
                                w + ["stage"], registry=r)
        self.calls = Counter("damocles_worker_rpc_calls", "Calls to the manager's RPC, per method and result",
                             w + ["method", "result"], registry=r)
        self.call_seconds = Histogram("damocles_worker_rpc_call_duration_seconds", "Seconds a call to the manager took",
                                      w + ["method"], buckets=RPC_BUCKETS, registry=r)
        self.rpc_requests = Counter("damocles_rpc_requests", "Requests the worker's own RPC answered", w + ["method", "result"],
                                    registry=r)
        self.rpc_seconds = Histogram("damocles_rpc_request_duration_seconds", "Seconds a method of the worker's RPC took",
                                     w + ["method"], buckets=RPC_BUCKETS, registry=r)
        self.tasklog = MeteredTaskLog(self)
        r.register(_Collector(self))

    def on_call(self, method: str, seconds: float, ok: bool) -> None:
        self.calls.labels(self.name, method, "ok" if ok else "error").inc()
        self.call_seconds.labels(self.name, method).observe(seconds)

    def on_rpc(self, method: str, seconds: float, ok: bool) -> None:
        self.rpc_requests.labels(self.name, method, "ok" if ok else "error").inc()
        self.rpc_seconds.labels(self.name, method).observe(seconds)


class _Collector:
    """Threads, sectors and processor pools, read when Prometheus scrapes."""

    def __init__(self, metrics: WorkerMetrics):
        self.m = metrics

    def describe(self):
        return []

    def collect(self):
        name = self.m.name
        yield InfoMetricFamily("damocles_worker", "The worker's version", value={"worker_name": name, "version": __version__})
        svc = self.m.service
        if svc is None:
            return
        threads = GaugeMetricFamily("damocles_worker_threads", "Sealing threads per plan and state (Idle, Running, "
                                    "Waiting, Paused)", labels=["worker_name", "plan", "state"])
        sectors = GaugeMetricFamily("damocles_worker_sectors", "Sectors on this worker's threads, per plan and state",
                                    labels=["worker_name", "plan", "state"])
        errors = CounterMetricFamily("damocles_worker_errors", "Step failures since the worker started, per level",
                                     labels=["worker_name", "level"])
        counts: dict[tuple, int] = {}
        held: dict[tuple, int] = {}
        levels: dict[str, int] = {"temp": 0, "perm": 0, "crit": 0, "abort": 0}
        for t in svc.threads:
            s = t.summary()
            key = (s.get("plan", "sealer"), (s.get("thread_state") or {}).get("state", "Idle"))
            counts[key] = counts.get(key, 0) + 1
            if s.get("job_id"):
                k = (key[0], s.get("job_state") or "")
                held[k] = held.get(k, 0) + 1
            for level, n in getattr(t, "errors", {}).items():
                levels[level] = levels.get(level, 0) + n
        for (plan, state), n in sorted(counts.items()):
            threads.add_metric([name, plan, state], n)
        for (plan, state), n in sorted(held.items()):
            sectors.add_metric([name, plan, state], n)
        for level, n in sorted(levels.items()):
            errors.add_metric([name, level], n)
        yield threads
        yield sectors
        yield errors

        busy = GaugeMetricFamily("damocles_worker_stage_busy", "Tasks of a stage running now (a pool's busy processes)",
                                 labels=["worker_name", "stage"])
        queued = GaugeMetricFamily("damocles_worker_stage_queued", "Tasks of a stage waiting for a process, a limit or a lock",
                                   labels=["worker_name", "stage"])
        size = GaugeMetricFamily("damocles_worker_pool_processes", "Processes of a stage's pools ([[processors.<stage>]])",
                                 labels=["worker_name", "stage"])
        pools = svc.processors.pools if svc.processors is not None else {}
        entered, running = svc.limits.snapshot()
        for stage in sorted(set(entered) | set(pools)):
            if stage in pools:
                b = sum(p.size - p.free() for p in pools[stage])
                size.add_metric([name, stage], sum(p.size for p in pools[stage]))
            else:
                b = running.get(stage, 0)
            busy.add_metric([name, stage], b)
            queued.add_metric([name, stage], max(0, entered.get(stage, 0) - b))
        yield busy
        yield queued
        yield size
