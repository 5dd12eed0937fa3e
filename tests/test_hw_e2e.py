"""On this machine: `damocles plan` writes the worker config, `damocles worker check` finds it
clean, and a worker started from it (real processes on loopback) seals a 2KiB sector to
ProveCommit landed and persisted. The devnet's short intervals come from each thread's hot
`<location>/config.toml`, so the planned file is used exactly as written."""

import os
import subprocess
import sys
import time

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient
from appliance.worker.config import load_worker_config

from .conftest import ROOT, read_line
from .test_worker_e2e import manager_toml

MANAGER = manager_toml(1, 1, 1, "1s")

HOT = """[sealing]
recover_interval = "200ms"
rpc_polling_interval = "200ms"
seal_interval = "100ms"
"""


def damocles(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "appliance", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env, **kw)


def test_planned_worker_seals_a_sector(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    (tmp_path / "seal").mkdir()
    manager = damocles("manager", "run", "--home", str(home))
    worker = None
    try:
        line = read_line(manager)
        assert line.startswith("listening on "), manager.stderr.read()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        cfg = tmp_path / "worker.toml"
        plan = damocles("plan", "--size", "2KiB", "--sealing-dir", str(tmp_path / "seal"), "--persist-dir",
                        str(home / "persist-1"), "--manager", url, "--token", issue_token(secret, "write"), "--name", "w1",
                        "--rpc-port", "0", "--out", str(cfg))
        out, err = plan.communicate(timeout=120)
        assert plan.returncode == 0, out + err
        check = damocles("worker", "check", "-c", str(cfg))
        out, err = check.communicate(timeout=120)
        assert check.returncode == 0 and "0 error(s), 0 warning(s)" in out, out + err
        planned = load_worker_config(cfg)
        assert planned.threads and planned.processors["pc1"]
        for t in planned.threads:
            t.location.mkdir()
            (t.location / "config.toml").write_text(HOT)
        worker = damocles("worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents"))
        admin = RPCClient(url, issue_token(secret, "admin"))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = admin.call("Venus.ListSectors", "", 0)
            if listed and all(s["Finalized"] for s in listed) and admin.call("Venus.DevnetSectors", 1000):
                break
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.5)   # polling a live system; bounded by the deadline
        else:
            worker.terminate()
            raise AssertionError(f"no sector landed: {admin.call('Venus.ListSectors', '', 0)}\n{worker.stderr.read()[-3000:]}")
        assert listed[0]["State"] == "Finished" and listed[0]["Worker"] == "w1"
        assert [p.name for p in (home / "persist-1" / "sealed").iterdir()] == ["s-t01000-1"]
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
    assert "machine check" not in worker.stderr.read()     # the start check found nothing to say
