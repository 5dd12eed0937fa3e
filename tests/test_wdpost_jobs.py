"""The manager's WindowPoSt job store (Damocles' WorkerWdPoStAPI) on a hand-moved clock, on each
store driver (SQLite, PostgreSQL)."""

import pytest

from appliance.manager.config import WorkerProverConfig
from appliance.manager.state import ManagerState
from appliance.manager.wdpost_jobs import JobNotFound, WdPoStJobs
from tests.pg_cluster import manager_store, pg_dsn, pg_server  # noqa: F401  (fixtures)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _input(miner=1000, proof="StackedDrgWindow2KiBV1_1", sectors=(1, 2)):
    return {"Sectors": [{"SectorId": n, "CommR": [0] * 32, "Upgrade": False,
                         "Accesses": {"SealedFile": "persist-1", "CacheDir": "persist-1"}} for n in sectors],
            "MinerId": miner, "ProofType": proof, "Seed": [1] * 32}


@pytest.fixture
def jobs(tmp_path, manager_store):  # noqa: F811
    clock = Clock()
    state = ManagerState(tmp_path / "manager.db", now=clock, store=manager_store)
    store = WdPoStJobs(state, WorkerProverConfig(job_max_try=2, heartbeat_timeout=15.0, job_lifetime=3600.0), now=clock)
    store.clock = clock
    yield store
    state.close()


def test_create_is_idempotent_and_allocate_filters(jobs):
    a = jobs.create(1000, 5, 0, [0], _input())
    assert jobs.create(1000, 5, 0, [0], _input()) == a
    b = jobs.create(1001, 6, 0, [0], _input(miner=1001))
    assert jobs.allocate([1002], None, 5, "p1") == []
    assert jobs.allocate(None, ["StackedDrgWindow8MiBV1_1"], 5, "p1") == []
    got = jobs.allocate([1001], None, 5, "p1")
    assert [j["Id"] for j in got] == [b] and got[0]["Input"]["MinerId"] == 1001
    got = jobs.allocate(None, None, 5, "p2")
    assert [j["Id"] for j in got] == [a]
    job = jobs.get(a)
    assert job["State"] == "running" and job["TryNum"] == 1 and job["WorkerName"] == "p2" and job["DeadlineIdx"] == 5
    assert jobs.provers_seen(60) == ["p1", "p2"]
    jobs.clock.t += 120
    assert jobs.provers_seen(60) == []


def test_finish_only_by_a_running_job(jobs):
    a = jobs.create(1000, 5, 0, [0], _input())
    with pytest.raises(JobNotFound, match="no prover has taken it"):
        jobs.finish(a, {"proofs": ["AA=="], "faults": []}, "")
    jobs.allocate(None, None, 1, "p1")
    jobs.finish(a, {"proofs": ["AA=="], "faults": [2]}, "")
    job = jobs.get(a)
    assert job["State"] == "finished" and job["Output"] == {"proofs": ["AA=="], "faults": [2]} and not job["Failed"]
    with pytest.raises(JobNotFound, match="has its result already"):       # the first result stays
        jobs.finish(a, {"proofs": ["BB=="], "faults": []}, "")
    assert jobs.get(a)["Output"]["proofs"] == ["AA=="]
    with pytest.raises(JobNotFound, match="not found"):
        jobs.finish("nope", None, "x")


def test_silent_prover_is_replaced_until_job_max_try_then_failed(jobs):
    a = jobs.create(1000, 5, 0, [0], _input())
    jobs.allocate(None, None, 1, "dead")
    jobs.clock.t += 10
    jobs.heartbeat([a], "dead")
    jobs.clock.t += 10
    assert jobs.housekeeping() == []                       # heartbeat 10 s ago: still alive
    jobs.clock.t += 10
    assert "retrying (try 2 of 2)" in jobs.housekeeping()[0]
    assert jobs.get(a)["State"] == "ready2run" and "no heartbeat from prover dead" in jobs.get(a)["ErrorReason"]
    jobs.allocate(None, None, 1, "second")
    jobs.heartbeat([a], "dead")                            # a late heartbeat of the old prover does not count
    jobs.clock.t += 16
    assert "failed after 2 tries" in jobs.housekeeping()[0]
    job = jobs.all()["Jobs"][0]
    assert job["State"] == "finished" and job["ErrorReason"] and job["TryNum"] == 2 and jobs.all()["MaxTry"] == 2
    assert jobs.allocate(None, None, 1, "third") == []
    jobs.reset(a)                                          # the operator's retry
    assert jobs.get(a)["State"] == "ready2run" and jobs.get(a)["TryNum"] == 0


