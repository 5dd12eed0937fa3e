"""WindowPoSt end to end, every role a real process on loopback, the devnet clock advanced by
hand: a worker seals 4 sectors; two dedicated provers (`damocles post run`, polling every
100 ms) prove every deadline of two proving periods; in the second, the job is first taken by a
prover that dies with it (it never heartbeats), and after the heartbeat timeout the other
prover proves it in time. The chain records every deadline proven, no penalty, power whole."""

import json
import os
import signal
import threading
import time

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, merged, post_toml, worker_toml
from .conftest import read_line, run_cli, signal_all
from .test_worker_e2e import start


def post_manager(max_number: int = 4, miner: dict | None = None, config: dict | None = None) -> str:
    """The hand-moved devnet manager of the PoSt tests: one-sector batches, short PoSt confidences,
    a 1 s prover heartbeat."""
    return manager_toml(max_number, 1, 1, None, pre_wait=None, block_time="0s", check_interval="50ms",
                        miner=merged({"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1}}, miner or {}),
                        config=merged({"Common": {"Proving": {"WorkerProver": {"HeartbeatTimeout": "1s", "JobMaxTry": 3}}}},
                                      config or {}))


MANAGER = post_manager()

def until(what, fn, timeout=60.0, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        for p in procs:
            assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)   # polling live processes; bounded by the deadline


def seal_by_hand(admin, count: int, procs) -> list[dict]:
    """Advance the devnet an epoch at a time until `count` sectors are finalized; their states."""
    def sealed():
        listed = admin.call("Venus.ListSectors", "", 0)
        if len(listed) == count and all(s["Finalized"] for s in listed):
            return listed
        admin.call("Venus.DevnetAdvance", 1)      # the clock moves by hand while the worker seals
        return None
    return until(f"{count} sectors sealed", sealed, timeout=180, procs=procs)


def prove_next_occurrence(admin, d: int, procs) -> dict:
    """Drive the devnet through deadline `d`'s next occurrence until the manager's WindowPoSt for
    it lands (or fails); then past its close. Returns the round."""
    info = admin.call("Venus.ProvingInfo", 1000)
    open_ = info["PeriodStart"] + d * 60
    open_ = open_ if open_ - 18 > info["CurrentEpoch"] else open_ + 2880
    admin.call("Venus.DevnetAdvance", open_ - 18 - admin.call("Venus.DevnetHead")["Epoch"])   # challenge + confidence

    def landed():
        rounds = admin.call("Venus.ProvingDeadline", 1000, d)["Rounds"]
        r = next((r for r in rounds if r["PeriodStart"] == open_ - d * 60), {})
        if r.get("state") in ("proved", "submitted"):
            admin.call("Venus.DevnetAdvance", 1)
        return r if r.get("state") in ("landed", "failed") else None
    r = until("the WindowPoSt to land", landed, procs=procs)
    admin.call("Venus.DevnetAdvance", open_ + 61 - admin.call("Venus.DevnetHead")["Epoch"])   # past its close
    return r


def test_worker_sealed_sectors_are_proven_by_dedicated_provers_for_two_periods(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    procs = []
    manager = start(["manager", "run", "--home", str(home)])
    procs.append(manager)
    try:
        url = read_line(manager).split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        threads = [{"location": tmp_path / f"t{i}"} for i in range(2)]
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")])
        procs.append(worker)
        provers = {}
        for name in ("prover-a", "prover-b"):
            cfg = tmp_path / f"{name}.toml"
            cfg.write_text(post_toml(url, issue_token(secret, "write"), home / "persist-1", name=name))
            provers[name] = start(["post", "run", "-c", str(cfg)])
            procs.append(provers[name])

        listed = seal_by_hand(admin, 4, procs)
        assert all(s["State"] == "Finished" for s in listed)
        worker.terminate()
        worker.wait(timeout=30)

        info = admin.call("Venus.ProvingInfo", 1000)
        used = [d["Index"] for d in admin.call("Venus.ProvingDeadlines", 1000) if d["Sectors"]]
        assert info["Power"]["active_sectors"] == 4 and used
        head = info["CurrentEpoch"]
        occurrences = sorted((ps + d * 60, ps, d) for d in used for ps in
                             (info["PeriodStart"], info["PeriodStart"] + 2880, info["PeriodStart"] + 5760)
                             if ps + d * 60 - 18 > head)[: 2 * len(used)]

        def advance_to(epoch):
            now = admin.call("Venus.DevnetHead")["Epoch"]
            if epoch > now:
                admin.call("Venus.DevnetAdvance", epoch - now)

        def round_of(ps, d):
            return next((r for r in admin.call("Venus.ProvingDeadline", 1000, d)["Rounds"] if r["PeriodStart"] == ps), {})

        ghost_jobs = []
        for k, (open_, ps, d) in enumerate(occurrences):
            ghost = k == len(used)          # the first deadline of the second period
            if ghost:
                for p in provers.values():
                    signal_all(p, signal.SIGSTOP)
                stop = threading.Event()
                ghost_client = RPCClient(url, issue_token(secret, "write"))

                def grab():
                    while not stop.is_set() and not ghost_jobs:
                        ghost_jobs.extend(ghost_client.call("Venus.WdPoStAllocateJobs", {}, 1, "ghost"))
                        stop.wait(0.05)
                grabber = threading.Thread(target=grab)
                grabber.start()
            advance_to(open_ - 18)          # challenge + ChallengeConfidence
            if ghost:
                until("the ghost prover to take the job", lambda: ghost_jobs)
                stop.set()
                grabber.join()
                signal_all(provers["prover-a"], signal.SIGCONT)    # prover-b stays stopped
            until(f"deadline {d} proven", lambda: round_of(ps, d).get("state") in ("proved", "submitted", "landed"),
                  procs=[manager])
            advance_to(open_ + 1)           # open + SubmitConfidence
            until(f"deadline {d} submitted", lambda: round_of(ps, d).get("state") in ("submitted", "landed"))
            admin.call("Venus.DevnetAdvance", 1)
            final = until(f"deadline {d} landed", lambda: round_of(ps, d) if round_of(ps, d).get("state") in ("landed", "failed")
                          else None)
            assert final["state"] == "landed", final
        advance_to(occurrences[-1][0] + 61)    # past the last close: the chain has judged every window
        signal_all(provers["prover-b"], signal.SIGCONT)
        jobs = admin.call("Venus.WdPoStAllJobs")["Jobs"]
        power = admin.call("Venus.ProvingInfo", 1000)["Power"]
        cli = ["--api", url, "--home", str(home)]
        deadlines = json.loads(run_cli("util", "proving", "deadlines", *cli, "--json", check=True).stdout)["deadlines"]
        assert [d["Index"] for d in deadlines if d["Sectors"]] == used and all(d["Faulty"] == 0 for d in deadlines)
        one = json.loads(run_cli("util", "proving", "deadline", str(used[0]), *cli, "--json", check=True).stdout)
        assert one["Rounds"] and all(r["state"] == "landed" for r in one["Rounds"] if "state" in r)
        assert json.loads(run_cli("util", "proving", "faults", *cli, "--json", check=True).stdout)["faults"] == []
        checked = json.loads(run_cli("util", "proving", "check", *cli, "--json", check=True).stdout)["sectors"]
        assert sorted(c["Sector"] for c in checked) == [1, 2, 3, 4] and all(c["Ok"] for c in checked)
        text = run_cli("util", "proving", "jobs", *cli, check=True).stdout
        assert "prover-a" in text and "finished" in text
        assert "power: 8192 bytes, 4 active sectors" in run_cli("util", "proving", "info", *cli, check=True).stdout
        (home / "persist-1" / "sealed" / "s-t01000-1").write_bytes(b"")      # a broken file: check says so, exit 1
        bad = run_cli("util", "proving", "check", *cli)
        assert bad.returncode == 1 and "BAD" in bad.stdout and "has 0 bytes" in bad.stdout
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                signal_all(p, signal.SIGCONT)
                p.terminate()
                p.wait(timeout=30)

    assert power["active_sectors"] == 4 and power["faulty_sectors"] == 0
    assert len(jobs) == len(occurrences) and all(j["State"] == "finished" and not j["ErrorReason"] for j in jobs)
    taken_over = [j for j in jobs if j["Id"] == ghost_jobs[0]["Id"]][0]
    assert taken_over["TryNum"] == 2 and taken_over["WorkerName"] == "prover-a"
    assert {j["WorkerName"] for j in jobs} <= {"prover-a", "prover-b"}
    chain = Devnet(home / "devnet.db", ChainPolicy(block_time=0))
    try:
        records = chain.deadline_records(1000)
        assert len(records) == len(occurrences)
        assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records
        assert chain.penalties(1000) == []
    finally:
        chain.close()
    assert os.path.exists(home / "persist-1" / "sealed" / "s-t01000-4")
