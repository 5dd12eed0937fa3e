"""Metrics pieces that need no cluster: the worker's `[metrics]` table, stage busy/queued counts,
the metered task log, JSON logs, `damocles bench ui` on a small database, and the manager's
sector gauges read from its records on each store driver."""

import io
import itertools
import json
import logging
import threading
import time
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from appliance.config import ConfigError
from appliance.core.logs import setup
from appliance.manager.state import ManagerState
from appliance.metrics.manager import _Collector
from appliance.metrics.worker import WorkerMetrics
from appliance.worker.config import parse_worker_config
from appliance.worker.processors import TaskRecord
from appliance.worker.service import StageLimits

from .conftest import run_cli
from .pg_cluster import manager_store, pg_dsn, pg_server  # noqa: F401  (fixtures)

BASE = {"sector_manager": {"rpc_client": {"addr": "http://127.0.0.1:1789"}}}


def test_metrics_table_as_damocles():
    cfg = parse_worker_config(BASE)
    assert cfg.metrics_enable is False and cfg.metrics_listen == "0.0.0.0:9000" and not cfg.warnings
    cfg = parse_worker_config({**BASE, "metrics": {"enable": True, "http_listen": "127.0.0.1:9100"}})
    assert cfg.metrics_enable and cfg.metrics_listen == "127.0.0.1:9100"
    assert parse_worker_config({**BASE, "metrics": {"http_listen": "[::1]:9000"}}).metrics_listen == "[::1]:9000"
    assert "[metrics]: unknown key 'port'" in parse_worker_config({**BASE, "metrics": {"port": 1}}).warnings[0]
    for bad, msg in (({"enable": "yes"}, "enable: 'yes' is not true or false"),
                     ({"http_listen": "9000"}, "http_listen: '9000' is not HOST:PORT"),
                     ({"http_listen": "h:99999"}, "is not HOST:PORT")):
        with pytest.raises(ConfigError, match=msg):
            parse_worker_config({**BASE, "metrics": bad})


