"""Prometheus metrics during a real run: a manager and a worker as processes on loopback seal
three 2KiB sectors while the test scrapes the manager's `/metrics` (read token) and the worker's
`[metrics]` exporter (no token); the sector-state and duration series move as sectors advance."""

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import NO_PROCESSORS, worker_toml
from .conftest import ROOT, damocles_cmd, read_line
from .test_worker_e2e import manager_toml

MANAGER = manager_toml(3, 2, 2, "1s")

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, token: str | None = None) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def test_metrics_move_as_sectors_advance(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mlog, wlog = open(tmp_path / "manager.log", "w"), open(tmp_path / "worker.log", "w")   # files: a full pipe blocks
    manager = subprocess.Popen(damocles_cmd("manager", "run", "--home", str(home), "--log-format", "json"),
                               stdout=subprocess.PIPE, stderr=mlog, text=True, cwd=ROOT, env=env)
    procs = [manager]
    try:
        line = read_line(manager)
        assert line.startswith("listening on "), (tmp_path / "manager.log").read_text()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        read = issue_token(secret, "read")
        m0 = scrape(f"{url}/metrics", read)       # before any worker: no sector, no transition
        assert total(m0, "damocles_sectors") == 0 and total(m0, "damocles_sector_state_duration_seconds_count") == 0
        assert total(m0, "damocles_chain_head_epoch") >= 0 and total(m0, "damocles_persist_store_free_bytes") > 0
        port = _free_port()
        cfg = tmp_path / "worker.toml"      # PC2 not verified; a pc1 pool of one, pc2 and c2 in the sealing threads
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1",
                                   [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1"}], name="w-metrics",
                                   sealing={"verify_after_pc2": None}, processors={**NO_PROCESSORS, "pc1": [{"concurrent": 1}]},
                                   metrics={"enable": True, "http_listen": f"127.0.0.1:{port}"}))
        worker = subprocess.Popen(damocles_cmd("worker", "run", "-c", str(cfg), "--log-format", "json",
                                               "--parent-cache", str(tmp_path / "parents")),
                                  stdout=subprocess.DEVNULL, stderr=wlog, text=True, cwd=ROOT, env=env)
        procs.append(worker)
        admin = RPCClient(url, issue_token(secret, "admin"))
        seen_states: set[str] = set()
        durations, finished, worker_scrapes = [], 0.0, []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            m = scrape(f"{url}/metrics", read)
            seen_states |= {dict(ls)["state"] for (n, ls), v in m.items() if n == "damocles_sectors" and v > 0}
            durations.append(total(m, "damocles_sector_state_duration_seconds_count"))
            finished = total(m, "damocles_sectors", state="Finished")
            try:
                worker_scrapes.append(scrape(f"http://127.0.0.1:{port}/metrics"))
            except OSError:
                pass                      # the exporter starts with the worker
            if finished == 3:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.3)   # scraping a live run; bounded by the deadline
        assert finished == 3, (seen_states, admin.call("Venus.ListSectors", "", 0))
        # the state series moved through the pipeline, and the duration histogram grew with it
        assert {"PC1Done", "PCSubmitted", "Finished"} <= seen_states or len(seen_states) >= 3, seen_states
        assert durations[-1] > durations[0] and durations == sorted(durations)
        assert durations[-1] >= 3 * 15                   # every sector passed through its ~18 states
        assert total(m, "damocles_sector_state_duration_seconds_count", state="PC1Done") == 3
        assert total(m, "damocles_sector_transitions_total", from_state="ProofSubmitted", to_state="Finished") == 3
        assert total(m, "damocles_rpc_requests_total", method="Venus.ReportState", result="ok") >= 45
        assert total(m, "damocles_rpc_request_duration_seconds_count", method="Venus.AllocateSector") >= 3
        assert total(m, "damocles_worker_last_ping_seconds", worker="w-metrics") >= 0
        assert total(m, "damocles_farm_threads", state="Threads") == 2       # the one worker's two threads
        assert total(m, "damocles_wdpost_current_deadline", miner="1000") >= 0
        # the worker's exporter: stage durations per stage, pool size, RPC calls to the manager
        w = worker_scrapes[-1]
        assert total(w, "damocles_worker_task_duration_seconds_count", stage="pc1", worker_name="w-metrics") >= 3
        assert total(w, "damocles_worker_task_duration_seconds_count", stage="c2") >= 3
        assert total(w, "damocles_worker_pool_processes", stage="pc1") == 1
        assert total(w, "damocles_worker_rpc_calls_total", method="Venus.ReportState", result="ok") >= 45
        assert total(w, "damocles_worker_threads") == 2
        firsts = [total(s, "damocles_worker_task_duration_seconds_count") for s in worker_scrapes]
        assert firsts == sorted(firsts) and firsts[-1] > firsts[0]
        # the worker's RPC port serves the same registry, with a token
        dest = admin.call("Venus.WorkerPingInfoList")[0]["Info"]["Dest"]
        assert total(scrape(f"http://{dest}/metrics", read), "damocles_worker_threads") == 2
        try:
            scrape(f"{url}/metrics")
            raise AssertionError("the manager's /metrics answered without a token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
    logs = (tmp_path / "manager.log").read_text()
    wlogs = (tmp_path / "worker.log").read_text()
    # --log-format json: one object a line, sector events carry the sector and its state as fields
    events = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
    moved = [e for e in events if e.get("sector") == "s-t01000-1" and e.get("event") == "PC1"]
    assert moved and moved[0]["state"] == "PC1Done" and moved[0]["prev"] == "TicketAssigned", logs[-2000:]
    events = [json.loads(x) for x in wlogs.splitlines() if x.startswith("{")]
    moved = [e for e in events if e.get("sector") == "s-t01000-2" and e.get("event") == "C2"]
    assert moved and moved[0]["state"] == "C2Done" and moved[0]["sealing_thread"] in (0, 1), wlogs[-2000:]


def test_up_shows_progress_and_logs_json(tmp_path):
    """`damocles up --log-format json`: the terminal gets the progress line and the page's address;
    stderr gets one JSON object per event, sector events with the sector and its state."""
    p = subprocess.run(damocles_cmd("up", "--home", str(tmp_path / "up"), "--sectors", "1", "--block-time", "0.1",
                                    "--stall-timeout", "120", "--log-format", "json"),
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "damocles up: status page http://127.0.0.1:" in p.stdout and "/ui/login?code=" in p.stdout
    assert "manager login-url --home" in p.stdout
    assert "?token=" not in p.stdout and "eyJ" not in p.stdout                  # no token printed (a JWT starts eyJ)
    assert "| in flight: " in p.stdout and re.search(r"damocles up: \d+ sectors finished", p.stdout)   # both threads finish one
    events = [json.loads(line) for line in p.stderr.splitlines() if line.strip()]     # every stderr line is JSON
    finished = [e for e in events if e.get("event") == "Finish" and e["logger"] == "damocles.manager.sectors"]
    assert finished and finished[0]["state"] == "Finished" and finished[0]["sector"].startswith("s-t01000-")
    assert {e["level"] for e in events} <= {"info", "warning", "error"}
