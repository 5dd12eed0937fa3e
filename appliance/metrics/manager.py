"""The manager's metrics (names and meanings in docs/observability.md)."""

from __future__ import annotations

import shutil
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from ..manager.identity import KINDS as LIMITED_KINDS
from . import RPC_BUCKETS, STAGE_BUCKETS


class ManagerMetrics:
    def __init__(self, service, views):
        self.service, self.views = service, views
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.transitions = Counter("damocles_sector_transitions", "Sector state transitions reported by workers",
                                   ["from_state", "to_state"], registry=r)
        self.state_seconds = Histogram("damocles_sector_state_duration_seconds",
                                       "Seconds a sector spent in a state before its next transition", ["state"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.errors = Counter("damocles_sector_errors", "Failures workers reported, per level (temp, perm, crit, abort)",
                              ["level"], registry=r)
        self.rpc_requests = Counter("damocles_rpc_requests", "JSON-RPC requests answered, per method and result",
                                    ["method", "result"], registry=r)
        self.rpc_seconds = Histogram("damocles_rpc_request_duration_seconds", "Seconds a JSON-RPC method took",
                                     ["method"], buckets=RPC_BUCKETS, registry=r)
        r.register(_Collector(self))
        self._head: tuple[int, float] | None = None     # (head, when first seen): the head's age
        self._lock = threading.Lock()
        self._proving_text: tuple[int, bytes] | None = None   # (chain views generation, its series rendered)

    def exposition(self) -> bytes:
        """A scrape: the registry's series, then the per-deadline proving series. Those come from
        the chain views, which the background refresher recomputes now and then (web/chain_views.py);
        they are rendered once per new result, not per scrape: at a farm's scale they are thousands
        of samples (10 miners x 48 deadlines x 8 series) and rendering costs microseconds a sample."""
        return generate_latest(self.registry) + self._proving_series()

    def _proving_series(self) -> bytes:
        views = self.views.chain_views
        with self._lock:
            generation = views.generation       # read before the views: a newer result than it only renders again
            if self._proving_text is None or self._proving_text[0] != generation:
                self._proving_text = (generation, generate_latest(_Families(proving_families(self.views.proving()))))
            return self._proving_text[1]

    def on_report(self, prev: str, nxt: str, seconds: float | None, failure_level: str | None) -> None:
        if failure_level:
            self.errors.labels(failure_level).inc()
        if seconds is not None:
            self.transitions.labels(prev, nxt).inc()
            self.state_seconds.labels(prev).observe(seconds)

    def on_rpc(self, method: str, seconds: float, ok: bool) -> None:
        self.rpc_requests.labels(method, "ok" if ok else "error").inc()
        self.rpc_seconds.labels(method).observe(seconds)


class _Collector:
    """Reads the manager's state at scrape time."""

    def __init__(self, metrics: ManagerMetrics):
        self.m = metrics

    def describe(self):
        return []

    def collect(self):
        s = self.m.service
        with s.state.read():       # the manager's gauges from one snapshot, collected before they are yielded
            families = list(self._families(s))
        yield from families
        yield from _chain_views(self.m.views.proving())

    def _families(self, s):
        query = s.state.query
        yield InfoMetricFamily("damocles_manager", "The manager's version", value={"version": __version__})

        g = GaugeMetricFamily("damocles_sectors", "Sectors the manager knows, per state and plan", labels=["state", "plan"])
        for (state, plan), n in sorted(s.state.sector_counts().items()):     # kept by triggers: a few rows
            g.add_metric([state, plan], n)
        yield g
        g = GaugeMetricFamily("damocles_sectors_failing", "Sectors in flight whose last report was a failure, per level",
                              labels=["level"])
        for level, n in query("SELECT failure_level, COUNT(*) FROM sectors WHERE is_open = 1 AND failure_level IS NOT NULL "
                              "GROUP BY failure_level"):       # as the status page counts them (sectors_failing)
            g.add_metric([level], n)
        yield g
        # the first entry of the (is_open, allocated_at) index; a record without the time (none the
        # manager writes lacks it) counts from its last update. `+updated` keeps the planner off the
        # (is_open, updated) index, which would read every open record for its allocated_at.
        starts = [r[0] for r in query("SELECT MIN(allocated_at) FROM sectors WHERE is_open = 1 AND allocated_at IS NOT NULL "
                                      "UNION ALL SELECT MIN(+updated) FROM sectors WHERE is_open = 1 AND allocated_at IS NULL")
                  if r[0] is not None]
        oldest = min(starts, default=None)
        yield GaugeMetricFamily("damocles_sector_oldest_in_flight_seconds", "Age of the oldest sector not finalized",
                                value=time.time() - oldest if oldest else 0)

        now = time.time()
        # one series a worker: its liveness. Its threads are summed over the farm here (a farm's
        # hundreds of workers x 5 states made this scrape's largest part); each worker's own
        # /metrics has them per plan and state, the status page per worker.
        age = GaugeMetricFamily("damocles_worker_last_ping_seconds", "Seconds since the worker's last ping", labels=["worker"])
        totals: dict[str, int] = {}
        for name, info, last in s.state.workers():
            age.add_metric([name], now - last)
            for k, v in (info.get("Summary") or {}).items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
        yield age
        threads = GaugeMetricFamily("damocles_farm_threads", "Sealing threads of all workers (state Threads), and of "
                                    "them Running, Waiting, Paused, Empty, with Errors, as their last pings said",
                                    labels=["state"])
        for k, v in sorted(totals.items()):
            threads.add_metric([k], v)
        yield threads

        limited = CounterMetricFamily("damocles_manager_limited", "What a bound refused, cut or expired, per kind: "
                                      + ", ".join(LIMITED_KINDS) + " (docs/observability.md)", labels=["kind"])
        counts = s.sealer.limits.snapshot()
        for kind in LIMITED_KINDS:
            limited.add_metric([kind], counts.get(kind, 0))
        yield limited
        yield GaugeMetricFamily("damocles_piece_store_used_bytes", "Bytes of pieces in the piece stores",
                                value=s.sealer.market.stored_bytes())
        yield GaugeMetricFamily("damocles_piece_store_quota_bytes", "[Market] PieceStoreQuota", value=s.config.piece_store_quota)

        free = GaugeMetricFamily("damocles_persist_store_free_bytes", "Free bytes of a persist store", labels=["store"])
        total = GaugeMetricFamily("damocles_persist_store_total_bytes", "Size of a persist store's file system", labels=["store"])
        reserved = GaugeMetricFamily("damocles_persist_store_reserved_bytes", "Bytes reserved for sectors being persisted",
                                     labels=["store"])
        for st in s.config.persist_stores:
            try:
                du = shutil.disk_usage(st.path)
            except OSError:
                continue
            free.add_metric([st.name], du.free)
            total.add_metric([st.name], du.total)
            reserved.add_metric([st.name], s.state.reserved(st.name))
        yield free
        yield total
        yield reserved

        head = self.m.views.chain_views.recent_head()       # read by its loop every half second
        if head is None:
            head = s.chain.head()
        if self.m._head is None or self.m._head[0] != head:
            self.m._head = (head, now)
        head_age = now - self.m._head[1]
        block = getattr(getattr(s.chain, "policy", None), "block_time", 0) or 0
        yield GaugeMetricFamily("damocles_chain_head_epoch", "The chain's head epoch", value=head)
        yield GaugeMetricFamily("damocles_chain_head_age_seconds", "Seconds since the head last moved (as the manager saw it)",
                                value=head_age)
        yield GaugeMetricFamily("damocles_chain_lag_epochs", "Epochs the head is behind the wall clock "
                                "(head age over block time; 0 when the clock is stopped)",
                                value=int(head_age // block) if block > 0 else 0)

        g = GaugeMetricFamily("damocles_wdpost_jobs", "WindowPoSt jobs for provers, per state", labels=["state"])
        for state, n in query("SELECT state, COUNT(*) FROM wdpost_jobs GROUP BY state"):
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily("damocles_tasks", "Unseal and rebuild tasks, per state", labels=["kind", "state"])
        for kind in ("unseal", "rebuild"):
            for state, n in query(f"SELECT state, COUNT(*) FROM {kind}_tasks GROUP BY state"):
                g.add_metric([kind, state], n)
        yield g


class _Families:
    """Metric families rendered apart from the registry (generate_latest takes what has collect())."""

    def __init__(self, families):
        self.families = list(families)

    def collect(self):
        return self.families


def proving_families(proving: dict):
    """Per miner and deadline: partitions, sectors per status, rounds proven and missed, faults
    declared and recovered, blocks; from the chain views the status page shows (WebViews.proving)."""
    lab = ["miner", "deadline"]
    partitions = GaugeMetricFamily("damocles_wdpost_partitions", "Partitions of a deadline", labels=lab)
    sectors = GaugeMetricFamily("damocles_wdpost_sectors", "Sectors of a deadline, per status (live, faulty, recovering)",
                                labels=lab + ["status"])
    proven_now = GaugeMetricFamily("damocles_wdpost_partitions_proven_current", "Partitions of a deadline proven "
                                   "in the current proving period", labels=lab)
    proven = CounterMetricFamily("damocles_wdpost_partitions_proven", "Partitions proven in closed deadlines", labels=lab)
    missed = CounterMetricFamily("damocles_wdpost_partitions_missed", "Partitions not proven by their deadline's close",
                                 labels=lab)
    faulty = CounterMetricFamily("damocles_wdpost_sectors_faulty", "Sectors that became faulty in a closed deadline "
                                 "(missed or declared)", labels=lab)
    declared = CounterMetricFamily("damocles_wdpost_sectors_declared_faulty", "Sectors the poster declared faulty",
                                   labels=lab)
    recovered = CounterMetricFamily("damocles_wdpost_sectors_recovered", "Sectors the poster declared recovered",
                                    labels=lab)
    current = GaugeMetricFamily("damocles_wdpost_current_deadline", "The miner's current deadline index", labels=["miner"])
    blocks = CounterMetricFamily("damocles_winningpost_blocks", "Blocks won (a WinningPoSt accepted) and missed "
                                 "(elected, no proof in time)", labels=["miner", "result"])
    for miner, p in proving.items():
        if "Deadlines" not in p:       # an error, or not computed yet
            continue
        current.add_metric([miner], p["Deadline"])
        for d in p["Deadlines"]:
            key = [miner, str(d["Index"])]
            partitions.add_metric(key, len(d["Partitions"]))
            live = sum(x["Sectors"] for x in d["Partitions"])
            sectors.add_metric(key + ["live"], live)
            sectors.add_metric(key + ["faulty"], sum(x["Faulty"] for x in d["Partitions"]))
            sectors.add_metric(key + ["recovering"], sum(x["Recovering"] for x in d["Partitions"]))
            proven_now.add_metric(key, sum(1 for x in d["Partitions"] if x["Proven"]))
        by_dl: dict[int, list[int]] = {}
        for r in p["Records"]:
            t = by_dl.setdefault(r["index"], [0, 0, 0])
            t[0] += r["partitions_proven"]
            t[1] += r["partitions"] - r["partitions_proven"]
            t[2] += r["sectors_faulty_new"]
        for index, (pr, mi, fa) in sorted(by_dl.items()):
            proven.add_metric([miner, str(index)], pr)
            missed.add_metric([miner, str(index)], mi)
            faulty.add_metric([miner, str(index)], fa)
        for index, d in p.get("Declared", {}).items():
            declared.add_metric([miner, index], d["Faulty"])
            recovered.add_metric([miner, index], d["Recovered"])
        blocks.add_metric([miner, "won"], p["Totals"]["BlocksWon"])
        blocks.add_metric([miner, "missed"], p["Totals"]["BlocksMissed"])
    yield from (current, partitions, sectors, proven_now, proven, missed, faulty, declared, recovered, blocks)


def _chain_views(proving: dict):
    """The epoch and age of the views the proving series come from (web/chain_views.py: computed
    in the background, never at scrape time); absent for a miner not computed yet."""
    epoch = GaugeMetricFamily("damocles_chain_views_epoch", "The epoch the status page's and these proving "
                              "series' chain views were computed at", labels=["miner"])
    age = GaugeMetricFamily("damocles_chain_views_age_seconds", "Seconds since the chain views were computed",
                            labels=["miner"])
    failed = GaugeMetricFamily("damocles_chain_views_error", "1 when the last computation of the chain views "
                               "failed (the page shows why)", labels=["miner"])
    for miner, p in proving.items():
        if "AsOf" in p:
            epoch.add_metric([miner], p["AsOf"])
        if "Age" in p:
            age.add_metric([miner], p["Age"])
        failed.add_metric([miner], 1 if "Error" in p else 0)
    yield from (epoch, age, failed)
