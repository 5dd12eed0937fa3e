"""The active manager's lease (manager.lease) on each store driver: taken, renewed, seen by a
standby, taken over once it lapses; and fencing: a manager whose lease lapsed or was taken
cannot commit a write. Then the standby's server and the client that follows the active manager
between several addresses (rpc.client)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from appliance.config import ConfigError
from appliance.config.validate import manager_urls
from appliance.manager.config import DBConfig, parse_config
from appliance.manager.lease import Lease, LeaseLost, dead_here
from appliance.manager.standby import StandbyServer, advertised_addr, wait_for_lease
from appliance.manager.state import ManagerState
from appliance.rpc import STANDBY, RPCError
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient, StandbyError, TransportError
from appliance.rpc.server import RPCServer
from tests.pg_cluster import pg_dsn, pg_server  # noqa: F401  (fixtures)

MINER = 1000


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """The DBConfig each manager of the test opens (one database, both managers on it)."""
    if request.param == "sqlite":
        return DBConfig()
    return DBConfig("postgres", request.getfixturevalue("pg_dsn"))


@pytest.fixture
def two(store, tmp_path):
    """Two managers' states on one database (two connections, as two processes have)."""
    a = ManagerState(tmp_path / "manager.db", store=store)
    b = ManagerState(tmp_path / "manager.db", store=store)
    yield a, b
    a.close()
    b.close()


def test_the_first_takes_the_lease_and_the_second_sees_it_held(two):
    clock = Clock()
    a = Lease(two[0].db, "http://a:1789", 10, holder="A", now=clock)
    b = Lease(two[1].db, "http://b:1789", 10, holder="B", now=clock)
    assert a.try_take() is None                       # taken
    held = b.try_take()
    assert (held.holder, held.addr, held.expires) == ("A", "http://a:1789", 1010.0)
    assert b.current() == held
    clock.t = 1006.0
    assert a.renew() and a.current().expires == 1016.0
    clock.t = 1015.0                                  # within the renewed lease: still A's
    assert b.try_take().holder == "A"


def test_a_lapsed_lease_is_taken_over_and_the_old_holder_is_fenced(two):
    clock = Clock()
    a = Lease(two[0].db, "http://a:1789", 10, holder="A", now=clock)
    b = Lease(two[1].db, "http://b:1789", 10, holder="B", now=clock)
    assert a.try_take() is None
    two[0].db.fence = a.fence
    lost = []
    a.on_lost = lost.append
    assert two[0].allocate(MINER, 8, 0, None) == 0     # the holder writes
    clock.t = 1010.5                                   # A missed its renewals
    assert b.try_take() is None and b.current().holder == "B"
    with pytest.raises(LeaseLost, match="held by B"):
        two[0].allocate(MINER, 8, 0, None)
    assert lost and "held by B" in lost[0] and a.lost.is_set()
    assert two[1].next_numbers() == {MINER: 1}         # nothing of the refused write is stored
    assert two[1].sector(MINER, 1) is None
    assert not a.renew()                               # lost for good: a restart is a new holder
    assert a.try_take().holder == "B"
    clock.t = 1030.0                                   # even once B's lease lapses in turn
    with pytest.raises(LeaseLost):                     # its own fence, or try_take itself, refuses
        a.try_take()


def test_a_lapsed_lease_fences_its_holder_before_anyone_takes_it(two):
    clock = Clock()
    a = Lease(two[0].db, "http://a:1789", 5, holder="A", now=clock)
    assert a.try_take() is None
    two[0].db.fence = a.fence
    clock.t = 1005.0
    with pytest.raises(LeaseLost, match="lapsed"):
        two[0].allocate(MINER, 8, 0, None)
    assert two[1].next_numbers() == {}


def test_the_fence_costs_one_read_per_write_transaction(two):
    a = Lease(two[0].db, "http://a:1789", 10, holder="A")
    assert a.try_take() is None
    two[0].db.fence = a.fence
    seen = []
    two[0].db.set_trace(seen.append)
    with two[0].tx() as db:          # a transaction with nested joins: one check, at its start
        with two[0].tx():
            db.execute("UPDATE counters SET next = next WHERE miner = ?", (MINER,))
    two[0].db.set_trace(None)
    assert [s for s in seen if "manager_lease" in s] == ["SELECT holder, expires FROM manager_lease WHERE id = 1"]


