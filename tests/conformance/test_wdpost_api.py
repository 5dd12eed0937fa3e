"""Damocles' WorkerWdPoStAPI on our manager, method for method, as Damocles' parts call it.

Written from our reading of ipfs-force-community/damocles at commit
4235a89557219de436bba441e727af3a42f903f0:
- damocles-manager/core/api.go (WorkerWdPoStAPI) and core/types_wdpost.go (WdPoStInput,
  WdPoStJob, WdPoStAllocatedJob, AllocateWdPoStJobSpec, AllWdPoStJob, WdPoStJobBrief and its
  MarshalJSON), pkg/extproc/stage/ext_window_post.go (WindowPoStOutput, ProofType2String),
  modules/impl/prover/worker/job_mgr_kv.go (integer Unix timestamps, newest first, remove of a
  missing job is no error);
- damocles-worker/src/rpc/sealer/mod.rs (AllocatePoStSpec, WdPoStInput, WdPoStSectorInfo,
  AllocatedWdPoStJob: what the Rust worker deserializes) and
  src/sealing/sealing_thread/planner/wdpost.rs (the params it sends: its allowed proof types
  from SealProof::to_post_proofs, num 1, its instance name; output as vc-processors'
  WindowPoStOutput with b64serde proofs);
- damocles-manager/cmd/damocles-manager/internal/util_worker.go (`util worker wdpost
  list|reset|remove`: WdPoStAllJobs, WdPoStResetJob, WdPoStRemoveJob, one job ID each)."""

import base64

import pytest

from appliance.manager.service import ManagerService, init_home
from appliance.rpc import UNAUTHORIZED
from appliance.rpc.auth import issue_token

from ..configs import manager_toml
from .raw_http_rpc import is_bytes32_array, is_u64, raw_call, result

MANAGER = manager_toml(block_time="0s", miner={"PoSt": {"Enabled": False}},     # jobs are made by hand here
                       config={"Common": {"Proving": {"WorkerProver": {"JobMaxTry": 2}}}})

# what the Rust worker allows for a 2KiB sealing thread (types.rs SealProof::to_post_proofs)
RUST_ALLOWED_2K = ["StackedDrgWinning2KiBV1", "StackedDrgWindow2KiBV1", "StackedDrgWindow2KiBV1_2"]
INPUT_KEYS = {"Sectors", "MinerId", "ProofType", "Seed"}
SECTOR_KEYS = {"SectorId", "CommR", "Upgrade", "Accesses"}
JOB_KEYS = {"Id", "State", "DeadlineIdx", "Partitions", "Input", "Output", "TryNum", "ErrorReason", "WorkerName",
            "StartedAt", "HeartbeatAt", "FinishedAt", "CreatedAt", "UpdatedAt"}
BRIEF_KEYS = JOB_KEYS | {"Sectors", "Faults"}


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "manager"
    init_home(home, MANAGER)
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    yield svc, f"http://{host}:{port}/rpc/v0"
    svc.stop()


def _poster_input(miner=1000, sectors=(1, 2), proof="StackedDrgWindow2KiBV1_1"):
    """A job's input as our poster builds it, with the chain's proof type name."""
    return {"Sectors": [{"SectorId": n, "CommR": [n] * 32, "Upgrade": n == 2,
                         "Accesses": {"SealedFile": "persist-1", "CacheDir": "cache-store"}} for n in sectors],
            "MinerId": miner, "ProofType": proof, "Seed": list(range(32))}


