"""Failover with real processes: `damocles devnet serve` as the chain (its clock moved by hand),
two `damocles manager run` on one database (the second stands by; a PostgreSQL database, or
one SQLite file shared by two homes on one host), a worker sealing 2KiB sectors
and a dedicated prover, both given the two managers' addresses. The active manager dies mid-batch
(a PreCommit batch journalled in the outbox, not yet pushed: at the crash point
manager.commit.before_push it sends itself SIGKILL). The standby serves within two lease
periods; every sector lands once, no number is allocated twice, no message is sent twice, and the
WindowPoSt deadlines of the sealed sectors are all proven."""

import re
import shutil
import signal
import sqlite3
import time

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient, StandbyError

from .configs import manager_toml, post_toml, worker_toml
from .conftest import read_line, signal_all
from .pg_cluster import pg_dsn, pg_server  # noqa: F401  (fixtures)
from .test_worker_e2e import start

LEASE_SECONDS = 3
MINER = 1000


def _until(what, fn, timeout=60.0, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        for p in procs:
            assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)   # polling live processes; bounded by the deadline


def _config(api_info: str, store, db: dict) -> str:
    """Both managers' config: the devnet's API as the chain, one-batch-of-two PreCommits and
    proofs, short PoSt confidences and prover heartbeat, a short lease."""
    return manager_toml(2, 2, 2, "1s", pre_wait="1s", block_time="0s", check_interval="50ms",
                        miner={"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1}},
                        config={"Common": {"API": {"Chain": api_info},
                                           "DB": {"LeaseSeconds": LEASE_SECONDS, **db},
                                           "PersistStores": [{"Name": "persist-1", "Path": str(store)}],
                                           "Proving": {"WorkerProver": {"HeartbeatTimeout": "1s", "JobMaxTry": 3}}}})


class SharedDB:
    """The managers' database for each driver: `[Common.DB]` of manager a and of manager b, and
    its rows read back after the managers stopped."""

    def __init__(self, driver: str, tmp_path, dsn: str | None):
        self.driver, self.dsn = driver, dsn
        self.file = tmp_path / "manager-a" / "manager.db"
        if driver == "postgres":
            self.a = self.b = {"Driver": "postgres", "Postgres": {"DSN": dsn}}
        else:
            # b's home names a's file (the driver named: DAMOCLES_TEST_DB=postgres sets another)
            self.a, self.b = {"Driver": "sqlite"}, {"Driver": "sqlite", "Path": str(self.file)}

    def rows(self, sql: str, params=()) -> list[tuple]:
        if self.driver == "postgres":
            import psycopg
            with psycopg.connect(self.dsn, connect_timeout=10) as db:
                return db.execute(sql.replace("?", "%s"), params).fetchall()
        db = sqlite3.connect(self.file)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request, tmp_path):
    return SharedDB(request.param, tmp_path, request.getfixturevalue("pg_dsn") if request.param == "postgres" else None)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_standby_takes_over_mid_batch_and_nothing_is_lost_or_repeated(tmp_path, shared):
    store = tmp_path / "persist-1"
    store.mkdir()
    procs = []
    devnet = start(["devnet", "serve", "--home", str(tmp_path / "devnet"), "--listen", "127.0.0.1:0",
                    "--miner", f"{MINER}:StackedDrg2KiBV1_1", "--block-time", "0"])
    procs.append(devnet)
    try:
        line = read_line(devnet, 60, "the API info line")
        assert line.startswith("FULLNODE_API_INFO="), line
        api_info = line.strip().split("=", 1)[1]
        token, _, multiaddr = api_info.partition(":")
        dev = RPCClient(f"http://127.0.0.1:{multiaddr.split('/')[4]}", token, timeout=30)

        home_a, home_b = tmp_path / "manager-a", tmp_path / "manager-b"
        for home in (home_a, home_b):
            home.mkdir()
        (home_a / "sector-manager.cfg").write_text(_config(api_info, store, shared.a))
        (home_b / "sector-manager.cfg").write_text(_config(api_info, store, shared.b))
        secret = load_or_create_secret(home_a / "secret")
        shutil.copy(home_a / "secret", home_b / "secret")          # one secret: one token for both

        a = start(["manager", "run", "--home", str(home_a)], {"DAMOCLES_CRASH_AT": "manager.commit.before_push",
                                                               "DAMOCLES_CRASH_SIGNAL": "KILL"})
        procs.append(a)
        line = read_line(a, 60, "manager a's listening line")
        assert line.startswith("listening on "), line
        url_a = line.split()[-1]
        b = start(["manager", "run", "--home", str(home_b)])
        procs.append(b)
        line = read_line(b, 60, "manager b's standby line")
        assert line.startswith("standing by on "), line
        url_b = line.split()[-1]
        both = [url_a, url_b]
        admin = RPCClient(both, issue_token(secret, "admin"), timeout=30)

        threads = [{"location": tmp_path / f"t{i}"} for i in range(2)]
        follow = {"sector_manager": {"rpc_client": {"addr": None, "addrs": both}}}
        (tmp_path / "worker.toml").write_text(worker_toml(url_a, issue_token(secret, "write"), store, threads,
                                                          config=follow))
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")])
        procs.append(worker)
        (tmp_path / "post.toml").write_text(post_toml(url_a, issue_token(secret, "write"), store, config=follow))
        prover = start(["post", "run", "-c", str(tmp_path / "post.toml")])
        procs.append(prover)

        # the clock moves by hand until manager a dies at the PreCommit batch's push
        def a_died():
            if a.poll() is not None:
                return True
            dev.call("Devnet.Advance", 1)
            return False
        _until("manager a to die at its batch's push", a_died, timeout=180, procs=[devnet, b, worker, prover])
        died = time.monotonic()
        assert a.returncode == -signal.SIGKILL, a.stderr.read()       # SIGKILL with its batch journalled, not pushed
        line = read_line(b, 2 * LEASE_SECONDS, "manager b taking over")
        took = time.monotonic() - died
        assert line.startswith("listening on ") and line.split()[-1] == url_b, line
        assert took < 2 * LEASE_SECONDS, f"the standby served {took:.1f}s after the active died"

        def sealed():
            listed = admin.call("Venus.ListSectors", "", 0)
            if len(listed) == 2 and all(s["Finalized"] for s in listed):
                return listed
            dev.call("Devnet.Advance", 1)
            return None
        listed = _until("2 sectors sealed", sealed, timeout=180, procs=[devnet, b, worker, prover])
        assert all(s["State"] == "Finished" for s in listed)

        # one occurrence of each deadline holding the sectors, proven by the prover through manager b
        info = admin.call("Venus.ProvingInfo", MINER)
        used = [d["Index"] for d in admin.call("Venus.ProvingDeadlines", MINER) if d["Sectors"]]
        assert info["Power"]["active_sectors"] == 2 and used
        head = dev.call("Devnet.Advance", 0)
        occurrences = sorted((ps + d * 60, ps, d) for d in used for ps in (info["PeriodStart"], info["PeriodStart"] + 2880)
                             if ps + d * 60 - 18 > head)[: len(used)]

        def round_of(ps, d):
            return next((r for r in admin.call("Venus.ProvingDeadline", MINER, d)["Rounds"] if r["PeriodStart"] == ps), {})

        def advance_to(epoch):
            now = dev.call("Devnet.Advance", 0)
            if epoch > now:
                dev.call("Devnet.Advance", epoch - now)

        for open_, ps, d in occurrences:
            advance_to(open_ - 18)                 # challenge + ChallengeConfidence
            _until(f"deadline {d} proven", lambda: round_of(ps, d).get("state") in ("proved", "submitted", "landed"),
                   procs=[devnet, b, prover])
            advance_to(open_ + 1)                  # open + SubmitConfidence

            def landed():
                r = round_of(ps, d)
                if r.get("state") in ("landed", "failed"):
                    return r
                dev.call("Devnet.Advance", 1)
                return None
            assert _until(f"deadline {d} landed", landed, procs=[devnet, b, prover])["state"] == "landed"
        advance_to(occurrences[-1][0] + 61)        # past the last close: the chain has judged each window
        worker_log = worker.stderr.read()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                signal_all(p, signal.SIGCONT)      # should anything be stopped
                p.terminate()
                p.wait(timeout=30)

    assert f"following the manager at {url_b}" in worker_log
    numbers = [r[0] for r in shared.rows("SELECT number FROM sectors WHERE miner = ? ORDER BY number", (MINER,))]
    outbox = shared.rows("SELECT nonce, method, message FROM outbox WHERE miner = ? ORDER BY nonce", (MINER,))
    assert numbers == [1, 2]                                        # no number allocated twice, none lost
    assert shared.rows("SELECT addr FROM manager_lease") == [(url_b,)]
    chain = Devnet(tmp_path / "devnet" / "devnet.db", ChainPolicy(block_time=0))
    try:
        on_chain = sorted(s.number for s in chain.sectors(MINER))
        messages = chain.messages(MINER)
        records = chain.deadline_records(MINER)
        penalties = chain.penalties(MINER)
        next_nonce = chain.next_nonce(MINER)
    finally:
        chain.close()
    assert on_chain == [1, 2]                                      # every sector landed, once
    assert [n for n, _, _ in outbox] == list(range(len(outbox))) and all(m for _, _, m in outbox)
    assert [m for _, m, _ in outbox] == [m["method"] for m in messages]    # each journalled message pushed once
    assert next_nonce == len(outbox) and all(m["exit_code"] == 0 for m in messages)
    assert [m for _, m, _ in outbox][:2] == ["PreCommitSectorBatch2", "ProveCommitSectors3"]
    assert len(records) == len(occurrences) and penalties == []
    assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records


