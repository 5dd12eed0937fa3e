"""A Damocles Rust worker sends no Authorization header (its JSON-RPC client,
damocles-worker/src/rpc/sealer/mod.rs, has none; Damocles' manager has no auth). A real manager
process on loopback with `[RPC] AllowNetworks` accepts such a caller for the worker-facing
methods (every method of SealerAPI and WorkerWdPoStAPI in damocles-manager/core/api.go, each at
its own level) and the piece store, and for nothing else; a tokenless caller from another
network is refused. Damocles read at commit 4235a89557219de436bba441e727af3a42f903f0."""

import os
import subprocess

import pytest

from appliance.rpc import UNAUTHORIZED
from appliance.rpc.auth import issue_token, load_or_create_secret

from ..configs import manager_toml
from ..conftest import ROOT, damocles_cmd, read_line
from .raw_http_rpc import raw_call, raw_http, result

pytestmark = pytest.mark.timeout(180)

ALLOWED = "127.0.0.1/32"          # 127.0.0.2, also on the loopback, is "another network"
RUST_POST_TYPES = ["StackedDrgWinning2KiBV1", "StackedDrgWindow2KiBV1", "StackedDrgWindow2KiBV1_2"]


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    home = tmp_path_factory.mktemp("tokenless") / "manager"
    home.mkdir()
    (home / "persist-1").mkdir()
    (home / "manager.toml").write_text(manager_toml(None, block_time="0s", miner={"PoSt": {"Enabled": False}},
                                                    config={"RPC": {"AllowNetworks": [ALLOWED]}}))
    proc = subprocess.Popen(damocles_cmd("manager", "run", "--home", str(home)), cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(proc)
        assert line.startswith("listening on "), line
        yield line.split()[-1], load_or_create_secret(home / "secret")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _refused(status_answer, http_status, words):
    status, answer = status_answer
    assert status == http_status and answer["error"]["code"] == UNAUTHORIZED, (status, answer)
    assert words in answer["error"]["message"], answer
    return answer


def test_worker_facing_methods_work_without_a_token_from_allow_networks(manager):
    url, _ = manager
    # the sealer plan's first calls, as the Rust worker writes them (AllocateSectorSpec: Option fields)
    sector = result(url, "Venus.AllocateSector", [{"AllowedMiners": None, "AllowedProofTypes": None}])
    assert sector["ID"]["Miner"] == 1000
    assert result(url, "Venus.WorkerPing", [{"Name": "rust-w", "Dest": "127.0.0.1:17890", "Version": "damocles-worker"}]) is None
    result(url, "Venus.AssignTicket", [sector["ID"]])
    assert result(url, "Venus.ReportAborted", [sector["ID"], "test over"]) is None
    # snapup, rebuild and unseal threads: nothing to hand out, but the call is accepted
    assert result(url, "Venus.AllocateSanpUpSector", [{"Sector": {"AllowedMiners": None, "AllowedProofTypes": None},
                                                       "Deals": {"MaxDeals": None, "MinUsedSpace": None}}]) is None
    assert result(url, "Venus.AllocateRebuildSector", [{"AllowedMiners": None, "AllowedProofTypes": None}]) is None
    assert result(url, "Venus.AllocateUnsealSector", [{"AllowedMiners": None, "AllowedProofTypes": None}]) is None
    assert result(url, "Venus.StoreBasicInfo", ["persist-1"])["Name"] == "persist-1"
    # a wdpost thread
    assert result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": [1000], "AllowedProofTypes": RUST_POST_TYPES}, 1,
                                                    "rust-w"]) == []
    assert result(url, "Venus.WdPoStHeartbeatJobs", [[], "rust-w"]) is None
    assert result(url, "Venus.WdPoStAllJobs", [])["Jobs"] == []        # in WorkerWdPoStAPI, read level
    # the piece store is a worker's route too: a piece that is not there is 404, not 401
    assert raw_http(url, "GET", "/piecestore/baga6ea4seaqnotthere")[0] == 404


def test_everything_else_needs_a_token(manager):
    url, secret = manager
    # the operator's WorkerWdPoStAPI methods stay admin
    _refused(raw_call(url, "Venus.WdPoStResetJob", ["job"]), 403, "needs 'admin' permission")
    _refused(raw_call(url, "Venus.WdPoStRemoveJob", ["job"]), 403, "needs 'admin' permission")
    # methods that are not a worker's, read level included, and admin ones
    for method, params in (("Venus.ListSectors", []), ("Venus.ProvingInfo", [1000]), ("Venus.AuthVerify", ["x"]),
                           ("Venus.DevnetHead", []), ("Venus.DevnetAdvance", [1]),
                           ("Venus.AbortSector", [{"Miner": 1000, "Number": 1}, "x"])):
        _refused(raw_call(url, method, params), 403, "needs a token")
    status, body = raw_http(url, "GET", "/metrics")
    assert status == 401 and b"needs a token" in body
    # the same methods with a token are fine
    assert "Epoch" in result(url, "Venus.DevnetHead", [], issue_token(secret, "read"))


def test_a_tokenless_caller_from_another_network_is_refused(manager):
    url, secret = manager
    for method, params in (("Venus.AllocateSector", [{"AllowedMiners": None, "AllowedProofTypes": None}]),
                           ("Venus.WdPoStAllocateJobs", [{"AllowedMiners": None, "AllowedProofTypes": None}, 1, "far"])):
        _refused(raw_call(url, method, params, source="127.0.0.2"), 401, "missing bearer token")
    assert raw_http(url, "GET", "/piecestore/baga6ea4seaqnotthere", source="127.0.0.2")[0] == 401
    # with a write token it may
    assert result(url, "Venus.WdPoStAllocateJobs", [{"AllowedMiners": None, "AllowedProofTypes": None}, 1, "far"],
                  issue_token(secret, "write", "far")) == []