def test_allocate_answers_the_input_the_rust_worker_deserializes(manager):
    svc, url = manager
    write = issue_token(svc.secret, "write", "prover")
    job_id = svc.jobs.create(1000, 7, 0, [0, 3], _poster_input())
    other_size = svc.jobs.create(1000, 8, 0, [0], _poster_input(sectors=(5,), proof="StackedDrgWindow8MiBV1_1"))

    assert result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [1001], "AllowedProofTypes": None}, 1, "w-a"], write) == []
    jobs = result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [1000], "AllowedProofTypes": RUST_ALLOWED_2K}, 1, "w-a"],
                  write)
    assert isinstance(jobs, list) and len(jobs) == 1          # []*WdPoStAllocatedJob / Vec<AllocatedWdPoStJob>
    job = jobs[0]
    assert set(job) == {"Id", "Input"} and job["Id"] == job_id
    inp = job["Input"]
    assert set(inp) == INPUT_KEYS
    assert inp["ProofType"] == "StackedDrgWindow2KiBV1_2"     # RegisteredPoStProof's serde name, not the chain's V1_1
    assert inp["MinerId"] == 1000 and is_bytes32_array(inp["Seed"]) and inp["Seed"] == list(range(32))
    assert [set(s) for s in inp["Sectors"]] == [SECTOR_KEYS] * 2
    for s, n in zip(inp["Sectors"], (1, 2)):
        assert is_u64(s["SectorId"]) and s["SectorId"] == n          # SectorId(u64): a bare number
        assert is_bytes32_array(s["CommR"]) and s["CommR"] == [n] * 32
        assert s["Upgrade"] is (n == 2)
        assert s["Accesses"] == {"SealedFile": "persist-1", "CacheDir": "cache-store"}   # store names

    # Go's filter is by the exact names; the Rust worker asks with its own, so 8MiB needs its 8MiB names
    assert result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [], "AllowedProofTypes": RUST_ALLOWED_2K}, 5, "w-a"],
                  write) == []
    rest = result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": None, "AllowedProofTypes": ["StackedDrgWindow8MiBV1_2"]},
                                                    5, "w-b"], write)
    assert [j["Id"] for j in rest] == [other_size] and rest[0]["Input"]["ProofType"] == "StackedDrgWindow8MiBV1_2"


def test_heartbeat_finish_list_reset_remove_in_damocles_shapes(manager):
    svc, url = manager
    write, read, admin = (issue_token(svc.secret, p, "prover" if p == "write" else "") for p in ("write", "read", "admin"))
    older = svc.jobs.create(1001, 6, 0, [1], _poster_input(miner=1001, sectors=(9,)))
    job_id = svc.jobs.create(1000, 7, 0, [0, 3], _poster_input())
    [job] = result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [1000], "AllowedProofTypes": RUST_ALLOWED_2K}, 1, "w-a"],
                   write)
    allocated = job["Id"]
    assert result(url, "Venus.WdPoStHeartbeatJobs", [[allocated], "w-a"], write) is None      # Meta: null
    proof = base64.b64encode(b"\x01\x02proof").decode()       # b64serde BytesVec, as Go's [][]byte
    assert result(url, "Venus.WdPoStFinishJob", [allocated, {"proofs": [proof], "faults": [2]}, ""], write) is None

    listed = result(url, "Venus.WdPoStAllJobs", [], read)
    assert set(listed) == {"Jobs", "MaxTry"} and listed["MaxTry"] == 2
    assert sorted(j["Id"] for j in listed["Jobs"]) == sorted([older, job_id]) == sorted([older, allocated])
    assert listed["Jobs"][0]["CreatedAt"] >= listed["Jobs"][1]["CreatedAt"]            # newest first
    by_id = {j["Id"]: j for j in listed["Jobs"]}
    for brief in by_id.values():
        assert set(brief) == BRIEF_KEYS
        for key in ("DeadlineIdx", "TryNum", "StartedAt", "HeartbeatAt", "FinishedAt", "CreatedAt", "UpdatedAt",
                    "Sectors", "Faults"):
            assert is_u64(brief[key]), (key, brief[key])            # Go's uint64/uint32: integers, never 1.7e9 floats
        # WdPoStJobBrief.MarshalJSON: Input cut to MinerId, Output emptied
        assert brief["Input"] == {"Sectors": None, "MinerId": 1001 if brief["Id"] == older else 1000,
                                  "ProofType": "", "Seed": [0] * 32}
        assert brief["Output"] == {"proofs": None, "faults": None}
    done = by_id[allocated]
    assert done["State"] == "finished" and done["ErrorReason"] == "" and done["WorkerName"] == "w-a"
    assert done["Partitions"] == [0, 3] and done["DeadlineIdx"] == 7 and done["TryNum"] == 1
    assert done["Sectors"] == 2 and done["Faults"] == 1 and done["FinishedAt"] >= done["StartedAt"] > 0
    waiting = by_id[older]
    assert waiting["State"] == "ready2run" and waiting["StartedAt"] == 0 and waiting["WorkerName"] == ""
    assert waiting["Sectors"] == 1 and waiting["Faults"] == 0

    # the operator's commands: admin only, Meta answers
    status, refused = raw_call(url, "Venus.WdPoStResetJob", [allocated], write)
    assert refused["error"]["code"] == UNAUTHORIZED
    assert result(url, "Venus.WdPoStResetJob", [allocated], admin) is None
    again = {j["Id"]: j for j in result(url, "Venus.WdPoStAllJobs", [], read)["Jobs"]}[allocated]
    assert again["State"] == "ready2run" and again["TryNum"] == 0 and again["WorkerName"] == "" and again["FinishedAt"] == 0
    assert result(url, "Venus.WdPoStRemoveJob", [allocated], admin) is None
    assert result(url, "Venus.WdPoStRemoveJob", [allocated], admin) is None      # gone already: no error, as Damocles
    assert [j["Id"] for j in result(url, "Venus.WdPoStAllJobs", [], read)["Jobs"]] == [older]


