"""Task calls are bound to the caller (security review, names of other tasks): an unseal, rebuild or
snap-up sector and a WindowPoSt job belong to the identity that took them. Each test has a second
worker's write token try the call on the first one's task: it is refused with -32001, counted as
foreign_task, and the task is unchanged; the owner's call then goes through. The allocate calls
take Damocles' one parameter (its Rust worker sends no worker name): the old extra `workerName`
is a -32602."""

import pytest

from appliance.chain.types import SectorOnChain
from appliance.core.protocol import OnChainState, SubmitResult
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.rpc import INVALID_PARAMS, UNAUTHORIZED, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from .configs import manager_toml
from .pg_cluster import db_table, manager_store, pg_dsn, pg_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)

PIECE = commd_to_cid(bytes([7]) * 32)


@pytest.fixture
def cluster(tmp_path, manager_store):  # noqa: F811
    """A manager with one sector of sealer-01's, proven on chain (put there directly), holding
    one deal, persisted in persist-1 (its files absent: lost, so it can be rebuilt); its state on
    each store driver (the unseal, rebuild and snap-up tasks' SQL runs on both)."""
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}},
                                 config={"Common": db_table(manager_store)}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    url = f"http://{host}:{port}"
    clients = {n: RPCClient(url, issue_token(svc.secret, "write", n)) for n in ("sealer-01", "sealer-02")}
    admin = RPCClient(url, issue_token(svc.secret, "admin"))
    sid = clients["sealer-01"].call("Venus.AllocateSector", {})["ID"]
    miner, number = sid["Miner"], sid["Number"]
    rec = svc.state.sector(miner, number)
    svc.state.update(miner, number, ticket={"Ticket": "A" * 43 + "=", "Epoch": 1}, persisted="persist-1",
                     pre={"CommD": "07" * 32}, state="Finished")
    with svc.devnet._tx():
        svc.devnet.put_sector(SectorOnChain(miner, number, rec["proof"], commr_to_cid(bytes([5]) * 32),
                                           commd_to_cid(bytes([7]) * 32), 1, 10**6))
        svc.devnet.assign_deadlines(miner, [number])
    with svc.state.tx() as db:
        db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (1, ?, ?, 2048, 2000, 0, 1000000, 'pieces', ?)", (miner, PIECE, number))
    yield svc, clients["sealer-01"], clients["sealer-02"], admin, sid
    svc.stop()


def refused(code, fn, *args):
    with pytest.raises(RPCError) as e:
        fn(*args)
    assert e.value.code == code, e.value.message
    return e.value.message


def foreign(svc) -> int:
    return svc.sealer.limits.snapshot().get("foreign_task", 0)


def rows(svc, table):
    return svc.state.query(f"SELECT * FROM {table} ORDER BY 1, 2")


def test_an_unseal_task_is_achieved_only_by_the_worker_that_took_it(cluster):
    svc, owner, other, admin, sid = cluster
    admin.call("Venus.UnsealRequest", sid, PIECE, "piecestore")
    refused(INVALID_PARAMS, owner.call, "Venus.AllocateUnsealSector", {}, "w1-unseal-0")    # the old workerName
    task = owner.call("Venus.AllocateUnsealSector", {"AllowedMiners": None, "AllowedProofTypes": None})
    assert task["Sector"]["ID"] == sid and task["PieceCid"] == {"/": PIECE}
    assert other.call("Venus.AllocateUnsealSector", {}) is None          # taken: not handed out twice
    assert owner.call("Venus.AllocateUnsealSector", {}) is None
    assert admin.call("Venus.UnsealTasks")[0]["Worker"] == "name:sealer-01"
    before = rows(svc, "unseal_tasks")
    msg = refused(UNAUTHORIZED, other.call, "Venus.AchieveUnsealSector", sid, {"/": PIECE}, "")
    assert "another worker's credential" in msg
    refused(UNAUTHORIZED, other.call, "Venus.AchieveUnsealSector", sid, {"/": PIECE}, "failed on purpose")
    assert rows(svc, "unseal_tasks") == before and foreign(svc) == 2
    refused(INVALID_PARAMS, owner.call, "Venus.AchieveUnsealSector", sid, PIECE, "")      # Damocles' CID is {"/": ...}
    owner.call("Venus.AchieveUnsealSector", sid, {"/": PIECE}, "")
    assert admin.call("Venus.UnsealTasks")[0]["State"] == "done"