def test_failed_result_is_retried_then_kept_failed(jobs):
    a = jobs.create(1000, 5, 0, [0], _input())
    jobs.allocate(None, None, 1, "p1")
    jobs.finish(a, None, "sector 2 unreadable")
    assert "retrying" in jobs.housekeeping()[0] and jobs.get(a)["State"] == "ready2run"
    jobs.allocate(None, None, 1, "p1")
    jobs.finish(a, None, "sector 2 unreadable")
    assert jobs.housekeeping() == []
    assert jobs.get(a)["Failed"] and jobs.get(a)["ErrorReason"] == "sector 2 unreadable"


def test_stale_jobs_are_dropped_and_old_ones_removed(jobs):
    old = jobs.create(1000, 3, 0, [0], _input())
    cur = jobs.create(1000, 4, 0, [0], _input(sectors=(3,)))
    other = jobs.create(1001, 1, 0, [0], _input(miner=1001))
    assert jobs.drop_stale(1000, 0, 4) == 1
    assert jobs.get(old)["State"] == "finished" and jobs.get(old)["ErrorReason"].startswith("stale")
    assert sorted(j["Id"] for j in jobs.allocate(None, None, 5, "p1")) == sorted([cur, other])
    assert jobs.housekeeping() == []                       # a stale job is not retried
    jobs.clock.t += 3601
    assert jobs.housekeeping()[-1] == "removed 3 WindowPoSt jobs older than 3600s"
    with pytest.raises(JobNotFound):
        jobs.get(old)
    jobs.remove(old)              # removing what is gone is done already, as Damocles' WdPoStRemoveJob


def test_a_late_answer_or_heartbeat_of_the_prover_that_ran_it_is_taken(jobs):
    """As Damocles' kvJobManager: a prover that missed its heartbeat and then answers is not
    thrown away while no other prover took the job; a heartbeat takes a job waiting in ready2run."""
    a = jobs.create(1000, 5, 0, [0], _input())
    jobs.allocate(None, None, 1, "slow")
    jobs.clock.t += 16
    assert "retrying" in jobs.housekeeping()[0] and jobs.get(a)["State"] == "ready2run"
    assert jobs.get(a)["WorkerName"] == "slow"                 # kept, as Damocles keeps it
    jobs.finish(a, {"proofs": ["AA=="], "faults": []}, "")      # its late proof is the result
    assert jobs.get(a)["State"] == "finished" and not jobs.get(a)["Failed"]

    b = jobs.create(1000, 6, 0, [0], _input(sectors=(3,)))
    jobs.allocate(None, None, 1, "slow")
    jobs.clock.t += 16
    jobs.housekeeping()
    jobs.heartbeat([b], "slow")                                # back from a network blip: the job is its own again
    job = jobs.get(b)
    assert job["State"] == "running" and job["WorkerName"] == "slow" and job["TryNum"] == 1
    assert jobs.housekeeping() == []
    assert jobs.allocate(None, None, 1, "other") == []         # not handed out twice

    c = jobs.create(1000, 7, 0, [0], _input(sectors=(4,)))
    jobs.allocate(None, None, 1, "p1")
    jobs.finish(c, None, "sector 4 unreadable")
    jobs.finish(c, {"proofs": ["AA=="], "faults": [4]}, "")     # a failed job: a later proof replaces the failure
    assert not jobs.get(c)["Failed"] and jobs.get(c)["Output"]["faults"] == [4]

    d = jobs.create(1000, 8, 0, [0], _input(sectors=(5,)))
    jobs.allocate(None, None, 1, "p1")
    assert jobs.drop_stale(1000, 0, 9) == 2                 # b and d: their deadlines closed
    with pytest.raises(JobNotFound, match="deadline closed"):
        jobs.finish(d, {"proofs": ["AA=="], "faults": []}, "")
