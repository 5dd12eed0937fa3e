"""Damocles' SealerAPI, the methods of the sealer plan, on a live manager over HTTP: each request
is the body Damocles' Rust worker sends (its serde types, every Option written as null), each
answer is checked key by key against what Go's encoding/json writes from the manager's types.

Written from a reading of ipfs-force-community/damocles at commit
4235a89557219de436bba441e727af3a42f903f0:
- damocles-manager/core/api.go (SealerAPI: names, params, results),
- damocles-manager/core/types.go (AllocatedSector, SectorPieceV2, DealInfoV2, Ticket, the
  Submit*/Poll* answers, WaitSeedResp, SectorStateResp, StoreBasicInfo),
- damocles-manager/core/worker.go (WorkerInfo, WorkerInfoSummary),
- damocles-manager/modules/sealer/sealer.go (ReportState answers a pointer to the sector's
  AbortReason, "" when none; ReportFinalized and ReportAborted answer core.Empty, a nil Meta),
- damocles-worker/src/rpc/sealer/mod.rs (the Rust client: what it sends and what it parses),
- venus-shared types/market DealInfoV2 (the fields DealInfoV2 embeds, flattened by encoding/json).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.request

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import commp_file
from appliance.proofs.seal import seal_sector
from appliance.rpc.auth import issue_token
from appliance.worker.failure import Perm
from appliance.worker.steps import _sector_piece

from ..configs import manager_toml

pytestmark = pytest.mark.timeout(240)
P2K = seal_proof("StackedDrg2KiBV1_1")

# ---- the shapes Go writes (types.go, worker.go); a tuple ("null", X) may be null -------------

U64, I64, STR, BOOL, B64, B64_32, CID = "u64", "i64", "str", "bool", "b64", "b64-32", "cid"


def null(shape):
    return ("null", shape)


SECTOR_ID = {"Miner": U64, "Number": U64}
ALLOCATED_SECTOR = {"ID": SECTOR_ID, "ProofType": I64}
PIECE_INFO = {"Size": U64, "PieceCID": CID}                   # abi.PieceInfo
DEAL_INFO_V2 = {                                               # venus DealInfoV2, embedded, + Damocles' two flags
    "DealID": U64, "PublishCid": null(CID), "AllocationID": U64, "PieceCID": CID, "PieceSize": U64,
    "Client": STR, "Provider": STR, "Offset": U64, "Length": U64, "PayloadSize": U64,
    "StartEpoch": I64, "EndEpoch": I64, "IsBuiltinMarket": BOOL, "IsCompatible": BOOL}
SECTOR_PIECE_V2 = {"Piece": PIECE_INFO, "DealInfo": null(DEAL_INFO_V2)}
TICKET = {"Ticket": B64_32, "Epoch": I64}                      # abi.Randomness: base64; the Rust side wants 32 bytes
SUBMIT_RESP = {"Res": U64, "Desc": null(STR)}                  # SubmitPreCommitResp, SubmitProofResp
POLL_RESP = {"State": U64, "Desc": null(STR)}                  # PollPreCommitStateResp, PollProofStateResp
WAIT_SEED_RESP = {"ShouldWait": BOOL, "Delay": I64, "Seed": null({"Seed": B64_32, "Epoch": I64})}
SECTOR_STATE_RESP = {"Id": SECTOR_ID, "Finalized": BOOL, "AbortReason": STR}   # json:"Id"; &state.AbortReason
STORE_BASIC_INFO = {"Name": STR, "Path": STR, "Strict": BOOL, "ReadOnly": BOOL, "Weight": U64, "Meta": null({})}


def check(value, shape, path="result"):
    """`value` has exactly Go's keys and JSON types (`{}` as a shape: any map of strings)."""
    if isinstance(shape, tuple):
        if value is None:
            return
        shape = shape[1]
    if shape == {}:
        assert isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), (path, value)
    elif isinstance(shape, dict):
        assert isinstance(value, dict) and set(value) == set(shape), (path, sorted(value) if isinstance(value, dict) else value,
                                                                      sorted(shape))
        for k, s in shape.items():
            check(value[k], s, f"{path}.{k}")
    elif isinstance(shape, list):
        assert isinstance(value, list), (path, value)
        for i, v in enumerate(value):
            check(v, shape[0], f"{path}[{i}]")
    elif shape in (U64, I64):
        assert isinstance(value, int) and not isinstance(value, bool) and (shape == I64 or value >= 0), (path, value)
    elif shape == STR:
        assert isinstance(value, str), (path, value)
    elif shape == BOOL:
        assert isinstance(value, bool), (path, value)
    elif shape in (B64, B64_32):
        raw = base64.b64decode(value, validate=True)
        assert shape == B64 or len(raw) == 32, (path, value)
    elif shape == CID:
        assert isinstance(value, dict) and set(value) == {"/"} and isinstance(value["/"], str), (path, value)
    else:
        raise AssertionError(f"unknown shape {shape!r}")