def test_a_rebuild_is_done_only_by_the_worker_that_took_it_which_may_persist_the_sector(cluster):
    svc, owner, other, admin, sid = cluster
    admin.call("Venus.RebuildRequest", sid)
    refused(INVALID_PARAMS, other.call, "Venus.AllocateRebuildSector", {}, "w2-rebuild-0")
    assert other.call("Venus.AllocateRebuildSector", {"AllowedMiners": [sid["Miner"] + 1]}) is None   # another miner's only
    task = other.call("Venus.AllocateRebuildSector", {})        # sealer-02 rebuilds sealer-01's sector
    assert task["Sector"]["ID"] == sid and owner.call("Venus.AllocateRebuildSector", {}) is None
    # the rebuild's holder may reserve space and persist the sector it does not own
    assert other.call("Venus.StoreReserveSpace", sid, 4096, ["persist-1"])["Name"] == "persist-1"
    before, sector = rows(svc, "rebuild_tasks"), svc.state.sector(sid["Miner"], sid["Number"])
    refused(UNAUTHORIZED, owner.call, "Venus.RebuildDone", sid, "")        # the sector's owner did not take the task
    assert rows(svc, "rebuild_tasks") == before and svc.state.sector(sid["Miner"], sid["Number"]) == sector
    assert foreign(svc) == 1
    other.call("Venus.RebuildDone", sid, "")
    assert admin.call("Venus.RebuildTasks")[0]["State"] == "done"


def test_a_snapup_is_submitted_and_polled_only_by_the_worker_that_took_it(cluster):
    svc, owner, other, admin, sid = cluster
    with svc.state.tx() as db:      # a CC sector: its deal is the one packed for the upgrade
        db.execute("INSERT INTO snap_candidates (miner, number, state, created, updated) VALUES (?, ?, 'candidate', 0, 0)",
                   (sid["Miner"], sid["Number"]))
    refused(INVALID_PARAMS, owner.call, "Venus.AllocateSanpUpSector", {}, "w1-snapup-0")
    task = owner.call("Venus.AllocateSanpUpSector", {"Sector": {"AllowedMiners": None, "AllowedProofTypes": None},
                                                     "Deals": {"MaxDeals": None, "MinUsedSpace": None}})
    assert task["Sector"]["ID"] == sid and [p["Piece"]["PieceCID"] for p in task["Pieces"]] == [{"/": PIECE}]
    assert other.call("Venus.AllocateSanpUpSector", {"Sector": {}, "Deals": {}}) is None
    info = {"CommR": [1] * 32, "CommD": [2] * 32, "AccessInstance": "persist-1", "Pieces": [{"/": PIECE}], "Proof": "AAAA"}
    before, outbox = rows(svc, "snap_candidates"), rows(svc, "outbox")
    refused(UNAUTHORIZED, other.call, "Venus.SubmitSnapUpProof", sid, info)
    refused(UNAUTHORIZED, other.call, "Venus.SnapUpState", sid)
    refused(UNAUTHORIZED, other.call, "Venus.SnapUpAborted", sid, "not mine")
    refused(UNAUTHORIZED, other.call, "Venus.ReportAborted", sid, "not mine either")   # the sealer's owner is not the holder
    assert rows(svc, "snap_candidates") == before and rows(svc, "outbox") == outbox and foreign(svc) == 3
    # Damocles' SnapUpOnChainInfo: without CommD and Pieces it is not one
    refused(INVALID_PARAMS, owner.call, "Venus.SubmitSnapUpProof", sid,
            {k: v for k, v in info.items() if k not in ("CommD", "Pieces")})
    # the owner is heard: a CommD or pieces that are not its deals' are rejected (Go's Rejected), nothing is sent
    res = owner.call("Venus.SubmitSnapUpProof", sid, info)
    assert res["Res"] == SubmitResult.REJECTED and "CommD" in res["Desc"], res
    one_piece = {**info, "CommD": [7] * 32}           # the CommD of a sector that is that one 2 KiB piece
    res = owner.call("Venus.SubmitSnapUpProof", sid, {**one_piece, "Pieces": []})
    assert res["Res"] == SubmitResult.REJECTED and "pieces" in res["Desc"], res
    res = owner.call("Venus.SubmitSnapUpProof", sid, one_piece)
    assert res["Res"] == SubmitResult.REJECTED and "does not verify" in res["Desc"], res
    assert owner.call("Venus.SnapUpState", sid)["State"] == OnChainState.PENDING      # not submitted
    assert rows(svc, "outbox") == outbox
    # the owner gives it up as Damocles' worker does (ReportAborted): a candidate again, which another worker
    # may take, with the same deal
    owner.call("Venus.ReportAborted", sid, "the store is gone")
    assert admin.call("Venus.SnapUpCandidateList", None)[0] | {"State": "candidate", "Worker": "", "Error": "the store is gone"} \
        == admin.call("Venus.SnapUpCandidateList", None)[0]
    assert other.call("Venus.AllocateSanpUpSector", {"Sector": {}, "Deals": {}})["Pieces"] == task["Pieces"]


