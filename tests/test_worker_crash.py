"""Crash safety of the worker: for every worker crash point, the worker is killed exactly there
while sectors go through it and restarted; every sector finishes, no completed step appears
twice in the journals, and no sector is lost or persisted twice."""

import collections
import os
import sqlite3
import time

import pytest

from appliance.core.crash import EXIT_CODE, POINTS
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import worker_toml
from .test_worker_e2e import manager_toml, start
from .conftest import read_line

# points the sealer passes in this walk; the others are walked where their plan runs: the abort
# clean-up and the unseal and rebuild points in process (test_worker_runner.py), snapup's with real
# processes (test_worker_task_crash.py)
ELSEWHERE = {"worker.abort.before_clear", "worker.unseal.written", "worker.rebuild.persisted", "worker.snapup.proved",
             "worker.snapup.submitted"}
POINTS_W = sorted(p for p in POINTS if p.startswith("worker.") and p not in ELSEWHERE)


# one point runs by default; the whole walk is slow-marked (CI runs it)
@pytest.mark.parametrize("point", [p if p == "worker.pc1.after" else pytest.param(p, marks=pytest.mark.slow) for p in POINTS_W])
def test_worker_survives_crash_point(point, tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(manager_toml(2))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    url = read_line(manager).split()[-1]
    secret = load_or_create_secret(home / "secret")
    admin = RPCClient(url, issue_token(secret, "admin"))
    threads = [{"location": tmp_path / f"t{i}"} for i in range(2)]
    cfg = tmp_path / "worker.toml"
    cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
    args = ["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")]
    tag = f"crash-{point}-{os.getpid()}-{time.monotonic_ns()}"      # marks this test's processes only
    worker = start(args, {"DAMOCLES_CRASH_AT": point, "DAMOCLES_TEST_TAG": tag})
    try:
        assert worker.wait(timeout=120) == EXIT_CODE, worker.stderr.read()
        deadline = time.monotonic() + 10
        while _processor_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.1)   # PR_SET_PDEATHSIG is delivered asynchronously; bounded
        assert not _processor_processes(tag), "processor processes outlived their worker"
        worker = start(args)      # restarted without the crash point
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = admin.call("Venus.ListSectors", "", 0)
            if len(listed) == 2 and all(s["Finalized"] for s in listed):
                break
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.5)   # polling a live system; bounded by the deadline
        else:
            raise AssertionError(f"sectors did not finish after the crash at {point}: {listed}")
    finally:
        for p in (worker, manager):
            p.terminate()
            p.wait(timeout=30)
    assert all(s["AbortReason"] == "" and s["State"] == "Finished" for s in listed)
    assert len(admin_sectors(home)) == 2
    for t in range(2):
        db = sqlite3.connect(tmp_path / f"t{t}" / "meta" / "journal.db")
        rows = db.execute("SELECT sector, prev, next, event FROM log WHERE next IS NOT NULL").fetchall()
        counts = collections.Counter(rows)
        assert all(c == 1 for c in counts.values()), [r for r, c in counts.items() if c > 1]
        db.close()
    assert sorted(p.name for p in (home / "persist-1" / "sealed").iterdir()) == ["s-t01000-1", "s-t01000-2"]


def admin_sectors(home):
    from appliance.chain.devnet import Devnet
    from appliance.chain.policy import ChainPolicy
    chain = Devnet(home / "devnet.db", ChainPolicy(block_time=0))
    try:
        return chain.sectors(1000)
    finally:
        chain.close()


def _processor_processes(tag: str) -> set[int]:
    """Live processor processes started by this test's worker (they inherit DAMOCLES_TEST_TAG):
    pool processes and external `processor` children; other tests' processes are not counted."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read()
                if f"DAMOCLES_TEST_TAG={tag}".encode() not in open(f"/proc/{d}/environ", "rb").read().split(b"\0"):
                    continue
                state = [x for x in open(f"/proc/{d}/status") if x.startswith("State:")][0]
            except (OSError, IndexError):
                continue
            pool = b"multiprocessing" in cmd and b"spawn_main" in cmd
            external = b"\x00processor\x00" in cmd
            if (pool or external) and " Z " not in state:
                out.add(int(d))
    return out
