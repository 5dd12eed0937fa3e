"""Workers are who their credential says, and what a write token can store is bounded (security
review, worker identity and bounded state): each test replays an attack with a write token (or an
AllowNetworks address) on a live manager and checks it is refused with the state unchanged."""

import urllib.request

import pytest

from appliance.config import ConfigError
from appliance.manager.config import parse_config
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import INVALID_PARAMS, UNAUTHORIZED, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from .configs import manager_toml

pytestmark = pytest.mark.timeout(120)


def _start(tmp_path, sealing=None, rpc=None):
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}},
                                 config={"Sealing": sealing or {}, "RPC": rpc or {}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    return svc, f"http://{host}:{port}"


@pytest.fixture
def manager(tmp_path):
    svc, url = _start(tmp_path)
    yield svc, url
    svc.stop()


def report(client, sid, prev, nxt, event="Step", failure=None, worker="w1"):
    return client.call("Venus.ReportState", sid, {"Worker": {"Instance": worker, "Location": "/w/t0"},
                                                  "StateChange": {"Prev": prev, "Next": nxt, "Event": event},
                                                  "Failure": failure})


def refused(code, fn, *args):
    with pytest.raises(RPCError) as e:
        fn(*args)
    assert e.value.code == code, e.value.message
    return e.value.message


def metrics(svc, url) -> str:
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {issue_token(svc.secret, 'read')}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def workers(client) -> dict:
    return {w["Info"]["Name"]: w["Info"] for w in client.call("Venus.WorkerPingInfoList")}


def test_another_credential_cannot_repoint_a_workers_address(manager):
    svc, url = manager
    owner = RPCClient(url, issue_token(svc.secret, "write", "sealer-01"))
    other = RPCClient(url, issue_token(svc.secret, "write"))
    owner.call("Venus.WorkerPing", {"Name": "w1", "Dest": "10.0.0.5:17890", "Version": "v"})
    msg = refused(UNAUTHORIZED, other.call, "Venus.WorkerPing", {"Name": "w1", "Dest": "127.0.0.1:27893", "Version": "v"})
    assert "registered by another credential" in msg
    assert workers(owner)["w1"]["Dest"] == "10.0.0.5:17890"
    # the same name reported under in a ReportState is refused as well (the second way of the attack)
    sid = other.call("Venus.AllocateSector", {})["ID"]
    refused(UNAUTHORIZED, report, other, sid, "Empty", "Allocated", "Allocate", None, "w1")
    assert svc.state.sector(sid["Miner"], sid["Number"])["state"] == "Allocated"
    # a new token with the owner's subject is the owner (rotation keeps the binding)
    RPCClient(url, issue_token(svc.secret, "write", "sealer-01")).call(
        "Venus.WorkerPing", {"Name": "w1", "Dest": "10.0.0.6:17890", "Version": "v"})
    assert workers(owner)["w1"]["Dest"] == "10.0.0.6:17890"


def test_a_name_first_seen_in_a_report_is_bound_to_its_reporter(manager):
    svc, url = manager
    owner, other = (RPCClient(url, issue_token(svc.secret, "write", n)) for n in ("a", "b"))
    sid = owner.call("Venus.AllocateSector", {})["ID"]
    report(owner, sid, "Empty", "Allocated", "Allocate", worker="fresh")
    refused(UNAUTHORIZED, other.call, "Venus.WorkerPing", {"Name": "fresh", "Dest": "127.0.0.1:1", "Version": "v"})
    assert not workers(owner)["fresh"].get("Dest")


def test_reports_and_submits_only_from_the_worker_the_sector_is_allocated_to(manager):
    svc, url = manager
    owner, other = (RPCClient(url, issue_token(svc.secret, "write", n)) for n in ("sealer-01", "sealer-02"))
    sid = owner.call("Venus.AllocateSector", {})["ID"]
    report(owner, sid, "Empty", "Allocated", "Allocate")
    report(owner, sid, "Allocated", "DealsAcquired", "AcquireDeals")
    before = svc.state.sector(sid["Miner"], sid["Number"])
    history = svc.state.history(sid["Miner"], sid["Number"])
    sector = {"ID": sid, "ProofType": before["proof"]}
    calls = [("Venus.ReportState", sid, {"Worker": {"Instance": "w2", "Location": "/x"},
                                         "StateChange": {"Prev": "DealsAcquired", "Next": "PC1Done", "Event": "x"}}),
             ("Venus.ReportAborted", sid, "not mine"),
             ("Venus.ReportFinalized", sid),
             ("Venus.AcquireDeals", sid, {}),
             ("Venus.AssignTicket", sid),
             ("Venus.SubmitPreCommit", sector, {"CommR": [0] * 32, "CommD": [0] * 32,
                                                "Ticket": {"Ticket": "A" * 43 + "=", "Epoch": 1}}, False),
             ("Venus.SubmitProof", sid, {"Proof": "AAAA"}, False),
             ("Venus.StoreReserveSpace", sid, 1024, ["persist-1"]),
             ("Venus.SubmitPersistedEx", sid, "persist-1", False)]
    for method, *params in calls:
        refused(UNAUTHORIZED, other.call, method, *params)
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before
    assert svc.state.history(sid["Miner"], sid["Number"]) == history
    assert 'damocles_manager_limited_total{kind="foreign_sector"} 9.0' in metrics(svc, url)
    # the operator is not bound
    RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.AbortSector", sid, "operator")
    assert svc.state.sector(sid["Miner"], sid["Number"])["abort_reason"] == "operator"


def test_a_finished_sector_is_neither_aborted_nor_rewound_by_a_worker(manager):
    svc, url = manager
    owner = RPCClient(url, issue_token(svc.secret, "write", "sealer-01"))
    sid = owner.call("Venus.AllocateSector", {})["ID"]
    report(owner, sid, "Empty", "Allocated", "Allocate")
    report(owner, sid, "Allocated", "Finished", "Finish")
    owner.call("Venus.ReportFinalized", sid)
    before = svc.state.sector(sid["Miner"], sid["Number"])
    assert before["state"] == "Finished" and before["finalized"] and "abort_reason" not in before
    assert "finished sealing" in refused(INVALID_PARAMS, owner.call, "Venus.ReportAborted", sid, "gone")
    answer = report(owner, sid, "Finished", "PC1Done", "Rewind", worker="w9")
    assert answer["Finalized"] is True and answer["AbortReason"] == ""
    owner.call("Venus.ReportFinalized", sid)            # a retried ReportFinalized changes nothing either
    refused(INVALID_PARAMS, owner.call, "Venus.SubmitPersistedEx", sid, "persist-1", False)
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before


def test_an_aborted_sector_is_not_finished_by_a_late_report(manager):
    svc, url = manager
    owner = RPCClient(url, issue_token(svc.secret, "write", "sealer-01"))
    sid = owner.call("Venus.AllocateSector", {})["ID"]
    report(owner, sid, "Empty", "Allocated", "Allocate")
    owner.call("Venus.ReportAborted", sid, "given up")
    before = svc.state.sector(sid["Miner"], sid["Number"])
    owner.call("Venus.ReportFinalized", sid)
    owner.call("Venus.ReportAborted", sid, "again")
    assert report(owner, sid, "Allocated", "Finished", "Finish")["AbortReason"] == "given up"
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before


def test_a_tokenless_worker_is_bound_to_its_allow_networks_address(tmp_path):
    """Damocles' worker sends no token: from an AllowNetworks address it allocates, reports and
    finishes its own sectors, and a token holder cannot touch them or take its name."""
    svc, url = _start(tmp_path, rpc={"AllowNetworks": ["127.0.0.0/8"]})
    try:
        rust = RPCClient(url, None)
        sid = rust.call("Venus.AllocateSector", {})["ID"]
        rust.call("Venus.WorkerPing", {"Name": "rust-w", "Dest": "127.0.0.1:17890", "Version": "damocles"})
        report(rust, sid, "Empty", "Allocated", "Allocate", worker="rust-w")
        other = RPCClient(url, issue_token(svc.secret, "write"))
        refused(UNAUTHORIZED, other.call, "Venus.ReportAborted", sid, "x")
        refused(UNAUTHORIZED, other.call, "Venus.WorkerPing", {"Name": "rust-w", "Dest": "127.0.0.1:1", "Version": "v"})
        report(rust, sid, "Allocated", "Finished", "Finish", worker="rust-w")
        rust.call("Venus.ReportFinalized", sid)
        rec = svc.state.sector(sid["Miner"], sid["Number"])
        assert rec["state"] == "Finished" and rec["owner"] == "addr:127.0.0.1"
        assert workers(RPCClient(url, issue_token(svc.secret, "read")))["rust-w"]["Dest"] == "127.0.0.1:17890"
        refused(UNAUTHORIZED, workers, rust)       # the list is the operator's (SealerCliAPI), not a worker's: token needed
    finally:
        svc.stop()


def test_long_text_is_cut_and_unknown_states_and_levels_are_refused(manager):
    svc, url = manager
    w = RPCClient(url, issue_token(svc.secret, "write", "sealer-01"))
    sid = w.call("Venus.AllocateSector", {})["ID"]
    report(w, sid, "Empty", "Allocated", "Allocate")
    huge = "x" * (1 << 20)
    for _ in range(3):
        report(w, sid, "Allocated", "Allocated", "Failure", {"Level": "temp", "Desc": huge})
    rec = svc.state.sector(sid["Miner"], sid["Number"])
    assert rec["failure"]["Desc"].startswith("x" * 4096) and rec["failure"]["Desc"].endswith(
        f"... [{(1 << 20) - 4096} more characters cut]")
    assert all(len(h["error"] or "") < 4200 for h in svc.state.history(sid["Miner"], sid["Number"]))
    w.call("Venus.ReportAborted", sid, "r" * 100_000)
    assert len(svc.state.sector(sid["Miner"], sid["Number"])["abort_reason"]) < 4200

    sid = w.call("Venus.AllocateSector", {})["ID"]
    report(w, sid, "Empty", "Allocated", "Allocate")
    before = (svc.state.sector(sid["Miner"], sid["Number"]), svc.state.history(sid["Miner"], sid["Number"]))
    assert "StateChange.Next" in refused(INVALID_PARAMS, report, w, sid, "Allocated", "Bogus-1")
    assert "StateChange.Prev" in refused(INVALID_PARAMS, report, w, sid, "Bogus-2", "Allocated")
    assert "Failure.Level" in refused(INVALID_PARAMS, report, w, sid, "Allocated", "Allocated", "Failure",
                                      {"Level": "weird", "Desc": "d"})
    assert (svc.state.sector(sid["Miner"], sid["Number"]), svc.state.history(sid["Miner"], sid["Number"])) == before
    report(w, sid, "Allocated", "Allocated", "Failure", {"Level": "Permanent", "Desc": "Damocles spells levels out"})
    assert svc.state.sector(sid["Miner"], sid["Number"])["failure"]["Level"] == "perm"
    text = metrics(svc, url)
    assert "Bogus" not in text and "weird" not in text and 'level="Permanent"' not in text
    assert 'damocles_manager_limited_total{kind="text_truncated"} 4.0' in text
    assert 'damocles_manager_limited_total{kind="unknown_state"} 2.0' in text


def test_in_flight_sectors_per_worker_are_limited(tmp_path):
    svc, url = _start(tmp_path, sealing={"MaxInFlightPerWorker": 3})
    try:
        a, b = (RPCClient(url, issue_token(svc.secret, "write", n)) for n in ("a", "b"))
        got = [a.call("Venus.AllocateSector", {}) for _ in range(5)]
        assert all(got[:3]) and got[3:] == [None, None]
        numbers = svc.state.next_numbers()
        assert b.call("Venus.AllocateSector", {}) is not None          # another worker is not held back
        assert svc.state.next_numbers()[1000] == numbers[1000] + 1      # refused calls took no number
        sid = got[0]["ID"]
        report(a, sid, "Empty", "Allocated", "Allocate")
        a.call("Venus.ReportAborted", sid, "done with it")
        assert a.call("Venus.AllocateSector", {}) is not None           # room again
        assert 'damocles_manager_limited_total{kind="in_flight"} 2.0' in metrics(svc, url)
    finally:
        svc.stop()


def test_limits_in_config_are_checked():
    cfg = parse_config({"Sealing": {"MaxInFlightPerWorker": 8, "MaxTextLength": 1000}})
    assert (cfg.max_in_flight_per_worker, cfg.max_text_length) == (8, 1000)
    with pytest.raises(ConfigError, match=r"\[Sealing\].MaxInFlightPerWorker: 0 is below"):
        parse_config({"Sealing": {"MaxInFlightPerWorker": 0}})
    with pytest.raises(ConfigError, match=r"\[Sealing\].MaxTextLength: 'a' is not a non-negative integer"):
        parse_config({"Sealing": {"MaxTextLength": "a"}})


def test_the_in_flight_limit_holds_under_concurrent_allocations(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from appliance.manager.state import ManagerState
    state = ManagerState(tmp_path / "m.db")
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda _: state.allocate_owned(1000, 5, 1, None, "name:a", 5)[0], range(40)))
        assert sorted(n for n in got if n is not None) == [1, 2, 3, 4, 5]
        assert state.allocate_owned(1000, 5, 1, None, "name:b", 5)[0] == 6
    finally:
        state.close()