def test_a_failed_job_as_the_rust_worker_reports_it(manager):
    svc, url = manager
    write = issue_token(svc.secret, "write", "prover")
    svc.jobs.create(1000, 7, 0, [0], _poster_input())
    [job] = result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [1000], "AllowedProofTypes": RUST_ALLOWED_2K}, 1, "w-a"],
                   write)
    # report_result: Option<WindowPoStOutput> None and the error escaped
    assert result(url, "Venus.WdPoStFinishJob", [job["Id"], None, "get access store instance named persist-9"], write) is None
    [brief] = result(url, "Venus.WdPoStAllJobs", [], issue_token(svc.secret, "read"))["Jobs"]
    assert brief["State"] == "finished" and brief["ErrorReason"] == "get access store instance named persist-9"
    assert brief["Faults"] == 0 and brief["Output"] == {"proofs": None, "faults": None}
    # a Go client may send an output whose fields are null
    svc.jobs.reset(job["Id"])
    result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": None, "AllowedProofTypes": None}, 1, "w-a"], write)
    assert result(url, "Venus.WdPoStFinishJob", [job["Id"], {"proofs": None, "faults": None}, "no proof"], write) is None


def test_our_prover_proves_an_allocated_job_whose_sealed_file_and_cache_are_in_different_stores(tmp_path):
    """Round trip: the input as the Rust worker gets it (V1_2 name, a store name per file) proven by
    our prover's job function, the proof checked as the manager checks it."""
    import os
    import shutil

    from appliance.core.proof_types import post_proof
    from appliance.post.service import prove_job
    from appliance.proofs.post import PublicSector, decode_post, verify_post

    from ..poststore import seal_into_store

    sealed_store, cache_store = tmp_path / "persist-1", tmp_path / "cache-store"
    comm_rs = {n: seal_into_store(sealed_store, 1000, n, tmp_path / "work", tmp_path / "parents") for n in (1, 3)}
    for n in (1, 3):                      # the caches live in another store, as Accesses.CacheDir says
        shutil.move(sealed_store / "cache" / f"s-t01000-{n}", cache_store / "cache" / f"s-t01000-{n}")
    seed = bytearray(os.urandom(32))
    seed[31] &= 0x3F
    job_input = {"Sectors": [{"SectorId": n, "CommR": list(comm_rs[n]), "Upgrade": False,
                              "Accesses": {"SealedFile": "persist-1", "CacheDir": "cache-store"}} for n in (1, 3)]
                 + [{"SectorId": 4, "CommR": [0] * 32, "Upgrade": False,                   # a store not attached here
                     "Accesses": {"SealedFile": "persist-9", "CacheDir": "cache-store"}}],
                 "MinerId": 1000, "ProofType": "StackedDrgWindow2KiBV1_2", "Seed": list(seed)}
    out = prove_job(job_input, {"persist-1": str(sealed_store), "cache-store": str(cache_store)})
    assert set(out) == {"proofs", "faults"} and out["faults"] == [4]
    w2k = post_proof("StackedDrgWindow2KiBV1_1")
    verify_post(w2k, bytes(seed), [PublicSector(n, comm_rs[n]) for n in (1, 3)],
                decode_post(base64.b64decode(out["proofs"][0]), w2k))
