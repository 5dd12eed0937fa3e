"""Damocles' operator API (SealerCliAPI, RandomnessAPI, MinerAPI) as the Go CLI calls it: each
request is the method and the positional params array `damocles-manager util ...` sends, each
answer is checked field by field (names, JSON types, nullability) against the Go types, as
encoding/json writes them.

Read from ipfs-force-community/damocles at 4235a89557219de436bba441e727af3a42f903f0:
damocles-manager/core/api.go (the interfaces), core/types.go, core/types_sector_state.go,
core/worker.go, core/prover.go (PrivateSectorInfo), pkg/objstore/mgr.go (StoreReserved),
modules/config.go (MinerConfig), modules/sealer/sealer_cli.go (what each method answers);
go-bitfield's rleplus MarshalJSON (a BitField is its run lengths, first run absent bits)."""

import base64

import pytest

from appliance.chain.types import SectorOnChain
from appliance.manager.api_cli import bitfield_runs, go_duration
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from ..configs import manager_toml

pytestmark = pytest.mark.timeout(120)

PIECE = commd_to_cid(bytes([7]) * 32)
COMM_R = bytes([5]) * 32
INT, STR, BOOL = int, str, bool


@pytest.fixture
def cluster(tmp_path):
    """A manager with two sectors: 1 finished (offline), proven on chain, holding one deal (deal
    1), persisted in persist-1 (its files absent); 2 in PC1 (online) on sealer-01."""
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    url = f"http://{host}:{port}"
    worker = RPCClient(url, issue_token(svc.secret, "write", "sealer-01"))
    admin = RPCClient(url, issue_token(svc.secret, "admin"))
    done = worker.call("Venus.AllocateSector", {})["ID"]
    live = worker.call("Venus.AllocateSector", {})["ID"]
    miner, number = done["Miner"], done["Number"]
    rec = svc.state.sector(miner, number)
    svc.state.update(miner, number, ticket={"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}, persisted="persist-1",
                     pre={"CommR": COMM_R.hex(), "CommD": "07" * 32}, pre_msg="bafy2bzaceprecommit", state="Finished",
                     finalized=True)
    svc.state.reserve(miner, number, "persist-1", 4096)
    worker.call("Venus.ReportState", live, {"Worker": {"Instance": "sealer-01", "Location": "/w/t0"},
                                            "StateChange": {"Prev": "Allocated", "Next": "PC1Done", "Event": "PC1"}})
    with svc.devnet._tx():
        svc.devnet.put_sector(SectorOnChain(miner, number, rec["proof"], commr_to_cid(COMM_R), commd_to_cid(bytes([7]) * 32),
                                           1, 10**6))
        svc.devnet.assign_deadlines(miner, [number])
    with svc.state.tx() as db:
        db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (1, ?, ?, 2048, 2000, 0, 1000000, 'pieces', ?)", (miner, PIECE, number))
    yield svc, worker, admin, done, live
    svc.stop()


def refused(code, fn, *args) -> str:
    with pytest.raises(RPCError) as e:
        fn(*args)
    assert e.value.code == code, e.value.message
    return e.value.message


def shape(value: dict, spec: dict, where: str = "") -> None:
    """`value` has exactly the keys of `spec` (ours may follow, listed in `extra`), each of the
    JSON type given (a tuple: any of them; None in it: nullable)."""
    for key, kinds in spec.items():
        assert key in value, f"{where}{key} missing"
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        v = value[key]
        ok = (v is None and None in kinds) or any(k is not None and isinstance(v, k) and not (k is INT and isinstance(v, bool))
                                                  for k in kinds)
        assert ok, f"{where}{key}: {v!r} is not {kinds}"


SECTOR_STATE = {"ID": dict, "SectorType": INT, "Deals": (list, None), "Pieces": (list, None), "MessageInfo": dict,
                "TerminateInfo": dict, "Finalized": BOOL, "Removed": BOOL, "AbortReason": STR, "Upgraded": BOOL,
                "UpgradePublic": (dict, None), "UpgradedInfo": (dict, None), "UpgradeMessageID": (STR, None),
                "UpgradeLandedEpoch": (INT, None), "Imported": BOOL, "NeedRebuild": BOOL, "Unsealing": BOOL}


def check_sector_state(s: dict) -> None:
    shape(s, SECTOR_STATE)
    shape(s["ID"], {"Miner": INT, "Number": INT}, "ID.")
    shape(s["MessageInfo"], {"PreCommitCid": (dict, None), "CommitCid": (dict, None), "NeedSend": BOOL}, "MessageInfo.")
    shape(s["TerminateInfo"], {"TerminateCid": (dict, None), "TerminatedAt": INT, "AddedHeight": INT}, "TerminateInfo.")
    for k in ("Ticket", "Seed", "Pre", "Proof", "LatestState"):      # omitempty pointers: absent, never null
        assert k not in s or s[k] is not None, k


def test_list_and_find_sectors(cluster):
    svc, _, admin, done, live = cluster
    online = admin.call("Venus.ListSectors", "online", 0)
    offline = admin.call("Venus.ListSectors", "offline", 0)
    assert [s["ID"] for s in online] == [live] and [s["ID"] for s in offline] == [done]
    for s in online + offline:
        check_sector_state(s)
    s = offline[0]
    assert s["Finalized"] is True and s["AbortReason"] == "" and s["Deals"] is None
    assert s["Ticket"] == {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}
    assert s["Pre"]["CommR"] == {"/": commr_to_cid(COMM_R)} and s["Pre"]["CommD"] == {"/": commd_to_cid(bytes([7]) * 32)}
    assert s["MessageInfo"] == {"PreCommitCid": {"/": "bafy2bzaceprecommit"}, "CommitCid": None, "NeedSend": False}
    piece = s["Pieces"][0]
    assert piece["Piece"] == {"Size": 2048, "PieceCID": {"/": PIECE}}
    shape(piece["DealInfo"], {"DealID": INT, "PieceCID": dict, "PieceSize": INT, "Offset": INT, "Length": INT, "PayloadSize": INT,
                              "StartEpoch": INT, "EndEpoch": INT, "IsBuiltinMarket": BOOL, "IsCompatible": BOOL}, "DealInfo.")
    assert piece["DealInfo"]["DealID"] == 1 and piece["DealInfo"]["IsBuiltinMarket"] is True
    latest = online[0]["LatestState"]       # *ReportStateReq, as the worker reported it
    assert latest == {"Worker": {"Instance": "sealer-01", "Location": "/w/t0"},
                      "StateChange": {"Prev": "Allocated", "Next": "PC1Done", "Event": "PC1"}, "Failure": None}
    # SectorWorkerJob: 1 sealing holds both, 2 snapup / 3 rebuild / 4 unseal none
    assert len(admin.call("Venus.ListSectors", "online", 1)) == 1
    assert [admin.call("Venus.ListSectors", "offline", j) for j in (2, 3, 4)] == [[], [], []]
    assert len(admin.call("Venus.ListSectors", "", 0)) == 2          # ours: both states
    assert "online" in refused(INVALID_PARAMS, admin.call, "Venus.ListSectors", "everywhere", 0)
    assert "SectorWorkerJob" in refused(INVALID_PARAMS, admin.call, "Venus.ListSectors", "online", 9)
    assert "takes 2 params" in refused(INVALID_PARAMS, admin.call, "Venus.ListSectors")

    assert admin.call("Venus.FindSector", "offline", done) == s
    assert "not found in the online sectors" in refused(SECTOR_NOT_FOUND, admin.call, "Venus.FindSector", "online", done)
    assert admin.call("Venus.FindSectorInAllStates", live)["ID"] == live
    refused(SECTOR_NOT_FOUND, admin.call, "Venus.FindSectorInAllStates", {"Miner": 1000, "Number": 999})
    assert [x["ID"] for x in admin.call("Venus.FindSectorsWithDeal", "offline", 1)] == [done]
    assert admin.call("Venus.FindSectorsWithDeal", "online", 1) is None
    assert "empty deal id" in refused(INVALID_PARAMS, admin.call, "Venus.FindSectorsWithDeal", "offline", 0)
    assert admin.call("Venus.FindSectorWithPiece", "offline", {"/": PIECE})["ID"] == done
    assert admin.call("Venus.FindSectorWithPiece", "offline", {"/": commd_to_cid(bytes([8]) * 32)}) is None


def test_lifecycle_methods(cluster):
    svc, _, admin, done, live = cluster
    # SubmitTerminateResp {Res, Desc} and TerminateInfo {TerminateCid, TerminatedAt, AddedHeight} (core/types.go)
    head = svc.chain.head()
    assert admin.call("Venus.TerminateSector", done) == {"Res": 1, "Desc": None}
    assert admin.call("Venus.TerminateSector", done) == {"Res": 2, "Desc": "duplicate submit"}
    info = admin.call("Venus.PollTerminateSectorState", done)
    assert info["TerminateCid"] is None and info["TerminatedAt"] == 0 and info["AddedHeight"] >= head
    assert admin.call("Venus.FindSector", "offline", done)["TerminateInfo"] == info
    assert "not on chain" in refused(INVALID_PARAMS, admin.call, "Venus.TerminateSector", live)
    refused(SECTOR_NOT_FOUND, admin.call, "Venus.PollTerminateSectorState", {"Miner": done["Miner"], "Number": 999})
    # ImportSector (state import-json): Damocles answers false for a sector it has, unless override
    state = admin.call("Venus.FindSectorInAllStates", done)
    assert admin.call("Venus.ImportSector", "offline", state, False) is False
    assert "state.SectorType" in refused(INVALID_PARAMS, admin.call, "Venus.ImportSector", "offline", {"ID": done}, True)
    assert admin.call("Venus.ImportSector", "offline", None, False) is False
    assert "live on chain" in refused(INVALID_PARAMS, admin.call, "Venus.RemoveSector", done)      # its termination in flight
    assert "not finalized" in refused(INVALID_PARAMS, admin.call, "Venus.RemoveSector", live)
    assert "not found on chain" in refused(INVALID_PARAMS, admin.call, "Venus.FinalizeSector", live)
    svc.state.update(done["Miner"], done["Number"], finalized=None, state="ProofSubmitted")
    assert admin.call("Venus.FinalizeSector", done) is None
    assert admin.call("Venus.FindSector", "offline", done)["Finalized"] is True
    assert svc.state.reservation(done["Miner"], done["Number"]) is None         # released, as Damocles does
    svc.state.update(done["Miner"], done["Number"], abort_reason="by hand")
    assert admin.call("Venus.RestoreSector", done, True) is None


def test_workers(cluster):
    svc, worker, admin, _, _ = cluster
    worker.call("Venus.WorkerPing", {"Name": "sealer-01", "Dest": "127.0.0.1:17890", "Version": "v1",
                                     "Summary": {"Threads": 4, "Empty": 1, "Paused": 0, "Running": 3, "Waiting": 0, "Errors": 0}})
    info = admin.call("Venus.WorkerGetPingInfo", "sealer-01")
    shape(info, {"Info": dict, "LastPing": INT})
    assert info["Info"] == {"Name": "sealer-01", "Dest": "127.0.0.1:17890", "Version": "v1",
                            "Summary": {"Threads": 4, "Empty": 1, "Paused": 0, "Running": 3, "Waiting": 0, "Errors": 0},
                            "Owner": "name:sealer-01"}     # ours after Damocles' fields: Go skips it
    assert admin.call("Venus.WorkerPingInfoList") == [info]
    assert admin.call("Venus.WorkerGetPingInfo", "nobody") is None          # Damocles: nil, nil on a missing key
    assert admin.call("Venus.WorkerPingInfoRemove", "sealer-01") is None
    assert admin.call("Venus.WorkerPingInfoList") == []
    assert "no worker" in refused(INVALID_PARAMS, admin.call, "Venus.WorkerPingInfoRemove", "sealer-01")


def test_stores_and_index(cluster):
    svc, _, admin, done, _ = cluster
    found = admin.call("Venus.SectorIndexerFind", "normal", done)
    assert found == {"Found": True, "Instance": {"SealedFile": "persist-1", "CacheDir": "persist-1"}}     # names, not paths
    assert admin.call("Venus.SectorIndexerFind", "upgrade", done) == {"Found": False, "Instance": {"SealedFile": "", "CacheDir": ""}}
    assert "not supported" in refused(INVALID_PARAMS, admin.call, "Venus.SectorIndexerFind", "sideways", done)
    stores = admin.call("Venus.StoreList")
    shape(stores[0], {"Name": STR, "Path": STR, "Strict": BOOL, "ReadOnly": BOOL, "Weight": INT, "Meta": (dict, None),
                      "Type": STR, "Total": INT, "Free": INT, "Used": INT, "UsedPercent": (float, INT), "Reserved": INT,
                      "ReservedBy": list})
    assert stores[0]["Name"] == "persist-1" and stores[0]["Reserved"] == 4096
    assert stores[0]["ReservedBy"] == [{"By": "s-t01000-1", "Size": 4096, "At": 0}]
    assert admin.call("Venus.StoreReleaseReserved", done) is True
    assert admin.call("Venus.StoreReleaseReserved", done) is False
    assert admin.call("Venus.StoreList")[0]["ReservedBy"] == []


def test_proving_methods(cluster):
    svc, _, admin, done, _ = cluster
    info = svc.devnet.miner_info(1000)
    ext = {"SealProof": info.seal_proof, "SectorNumber": done["Number"], "SectorKey": None, "SealedCID": {"/": commr_to_cid(COMM_R)}}
    bad = admin.call("Venus.CheckProvable", 1000, info.window_post_proof, [ext], False, True)
    assert list(bad) == [str(done["Number"])] and isinstance(bad[str(done["Number"])], str)     # its files are absent
    gone = dict(ext, SectorNumber=77)
    assert admin.call("Venus.CheckProvable", 1000, info.window_post_proof, [gone], False, True) == \
        {"77": "not a live sector of the miner on chain"}
    assert "proves with" in refused(INVALID_PARAMS, admin.call, "Venus.CheckProvable", 1000, 999, [ext], False, False)
    rand = base64.b64encode(bytes(32)).decode()
    assert admin.call("Venus.SimulateWdPoSt", 0, 0, "t01000", info.window_post_proof, [ext], rand) is None
    assert "ID address" in refused(INVALID_PARAMS, admin.call, "Venus.SimulateWdPoSt", 0, 0, "1000", info.window_post_proof, [ext], rand)
    p = admin.call("Venus.ProvingSectorInfo", done)
    shape(p["OnChain"], {"SectorNumber": INT, "SealProof": INT, "SealedCID": dict, "Activation": INT, "Expiration": INT,
                         "DealWeight": STR, "InitialPledge": STR, "SectorKeyCID": (dict, None)}, "OnChain.")
    assert p["OnChain"]["SealedCID"] == {"/": commr_to_cid(COMM_R)}
    shape(p["Private"], {"Accesses": dict, "CacheDirPath": STR, "SealedSectorPath": STR, "CacheDirURI": STR, "SealedSectorURI": STR})
    assert p["Private"]["Accesses"] == {"SealedFile": "persist-1", "CacheDir": "persist-1"}
    assert p["Private"]["SealedSectorPath"].endswith("sealed/s-t01000-1")
    refused(SECTOR_NOT_FOUND, admin.call, "Venus.ProvingSectorInfo", {"Miner": 1000, "Number": 55})


def test_bitfield_json():
    """go-bitfield's own example: {0, 1, 2, 8, 9} is [0, 3, 5, 2]; the empty set is [0]."""
    assert bitfield_runs([0, 1, 2, 8, 9]) == [0, 3, 5, 2]
    assert bitfield_runs([]) == [0]
    assert bitfield_runs([3]) == [3, 1]
    assert bitfield_runs([2, 3, 5]) == [2, 2, 1, 1]


def test_snapup_methods(cluster):
    svc, _, admin, done, _ = cluster
    assert admin.call("Venus.SnapUpCandidates", 1000) is None
    assert admin.call("Venus.SnapUpPreFetch", 1000, None) == {"Total": 1, "Diff": 1}
    assert admin.call("Venus.SnapUpPreFetch", 1000, None) == {"Total": 1, "Diff": 0}
    deadline = svc.devnet.proving_deadline(1000)      # the sector's deadline
    per_deadline = admin.call("Venus.SnapUpCandidates", 1000)
    d = next(i for i, b in enumerate(per_deadline) if b is not None)
    assert per_deadline[d] == bitfield_runs([done["Number"]]) and all(b is None for b in per_deadline[:d]), deadline
    assert admin.call("Venus.SnapUpCandidateList", 1000)[0]["Sector"] == done       # ours, with their states
    assert admin.call("Venus.SnapUpCancelCommitment", done) is None
    assert admin.call("Venus.SnapUpFetch", 1000, None) == {"Added": []}             # ours stays


def test_rebuild_and_unseal(cluster):
    svc, _, admin, done, _ = cluster
    assert admin.call("Venus.SectorSetForRebuild", done, {"PiecesAvailable": False}) is True
    assert [t["Sector"] for t in admin.call("Venus.RebuildTasks")] == [done]
    assert "already being rebuilt" in refused(INVALID_PARAMS, admin.call, "Venus.SectorSetForRebuild", done, {"PiecesAvailable": True})
    assert admin.call("Venus.UnsealPiece", done, {"/": PIECE}, 0, 2032, "piecestore") is None
    assert [(t["PieceCid"], t["Dest"]) for t in admin.call("Venus.UnsealTasks")] == [(PIECE, "piecestore")]
    assert "websocket" in refused(INVALID_PARAMS, admin.call, "Venus.UnsealPiece", done, {"/": PIECE}, 0, 2032, "")
    assert "whole pieces" in refused(INVALID_PARAMS, admin.call, "Venus.UnsealPiece", done, {"/": PIECE}, 127, 1000, "piecestore")
    assert "CID" in refused(INVALID_PARAMS, admin.call, "Venus.UnsealPiece", done, PIECE, 0, 0, "piecestore")


def test_randomness_and_miner(cluster):
    svc, _, admin, _, _ = cluster
    epoch = svc.devnet.head()
    t = admin.call("Venus.GetTicket", [], epoch, 1000)
    assert t == {"Ticket": base64.b64encode(svc.devnet.seal_randomness(1000, epoch)).decode(), "Epoch": epoch}
    assert len(base64.b64decode(t["Ticket"])) == 32
    s = admin.call("Venus.GetSeed", None, epoch, 1000)
    assert s == {"Seed": base64.b64encode(svc.devnet.interactive_seed(1000, epoch)).decode(), "Epoch": epoch}
    w = admin.call("Venus.GetWindowPoStChanlleengeRand", [], epoch, 1000)
    assert w == {"Epoch": epoch, "Rand": base64.b64encode(svc.devnet.window_post_randomness(1000, epoch)).decode()}
    c = admin.call("Venus.GetWindowPoStCommitRand", [], epoch)
    assert c == {"Epoch": epoch, "Rand": base64.b64encode(svc.devnet.chain_commit_randomness(epoch)).decode()}
    assert "empty tipset key" in refused(INVALID_PARAMS, admin.call, "Venus.GetTicket", [{"/": "bafy2bzacea"}], epoch, 1000)
    info = svc.devnet.miner_info(1000)
    assert admin.call("Venus.GetInfo", 1000) == {"ID": 1000, "Addr": "f01000", "SectorSize": 2048,
                                                 "WindowPoStProofType": info.window_post_proof, "SealProofType": info.seal_proof}
    refused(INVALID_PARAMS, admin.call, "Venus.GetInfo", 4242)
    cfg = admin.call("Venus.GetMinerConfig", 1000)
    shape(cfg, {"Actor": INT, "Sector": dict, "SnapUp": dict, "Commitment": dict, "PoSt": dict, "Proof": dict, "Sealing": dict})
    shape(cfg["Sector"], {"MinNumber": (INT, None), "MaxNumber": (INT, None), "Enabled": BOOL, "EnableDeals": BOOL,
                          "LifetimeDays": INT}, "Sector.")
    assert cfg["Actor"] == 1000 and cfg["PoSt"]["Enabled"] is False
    batch = cfg["Commitment"]["Pre"]["Batch"]          # modules.Duration: Go's Duration.String() text
    assert isinstance(batch["Threshold"], int) and batch["MaxWait"].endswith("s") and batch["CheckInterval"].endswith("s")
    assert "not a miner" in refused(INVALID_PARAMS, admin.call, "Venus.GetMinerConfig", 4242)
    version = admin.call("Venus.Version")
    assert isinstance(version, str) and version.startswith("damocles ")


# The methods of SealerCliAPI, RandomnessAPI and MinerAPI in damocles-manager/core/api.go (commit above).
DAMOCLES_CLI_METHODS = """ListSectors FindSector FindSectorInAllStates FindSectorsWithDeal FindSectorWithPiece ImportSector
RestoreSector CheckProvable SimulateWdPoSt SnapUpPreFetch SnapUpCandidates SnapUpCancelCommitment ProvingSectorInfo
WorkerGetPingInfo WorkerPingInfoList WorkerPingInfoRemove SectorIndexerFind TerminateSector PollTerminateSectorState
RemoveSector FinalizeSector StoreReleaseReserved StoreList SectorSetForRebuild UnsealPiece Version
GetTicket GetSeed GetWindowPoStChanlleengeRand GetWindowPoStCommitRand GetInfo GetMinerConfig""".split()


def test_every_method_registered(cluster):
    svc = cluster[0]
    assert len(DAMOCLES_CLI_METHODS) == 32
    assert [m for m in DAMOCLES_CLI_METHODS if f"Venus.{m}" not in svc.rpc.methods] == []


def test_remove_sector_deletes_its_files(cluster):
    svc, _, admin, _, live = cluster
    store = svc.config.persist_stores[0].path
    name = f"s-t0{live['Miner']}-{live['Number']}"
    (store / "sealed").mkdir(exist_ok=True)
    (store / "sealed" / name).write_bytes(b"x")
    (store / "cache" / name).mkdir(parents=True)
    (store / "cache" / name / "p_aux").write_bytes(b"x")
    admin.call("Venus.AbortSector", live, "disk gone")
    svc.state.update(live["Miner"], live["Number"], persisted="persist-1")
    assert admin.call("Venus.RemoveSector", live) is None
    assert not (store / "sealed" / name).exists() and not (store / "cache" / name).exists()
    s = admin.call("Venus.FindSector", "offline", live)
    assert s["Removed"] is True and s["AbortReason"] == "disk gone"
    assert admin.call("Venus.RemoveSector", live) is None          # already removed: nothing to do, as Damocles


def test_go_duration():
    """time.Duration.String(): what modules.Duration writes for MaxWait and CheckInterval."""
    assert [go_duration(x) for x in (0, 0.5, 5, 90, 3600, 5400.5)] == ["0s", "500ms", "5s", "1m30s", "1h0m0s", "1h30m0.5s"]
