"""Manager-to-worker calls carry a credential for one VenusWorker method on one worker, for at
most 60 s (security review: the manager used to send a 60-second admin token, which a worker, or
anyone on the way, could replay on the manager as the operator). The manager runs in process;
each worker's RPC is the real one (worker/rpc.py) around a recording sealing thread, checking
credentials with the live manager. The credentials replayed are the ones the manager really sent."""

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import SimpleNamespace

import jwt
import pytest

from appliance.manager.service import ManagerService, init_home
from appliance.rpc import INVALID_PARAMS, UNAUTHORIZED, RPCError
from appliance.rpc.auth import (PERMISSIONS, WORKER_CALL_AUDIENCE, AuthError, issue_token, issue_worker_call_token,
                                verify_token)
from appliance.rpc.client import HTTPStatusError, RPCClient
from appliance.worker.rpc import build_server

from .configs import manager_toml
from .conftest import run_cli

pytestmark = pytest.mark.timeout(120)
ACTION_ERROR = 11050


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    yield svc, f"http://{host}:{port}"
    svc.stop()


class RecordingThread:
    """A sealing thread holding one sector; records what the worker's RPC made it do."""

    def __init__(self, job_id: str):
        self.job_id, self.calls = job_id, []
        self.plan, self.table = "sealer", SimpleNamespace(states=("PC1Done", "PC2Done"))

    def pause(self):
        self.calls.append(("pause",))
        return True

    def resume(self, set_to):
        self.calls.append(("resume", set_to))
        return True

    def summary(self):
        return {"index": 0, "location": "/w/t0", "plan": self.plan, "job_id": self.job_id, "job_state": "C1Done",
                "thread_state": {"state": "Paused"}, "last_error": "perm: boom"}


@dataclass
class Worker:
    name: str
    url: str
    sid: dict
    thread: RecordingThread
    server: object
    received: list = field(default_factory=list)     # the bearer credentials the worker's RPC was sent


def start_worker(svc, url: str, name: str) -> Worker:
    """A worker named `name` with its own write token: it allocates and reports a sector, serves
    its RPC and pings the manager with that address."""
    rpc = RPCClient(url, issue_token(svc.secret, "write", name))
    sid = rpc.call("Venus.AllocateSector", {})["ID"]
    rpc.call("Venus.ReportState", sid, {"Worker": {"Instance": name, "Location": "/w/t0"},
                                        "StateChange": {"Prev": "C1Done", "Next": "C1Done", "Event": "Failure"},
                                        "Failure": {"Level": "perm", "Desc": "boom"}})
    thread = RecordingThread(f"s-t0{sid['Miner']}-{sid['Number']}")
    server = build_server(SimpleNamespace(rpc=rpc, threads=[thread], config=SimpleNamespace(name=name)))
    worker = Worker(name, "", sid, thread, server)
    checked = server.permission

    def recording(authorization, client_ip, cookie=None):
        if authorization:
            worker.received.append(authorization.partition(" ")[2])
        return checked(authorization, client_ip, cookie)
    server.permission = recording
    host, port = server.serve("127.0.0.1", 0)
    worker.url = f"http://{host}:{port}"
    rpc.call("Venus.WorkerPing", {"Name": name, "Dest": f"{host}:{port}", "Version": "test"})
    return worker


@pytest.fixture
def workers(manager):
    svc, url = manager
    started = [start_worker(svc, url, "wA"), start_worker(svc, url, "wB")]
    yield started
    for w in started:
        w.server.shutdown()


def refused(fn, *args) -> str:
    """The message of a refusal as unauthorized (401/403 or -32001, directly or as the manager relays it)."""
    with pytest.raises((RPCError, HTTPStatusError)) as e:
        fn(*args)
    text = str(e.value)
    assert getattr(e.value, "code", UNAUTHORIZED) == UNAUTHORIZED or "401" in text or "403" in text, text
    return text


