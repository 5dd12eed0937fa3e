"""A manager and a worker as real processes, the persist store a real file system that is full:
the sector waits in PCLanded and says why (`util sectors list`, the manager's log), then goes on
by itself and lands once space returns. Needs root to mount a small tmpfs; skipped elsewhere."""

import time

import pytest

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import worker_toml
from .conftest import run_cli
from .smallfs import fill, mounted_tmpfs
from .test_worker_e2e import manager_toml, start


def _sector(admin):
    listed = admin.call("Venus.ListSectors", "", 0)
    return listed[0] if listed else None


def _until(what, fn, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.2)          # polling live processes; bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


pytestmark = pytest.mark.timeout(400)      # every wait below is bounded too; this catches a hang in between


@pytest.fixture
def full_store(tmp_path):
    with mounted_tmpfs(tmp_path / "manager" / "persist-1", "64k") as store:
        yield store, fill(store)


def test_a_full_persist_store_says_why_and_the_sector_lands_when_space_returns(tmp_path, full_store):
    store, filler = full_store
    home = tmp_path / "manager"
    (home / "manager.toml").write_text(manager_toml(max_number=1, pre_threshold=1, prove_threshold=1, prove_wait="1s"))
    manager = start(["manager", "run", "--home", str(home)])
    procs = [manager]
    try:
        line = manager.stdout.readline()
        assert line.startswith("listening on "), manager.stderr.read()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"), timeout=30)
        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), store, [{"location": tmp_path / "t0"}]))
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
        procs.append(worker)
        waiting = _until("the sector to wait for a persist store",
                         lambda: (s := _sector(admin)) and s.get("StoreWait") and s)
        assert waiting["State"] == "PCLanded" and waiting["StoreWait"].startswith("no persist store has room: persist-1 has ")
        cli = ["--api", url, "--home", str(home)]
        text = run_cli("util", "sectors", "list", *cli, check=True).stdout
        assert "PCLanded" in text and "persist store: no persist store has room: persist-1 has" in text
        assert "waiting for a persist store: no persist store has room" in manager.stderr.read()
        filler.unlink()                                              # space returns
        done = _until("the sector to land", lambda: (s := _sector(admin)) and s["Finalized"] and s, timeout=180)
        assert done["State"] == "Finished" and not done["AbortReason"] and done["StoreWait"] is None
        assert (store / "sealed" / "s-t01000-1").stat().st_size == 2048
        assert [s["number"] for s in admin.call("Venus.DevnetSectors", 1000)] == [1]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
