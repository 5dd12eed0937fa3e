"""A manager killed and restarted while a worker's sectors are in flight: the worker only sees
temp failures (an unreachable manager does not use up `max_retries`), and every sector finishes
once the manager is back."""

import collections
import signal
import sqlite3
import time

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import signal_all, read_line
from .configs import worker_toml
from .test_worker_e2e import manager_toml, start


def _journal_rows(tmp_path, threads, where="1"):
    rows = []
    for t in range(threads):
        path = tmp_path / f"t{t}" / "meta" / "journal.db"
        if path.exists():
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                rows += db.execute(f"SELECT sector, prev, next, event, level, error FROM log WHERE {where}").fetchall()
            except sqlite3.OperationalError:   # a journal being created: no log table yet
                pass
            finally:
                db.close()
    return rows


def test_manager_restart_mid_flight_causes_only_temp_retries(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(manager_toml(4))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    url = read_line(manager).split()[-1]
    listen = url.split("//")[1].split("/")[0]
    secret = load_or_create_secret(home / "secret")
    admin = RPCClient(url, issue_token(secret, "admin"))
    threads = [{"location": tmp_path / f"t{i}"} for i in range(2)]
    cfg = tmp_path / "worker.toml"
    # max_retries = 2: a short outage alone would exhaust it if unreachable counted
    cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads, sealing={"max_retries": 2}))
    worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
    try:
        deadline = time.monotonic() + 120
        while not _journal_rows(tmp_path, 2, "next = 'PC1Done'"):
            assert time.monotonic() < deadline, "no sector reached PC1Done"
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.1)   # polling a live system; bounded by the deadline
        signal_all(manager, signal.SIGKILL)
        manager.wait(timeout=30)
        # the manager stays down until the worker has retried past max_retries
        deadline = time.monotonic() + 60
        while len(_journal_rows(tmp_path, 2, "level = 'temp'")) < 4:
            assert time.monotonic() < deadline, "the worker never noticed the manager was gone"
            time.sleep(0.1)   # polling a live system; bounded by the deadline
        manager = start(["manager", "run", "--home", str(home), "--listen", listen])
        assert read_line(manager).startswith("listening on ")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = admin.call("Venus.ListSectors", "", 0)
            if len(listed) == 4 and all(s["Finalized"] for s in listed):
                break
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.5)   # polling a live system; bounded by the deadline
        else:
            raise AssertionError(f"sectors did not finish after the manager restart: {listed}")
    finally:
        for p in (worker, manager):
            p.terminate()
            p.wait(timeout=30)
    assert all(s["AbortReason"] == "" and s["State"] == "Finished" for s in listed)
    failures = _journal_rows(tmp_path, 2, "level IS NOT NULL")
    assert failures and {f[4] for f in failures} == {"temp"}, failures
    assert any("Connection refused" in f[5] or "cannot reach" in f[5].lower() for f in failures), failures
    steps = collections.Counter(r[:4] for r in _journal_rows(tmp_path, 2, "next IS NOT NULL"))
    assert all(c == 1 for c in steps.values()), [r for r, c in steps.items() if c > 1]
    assert sorted(p.name for p in (home / "persist-1" / "sealed").iterdir()) == [f"s-t01000-{n}" for n in range(1, 5)]