def credential_for(worker: Worker, before: int) -> str:
    """The one credential the manager sent `worker` for the call it made after `before` receipts."""
    sent = worker.received[before:]
    assert len(sent) == 1, sent
    return sent[0]


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# ------------------------------------------------------------------ the button path

def test_the_pause_and_resume_buttons_reach_the_worker_with_one_credential_per_call(manager, workers):
    svc, url = manager
    admin = RPCClient(url, issue_token(svc.secret, "admin"))
    a = workers[0]
    assert admin.call("Venus.SectorPause", a.sid) == {"Worker": "wA", "Index": 0, "Paused": True}
    assert admin.call("Venus.SectorResume", a.sid, "PC2Done") == {"Worker": "wA", "Index": 0, "Resumed": True}
    assert admin.call("Venus.SectorAbort", a.sid, "from the page") == {"Aborted": True, "Nudged": True}
    assert a.thread.calls == [("pause",), ("resume", "PC2Done"), ("resume", None)]
    assert workers[1].thread.calls == [] and workers[1].received == []
    # WorkerList then the action, each time: six calls, six credentials, each naming its method and wA
    sent = [claims(t) for t in a.received]
    assert [c["act"] for c in sent] == ["VenusWorker.WorkerList", "VenusWorker.WorkerPause"] + \
        ["VenusWorker.WorkerList", "VenusWorker.WorkerResume"] * 2
    assert all(c["wkr"] == "wA" and c["aud"] == WORKER_CALL_AUDIENCE and "Allow" not in c for c in sent)
    assert all(0 < c["exp"] - c["nbf"] <= 60 for c in sent)
    assert len({c["jti"] for c in sent}) == len(sent)


def test_the_util_workers_commands_go_through_the_manager(manager, workers):
    svc, url = manager
    admin, reader = (RPCClient(url, issue_token(svc.secret, p)) for p in ("admin", "read"))
    b = workers[1]
    assert reader.call("Venus.WorkerThreadList", "wB")[0]["job_id"] == b.thread.job_id
    assert admin.call("Venus.WorkerThreadPause", "wB", 0) is True
    assert admin.call("Venus.WorkerThreadResume", "wB", 0, None) is True
    refused(reader.call, "Venus.WorkerThreadPause", "wB", 0)
    with pytest.raises(RPCError, match="no worker named 'nobody'"):
        admin.call("Venus.WorkerThreadPause", "nobody", 0)
    with pytest.raises(RPCError) as e:
        admin.call("Venus.WorkerThreadResume", "wB", 0, "NoSuchState")
    assert e.value.code == INVALID_PARAMS and "NoSuchState" in e.value.message
    assert b.thread.calls == [("pause",), ("resume", None)]
    assert all(claims(t)["wkr"] == "wB" for t in b.received)


def test_the_operators_worker_command_sends_a_token_that_expires_within_a_minute(manager, workers):
    """`damocles worker pause --worker HOST:PORT` addresses the worker directly: the admin token it
    mints from the manager's home used to have no expiry at all."""
    svc, url = manager
    b = workers[1]
    before = len(b.received)
    out = run_cli("worker", "pause", "--worker", b.url.removeprefix("http://"), "--index", "0",
                  "--home", str(svc.home), "--json", check=True)
    assert '"paused": true' in out.stdout and b.thread.calls == [("pause",)]
    sent = claims(credential_for(b, before))
    assert sent["Allow"][-1] == "admin" and 0 < sent["exp"] - time.time() <= 60


# ------------------------------------------------------------------ replays refused

