"""Crash safety of the snapup plan with real processes: the worker is killed at each snapup crash
point while it upgrades a CC sector and restarted; the upgrade lands, and the journal shows that
no step completed before the kill was done again (the encoding is not redone after its
transition). Unseal and rebuild crash points are walked in process (test_worker_runner.py)."""

import collections
import json
import sqlite3

import pytest

from appliance.core.crash import EXIT_CODE
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import run_cli
from .test_post_e2e import seal_by_hand, until
from .test_snapup import SNAP_MANAGER
from .configs import worker_toml
from .test_worker_e2e import start

pytestmark = pytest.mark.timeout(600)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["worker.snapup.proved", "worker.snapup.submitted"])
def test_a_snap_upgrade_resumes_after_a_crash(tmp_path, point):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(SNAP_MANAGER)
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = manager.stdout.readline().split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "snapup"}]
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
        args = ["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")]
        worker = start(args, {"DAMOCLES_CRASH_AT": point})
        seal_by_hand(admin, 1, [manager, worker])
        piece = tmp_path / "deal.bin"
        piece.write_bytes(b"snap deal payload " * 20)
        cli = ["--api", url, "--home", str(home)]
        run_cli("util", "piece", "import", str(piece), "--miner", "1000", *cli, "--json", check=True)
        assert json.loads(run_cli("util", "snap", "fetch", "--miner", "1000", *cli, "--json", check=True).stdout)["Added"] == [1]
        assert worker.wait(timeout=120) == EXIT_CODE, worker.stderr.read()
        worker = start(args)          # restarted without the crash point

        def upgraded():
            c = admin.call("Venus.SnapUpCandidateList", 1000)[0]
            if c["State"] == "submitted":
                admin.call("Venus.DevnetAdvance", 1)
                admin.call("Venus.SnapUpState", {"Miner": 1000, "Number": 1})
            return c if c["State"] in ("landed", "failed") else None
        assert until("the upgrade to land", upgraded, timeout=180, procs=[manager, worker])["State"] == "landed"
        until("the snapup journal to clear", lambda: _snap_rows(tmp_path)[1] is None, timeout=30, procs=[manager, worker])
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
    rows, _ = _snap_rows(tmp_path)
    counts = collections.Counter(rows)
    assert all(c == 1 for c in counts.values()), [r for r, c in counts.items() if c > 1]
    # done at Submit, as Damocles' worker: the manager follows ProveReplicaUpdates3 itself
    assert [r[3] for r in rows] == ["Allocate", "AddPiece", "Encode", "Prove", "Persist", "Submit"]


def _snap_rows(tmp_path):
    db = sqlite3.connect(tmp_path / "t1" / "meta" / "journal.db")
    try:
        rows = db.execute("SELECT sector, prev, next, event FROM log WHERE next IS NOT NULL ORDER BY seq").fetchall()
        current = db.execute("SELECT record FROM sector").fetchone()
        return rows, current
    finally:
        db.close()