@pytest.mark.timeout(120)
def test_a_frozen_active_loses_its_lease_and_exits_when_it_wakes(tmp_path, shared):
    """The active manager is frozen (SIGSTOP: alive, not renewing); the standby takes the lease
    once it lapses and serves within two lease periods. Woken, the old active finds its lease
    taken and exits at once (code 3, saying why) without writing."""
    store = tmp_path / "persist-1"
    store.mkdir()
    procs = []
    devnet = start(["devnet", "serve", "--home", str(tmp_path / "devnet"), "--listen", "127.0.0.1:0",
                    "--miner", f"{MINER}:StackedDrg2KiBV1_1", "--block-time", "0"])
    procs.append(devnet)
    try:
        line = read_line(devnet, 60, "the API info line")
        api_info = line.strip().split("=", 1)[1]
        home_a, home_b = tmp_path / "manager-a", tmp_path / "manager-b"
        for home in (home_a, home_b):
            home.mkdir()
        (home_a / "sector-manager.cfg").write_text(_config(api_info, store, shared.a))
        (home_b / "sector-manager.cfg").write_text(_config(api_info, store, shared.b))
        secret = load_or_create_secret(home_a / "secret")
        shutil.copy(home_a / "secret", home_b / "secret")
        a = start(["manager", "run", "--home", str(home_a)])
        procs.append(a)
        line = read_line(a, 60, "manager a's listening line")
        assert line.startswith("listening on "), line
        url_a = line.split()[-1]
        b = start(["manager", "run", "--home", str(home_b)])
        procs.append(b)
        line = read_line(b, 60, "manager b's standby line")
        assert line.startswith("standing by on "), line
        url_b = line.split()[-1]
        write_b = RPCClient(url_b, issue_token(secret, "write"), timeout=30)
        with pytest.raises(StandbyError, match=f"standby: the active manager is at {url_a}"):
            write_b.call("Venus.AllocateSector", {})

        signal_all(a, signal.SIGSTOP)
        frozen = time.monotonic()
        line = read_line(b, 2 * LEASE_SECONDS + 5, "manager b taking over")
        took = time.monotonic() - frozen
        assert line.startswith("listening on ") and line.split()[-1] == url_b, line
        assert LEASE_SECONDS - 1 < took < 2 * LEASE_SECONDS, f"the standby served {took:.1f}s after the active froze"
        assert write_b.call("Venus.AllocateSector", {})["ID"]["Number"] == 1

        signal_all(a, signal.SIGCONT)
        assert a.wait(timeout=30) == 3
        err = a.stderr.read()
        # woken, its watchdog (the clock) or its renewal (the row, held by b now) finds the lease lost
        assert re.search(r"manager lease lost: (not renewed before it expired|the lease is held by)", err), err
        assert "exiting: the manager lease was lost" in err, err
        assert write_b.call("Venus.AllocateSector", {})["ID"]["Number"] == 2     # b serves on, numbers single
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                signal_all(p, signal.SIGCONT)
                p.terminate()
                p.wait(timeout=30)
    assert [r[0] for r in shared.rows("SELECT number FROM sectors ORDER BY number")] == [1, 2]
    assert shared.rows("SELECT addr FROM manager_lease") == [(url_b,)]