def test_a_credential_sent_to_a_worker_is_refused_by_the_manager_at_every_level(manager, workers):
    """Finding: the manager's call to a worker carried an admin token, good on the manager for 60 s."""
    svc, url = manager
    a = workers[0]
    RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.SectorPause", a.sid)
    stolen = a.received[-1]
    # one method of each level the manager has (no method asks for sign: it is checked through admin)
    by_level = {}
    for m in svc.rpc.methods.values():
        if not m.params and m.perm not in by_level:
            by_level[m.perm] = (m.name,)
    by_level["write"] = ("Venus.AllocateSector", {})
    by_level["admin"] = ("Venus.AbortSector", a.sid, "replayed")
    assert set(by_level) >= {"read", "write", "admin"}
    thief = RPCClient(url, stolen)
    for perm, (method, *params) in sorted(by_level.items(), key=lambda kv: PERMISSIONS.index(kv[0])):
        msg = refused(thief.call, method, *params)
        assert "worker" in msg, (perm, method, msg)
    assert claims(stolen)["act"] == "VenusWorker.WorkerPause"
    with pytest.raises(AuthError, match="worker's RPC"):
        verify_token(svc.secret, stolen)
    # nor can it be verified as a token through AuthVerify, nor open a plain HTTP route
    refused(RPCClient(url, issue_token(svc.secret, "read")).call, "Venus.AuthVerify", stolen)
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {stolen}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    # state unchanged: no new sector, the sector not aborted
    assert sorted(s["ID"]["Number"] for s in svc.sealer.list_sectors()) == sorted(w.sid["Number"] for w in workers)
    assert svc.state.sector(a.sid["Miner"], a.sid["Number"])["state"] != "Aborted"


def test_a_credential_for_pause_is_refused_for_resume_and_any_other_method(manager, workers):
    svc, url = manager
    a = workers[0]
    RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.SectorPause", a.sid)
    sent_pause, sent_list = a.received[-1], a.received[-2]
    assert a.thread.calls == [("pause",)]
    # the credentials the manager sent, replayed on the worker: refused (each served its one call)
    refused(RPCClient(a.url, sent_pause).call, "VenusWorker.WorkerResume", 0, None)
    assert "used already" in refused(RPCClient(a.url, sent_pause).call, "VenusWorker.WorkerPause", 0)
    refused(RPCClient(a.url, sent_list).call, "VenusWorker.WorkerPause", 0)
    # unused ones, minted as the manager mints them: only the method they name
    def fresh(method):
        return RPCClient(a.url, issue_worker_call_token(svc.secret, method, "wA"))
    assert "allows 'VenusWorker.WorkerPause' only" in refused(fresh("VenusWorker.WorkerPause").call,
                                                              "VenusWorker.WorkerResume", 0, None)
    refused(fresh("VenusWorker.WorkerPause").call, "VenusWorker.WorkerList")
    refused(fresh("VenusWorker.WorkerPause").call, "VenusWorker.WorkerVersion")
    refused(fresh("VenusWorker.WorkerList").call, "VenusWorker.WorkerPause", 0)
    assert a.thread.calls == [("pause",)]
    assert fresh("VenusWorker.WorkerResume").call("VenusWorker.WorkerResume", 0, None) is True
    assert a.thread.calls == [("pause",), ("resume", None)]


def test_a_credential_for_worker_a_is_refused_by_worker_b(manager, workers):
    svc, url = manager
    a, b = workers
    RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.SectorPause", a.sid)
    for_a = a.received[-1]        # already used on A, never seen by B: B refuses it for its name
    msg = refused(RPCClient(b.url, for_a).call, "VenusWorker.WorkerPause", 0)
    assert "for worker 'wA'" in msg and "'wB'" in msg
    assert b.thread.calls == []
    # a worker whose name the manager does not pass (no [worker] name known) refuses every such credential
    nameless = build_server(SimpleNamespace(rpc=RPCClient(url, issue_token(svc.secret, "write")), threads=[RecordingThread("x")]))
    host, port = nameless.serve("127.0.0.1", 0)
    try:
        refused(RPCClient(f"http://{host}:{port}", for_a).call, "VenusWorker.WorkerPause", 0)
    finally:
        nameless.shutdown()