def test_a_standby_polls_a_live_lease_without_a_write_transaction(two):
    assert Lease(two[0].db, "http://a:1789", 60, holder="A").try_take() is None
    b = Lease(two[1].db, "http://b:1789", 60, holder="B")
    seen = []
    two[1].db.set_trace(seen.append)
    assert b.try_take().holder == "A"
    two[1].db.set_trace(None)
    assert seen == ["SELECT holder, addr, expires FROM manager_lease WHERE id = 1"]     # no BEGIN, no lock


def test_a_clean_stop_releases_the_lease_to_the_next_poll(two):
    a = Lease(two[0].db, "http://a:1789", 60, holder="A")
    b = Lease(two[1].db, "http://b:1789", 60, holder="B")
    assert a.try_take() is None and b.try_take().holder == "A"
    a.release()
    assert b.try_take() is None and b.current().addr == "http://b:1789"


def test_a_dead_process_of_this_host_is_not_waited_for(two):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    gone = f"{socket.gethostname()}:{dead.pid}:1.0"
    assert dead_here(gone) and not dead_here(f"{socket.gethostname()}:{os.getpid()}:1.0")
    assert not dead_here(f"another-host:{dead.pid}:1.0") and not dead_here("A")
    Lease(two[0].db, "http://a:1789", 600, holder=gone).try_take()
    assert Lease(two[1].db, "http://b:1789", 600, holder="B").try_take() is None


def test_a_lease_expired_unrenewed_is_lost_by_the_clock_alone(two):
    """The watchdog's check: no database read, so that a renewal stuck on the database cannot
    keep a lapsed manager writing."""
    clock = Clock()
    a = Lease(two[0].db, "http://a:1789", 10, holder="A", now=clock)
    lost = []
    a.on_lost = lost.append
    assert not a.overdue()                  # nothing taken yet: nothing to lose
    assert a.try_take() is None
    clock.t = 1009.9
    assert not a.overdue()
    two[0].db.close()                       # the database is away: overdue() does not need it
    clock.t = 1010.0
    assert a.overdue() and a.lost.is_set() and lost == ["not renewed before it expired (0.0s ago)"]


def test_keep_renews_until_stopped(two):
    a = Lease(two[0].db, "http://a:1789", 1.5, holder="A")
    assert a.try_take() is None
    first = a.current().expires
    stop = threading.Event()
    t = threading.Thread(target=a.keep, args=(stop,))
    t.start()
    try:
        assert not stop.wait(1.2)            # two renewal periods (0.5 s each)
        assert a.current().expires > first and not a.lost.is_set()
    finally:
        stop.set()
        t.join(timeout=10)
    assert not t.is_alive()


def test_lease_seconds_is_read_and_checked():
    assert DBConfig().lease_seconds == 10.0
    assert parse_config({"Common": {"DB": {"LeaseSeconds": 2}}}).db.lease_seconds == 2.0
    for bad in (0, -1, "10s", True, 601):
        with pytest.raises(ConfigError, match=r"\[Common.DB\].LeaseSeconds"):
            parse_config({"Common": {"DB": {"LeaseSeconds": bad}}})


def test_path_shares_another_homes_sqlite_file(tmp_path):
    cfg = parse_config({"Common": {"DB": {"Path": "../a/manager.db"}}}, tmp_path / "b")
    assert cfg.db.path == tmp_path / "b" / "../a/manager.db"
    one = ManagerState(tmp_path / "a" / "manager.db")
    other = ManagerState(tmp_path / "b" / "manager.db", store=cfg.db)      # the home's own name is not used
    try:
        assert one.allocate(MINER, 8, 0, None) == 0 and other.allocate(MINER, 8, 0, None) == 1
        assert not (tmp_path / "b" / "manager.db").exists()
    finally:
        one.close()
        other.close()
    with pytest.raises(ConfigError, match=r"\[Common.DB\].Path is the SQLite file's path"):
        parse_config({"Common": {"DB": {"Driver": "postgres", "Path": "x", "Postgres": {"DSN": "postgresql://h/d"}}}})


# ----------------------------------------------------------------- the standby and the client


