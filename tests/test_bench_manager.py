"""bench manager: the run at a small size reports every figure; its bulk fill stores what the
normal path stores (ManagerState.bulk_add_sectors, the bench's records against a sector sealed
through a manager), and allocation continues above the filled numbers."""

import json
import random
import sqlite3

import pytest

from appliance.bench import manager as bench
from appliance.bench.ui import STATES
from appliance.manager.service import ManagerService
from appliance.manager.state import ManagerState

from .conftest import run_cli
from .manager_driver import ManagerProc, precommit_sectors, prove_sectors

METHODS = ("AllocateSector", "ReportState", "SubmitPreCommit", "PollPreCommitState")


@pytest.mark.timeout(280)
def test_bench_manager_reports_every_figure_at_both_sizes(tmp_path):
    p = run_cli("bench", "manager", "--sectors", "300", "--miners", "2", "--calls", "15", "--requests", "2",
                "--passes", "2", "--timeout", "120", "--home", str(tmp_path / "homes"), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert set(out["homes"]) == {"small", "n"}
    for key, n in (("small", 1000), ("n", 300)):
        h = out["homes"][key]
        f = h["filled"]
        assert f["sectors"] == n and f["miners"] == 2
        assert f["finished"] + f["in_flight"] + f["failing"] == n
        assert f["in_flight"] >= 2 and f["failing"] >= 2 and f["finished"] > 0.9 * n
        assert f["history_rows"] > 0 and h["fill_seconds"] >= 0 and h["start_seconds"] > 0
        assert h["chain_views_seconds"] >= h["start_seconds"]
        r = h["rpc"]
        assert r["error"] is None and r["timed_out"] is False and r["rounds"] == 15
        for m in METHODS:
            assert r[m]["calls"] == 15 and 0 < r[m]["p50_ms"] <= r[m]["p99_ms"], (key, m, r[m])
        for page in ("overview", "metrics"):
            assert "error" not in h[page] and h[page]["median_ms"] > 0 and h[page]["bytes"] > 1000, (key, page, h[page])
        for loop in ("committer", "poster"):
            c = h[loop]
            assert c["error"] is None and c["passes"] == 2, (key, loop, c)
            assert c["first_cpu_ms"] > 0 and c["cpu_ms"] > 0 and c["thread_cpu_ms"] > 0 and c["wall_ms"] > 0
        assert h["peak_rss_bytes"] > 20 << 20
    for m in METHODS:
        assert out["p99_ratio"][m] == pytest.approx(
            out["homes"]["n"]["rpc"][m]["p99_ms"] / out["homes"]["small"]["rpc"][m]["p99_ms"], abs=0.01)
    assert (tmp_path / "homes" / "manager-300" / "manager.db").is_file()
    w, big = out["same_work"], out["homes"]["n"]["filled"]       # the passes again, the same open sectors
    assert (w["filled"]["in_flight"], w["filled"]["failing"]) == (big["in_flight"], big["failing"])
    for loop in ("committer", "poster"):
        assert w[loop]["error"] is None and w[loop]["thread_cpu_ms"] > 0
        assert out["pass_ratio"][loop] == pytest.approx(out["homes"]["n"][loop]["thread_cpu_ms"] / w[loop]["thread_cpu_ms"],
                                                        abs=0.01)

    text = run_cli("bench", "manager", "--sectors", "0")
    assert text.returncode != 0 and "--sectors must be at least 1, got 0" in text.stderr
    text = run_cli("bench", "manager", "--sectors", "10", "--home", str(tmp_path / "homes"))
    assert text.returncode != 0 and "is not empty" in text.stderr


def test_a_fill_with_less_history_keeps_the_open_sectors_of_the_full_size(tmp_path):
    full = bench.fill(tmp_path / "full", 2000, 2)
    less = bench.fill(tmp_path / "less", 2000, 2, finished=100)
    assert full["finished"] > 1900 and full["at_hand"] == 0
    assert less["finished"] == 100 + less["at_hand"] and less["at_hand"] == 2 * bench.AT_HAND * 21   # 975 a miner: 21 a deadline
    assert (less["in_flight"], less["failing"]) == (full["in_flight"], full["failing"])
    assert less["sectors"] == less["finished"] + less["in_flight"] + less["failing"]
    # the deadlines a PoSt pass works on hold as many sectors as the full size's; the others, 50 a miner
    counts = {}
    for home in ("full", "less"):
        db = sqlite3.connect(tmp_path / home / "devnet.db")
        counts[home] = {(m, d): n for m, d, n in db.execute("SELECT miner, deadline, COUNT(*) FROM sector_deadlines "
                                                             "GROUP BY miner, deadline")}
        db.close()
    for miner in (1000, 1001):
        dense = sorted(d for (m, d), n in counts["less"].items() if m == miner and n == 21)
        assert any({(s + i) % 48 for i in range(bench.AT_HAND)} == set(dense) for s in dense), dense   # consecutive
        assert all(counts["full"][(miner, d)] in (20, 21) for d in dense)
        assert sum(n for (m, d), n in counts["less"].items() if m == miner and d not in dense) == 50
    state = ManagerState(tmp_path / "less" / "manager.db")
    try:
        assert len(state.sectors(open_only=True)) == less["in_flight"] + less["failing"]
        assert sum(1 for _ in state.sectors()) == less["sectors"]
    finally:
        state.close()


def test_bulk_add_sectors_stores_what_the_normal_path_stores(tmp_path):
    normal, bulk = ManagerState(tmp_path / "normal.db"), ManagerState(tmp_path / "bulk.db")
    try:
        normal._now = bulk._now = lambda: 1000.0
        rows = []
        for miner, count in ((1000, 5), (1001, 3)):
            for _ in range(count):
                number = normal.allocate(miner, 8, 1, None)
                rec = normal.update(miner, number, state="PC1Done", worker="w1", ticket={"Ticket": "AA==", "Epoch": 7})
                info = {k: v for k, v in rec.items() if k not in ("miner", "number", "proof")}
                rows.append((miner, number, 8, info, 1000.0))
        assert bulk.bulk_add_sectors(iter(rows)) == 8           # any iterable: the bench streams them
        for miner, number, *_ in rows:
            assert bulk.sector(miner, number) == normal.sector(miner, number)
        assert bulk.sectors() == normal.sectors()
        assert bulk.next_numbers() == normal.next_numbers() == {1000: 6, 1001: 4}
        assert bulk.allocate(1000, 8, 1, None) == 6 and bulk.allocate(1001, 8, 1, None) == 4
        # a counter already above the inserted numbers stays where it is
        bulk.raise_counters(1002, 50, 0)
        bulk.bulk_add_sectors([(1002, 7, 8, {"state": "Allocated"}, 1000.0)])
        assert bulk.allocate(1002, 8, 1, None) == 50
        # a number already there fails the whole call: nothing of it is stored
        with pytest.raises(sqlite3.IntegrityError):
            bulk.bulk_add_sectors([(1003, 1, 8, {}, 1.0), (1000, 1, 8, {}, 1.0)])
        assert bulk.sector(1003, 1) is None and 1003 not in bulk.next_numbers()
    finally:
        normal.close()
        bulk.close()


@pytest.mark.timeout(120)
def test_bench_record_has_the_keys_of_a_sector_sealed_through_a_manager(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    try:
        sectors = precommit_sectors(m, 4, tmp_path / "work")      # 4: the proof batch's threshold
        for sid, _, _ in sectors:           # a worker reports its steps (worker, location, entered_at)
            m.call("Venus.ReportState", sid, {"Worker": {"Instance": "w1", "Location": "/sealing/1"},
                                              "StateChange": {"Prev": "PC2Done", "Next": "PCSubmitted", "Event": "SubmitPC"}})
        prove_sectors(m, sectors)
    finally:
        m.stop()
    state = m.open_state()
    try:
        real = state.sector(sectors[0][0]["Miner"], sectors[0][0]["Number"])
    finally:
        state.close()
    assert real["state"] == "Finished" and real["finalized"] is True
    miner = bench._Miner(1000, 100, random.Random(1))
    made = bench._record(miner, 1, "finished", len(STATES) - 1, 1.0, 2.0, "w1", bytes(32))
    assert set(made) == set(real) - {"miner", "number", "proof"}
    for key in ("ticket", "pre", "seed"):
        assert set(made[key]) == set(real[key]), key
    assert len(made["pre_msg"]) == len(real["pre_msg"]) and made["pre_msg"][:9] == real["pre_msg"][:9]


@pytest.mark.timeout(120)
def test_bench_fill_is_read_by_the_manager_and_allocation_continues(tmp_path):
    home = tmp_path / "m"
    filled = bench.fill(home, 4000, 2)
    assert filled["finished"] + filled["in_flight"] + filled["failing"] == 4000
    assert filled["in_flight"] == 2 * 40 and filled["failing"] == 2 * 10
    svc = ManagerService(home)
    try:
        state, chain = svc.state, svc.devnet
        assert state.next_numbers() == {1000: 2001, 1001: 2001}
        kinds = {"finished": 0, "failing": 0, "live": 0}
        for rec in state.sectors(1000):
            kind = "finished" if rec.get("finalized") else "failing" if rec.get("failure") else "live"
            kinds[kind] += 1
            assert rec["state"] in STATES and rec["proof"] == 8
        assert kinds == {"finished": 1950, "live": 40, "failing": 10}
        failing = next(r for r in state.sectors(1001) if r.get("failure"))
        hist = state.history(1001, failing["number"])
        assert hist[-1]["event"] == "Failure" and hist[-1]["level"] == "perm"
        assert [h["next"] for h in hist[:-1]] == list(STATES[1:STATES.index(failing["state"]) + 1])
        # the finished sectors are active on the chain, in all 48 deadlines, partitions of at most 2349
        assert len(chain.sectors(1000)) == 1950
        per_deadline = chain.database.query("SELECT deadline, COUNT(*), MAX(partition) FROM sector_deadlines "
                                            "WHERE miner = 1000 GROUP BY deadline")
        assert len(per_deadline) == 48 and all(40 <= c <= 41 and p == 0 for _, c, p in per_deadline)
        assert chain.miner_power(1000).active_sectors == 1950
        # the manager's own calls read the bulk records: the next allocation takes the next number
        alloc = svc.sealer.allocate_sector({"AllowedMiners": [1001]})
        assert alloc["ID"] == {"Miner": 1001, "Number": 2001}
        live = next(r for r in state.sectors(1000) if "pre_msg" in r and not r.get("finalized") and not r.get("failure"))
        answer = svc.sealer.poll_pre_commit_state({"Miner": 1000, "Number": live["number"]})
        assert answer["State"] == 1       # pending: its message is not on this chain
    finally:
        svc.close()


def test_a_measurement_past_its_limit_is_reported_and_the_bench_goes_on(tmp_path, monkeypatch):
    import socket
    import threading
    import time
    from appliance.manager.commitment import Committer
    # RPC: a server that takes the connection and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        t = time.monotonic()
        r = bench.worker_flow(silent.getsockname(), "token", 5, 0.5)
        assert time.monotonic() - t < 10
        assert r["rounds"] == 0 and "timed out" in r["error"] and r["AllocateSector"]["calls"] == 0
    finally:
        silent.close()
    # in process: a commitment pass that does not end in time; the PoSt pass after it is not run
    bench.fill(tmp_path / "m", 100, 1)
    release = threading.Event()
    monkeypatch.setattr(Committer, "tick", lambda self: release.wait(30))
    try:
        t = time.monotonic()
        out = bench.in_process(tmp_path / "m", 3, 0.5)
        assert time.monotonic() - t < 10
    finally:
        release.set()
    assert out["committer"]["error"] == "a pass took more than 0.5 s" and out["committer"]["cpu_ms"] is None
    assert out["poster"]["error"] == "not measured: the pass before it overran the time limit"
    assert "!" in "\n".join(bench.report_lines({"limit_seconds": 0.5, "p99_ratio": {m: None for m in METHODS}, "homes": {
        k: {"filled": {"sectors": 100, "miners": 1, "finished": 97, "in_flight": 2, "failing": 1, "workers": 8,
                       "history_rows": 1}, "fill_seconds": 0.1, "rpc": r, "overview": {"error": "x"},
            "metrics": {"error": "x"}, **out} for k in ("small", "n")}}))


def test_the_two_managers_flows_alternate_and_one_that_stops_leaves_the_other_going():
    """RPC rounds go SLICE at a time to each manager in turn (the host's noise falls on both); a
    flow that stops (an error, its limit) is reported as it stands while the other finishes."""
    order = []

    class Flow:
        def __init__(self, key, stops_after=None):
            self.key, self.stops_after, self.rounds = key, stops_after, 0

        def step(self, k):
            if self.stops_after is not None and self.rounds + k > self.stops_after:
                self.rounds = self.stops_after
                order.append((self.key, "stopped"))
                return False
            self.rounds += k
            order.append((self.key, k))
            return True

        def result(self, rounds):
            return {"rounds": self.rounds}

    out = bench.alternating_flows({"small": Flow("small"), "n": Flow("n", stops_after=2 * bench.SLICE)},
                                  3 * bench.SLICE + 5)
    s = bench.SLICE
    assert order == [("small", s), ("n", s), ("small", s), ("n", s), ("small", s), ("n", "stopped"), ("small", 5)]
    assert out == {"small": {"rounds": 3 * s + 5}, "n": {"rounds": 2 * s}}