def test_stage_limits_count_busy_and_queued():
    limits = StageLimits({"pc1": 1}, {})
    started, release = threading.Event(), threading.Event()

    def task():
        started.set()
        release.wait(10)

    threads = [threading.Thread(target=limits.run, args=("pc1", task)) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait(10)
    deadline = time.monotonic() + 10
    while limits.snapshot()[0].get("pc1") != 3 and time.monotonic() < deadline:
        time.sleep(0.01)    # the other two reach the limit; bounded
    assert limits.snapshot() == ({"pc1": 3}, {"pc1": 1})     # one runs, two wait for the limit
    release.set()
    for t in threads:
        t.join(10)
    assert limits.snapshot() == ({"pc1": 0}, {"pc1": 0})


def test_task_log_feeds_the_stage_histogram():
    m = WorkerMetrics("w9")
    m.tasklog.add(TaskRecord("pc1", 1, 100.0, 103.5, 3.0))
    m.tasklog.add(TaskRecord("c2", 1, 100.0, 100.25, None))
    m.on_call("Venus.ReportState", 0.002, True)
    text = generate_latest(m.registry).decode()
    assert 'damocles_worker_task_duration_seconds_count{stage="pc1",worker_name="w9"} 1.0' in text
    assert 'damocles_worker_task_duration_seconds_sum{stage="pc1",worker_name="w9"} 3.5' in text
    assert 'damocles_worker_task_cpu_seconds_total{stage="pc1",worker_name="w9"} 3.0' in text
    assert 'damocles_worker_rpc_calls_total{method="Venus.ReportState",result="ok",worker_name="w9"} 1.0' in text
    assert len(m.tasklog.of("pc1")) == 1


def test_json_logs_carry_sector_and_state():
    out = io.StringIO()
    setup("json", logging.INFO, out)
    try:
        logging.getLogger("damocles.worker").info("thread %d: %s %s -%s-> %s", 0, "s-t01000-7", "PC1Done", "PC2", "PC2Done",
                                                  extra={"sector": "s-t01000-7", "state": "PC2Done", "prev": "PC1Done",
                                                         "event": "PC2", "sealing_thread": 0})
        logging.getLogger("damocles.manager").warning("plain")
    finally:
        setup("text", logging.WARNING)
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert first["msg"] == "thread 0: s-t01000-7 PC1Done -PC2-> PC2Done" and first["level"] == "info"
    assert (first["sector"], first["state"], first["prev"], first["event"], first["sealing_thread"]) == \
        ("s-t01000-7", "PC2Done", "PC1Done", "PC2", 0)
    assert second == {"ts": second["ts"], "level": "warning", "logger": "damocles.manager", "msg": "plain"}


def test_bench_ui_small():
    p = run_cli("bench", "ui", "--sectors", "40", "--requests", "3", "--json", check=True)
    out = json.loads(p.stdout)
    assert out["filled"] == {"sectors": 40, "finished": 24, "in_flight": 14, "failing": 2, "workers": 8}
    assert out["idle_refresh"]["statements_per_refresh"] == 1
    assert out["overview_shows"]["failing"] == 2 and out["overview_shows"]["partitions"] > 0
    for key in ("version", "overview", "chain_views", "sector", "metrics", "page_files"):
        assert 0 < out[key]["median_ms"] < 1000, (key, out[key])


def test_dashboard_and_docs_name_only_metrics_that_exist(tmp_path):
    """Every damocles_* name in the Grafana dashboard and docs/observability.md is exported."""
    import re
    from appliance.manager.service import ManagerService, init_home
    from .conftest import ROOT
    from .test_web import CONFIG
    init_home(tmp_path / "m", CONFIG)
    svc = ManagerService(tmp_path / "m")
    try:
        svc.metrics.on_report("A", "B", 1.0, "temp")
        svc.metrics.on_rpc("Venus.X", 0.1, True)
        text = svc.metrics.exposition().decode()
    finally:
        svc.stop()
    w = WorkerMetrics("w")
    w.tasklog.add(TaskRecord("pc1", 1, 0.0, 1.0, 1.0))
    w.on_call("Venus.X", 0.1, True)
    w.on_rpc("VenusWorker.X", 0.1, True)
    text += generate_latest(w.registry).decode()
    exported = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    exported |= {f"{n}_{s}" for n in exported for s in ("total", "bucket", "count", "sum", "info")}
    # collectors that need a live worker service: declared in appliance/metrics/worker.py
    source = (ROOT / "appliance" / "metrics" / "worker.py").read_text()
    exported |= set(re.findall(r'"(damocles_\w+)"', source)) | {f"{n}_total" for n in re.findall(r'"(damocles_\w+)"', source)}
    dashboard = (ROOT / "packaging" / "grafana" / "damocles.json").read_text()
    json.loads(dashboard)
    docs = (ROOT / "docs" / "observability.md").read_text()
    for where, body in (("dashboard", dashboard), ("docs", docs)):
        named = set(re.findall(r"\bdamocles_[a-z_]+[a-z]", body))
        assert named and not named - exported, (where, sorted(named - exported))


def test_windowpost_and_winningpost_series_per_deadline():
    """The proving series are shaped from the view the status page shows (faults, recoveries, records, blocks)."""
    from appliance.metrics.manager import _chain_views, proving_families
    proving = {"1000": {"Deadline": 5, "Deadlines": [{"Index": 3, "Partitions": [
        {"Index": 0, "Sectors": 4, "Faulty": 2, "Recovering": 1, "Proven": True, "FaultyFirst": [7, 9], "RecoveringFirst": [9]},
        {"Index": 1, "Sectors": 2, "Faulty": 0, "Recovering": 0, "Proven": False}]}],
        "Records": [{"index": 3, "partitions": 2, "partitions_proven": 1, "sectors_faulty_new": 2},
                    {"index": 3, "partitions": 2, "partitions_proven": 2, "sectors_faulty_new": 0}],
        "Declared": {"3": {"Faulty": 1, "Recovered": 1}},
        "Totals": {"BlocksWon": 4, "BlocksMissed": 1}}, "2000": {"Error": "no such miner"}}
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in proving_families(proving) for s in fam.samples}
    key = (("deadline", "3"), ("miner", "1000"))
    assert got[("damocles_wdpost_partitions", key)] == 2
    assert got[("damocles_wdpost_sectors", (("deadline", "3"), ("miner", "1000"), ("status", "faulty")))] == 2
    assert got[("damocles_wdpost_sectors", (("deadline", "3"), ("miner", "1000"), ("status", "recovering")))] == 1
    assert got[("damocles_wdpost_partitions_proven_current", key)] == 1
    assert got[("damocles_wdpost_partitions_proven_total", key)] == 3
    assert got[("damocles_wdpost_partitions_missed_total", key)] == 1
    assert got[("damocles_wdpost_sectors_faulty_total", key)] == 2
    assert got[("damocles_wdpost_sectors_declared_faulty_total", key)] == 1
    assert got[("damocles_wdpost_sectors_recovered_total", key)] == 1
    assert got[("damocles_winningpost_blocks_total", (("miner", "1000"), ("result", "won")))] == 4
    assert got[("damocles_winningpost_blocks_total", (("miner", "1000"), ("result", "missed")))] == 1
    assert got[("damocles_wdpost_current_deadline", (("miner", "1000"),))] == 5
    assert not any(dict(labels).get("miner") == "2000" for name, labels in got if not name.startswith("damocles_chain_views"))
    views = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in _chain_views(proving) for s in fam.samples}
    assert views[("damocles_chain_views_error", (("miner", "2000"),))] == 1


def test_the_sector_gauges_read_the_records_on_each_driver(tmp_path, manager_store):  # noqa: F811
    state = ManagerState(tmp_path / "manager.db", now=lambda: 1000.0, store=manager_store)
    try:
        for _ in range(3):
            state.allocate(1000, 5, 1, None)
        state.update(1000, 1, failure={"Level": "temp", "Desc": "disk"})
        state.update(1000, 2, failure={"Level": "perm", "Desc": "c2"})
        state.update(1000, 3, failure={"Level": "perm", "Desc": "c2"}, finalized=True)     # no longer in flight
        collector = _Collector(SimpleNamespace(service=SimpleNamespace(state=state)))
        # the state's gauges come first (the rest need a whole manager)
        families = {f.name: f for f in itertools.islice(collector._families(collector.m.service), 4)}
        assert {s.labels["level"]: s.value for s in families["damocles_sectors_failing"].samples} == {"temp": 1, "perm": 1}
        oldest = families["damocles_sector_oldest_in_flight_seconds"].samples[0].value
        assert oldest == pytest.approx(time.time() - 1000.0, abs=60)
        assert {(s.labels["state"], s.value) for s in families["damocles_sectors"].samples} == {("Allocated", 3)}
    finally:
        state.close()