def test_an_expired_or_overlong_or_forged_credential_is_refused(manager, workers):
    svc, url = manager
    a = workers[0]
    secret = svc.secret.current()
    now = int(time.time())
    shaped = {"aud": WORKER_CALL_AUDIENCE, "act": "VenusWorker.WorkerPause", "wkr": "wA", "jti": "t"}
    expired = jwt.encode({**shaped, "iat": now - 120, "nbf": now - 120, "exp": now - 60}, secret, algorithm="HS256")
    overlong = jwt.encode({**shaped, "iat": now, "nbf": now, "exp": now + 3600}, secret, algorithm="HS256")
    forged = jwt.encode({**shaped, "iat": now, "nbf": now, "exp": now + 30}, b"\x00" * 32, algorithm="HS256")
    assert "expired" in refused(RPCClient(a.url, expired).call, "VenusWorker.WorkerPause", 0)
    assert "at most 60 s" in refused(RPCClient(a.url, overlong).call, "VenusWorker.WorkerPause", 0)
    assert "Signature" in refused(RPCClient(a.url, forged).call, "VenusWorker.WorkerPause", 0)
    # one the manager minted, used after its expiry (polled: no fixed sleep)
    short = issue_worker_call_token(svc.secret, "VenusWorker.WorkerPause", "wA", ttl=1)
    deadline = time.monotonic() + 10
    while time.time() < claims(short)["exp"] + 0.5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "expired" in refused(RPCClient(a.url, short).call, "VenusWorker.WorkerPause", 0)
    assert a.thread.calls == []
    for bad in ((svc.secret, "Venus.AbortSector", "wA"), (svc.secret, "VenusWorker.WorkerPause", ""),
                (svc.secret, "VenusWorker.WorkerPause", "wA", 61)):
        with pytest.raises(ValueError):
            issue_worker_call_token(*bad)


# ------------------------------------------------------------------ the address

@pytest.mark.parametrize("dest", ["127.0.0.1:27893/x", "127.0.0.1:27893/x?", "127.0.0.1:27893?a=b", "127.0.0.1:27893#f",
                                  "user@127.0.0.1:27893", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999",
                                  "ftp://127.0.0.1:21", "http://127.0.0.1:1/rpc/v0", "bad host:1", ""])
def test_a_dest_with_more_than_scheme_host_and_port_is_refused_at_worker_ping(manager, dest):
    svc, url = manager
    w = RPCClient(url, issue_token(svc.secret, "write", "wC"))
    with pytest.raises(RPCError) as e:
        w.call("Venus.WorkerPing", {"Name": "wC", "Dest": dest, "Version": "v"})
    assert e.value.code == INVALID_PARAMS and "Dest" in e.value.message
    assert "wC" not in {n for n, _, _ in svc.state.workers()}


@pytest.mark.parametrize("dest", ["10.0.0.5:17890", "[::1]:17890", "http://worker-01.lan:17890", "https://10.0.0.5:17890/"])
def test_a_plain_dest_is_accepted(manager, dest):
    svc, url = manager
    RPCClient(url, issue_token(svc.secret, "write", "wC")).call("Venus.WorkerPing", {"Name": "wC", "Dest": dest})
    assert {n: i for n, i, _ in svc.state.workers()}["wC"]["Dest"] == dest


def test_a_stored_dest_with_a_path_is_never_called(manager, workers):
    """An address stored before WorkerPing checked it: the manager refuses to call it."""
    svc, url = manager
    a = workers[0]
    svc.state.ping("wA", {"Name": "wA", "Dest": a.url.removeprefix("http://") + "/elsewhere?"})
    before = len(a.received)
    with pytest.raises(RPCError) as e:
        RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.SectorPause", a.sid)
    assert e.value.code == ACTION_ERROR and "will not call" in e.value.message
    assert len(a.received) == before and a.thread.calls == []
