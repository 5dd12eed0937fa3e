"""The status page's server side, in process: public static files, read-protected views, an ETag
that moves only with visible changes (an idle refresh is one SQL statement), the bounded
transition history, and the sector actions reaching a worker's RPC as the CLI does."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from appliance.manager import state as state_mod
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient
from appliance.rpc.server import RPCServer
from appliance.rpc.wire import optional, string, u64

from .configs import manager_toml

CONFIG = manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}})


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "m"
    init_home(home, CONFIG)
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    shown = threading.Event()
    for _ in range(200):      # the chain views' first result (its ETag change) before the test looks: bounded, 20 s
        if svc.web.chain_views.ready() or shown.wait(0.1):
            break
    yield svc, f"http://{host}:{port}"
    svc.stop()


def get(url, token=None, headers=None):
    req = urllib.request.Request(url, headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers, r.read()


def report(client, sid, prev, nxt, event, failure=None, worker="w1", location="/w/t0"):
    return client.call("Venus.ReportState", sid, {"Worker": {"Instance": worker, "Location": location},
                                                  "StateChange": {"Prev": prev, "Next": nxt, "Event": event},
                                                  "Failure": failure})


def test_page_is_public_and_views_need_a_token(manager):
    svc, url = manager
    status, headers, body = get(url + "/ui/")
    assert status == 200 and b"<title>damocles</title>" in body and headers["Content-Type"].startswith("text/html")
    assert get(url + "/ui/app.js")[0] == 200 and get(url + "/ui/app.css")[0] == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url + "/ui/nothing")
    assert e.value.code == 404
    for path in ("/ui/api/version", "/ui/api/overview", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(url + path)
        assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as e:
            get(url + path, "forged")
        assert e.value.code == 401
    read = issue_token(svc.secret, "read")
    v = json.loads(get(url + "/ui/api/version", read)[2])
    assert set(v) == {"ETag", "Epoch", "Now", "Pings"}
    with pytest.raises(urllib.error.HTTPError) as e:           # unchanged: 304, no body
        get(url + "/ui/api/version", read, {"If-None-Match": f'"{v["ETag"]}"'})
    assert e.value.code == 304
    ov = json.loads(get(url + "/ui/api/overview", read)[2])
    assert ov["Sectors"]["Live"] == [] and ov["Stores"][0]["Name"] == "persist-1" and "1000" in ov["Proving"]
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url + "/ui/api/sector/1000-99", read)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url + "/ui/api/sector/nonsense", read)
    assert e.value.code == 400


def test_etag_moves_with_visible_changes_only_and_idle_costs_one_statement(manager):
    svc, url = manager
    read = issue_token(svc.secret, "read")
    w = RPCClient(url, issue_token(svc.secret, "write"))

    def etag():
        return json.loads(get(url + "/ui/api/version", read)[2])["ETag"]

    e0 = etag()
    sid = w.call("Venus.AllocateSector", {})["ID"]
    e1 = etag()
    assert e1 != e0
    info = {"Name": "w1", "Dest": "127.0.0.1:1", "Summary": {"Threads": 2, "Empty": 0, "Paused": 0, "Running": 2,
                                                             "Waiting": 0, "Errors": 0}}
    w.call("Venus.WorkerPing", info)
    w.call("Venus.WdPoStAllocateJobs", {}, 1, "prover-1")     # a prover's first call binds its name (visible)
    e2 = etag()
    assert e2 != e1
    w.call("Venus.WorkerPing", info)          # the same info again: only the last ping moved (sent in memory)
    w.call("Venus.WdPoStAllocateJobs", {}, 1, "prover-1")     # a prover's heartbeat
    assert etag() == e2
    listed = [x["Name"] for x in json.loads(get(url + "/ui/api/overview", read)[2])["Workers"]["Workers"]]
    assert "w1" in listed        # version then sends the pings of the workers the overview listed
    assert json.loads(get(url + "/ui/api/version", read)[2])["Pings"]["w1"] > 0
    report(w, sid, "Allocated", "DealsAcquired", "AcquireDeals")
    assert etag() != e2
    counted = []

    def page_statement(sql):      # the threads answering the manager's HTTP requests; not its own loops
        if threading.current_thread().name == "rpc-request":     # (poster, housekeeping) nor the devnet API they call
            counted.append(sql)
    svc.state.db.set_trace(page_statement)
    svc.devnet.database.set_trace(page_statement)
    try:
        for _ in range(10):
            get(url + "/ui/api/version", read)
    finally:
        svc.state.db.set_trace(None)
        svc.devnet.database.set_trace(None)
    assert counted == ["SELECT version FROM web_version WHERE id = 1"] * 10


def test_history_records_transitions_and_failures_bounded(manager, monkeypatch):
    svc, url = manager
    w = RPCClient(url, issue_token(svc.secret, "write"))
    sid = w.call("Venus.AllocateSector", {})["ID"]
    report(w, sid, "Allocated", "DealsAcquired", "AcquireDeals")
    report(w, sid, "DealsAcquired", "DealsAcquired", "Failure", {"Level": "temp", "Desc": "disk full"})
    report(w, sid, "DealsAcquired", "PieceAdded", "AddPiece")
    d = json.loads(get(url + "/ui/api/sector/s-t01000-1", issue_token(svc.secret, "read"))[2])
    assert [(h["prev"], h["next"], h["event"], h["level"]) for h in d["History"]] == [
        ("Allocated", "DealsAcquired", "AcquireDeals", None), ("DealsAcquired", "DealsAcquired", "Failure", "temp"),
        ("DealsAcquired", "PieceAdded", "AddPiece", None)]
    assert all(h["Duration"] >= 0 for h in d["History"]) and d["Record"]["location"] == "/w/t0"
    assert "failure" not in d["Record"]                 # the next good report clears it
    # the metrics saw one transition out of each state and the failure
    text = get(url + "/metrics", issue_token(svc.secret, "read"))[2].decode()
    assert 'damocles_sector_state_duration_seconds_count{state="DealsAcquired"} 1.0' in text
    assert 'damocles_sector_errors_total{level="temp"} 1.0' in text
    assert 'damocles_sectors{plan="sealer",state="PieceAdded"} 1.0' in text
    # bounded: a sector keeps its newest HISTORY_PER_SECTOR rows
    monkeypatch.setattr(state_mod, "HISTORY_PER_SECTOR", 5)
    for i in range(12):
        report(w, sid, "PieceAdded", "PieceAdded", "Failure", {"Level": "temp", "Desc": f"try {i}"})
    hist = svc.state.history(1000, 1)
    assert len(hist) == 5 and hist[-1]["error"] == "try 11"
    # an aborted sector is recorded, and a late report does not move it
    admin = RPCClient(url, issue_token(svc.secret, "admin"))
    admin.call("Venus.AbortSector", sid, "bad disk")
    assert report(w, sid, "PieceAdded", "TreeDBuilt", "BuildTreeD")["AbortReason"] == "bad disk"
    rec = svc.state.sector(1000, 1)
    assert rec["state"] == "Aborted" and svc.state.history(1000, 1)[-1]["event"] == "Abort"


def fake_worker(sector: str, paused: bool = True):
    """A worker's RPC with one sealing thread holding `sector`; records the calls it gets."""
    calls = []
    server = RPCServer(None, verifier=lambda token: "admin" if token.startswith("ey") else "read")
    server.register("VenusWorker.WorkerList", lambda: [{"index": 0, "location": "/w/t0", "plan": "sealer", "job_id": sector,
                                                        "job_state": "C1Done",
                                                        "thread_state": {"state": "Paused" if paused else "Running"},
                                                        "last_error": "perm: boom"}], "read", [])
    server.register("VenusWorker.WorkerResume", lambda i, s: calls.append(("resume", i, s)) or True, "admin",
                    [("index", u64), ("set_to", optional(string))])
    server.register("VenusWorker.WorkerPause", lambda i: calls.append(("pause", i)) or True, "admin", [("index", u64)])
    host, port = server.serve("127.0.0.1", 0)
    return server, f"{host}:{port}", calls