def test_addrs_lists_every_manager_after_addr():
    assert manager_urls({"addr": "http://a:1789", "addrs": ["/ip4/10.0.0.2/tcp/1789", "http://a:1789"]}) == [
        "http://a:1789/rpc/v0", "http://10.0.0.2:1789/rpc/v0"]
    assert manager_urls({"addrs": ["http://b:1"]}) == ["http://b:1/rpc/v0"]
    with pytest.raises(ConfigError, match=r"addrs\[1\]: 'nope'"):
        manager_urls({"addrs": ["http://b:1", "nope"]})
    with pytest.raises(ConfigError, match="addrs: .* non-empty list"):
        manager_urls({"addr": "http://a:1", "addrs": []})
    with pytest.raises(ConfigError, match="addr is required"):
        manager_urls({})


def test_advertised_addr_names_this_host_for_a_wildcard():
    assert advertised_addr("127.0.0.1:1789") == "http://127.0.0.1:1789"
    assert advertised_addr("0.0.0.0:1789") == f"http://{socket.getfqdn()}:1789"


@pytest.fixture
def home(tmp_path):
    load_or_create_secret(tmp_path / "secret")
    return tmp_path


def _config():
    return parse_config({})


def test_a_standby_answers_health_ok_and_every_call_with_the_active_address(home):
    standby = StandbyServer(home, _config())
    host, port = standby.serve("127.0.0.1:0")
    try:
        base = f"http://{host}:{port}"
        with urllib.request.urlopen(base + "/healthcheck", timeout=10) as resp:
            assert resp.read() == b"ok\n"
        token = issue_token(load_or_create_secret(home / "secret"), "write")
        standby.active = "http://active:1789"
        with pytest.raises(StandbyError, match="standby: the active manager is at http://active:1789") as err:
            RPCClient(base, token, timeout=10).call("Venus.AllocateSector", {})
        assert err.value.active == "http://active:1789"
        with pytest.raises(TransportError, match="HTTP 503 this manager is a standby"):
            RPCClient(base, token, timeout=10).download("/piece/x", home / "x")
        with pytest.raises(RPCError, match="unauthorized"):         # a standby still wants a token
            RPCClient(base, None, timeout=10)._call_at(base + "/rpc/v0", "Venus.AllocateSector", {})
    finally:
        standby.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_client_follows_the_active_manager_across_addresses(home, caplog):
    secret = load_or_create_secret(home / "secret")
    active = RPCServer(secret)
    active.register("Test.Who", lambda: "active", "read", [])
    standby = StandbyServer(home, _config())
    a_host, a_port = active.serve("127.0.0.1", 0)
    s_host, s_port = standby.serve("127.0.0.1:0")
    down = f"http://127.0.0.1:{_free_port()}"          # nothing listens there
    active_url = f"http://{a_host}:{a_port}"
    standby.active = active_url
    try:
        client = RPCClient([down, f"http://{s_host}:{s_port}", active_url], issue_token(secret, "read"), timeout=10)
        with caplog.at_level("INFO", logger="damocles.rpc"):
            assert client.call("Test.Who") == "active"
        assert client.url == active_url + "/rpc/v0"     # the next call goes there first
        assert "following the manager at " + active_url in caplog.text
        caplog.clear()
        with caplog.at_level("INFO", logger="damocles.rpc"):
            assert client.call("Test.Who") == "active"
        assert caplog.text == ""                         # no switch, nothing said
        with pytest.raises(RPCError) as err:             # an error answer of the active is not a switch
            client.call("Test.Missing")
        assert err.value.code != STANDBY and client.url == active_url + "/rpc/v0"
    finally:
        active.shutdown()
        standby.shutdown()
    with pytest.raises(TransportError):                  # none answers: temporary, as one address down is
        client.call("Test.Who")


def test_a_standby_takes_the_lease_once_it_lapses(two, home):
    clock = Clock()
    a = Lease(two[0].db, "http://a:1789", 0.3, holder="A", now=clock)
    b = Lease(two[1].db, "http://b:1789", 0.3, holder="B", now=clock)
    assert a.try_take() is None
    server, stop, result = StandbyServer(home, _config()), threading.Event(), []
    t = threading.Thread(target=lambda: result.append(wait_for_lease(b, server, stop)))
    t.start()
    try:
        for _ in range(100):                              # bounded: 100 polls of 0.1 s
            if server.active:
                break
            stop.wait(0.05)
        assert server.active == "http://a:1789" and not result
        clock.t += 1.0                                   # A's lease lapses
        t.join(timeout=10)
        assert result == [True] and b.current().holder == "B"
    finally:
        stop.set()
        t.join(timeout=10)
