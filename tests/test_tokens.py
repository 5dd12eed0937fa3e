"""Tokens as JWT means them: `exp` and `nbf` are checked on every use, caches are bounded in time
and size, and `damocles manager token --rotate` refuses every old token at once on the manager
and within one cache period on a worker. The manager and the CLI are real processes."""

import json
import time
from types import SimpleNamespace

import jwt
import pytest

from appliance.rpc import RPCError
from appliance.rpc.auth import AuthError, SecretFile, TokenCache, issue_token, load_or_create_secret, verify_token
from appliance.rpc.client import HTTPStatusError, RPCClient
from appliance.worker.rpc import build_server

from .conftest import run_cli
from .manager_driver import ManagerProc

pytestmark = pytest.mark.timeout(120)


def accepted(url: str, token: str, method: str = "Venus.WorkerPingInfoList", *params) -> bool:
    """Whether the server at `url` runs `method` for `token` (False: refused as unauthorized)."""
    try:
        RPCClient(url, token, timeout=10).call(method, *params)
        return True
    except (RPCError, HTTPStatusError) as exc:
        assert "unauthorized" in str(exc).lower() or "401" in str(exc) or "not accept" in str(exc), exc
        return False


def wait_until(pred, limit: float, what: str) -> float:
    """Poll `pred` until true; the seconds it took. Fails after `limit` seconds."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > limit:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def manager(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    yield m
    m.stop()


# ------------------------------------------------------------------------ units

def test_exp_and_nbf_are_checked(tmp_path):
    secret = load_or_create_secret(tmp_path / "secret")
    now = int(time.time())
    expired = jwt.encode({"Allow": ["read"], "exp": now - 1}, secret, algorithm="HS256")
    early = jwt.encode({"Allow": ["read"], "nbf": now + 3600}, secret, algorithm="HS256")
    with pytest.raises(AuthError, match="expired"):
        verify_token(secret, expired)
    with pytest.raises(AuthError, match="not yet valid"):
        verify_token(secret, early)
    assert verify_token(secret, issue_token(secret, "write", ttl=60)) == "write"
    with pytest.raises(ValueError, match="positive"):
        issue_token(secret, "write", ttl=0)


def test_token_cache_is_bounded_in_size_and_time(tmp_path):
    secret = load_or_create_secret(tmp_path / "secret")
    cache = TokenCache(ttl=0.3, max_entries=3)
    tokens = [issue_token(secret, "read", f"t{i}") for i in range(5)]
    for t in tokens:
        cache.put(t, "read")
    assert len(cache) == 3 and cache.get(tokens[0]) is None and cache.get(tokens[4]) == "read"
    wait_until(lambda: cache.get(tokens[4]) is None, 5, "a cache entry outliving its period")
    # never past the token's own exp, nor before its nbf
    now = int(time.time())
    short = jwt.encode({"Allow": ["read"], "exp": now + 1}, secret, algorithm="HS256")
    early = jwt.encode({"Allow": ["read"], "nbf": now + 3600}, secret, algorithm="HS256")
    cache = TokenCache(ttl=3600)
    cache.put(short, "read")
    cache.put(early, "read")
    assert cache.get(short) == "read" and cache.get(early) is None
    wait_until(lambda: time.time() >= now + 1, 5, "the clock")
    assert cache.get(short) is None


def test_secret_file_follows_a_rotation(tmp_path):
    sf = SecretFile(tmp_path / "secret")
    old = issue_token(sf, "admin")
    assert verify_token(sf, old) == "admin"
    assert run_cli("manager", "token", "--home", str(tmp_path), "--rotate", "--json", check=True)
    with pytest.raises(AuthError, match="Signature verification failed"):
        verify_token(sf, old)


def test_token_command_refuses_bad_input(tmp_path):
    p = run_cli("manager", "token", "--home", str(tmp_path / "none"), "--rotate")
    assert p.returncode == 2 and "secret" in p.stderr and "not found" in p.stderr
    assert not (tmp_path / "none").exists()
    p = run_cli("manager", "token", "--home", str(tmp_path), "--ttl", "-5")
    assert p.returncode == 2 and "--ttl" in p.stderr


# ---------------------------------------------------------------- the findings

def test_an_expired_token_is_refused_by_the_manager_even_after_use(manager, tmp_path):
    """Finding: a token used before it expired kept working (the manager cached it forever)."""
    url = manager.rpc.url
    out = json.loads(run_cli("manager", "token", "--home", str(manager.home), "--perm", "read", "--ttl", "2",
                             "--json", check=True).stdout)
    token, exp = out["token"], out["expires"]
    assert accepted(url, token)                    # used (and, before the fix, cached) while valid
    wait_until(lambda: time.time() >= exp + 0.5, 10, "the token's expiry")
    assert not accepted(url, token)
    assert accepted(url, manager.rpc.token)        # the manager itself still answers


def test_rotation_refuses_old_tokens_on_the_manager_at_once_and_on_a_worker_within_one_cache_period(manager):
    """Finding: after a rotation a token the worker once saw still passed VenusWorker.WorkerPause."""
    url = manager.rpc.url
    old_admin = manager.admin.token
    paused = []
    thread = SimpleNamespace(pause=lambda: paused.append(1) or True, summary=lambda: {})
    cache_period = 1.0
    worker = build_server(SimpleNamespace(rpc=manager.rpc, threads=[thread]), token_cache_seconds=cache_period)
    host, port = worker.serve("127.0.0.1", 0)
    worker_url = f"http://{host}:{port}/rpc/v0"
    try:
        assert accepted(url, old_admin)
        assert accepted(worker_url, old_admin, "VenusWorker.WorkerPause", 0) and paused == [1]
        new_admin = json.loads(run_cli("manager", "token", "--home", str(manager.home), "--rotate", "--perm", "admin",
                                       "--json", check=True).stdout)["token"]
        rotated_at = time.monotonic()
        assert not accepted(url, old_admin)                       # the manager: at once
        assert not accepted(url, manager.rpc.token)               # every old token, not only the one used
        assert accepted(url, new_admin)
        wait_until(lambda: not accepted(worker_url, old_admin, "VenusWorker.WorkerPause", 0), 10,
                   "the worker refusing the rotated-out token")
        assert time.monotonic() - rotated_at <= cache_period + 2.0
        calls_before = len(paused)
        assert not accepted(worker_url, old_admin, "VenusWorker.WorkerPause", 0) and len(paused) == calls_before
        assert accepted(worker_url, new_admin, "VenusWorker.WorkerPause", 0)
    finally:
        worker.shutdown()
