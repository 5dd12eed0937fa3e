"""A manager and a worker as real processes on loopback: 3 sealing threads with pc1 concurrency 2
take 6 CC 2KiB sectors from allocation to ProveCommit landed on the devnet (one thread's hot
config.toml keeps it to a miner without sectors)."""

import json
import os
import sqlite3
import subprocess
import tempfile
import time

import pytest

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, worker_toml
from .conftest import ROOT, damocles_cmd, read_line, run_cli

MANAGER = manager_toml()


def start(args, extra_env=None):
    """`damocles ARGS` as a process: stdout a pipe (for its first line), stderr a file that
    `proc.stderr.read()` reads from the start. A stderr pipe nobody drains fills up with the
    log and blocks the process mid-run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    fd, log = tempfile.mkstemp(prefix=f"damocles-{args[0]}-", suffix=".log")
    with os.fdopen(fd, "w") as err:
        proc = subprocess.Popen(damocles_cmd(*args), stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
    proc.stderr = open(log)
    os.unlink(log)            # the process and the reader keep it open
    return proc


@pytest.fixture
def cluster(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    line = read_line(manager)
    assert line.startswith("listening on "), manager.stderr.read()
    url = line.split()[-1]
    secret = load_or_create_secret(home / "secret")
    threads = [{"location": tmp_path / f"t{i}"} for i in range(3)]
    (tmp_path / "t2").mkdir()      # thread 2's hot config lets it seal only for a miner that has no sectors
    (tmp_path / "t2" / "config.toml").write_text("[sealing]\nallowed_miners = [9999]\n")
    cfg = tmp_path / "worker.toml"
    cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
    worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
    yield home, RPCClient(url, issue_token(secret, "admin")), worker, tmp_path
    for p in (worker, manager):
        p.terminate()
        p.wait(timeout=30)


def _leftovers(tmp):
    return [p for t in range(3) for p in (tmp / f"t{t}" / "data").glob("*/s-t0*")]


def test_worker_seals_six_sectors(cluster):
    home, admin, worker, tmp = cluster
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = admin.call("Venus.DevnetSectors", 1000)
        listed = admin.call("Venus.ListSectors", "", 0)
        if len(done) == 6 and len(listed) == 6 and all(s["Finalized"] for s in listed) and not _leftovers(tmp):
            break
        assert worker.poll() is None, worker.stderr.read()
        time.sleep(0.5)   # polling a live system; bounded by the deadline
    else:
        raise AssertionError(f"{len(done)} sectors landed; {listed}; left over: {_leftovers(tmp)}")
    assert sorted(s["number"] for s in done) == [1, 2, 3, 4, 5, 6]
    assert {s["Worker"] for s in listed} == {"w1"}
    t2 = sqlite3.connect(tmp / "t2" / "meta" / "journal.db")
    assert t2.execute("SELECT count(*) FROM log WHERE sector IS NOT NULL").fetchone() == (0,)   # it obeyed config.toml
    t2.close()
    assert all(s["State"] == "Finished" and s["AbortReason"] == "" for s in listed)
    persisted = sorted(p.name for p in (home / "persist-1" / "sealed").iterdir())
    assert persisted == [f"s-t01000-{n}" for n in range(1, 7)]
    workers = admin.call("Venus.WorkerPingInfoList")
    assert workers[0]["Info"]["Name"] == "w1" and workers[0]["Info"]["Summary"]["Threads"] == 3


def test_worker_rpc_list_pause_resume(cluster):
    home, admin, worker, tmp = cluster
    deadline = time.monotonic() + 30
    while not admin.call("Venus.WorkerPingInfoList") and time.monotonic() < deadline:
        time.sleep(0.2)   # the first WorkerPing; bounded
    dest = admin.call("Venus.WorkerPingInfoList")[0]["Info"]["Dest"]
    common = ["--worker", dest, "--home", str(home), "--json"]
    threads = json.loads(run_cli("worker", "list", *common, check=True).stdout)["threads"]
    assert [t["index"] for t in threads] == [0, 1, 2] and threads[0]["location"].endswith("t0")
    assert json.loads(run_cli("worker", "pause", "--index", "1", *common, check=True).stdout)["paused"] is True
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        t1 = json.loads(run_cli("worker", "list", *common, check=True).stdout)["threads"][1]
        if t1["thread_state"]["state"] == "Paused":
            break
        time.sleep(0.3)   # the thread pauses after its step in flight; bounded
    assert t1["last_error"] == "paused by the operator"
    assert json.loads(run_cli("worker", "resume", "--index", "1", *common, check=True).stdout)["resumed"] is True
    p = run_cli("worker", "pause", "--index", "7", *common)
    assert p.returncode == 2 and "no sealing thread 7" in p.stderr
    secret = load_or_create_secret(home / "secret")
    p = run_cli("worker", "pause", "--index", "0", "--worker", dest, "--token", issue_token(secret, "write"))
    assert p.returncode == 2 and "needs 'admin'" in p.stderr
    api = admin.url[: -len("/rpc/v0")]
    info = json.loads(run_cli("util", "workers", "info", "w1", "--api", api, "--home", str(home), "--json", check=True).stdout)
    assert info["dest"] == dest and len(info["threads"]) == 3
    assert json.loads(run_cli("util", "workers", "pause", "w1", "--index", "2", "--api", api, "--home", str(home), "--json",
                              check=True).stdout)["paused"] is True
    p = run_cli("util", "workers", "info", "nobody", "--api", api, "--home", str(home))
    assert p.returncode == 2 and "no worker named 'nobody'" in p.stderr
    p = run_cli("worker", "list", "--worker", dest, "--token", "forged")
    assert p.returncode == 2 and "did not accept the token" in p.stderr