def test_a_windowpost_job_is_heartbeated_and_finished_only_under_its_provers_name(cluster):
    svc, owner, other, admin, sid = cluster
    job_id = svc.jobs.create(1000, 3, 0, [0], {"MinerId": 1000, "ProofType": "StackedDrgWindow2KiBV1_1", "Sectors": []})
    [job] = owner.call("Venus.WdPoStAllocateJobs", {}, 1, "prover-a")
    assert job["Id"] == job_id
    before = svc.jobs.get(job_id)
    # the prover's name is sealer-01's: sealer-02 may neither take jobs nor heartbeat under it
    refused(UNAUTHORIZED, other.call, "Venus.WdPoStAllocateJobs", {}, 1, "prover-a")
    refused(UNAUTHORIZED, other.call, "Venus.WdPoStHeartbeatJobs", [job_id], "prover-a")
    other.call("Venus.WdPoStHeartbeatJobs", [job_id], "prover-b")          # its own name: the job is not its own
    msg = refused(UNAUTHORIZED, other.call, "Venus.WdPoStFinishJob", job_id, {"proofs": []}, "")
    assert "prover-a" in msg
    assert svc.jobs.get(job_id) == before and foreign(svc) == 1
    assert svc.sealer.limits.snapshot()["foreign_worker"] == 2
    owner.call("Venus.WdPoStHeartbeatJobs", [job_id], "prover-a")
    assert svc.jobs.get(job_id)["HeartbeatAt"] > before["HeartbeatAt"]
    owner.call("Venus.WdPoStFinishJob", job_id, {"proofs": []}, "")
    assert svc.jobs.get(job_id)["State"] == "finished"


def test_a_task_taken_before_holders_were_identities_is_claimed_by_the_first_caller(cluster):
    svc, owner, other, admin, sid = cluster
    with svc.state.tx() as db:      # what an older manager stored: the worker thread's name
        db.execute("INSERT INTO rebuild_tasks (miner, number, state, worker, created, updated) "
                   "VALUES (?, ?, 'allocated', 'w1-rebuild-0', 0, 0)", (sid["Miner"], sid["Number"]))
    owner.call("Venus.RebuildDone", sid, "gave up")
    assert admin.call("Venus.RebuildTasks")[0] | {"ErrorInfo": "gave up", "Worker": "name:sealer-01", "State": "failed"} \
        == admin.call("Venus.RebuildTasks")[0]


def test_the_operator_is_not_bound(cluster):
    svc, owner, other, admin, sid = cluster
    admin.call("Venus.UnsealRequest", sid, PIECE, "piecestore")
    owner.call("Venus.AllocateUnsealSector", {})
    admin.call("Venus.AchieveUnsealSector", sid, {"/": PIECE}, "cancelled by the operator")
    assert admin.call("Venus.UnsealTasks")[0]["State"] == "failed" and foreign(svc) == 0