def test_actions_reach_the_workers_rpc(manager):
    svc, url = manager
    w = RPCClient(url, issue_token(svc.secret, "write"))
    admin = RPCClient(url, issue_token(svc.secret, "admin"))
    sid = w.call("Venus.AllocateSector", {})["ID"]
    with pytest.raises(RPCError, match="not been reported by any worker"):
        admin.call("Venus.SectorResume", sid, None)
    report(w, sid, "C1Done", "C1Done", "Failure", {"Level": "perm", "Desc": "boom"})
    with pytest.raises(RPCError, match="has not pinged"):
        admin.call("Venus.SectorResume", sid, None)
    server, dest, calls = fake_worker("s-t01000-1")
    try:
        w.call("Venus.WorkerPing", {"Name": "w1", "Dest": dest})
        with pytest.raises(RPCError, match="needs 'admin'"):
            w.call("Venus.SectorResume", sid, None)
        assert admin.call("Venus.SectorResume", sid, None) == {"Worker": "w1", "Index": 0, "Resumed": True}
        assert admin.call("Venus.SectorResume", sid, "PC2Done")["Resumed"] is True
        assert admin.call("Venus.SectorPause", sid)["Paused"] is True
        assert admin.call("Venus.SectorAbort", sid, "from the page") == {"Aborted": True, "Nudged": True}
        assert calls == [("resume", 0, None), ("resume", 0, "PC2Done"), ("pause", 0), ("resume", 0, None)]
        assert svc.state.sector(1000, 1)["abort_reason"] == "from the page"
    finally:
        server.shutdown()
    sid2 = w.call("Venus.AllocateSector", {})["ID"]
    report(w, sid2, "Allocated", "Allocated", "Failure", {"Level": "perm", "Desc": "x"})
    with pytest.raises(RPCError, match="cannot be reached"):
        admin.call("Venus.SectorResume", sid2, None)
