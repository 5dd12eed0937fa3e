"""A dedicated prover process (`damocles post run`) against a manager on loopback: it takes a
WindowPoSt job that a silent prover held past the heartbeat timeout, proves it, and reports the
sector it cannot read as a fault; the proof verifies for the others."""

import base64
import os
import subprocess
import time

import pytest

from appliance.core.proof_types import post_proof
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.post import PublicSector, decode_post, verify_post
from appliance.rpc import JOB_NOT_FOUND, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from .configs import NO_PROCESSORS, manager_toml, post_toml, worker_toml
from .conftest import ROOT, damocles_cmd, read_line
from .poststore import seal_into_store

MANAGER = manager_toml(block_time="0s", miner={"PoSt": {"Enabled": False}},   # the jobs of this test are made by hand
                       config={"Common": {"Proving": {"WorkerProver": {"HeartbeatTimeout": "1s", "JobMaxTry": 2}}}})

W2K = post_proof("StackedDrgWindow2KiBV1_1")


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "manager"
    init_home(home, MANAGER)
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    yield svc, f"http://{host}:{port}/rpc/v0"
    svc.stop()


def _job_input(comm_rs, seed):
    return {"Sectors": [{"SectorId": n, "CommR": list(c), "Upgrade": False,
                         "Accesses": {"SealedFile": "persist-1", "CacheDir": "persist-1"}} for n, c in sorted(comm_rs.items())],
            "MinerId": 1000, "ProofType": W2K.name, "Seed": list(seed)}


def _wait_finished(svc, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while svc.jobs.get(job_id)["State"] != "finished":
        assert time.monotonic() < deadline, svc.jobs.get(job_id)
        time.sleep(0.1)   # polling a live system; bounded by the deadline
    return svc.jobs.get(job_id)


def test_prover_takes_over_a_silent_provers_job_and_reports_faults(manager, tmp_path):
    svc, url = manager
    store = tmp_path / "manager" / "persist-1"
    comm_rs = {n: seal_into_store(store, 1000, n, tmp_path / "work", tmp_path / "parents") for n in (1, 2, 3)}
    seed = bytearray(os.urandom(32))
    seed[31] &= 0x3F
    job_id = svc.jobs.create(1000, 7, 0, [0, 1], _job_input(comm_rs, bytes(seed)))
    write = RPCClient(url, issue_token(svc.secret, "write"))
    held = write.call("Venus.WdPoStAllocateJobs", {"AllowedMiners": [1000]}, 1, "ghost")   # takes it and goes silent
    assert [j["Id"] for j in held] == [job_id]
    cfg = tmp_path / "post.toml"
    cfg.write_text(post_toml(url, issue_token(svc.secret, "write"), store,
                             processors={"window_post": [{"cgroup": {"cpuset": "0"}}]}))
    prover = subprocess.Popen(damocles_cmd("post", "run", "-c", str(cfg)), cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(prover).startswith("prover prover-a polling")
        job = _wait_finished(svc, job_id)
        assert job["WorkerName"] == "prover-a" and job["TryNum"] == 2 and not job["Failed"]
        assert job["Output"]["faults"] == []
        proof = decode_post(base64.b64decode(job["Output"]["proofs"][0]), W2K)
        verify_post(W2K, bytes(seed), [PublicSector(n, c) for n, c in sorted(comm_rs.items())], proof)
        with pytest.raises(RPCError) as err:     # the silent prover's late answer is refused
            write.call("Venus.WdPoStFinishJob", job_id, None, "late")
        assert err.value.code == JOB_NOT_FOUND

        (store / "sealed" / "s-t01000-2").unlink()                   # a lost sealed file
        job_id = svc.jobs.create(1000, 8, 0, [0, 1], _job_input(comm_rs, bytes(seed)))
        job = _wait_finished(svc, job_id)
        assert job["Output"]["faults"] == [2] and job["TryNum"] == 1
        proof = decode_post(base64.b64decode(job["Output"]["proofs"][0]), W2K)
        verify_post(W2K, bytes(seed), [PublicSector(n, comm_rs[n]) for n in (1, 3)], proof)
    finally:
        prover.terminate()
        assert prover.wait(timeout=30) == 0, prover.stderr.read()
    listed = RPCClient(url, issue_token(svc.secret, "read")).call("Venus.WdPoStAllJobs")
    assert listed["MaxTry"] == 2 and len(listed["Jobs"]) == 2


def test_bad_post_configs_are_refused(tmp_path):
    from appliance.config import ConfigError
    from appliance.post.config import parse_post_config
    base = {"sector_manager": {"rpc_client": {"addr": "http://127.0.0.1:1"}},
            "attached": [{"name": "p", "location": str(tmp_path)}]}
    for raw, msg in [({**base, "prover": {"concurrency": 0}}, "concurrency: 0 is not a positive integer"),
                     ({**base, "prover": {"poll_interval": "0s"}}, "poll_interval: must be more than 0"),
                     ({**base, "attached": []}, "no \\[\\[attached\\]\\] persist store"),
                     ({**base, "processors": {"pc1": []}}, "only has window_post processors"),
                     ({**base, "processors": {"window_post": [{"cgroup": {"cpuset": "0-999"}}]}}, "does not exist"),
                     ({"attached": base["attached"]}, "rpc_client\\].addr is required")]:
        with pytest.raises(ConfigError, match=msg):
            parse_post_config(raw, available_cpus={0, 1})
    cfg = parse_post_config({**base, "prover": {"allowed_miners": [1000], "poll_interval": "250ms"}, "extra": 1})
    assert cfg.allowed_miners == [1000] and cfg.poll_interval == 0.25 and "post.toml: unknown key 'extra' ignored" in cfg.warnings


def test_worker_thread_with_plan_wdpost_proves_jobs(manager, tmp_path):
    svc, url = manager
    store = tmp_path / "manager" / "persist-1"
    comm_rs = {n: seal_into_store(store, 1000, n, tmp_path / "work", tmp_path / "parents") for n in (1, 2)}
    seed = bytes(31) + b"\x05"
    cfg = tmp_path / "worker.toml"
    # Damocles' worker-prover: a thread with plan wdpost needs no sealing location; only a window_post pool
    cfg.write_text(worker_toml(url, issue_token(svc.secret, "write"), store, [{"plan": "wdpost"}], name="w-post",
                               worker={"ping_interval": None},
                               sealing={"verify_after_pc2": None, "recover_interval": None, "seal_interval": None,
                                        "rpc_polling_interval": "100ms"},
                               processors={**NO_PROCESSORS, "window_post": [{"concurrent": 1}]}))
    worker = subprocess.Popen(damocles_cmd("worker", "run", "-c", str(cfg)), cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(worker).startswith("worker w-post running 1 sealing threads")
        job_id = svc.jobs.create(1000, 9, 0, [0], _job_input(comm_rs, seed))
        job = _wait_finished(svc, job_id)
        assert job["WorkerName"] == "w-post-wdpost-0" and job["Output"]["faults"] == []
        verify_post(W2K, seed, [PublicSector(n, c) for n, c in sorted(comm_rs.items())],
                    decode_post(base64.b64decode(job["Output"]["proofs"][0]), W2K))
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0, worker.stderr.read()
