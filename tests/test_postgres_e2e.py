"""The whole manager on PostgreSQL, every role a real process: `damocles manager run` keeps its
state in a PostgreSQL database (a throwaway cluster, tests/pg_cluster.py) while a worker seals
two 2KiB sectors to ProveCommit landed on the embedded devnet (which keeps its own devnet.db in the
home), and the manager proves their WindowPoSt deadline by itself. The records are on the server,
not in a manager.db."""

import signal

import psycopg
import pytest

from appliance.cli import main as cli
from appliance.manager.config import DBConfig
from appliance.manager.state import ManagerState
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, worker_toml
from .conftest import read_line, signal_all
from .pg_cluster import pg_dsn, pg_server  # noqa: F401  (fixtures)
from .test_post_e2e import post_manager, prove_next_occurrence, seal_by_hand
from .test_worker_e2e import start

pytestmark = pytest.mark.timeout(300)     # CI runs it against the frozen executable too (DAMOCLES_BIN)


def test_a_manager_on_postgres_seals_and_proves_with_a_worker(tmp_path, pg_dsn):  # noqa: F811
    home = tmp_path / "manager"
    home.mkdir()
    (home / "sector-manager.cfg").write_text(post_manager(2, config={"Common": {"DB": {
        "Driver": "postgres", "Postgres": {"DSN": pg_dsn}}}}))
    (home / "persist-1").mkdir()
    procs = [start(["manager", "run", "--home", str(home)])]
    try:
        line = read_line(procs[0])
        assert line.startswith("listening on "), procs[0].stderr.read()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1",
                                                          [{"location": tmp_path / f"t{i}"} for i in range(2)]))
        procs.append(start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")]))

        listed = seal_by_hand(admin, 2, procs)
        assert [(s["State"], bool(s["Finalized"])) for s in listed] == [("Finished", True)] * 2
        assert admin.call("Venus.ProvingInfo", 1000)["Power"]["active_sectors"] == 2
        used = [d["Index"] for d in admin.call("Venus.ProvingDeadlines", 1000) if d["Sectors"]]
        round_ = prove_next_occurrence(admin, used[0], procs)
        assert round_["state"] == "landed", round_
        assert admin.call("Venus.ProvingInfo", 1000)["Power"]["faulty_sectors"] == 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                signal_all(p, signal.SIGTERM)
                p.wait(timeout=30)

    assert not (home / "manager.db").exists() and (home / "devnet.db").exists()
    with psycopg.connect(pg_dsn, connect_timeout=10) as db:
        states = db.execute("SELECT number, state, is_open FROM sectors ORDER BY number").fetchall()
        assert states == [(1, "Finished", 0), (2, "Finished", 0)]
        kinds = {k for (k,) in db.execute("SELECT kind FROM outbox WHERE message IS NOT NULL")}
        assert {"pre", "proof", "post"} <= kinds, kinds
        assert db.execute("SELECT COUNT(*) FROM post_rounds WHERE miner = 1000").fetchone()[0] >= 1


def test_a_second_home_with_its_own_devnet_is_refused_on_a_database_with_sectors(tmp_path, pg_dsn, capsys):  # noqa: F811
    state = ManagerState("unused", store=DBConfig("postgres", pg_dsn))
    assert state.allocate(1000, 5, 1, None) == 1
    state.close()
    home = tmp_path / "second"
    home.mkdir()
    (home / "sector-manager.cfg").write_text(manager_toml(config={"Common": {"DB": {"Driver": "postgres",
                                                                                  "Postgres": {"DSN": pg_dsn}}}}))
    assert cli(["manager", "run", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "has no devnet.db" in err and "[Common.API] Chain" in err and "damocles devnet serve" in err, err
    assert not (home / "devnet.db").exists() and not (home / "manager.db").exists()
