"""bench pipeline: a real run at 2KiB, and the arithmetic of the bound on a made-up run."""

import json

import pytest

from appliance.bench.pipeline import measure
from appliance.worker.processors import TaskRecord

from .conftest import run_cli


def test_bench_pipeline_runs_sectors_and_reports_its_bound():
    p = run_cli("bench", "pipeline", "--size", "2KiB", "--threads", "2", "--sectors", "3", "--json", check=True)
    r = json.loads(p.stdout)
    assert r["sectors"] == 3 and r["threads"] == 2 and r["size"] == "2KiB"
    assert r["sectors_per_hour"] == pytest.approx(3 * 3600 / r["seconds"], rel=0.01)
    assert list(r["stages"]) == ["add_pieces", "tree_d", "pc1", "pc2", "c1", "c2"]
    assert all(s["tasks"] == 3 for s in r["stages"].values())
    assert r["bound_sectors_per_hour"] == min(r["bounds_sectors_per_hour"].values())
    assert r["bounds_sectors_per_hour"][r["limited_by"]] == r["bound_sectors_per_hour"]
    assert 0 < r["ratio"] <= 1.05
    assert set(r["pool_busy"]) == {"add_pieces-0", "tree_d-0", "pc1-0", "pc2-0", "c2-0"}
    assert all(0 <= v <= 1 for v in r["pool_busy"].values()) and r["pool_busy"]["pc2-0"] > 0


def test_bench_pipeline_refuses_bad_arguments():
    p = run_cli("bench", "pipeline", "--threads", "0")
    assert p.returncode == 2 and "--threads and --sectors must be at least 1" in p.stderr
    p = run_cli("bench", "pipeline", "--size", "3KiB")
    assert p.returncode == 2 and "3KiB" in p.stderr


def _journal(name, t0, steps):
    """Rows as Journal.log() gives them for one sector: (state entered, seconds in it) in order."""
    rows, ts, prev = [], t0, "Empty"
    events = {"Allocated": "Allocate", "TicketAssigned": "AssignTicket", "PC1Done": "PC1", "PC2Done": "PC2",
              "Finished": "Finish"}
    for state, seconds in steps:
        rows.append({"sector": name, "prev": prev, "next": state, "event": events[state], "level": None, "ts": ts})
        ts += seconds
        prev = state
    rows.append({"sector": name, "prev": prev, "next": None, "event": "Finish", "level": None, "ts": ts})
    return rows, ts


def test_bound_arithmetic():
    # one thread, two sectors back to back: 1s waiting, 2s of PC1, 3s of PC2, 1s to finish
    steps = [("Allocated", 1.0), ("TicketAssigned", 2.0), ("PC1Done", 3.0), ("PC2Done", 1.0), ("Finished", 0.0)]
    a, t = _journal("s-1", 100.0, steps)
    b, _ = _journal("s-2", t, steps)
    tasks = [TaskRecord("pc1", 1, 0, 2.0, 1.5), TaskRecord("pc1", 1, 0, 2.0, 1.5),
             TaskRecord("pc2", 2, 0, 3.0, 3.0), TaskRecord("pc2", 2, 0, 3.0, 3.0)]
    r = measure([a + b], tasks, {"pc2-0": (6.0, 1)}, 100.0, "2KiB", 1, 2, 2, 1, 0.1)
    assert r["seconds"] == 14.0 and r["sectors_per_hour"] == pytest.approx(2 / 14 * 3600, rel=1e-3)
    assert r["mean_sector_latency"] == 7.0 and r["least_non_compute_seconds"] == 2.0
    assert r["cpu_seconds_per_sector"] == 4.5
    bounds = r["bounds_sectors_per_hour"]
    assert bounds["cores"] == pytest.approx(2 / 4.5 * 3600, rel=1e-3)
    assert bounds["threads"] == pytest.approx(1 / (4.5 + 2.0) * 3600, rel=1e-3)
    assert bounds["stage pc2"] == pytest.approx(1 / 3.0 * 3600, rel=1e-3)
    assert r["limited_by"] == "threads" and r["ratio"] == pytest.approx((2 / 14) / (1 / 6.5), rel=1e-3)
    assert r["pool_busy"] == {"pc2-0": pytest.approx(6 / 14, rel=1e-3)}


def test_bench_pipeline_external_runs_both_and_compares():
    """--external: the same run with pc1, pc2 and c2 in `damocles processor` children, against the
    pools measured in the same invocation; the external run's tasks ran in other processes."""
    p = run_cli("bench", "pipeline", "--size", "2KiB", "--threads", "2", "--sectors", "2", "--external", "--rounds", "2",
                "--json", check=True)
    c = json.loads(p.stdout)
    # two alternating pairs; the first pair is reported in full, the median over both beside it
    assert len(c["rounds"]) == 2 and c["rounds"][0]["external_vs_pools"] == c["external_vs_pools"]
    assert c["median_external_vs_pools"] == pytest.approx(sum(r["external_vs_pools"] for r in c["rounds"]) / 2, abs=1e-4)
    assert set(c["median_stage_wall_ratio"]) == {"pc1", "pc2", "c2"}
    pools, ext = c["pools"], c["external"]
    assert pools["processors"] == "pools" and ext["processors"] == "external"
    assert pools["sectors"] == ext["sectors"] == 2
    assert c["external_vs_pools"] == pytest.approx(ext["sectors_per_hour"] / pools["sectors_per_hour"], rel=1e-3)
    assert set(c["stage_wall_ratio"]) == {"pc1", "pc2", "c2"}
    for s in ("pc1", "pc2", "c2"):
        assert c["stage_wall_ratio"][s] == pytest.approx(ext["stages"][s]["wall_per_task"] / pools["stages"][s]["wall_per_task"],
                                                         rel=1e-2)
        # two processor children per stage, none of them a pool process of the first run
        assert 1 <= len(ext["task_pids"][s]) <= 2 and not set(ext["task_pids"][s]) & set(pools["task_pids"][s])
    assert set(ext["pool_busy"]) == {"add_pieces-0", "tree_d-0"}     # the external stages have no pools


def test_bench_pipeline_rounds_need_external():
    p = run_cli("bench", "pipeline", "--rounds", "2")
    assert p.returncode != 0 and "--rounds" in p.stderr