# ---- a live manager --------------------------------------------------------------------------


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "m"
    init_home(home, manager_toml(6, 1, 1, None, pre_wait=None, block_time="0s", check_interval="50ms",
                                 miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False},
                                        "Sector": {"EnableDeals": True, "SealingEpochs": 100}},
                                 config={"Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    yield svc, f"http://{host}:{port}", home
    svc.stop()


class Rust:
    """Requests as the Rust worker's jsonrpc client writes them: positional params, no batching."""

    def __init__(self, url: str, token: str):
        self.url, self.token, self.id = url, token, 0

    def post(self, method: str, *params) -> dict:
        self.id += 1
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": self.id}).encode()
        req = urllib.request.Request(self.url + "/rpc/v0", body, {"Content-Type": "application/json",
                                                                   "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def call(self, method: str, *params):
        answer = self.post(method, *params)
        assert "error" not in answer, (method, answer)
        return answer["result"]

    def error(self, method: str, *params) -> dict:
        return self.post(method, *params)["error"]


def until(admin: Rust, what: str, fn, seconds: float = 60):
    """Advance the devnet an epoch at a time until fn() answers; bounded."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        admin.call("Venus.DevnetAdvance", 1)
        time.sleep(0.02)     # the manager's batching thread takes its turn; bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


def import_deals(svc, tmp_path) -> list[tuple]:
    """Two deals (a 512- and a 128-byte piece) in the embedded market: (deal, piece file) each."""
    out = []
    for name, data in (("big", bytes(range(256)) + b"piece one" * 10), ("small", b"the second piece")):
        f = tmp_path / f"{name}.bin"
        f.write_bytes(data)
        info, payload = commp_file(f)
        cid = commd_to_cid(info.commitment)
        with open(f, "rb") as fh:
            svc.sealer.market.store_piece(cid, fh, payload)
        out.append((svc.sealer.market.import_deal(1000, cid, None, None), f))
    return out


def report_req(prev, nxt, event, failure=None, instance="rust-w1"):
    """ReportStateReq as the Rust worker fills it: Event is the Debug form of its event."""
    return {"Worker": {"Instance": instance, "Location": "/data/t0"},
            "StateChange": {"Prev": prev, "Next": nxt, "Event": event}, "Failure": failure}


# ---- the sealer plan, call by call -----------------------------------------------------------


def test_the_sealer_plan_as_the_rust_worker_calls_it(manager, tmp_path):
    svc, url, home = manager
    w = Rust(url, issue_token(svc.secret, "write", "rust-w1"))
    admin = Rust(url, issue_token(svc.secret, "admin"))
    deals = import_deals(svc, tmp_path)
    admin.call("Venus.DevnetAdvance", 5)

    # WorkerPing(WorkerInfo) -> Meta (null); Summary is a struct value in Go, always sent
    assert w.call("Venus.WorkerPing", {"Name": "rust-w1", "Dest": "127.0.0.1:17890", "Version": "v0.11.0",
                                       "Summary": {"Threads": 1, "Empty": 0, "Paused": 0, "Running": 1, "Waiting": 0,
                                                   "Errors": 0}}) is None

    # AllocateSector(AllocateSectorSpec) -> *AllocatedSector; proof types as serde_repr numbers;
    # a field the struct lacks is ignored, as Go does
    alloc = w.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": [P2K.id], "FromANewerWorker": 1})
    check(alloc, ALLOCATED_SECTOR)
    assert alloc["ProofType"] == P2K.id
    sid = alloc["ID"]
    assert w.call("Venus.AllocateSector", {"AllowedMiners": [9999], "AllowedProofTypes": None}) is None

    # ReportState(SectorID, ReportStateReq) -> *SectorStateResp
    got = w.call("Venus.ReportState", sid, report_req("Empty", "Allocated", "Allocate(AllocatedSector { .. })"))
    check(got, SECTOR_STATE_RESP)
    assert got == {"Id": sid, "Finalized": False, "AbortReason": ""}

    # AcquireDeals(SectorID, AcquireDealsSpec) -> SectorPieces (the Rust worker's DealsV2)
    pieces = w.call("Venus.AcquireDeals", sid, {"MaxDeals": None, "MinUsedSpace": None})
    check(pieces, [SECTOR_PIECE_V2])
    assert [(p["Piece"]["PieceCID"]["/"], p["Piece"]["Size"]) for p in pieces] == [(d["PieceCID"], d["PieceSize"]) for d, _ in deals]
    assert [p["DealInfo"]["DealID"] for p in pieces] == [d["DealID"] for d, _ in deals]
    assert [(p["DealInfo"]["Offset"], p["DealInfo"]["Length"]) for p in pieces] == [(0, 512), (512, 128)]
    assert [p["DealInfo"]["PayloadSize"] for p in pieces] == [d["PayloadSize"] for d, _ in deals]
    assert all(p["DealInfo"]["IsBuiltinMarket"] and p["DealInfo"]["AllocationID"] == 0 for p in pieces)
    assert pieces[0]["DealInfo"]["Provider"] == "f01000"
    assert w.call("Venus.AcquireDeals", sid, {"MaxDeals": 1, "MinUsedSpace": None}) == pieces    # held: the same
    # our worker reads the answer into its journal as it is
    assert [_sector_piece(p, "p") for p in pieces] == [
        {"id": d["DealID"], "piece_cid": d["PieceCID"], "piece_size": d["PieceSize"], "payload_size": d["PayloadSize"]}
        for d, _ in deals]

    # AssignTicket(SectorID) -> Ticket
    ticket = w.call("Venus.AssignTicket", sid)
    check(ticket, TICKET)
    r = seal_sector(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32,
                    tmp_path / "work", pieces=[f for _, f in deals])

    # SubmitPreCommit(AllocatedSector, PreCommitOnChainInfo, bool) -> SubmitPreCommitResp;
    # [32]byte is an array of numbers
    info = {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket}
    resp = w.call("Venus.SubmitPreCommit", alloc, info, False)
    check(resp, SUBMIT_RESP)
    assert resp == {"Res": 1, "Desc": None}
    assert w.call("Venus.SubmitPreCommit", alloc, {**info, "CommR": [0] * 32}, False)["Res"] == 3   # mismatched

    # PollPreCommitState(SectorID) -> PollPreCommitStateResp
    first = w.call("Venus.PollPreCommitState", sid)
    check(first, POLL_RESP)
    assert first["State"] in (1, 2, 3)
    until(admin, "PreCommit landed", lambda: check(s := w.call("Venus.PollPreCommitState", sid), POLL_RESP) or s["State"] == 3)

    # StoreReserveSpace(SectorID, uint64, []string) -> *StoreBasicInfo
    store = w.call("Venus.StoreReserveSpace", sid, 4 * 2048, ["persist-1"])
    check(store, STORE_BASIC_INFO)
    assert store["Name"] == "persist-1" and store["Path"] == str(home / "persist-1")
    assert w.call("Venus.StoreReserveSpace", sid, 1 << 60, ["persist-1"]) is None     # no room: null
    assert w.call("Venus.StoreReserveSpace", sid, 4 * 2048, None) == store            # a nil []string: any store

    # SubmitPersisted(SectorID, string) and SubmitPersistedEx(SectorID, string, bool) -> bool
    assert w.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is False       # not there yet
    name = f"s-t0{sid['Miner']}-{sid['Number']}"
    dest = home / "persist-1"
    (dest / "sealed").mkdir(exist_ok=True)
    shutil.copy(r.sector_dir / "sealed", dest / "sealed" / name)
    shutil.copytree(r.sector_dir / "cache", dest / "cache" / name, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("sc-02-data-layer-*", "sc-02-data-tree-c*", "sc-02-data-tree-d*"))
    assert w.call("Venus.SubmitPersisted", sid, "persist-1") is True
    assert w.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is True

    # WaitSeed(SectorID, RegisteredSealProof) -> WaitSeedResp
    def seed():
        got = w.call("Venus.WaitSeed", sid, P2K.id)
        check(got, WAIT_SEED_RESP)
        assert got["Seed"] is not None or got["ShouldWait"]
        return got["Seed"]
    sd = until(admin, "seed", seed)
    assert sd["Epoch"] > 0

    # SubmitProof(SectorID, ProofOnChainInfo, bool) -> SubmitProofResp; []byte is base64
    from appliance.proofs.c2 import seal_commit_phase2
    from appliance.proofs.pc2 import read_p_aux
    from appliance.proofs.porep import seal_commit_phase1
    comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
    c1 = seal_commit_phase1(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]),
                            base64.b64decode(sd["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                            r.sector_dir / "sealed")
    resp = w.call("Venus.SubmitProof", sid, {"Proof": base64.b64encode(seal_commit_phase2(c1)).decode()}, False)
    check(resp, SUBMIT_RESP)
    assert resp["Res"] == 1, resp

    # PollProofState(SectorID) -> PollProofStateResp
    until(admin, "proof landed", lambda: check(s := w.call("Venus.PollProofState", sid), POLL_RESP) or s["State"] == 3)

    # a failure report as the Rust worker words it (Level is the Debug form of its level enum)
    got = w.call("Venus.ReportState", sid, report_req("ProofSubmitted", "ProofSubmitted", "Retry",
                                                      {"Level": "Temporary", "Desc": "a passing hiccup"}))
    check(got, SECTOR_STATE_RESP)
    got = w.call("Venus.ReportState", sid, report_req("ProofSubmitted", "Finished", "Finish"))
    assert got == {"Id": sid, "Finalized": False, "AbortReason": ""}

    # ReportFinalized(SectorID) -> Meta: null
    assert w.call("Venus.ReportFinalized", sid) is None
    got = w.call("Venus.ReportState", sid, report_req("Finished", "Finished", "Finish"))
    assert got == {"Id": sid, "Finalized": True, "AbortReason": ""}

    # StoreBasicInfo(string) -> *StoreBasicInfo
    check(w.call("Venus.StoreBasicInfo", "persist-1"), STORE_BASIC_INFO)
    assert w.call("Venus.StoreBasicInfo", "no-such-store") is None
    on_chain = admin.call("Venus.DevnetSectors", 1000)
    assert [(s["number"], s["deal_ids"]) for s in on_chain] == [(sid["Number"], [d["DealID"] for d, _ in deals])]


def test_report_aborted_answers_null_and_gives_the_deals_back(manager, tmp_path):
    svc, url, _ = manager
    w = Rust(url, issue_token(svc.secret, "write", "rust-w1"))
    deals = import_deals(svc, tmp_path)
    sid = w.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
    w.call("Venus.ReportState", sid, report_req("Empty", "Allocated", "Allocate"))
    assert len(w.call("Venus.AcquireDeals", sid, {"MaxDeals": None, "MinUsedSpace": None})) == 2
    # ReportAborted(SectorID, string) -> Meta: null
    assert w.call("Venus.ReportAborted", sid, "given up") is None
    got = w.call("Venus.ReportState", sid, report_req("Allocated", "DealsAcquired", "AcquireDeals"))
    assert got == {"Id": sid, "Finalized": True, "AbortReason": "given up"}
    other = w.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
    assert [p["DealInfo"]["DealID"] for p in w.call("Venus.AcquireDeals", other, {"MaxDeals": None, "MinUsedSpace": None})] == \
        [d["DealID"] for d, _ in deals]


def test_a_task_on_a_finished_sector_is_reported_through_the_sealing_methods(manager):
    """Damocles' worker reports a snapup, rebuild or unseal task with ReportState (its own states:
    SnapEncoded, Unsealed, ...), then ReportFinalized or ReportAborted: the holder of the task is
    not told the sector is finalized, and the Finished sector stays Finished."""
    svc, url, _ = manager
    sealer = Rust(url, issue_token(svc.secret, "write", "sealer-01"))
    upgrader = Rust(url, issue_token(svc.secret, "write", "snap-01"))
    sid = sealer.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
    sealer.call("Venus.ReportState", sid, report_req("Empty", "Finished", "Finish"))
    assert sealer.call("Venus.ReportFinalized", sid) is None
    before = svc.state.sector(sid["Miner"], sid["Number"])
    with svc.state.tx() as db:
        db.execute("INSERT INTO snap_candidates (miner, number, state, worker, created, updated) VALUES (?, ?, 'allocated', ?, 0, 0)",
                   (sid["Miner"], sid["Number"], "name:snap-01"))
    for prev, nxt in (("Allocated", "SnapPieceAdded"), ("SnapPieceAdded", "SnapTreeDBuilt"), ("SnapTreeDBuilt", "SnapEncoded"),
                      ("SnapEncoded", "SnapProved"), ("SnapProved", "SnapDone")):
        got = upgrader.call("Venus.ReportState", sid, report_req(prev, nxt, "Step", instance="rust-w2"))
        assert got == {"Id": sid, "Finalized": False, "AbortReason": ""}
    # ReportAborted from the holder gives the snap-up back (a candidate again), the sector stays as it was
    assert upgrader.call("Venus.ReportAborted", sid, "snap failed") is None
    assert svc.state.one("SELECT state, error FROM snap_candidates WHERE miner = ? AND number = ?",
                         (sid["Miner"], sid["Number"])) == ("candidate", "snap failed")
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before
    # without the task, the sector is finalized to anyone who reports on it
    with svc.state.tx() as db:
        db.execute("DELETE FROM snap_candidates")
    got = sealer.call("Venus.ReportState", sid, report_req("Finished", "Finished", "Finish"))
    assert got == {"Id": sid, "Finalized": True, "AbortReason": ""}


def test_our_worker_reads_go_sector_pieces():
    """SectorPieces as Go writes them (a DDO piece has a null PublishCid; a piece without
    DealInfo is null there), read by our worker; a malformed one is a perm failure naming it."""
    cid = "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"
    go = [{"Piece": {"Size": 2048, "PieceCID": {"/": cid}},
           "DealInfo": {"DealID": 0, "PublishCid": None, "AllocationID": 7, "PieceCID": {"/": cid}, "PieceSize": 2048,
                        "Client": "f01234", "Provider": "f01000", "Offset": 0, "Length": 2048, "PayloadSize": 2000,
                        "StartEpoch": 10, "EndEpoch": 99999, "IsBuiltinMarket": False, "IsCompatible": False}},
          {"Piece": {"Size": 128, "PieceCID": {"/": cid}}, "DealInfo": None}]
    assert [_sector_piece(p, f"d[{i}]") for i, p in enumerate(go)] == [
        {"id": 0, "piece_cid": cid, "piece_size": 2048, "payload_size": 2000},
        {"id": 0, "piece_cid": cid, "piece_size": 128, "payload_size": 0}]
    legacy = {"ID": 5, "PieceCID": {"/": cid}, "PieceSize": 2048, "PayloadSize": 2000}      # the old shape
    with pytest.raises(Perm, match=r"AcquireDeals\[0\]: not a SectorPieceV2"):
        _sector_piece(legacy, "AcquireDeals[0]")


def test_worker_ping_keeps_go_zero_values_for_what_a_worker_leaves_out(manager):
    """Go decodes a WorkerInfo without Summary (or with part of it) to zeros, and writes it back
    whole (WorkerPingInfoList): the manager keeps the same."""
    svc, url, _ = manager
    w = Rust(url, issue_token(svc.secret, "write", "rust-w1"))
    assert w.call("Venus.WorkerPing", {"Name": "old-w", "Dest": "127.0.0.1:17890", "Version": "v0.9"}) is None
    assert w.call("Venus.WorkerPing", {"Name": "part-w", "Dest": "127.0.0.1:17891", "Version": "v1",
                                       "Summary": {"Threads": 4, "Running": 2}}) is None
    infos = {name: info for name, info, _ in svc.state.workers()}
    zeros = dict.fromkeys(("Threads", "Empty", "Paused", "Running", "Waiting", "Errors"), 0)
    assert {k: infos["old-w"][k] for k in ("Name", "Dest", "Version", "Summary")} == \
        {"Name": "old-w", "Dest": "127.0.0.1:17890", "Version": "v0.9", "Summary": zeros}
    assert infos["part-w"]["Summary"] == {**zeros, "Threads": 4, "Running": 2}


def test_submit_persisted_ex_of_a_snap_up_checks_the_update_files(manager):
    """SubmitPersistedEx(sid, instance, isUpgrade=true): the Rust snapup planner persists
    update/ and update-cache/ and says so here (modules/sealer/sealer.go checks the upgrade files)."""
    svc, url, home = manager
    sealer = Rust(url, issue_token(svc.secret, "write", "sealer-01"))
    upgrader = Rust(url, issue_token(svc.secret, "write", "snap-01"))
    sid = sealer.call("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
    assert upgrader.error("Venus.SubmitPersistedEx", sid, "persist-1", True)["code"] == -32602     # no snap-up
    with svc.state.tx() as db:
        db.execute("INSERT INTO snap_candidates (miner, number, state, worker, created, updated) VALUES (?, ?, 'allocated', ?, 0, 0)",
                   (sid["Miner"], sid["Number"], "name:snap-01"))
    assert upgrader.call("Venus.SubmitPersistedEx", sid, "persist-1", True) is False
    name = f"s-t0{sid['Miner']}-{sid['Number']}"
    (home / "persist-1" / "update").mkdir()
    (home / "persist-1" / "update" / name).write_bytes(b"replica")
    (home / "persist-1" / "update-cache" / name).mkdir(parents=True)
    (home / "persist-1" / "update-cache" / name / "p_aux").write_bytes(b"aux")
    assert upgrader.call("Venus.SubmitPersistedEx", sid, "persist-1", True) is True
    assert sealer.error("Venus.SubmitPersistedEx", sid, "persist-1", True)["code"] == -32001         # not its snap-up
    assert sealer.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is False                  # sealed/ is not there
