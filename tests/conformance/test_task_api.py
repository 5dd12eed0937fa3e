"""Conformance of the task methods of Damocles' SealerAPI: AllocateSanpUpSector,
SubmitSnapUpProof, AllocateRebuildSector, AllocateUnsealSector, AcquireUnsealDest,
AchieveUnsealSector, and the ReportFinalized / ReportAborted that Damocles' Rust worker sends at
the end of those plans.

Each request is the JSON-RPC body as Damocles' Rust worker writes it (method, positional params),
from damocles-worker/src/rpc/sealer/mod.rs (serde, PascalCase; `Option` as null; [u8; 32] as an
array of numbers; B64Vec as base64 text; CidJson as {"/": ...}), and each answer is checked
field by field against the Go types it is written from: damocles-manager/core/api.go, core/types.go
(AllocatedSnapUpSector, SectorPieceV2, SectorPublicInfo, SectorPrivateInfo, SnapUpOnChainInfo,
SubmitSnapUpProofResp, SectorRebuildInfo, SectorUnsealInfo, Ticket, AllocatedSector),
core/types_sector_state.go (SectorUpgradePublic = SectorPublicInfo), and venus-shared's
types/market DealInfoV2 (embedded in core.DealInfoV2) and types/gateway UnsealState, all at
Damocles commit 4235a89557219de436bba441e727af3a42f903f0. Go's encoding/json: field names as
written, []byte as base64, [32]byte as 32 numbers, cid.Cid as {"/": ...}, nil pointers and
slices as null, core.Meta (a nil pointer) as null."""

import base64
import http.client
import json
from urllib.parse import urlparse

import pytest

from appliance.chain.types import SectorOnChain
from appliance.core.protocol import SubmitResult
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import cid_to_commitment, commd_to_cid, commr_to_cid
from appliance.rpc.auth import issue_token

from ..configs import manager_toml

pytestmark = pytest.mark.timeout(120)

COMMIT = "4235a89557219de436bba441e727af3a42f903f0"
PIECE = commd_to_cid(bytes([7]) * 32)       # one 2 KiB piece: the CommD of a sector holding it is this commitment
SEALED = commr_to_cid(bytes([5]) * 32)
SECTOR_KEY = commr_to_cid(bytes([6]) * 32)
P2K = 5                                     # RegisteredSealProof StackedDrg2KiBV1_1 (serde_repr: a number)

# Go's field sets, in the order of the Go structs
ALLOCATED_SECTOR = ["ID", "ProofType"]
SECTOR_ID = ["Miner", "Number"]
SECTOR_PIECE_V2 = ["Piece", "DealInfo"]
ABI_PIECE_INFO = ["Size", "PieceCID"]
# core.DealInfoV2 embeds *market.DealInfoV2 (its fields are promoted), then IsBuiltinMarket, IsCompatible
DEAL_INFO_V2 = ["DealID", "PublishCid", "AllocationID", "PieceCID", "PieceSize", "Client", "Provider", "Offset", "Length",
                "PayloadSize", "StartEpoch", "EndEpoch", "IsBuiltinMarket", "IsCompatible"]
SECTOR_PUBLIC_INFO = ["CommR", "SealedCID", "Activation", "Expiration"]
ALLOCATED_SNAPUP_SECTOR = ["Sector", "Pieces", "Public", "Private"]
SUBMIT_SNAPUP_PROOF_RESP = ["Res", "Desc"]
SECTOR_REBUILD_INFO = ["Sector", "Ticket", "Pieces", "PiecesV2", "IsSnapUp", "UpgradePublic"]
TICKET = ["Ticket", "Epoch"]
SECTOR_UNSEAL_INFO = ["Sector", "PieceCid", "Offset", "Size", "PrivateInfo", "Ticket", "CommD", "Dest", "State", "ErrorInfo"]
UNSEAL_STATES = {"set_up", "finished", "failed", "unsealing", "uploading"}     # venus-shared gateway.UnsealState


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_u64(v) -> bool:
    return is_int(v) and 0 <= v < 1 << 64


def is_bytes32(v) -> bool:
    return isinstance(v, list) and len(v) == 32 and all(is_int(b) and 0 <= b < 256 for b in v)


def is_cid(v) -> bool:
    return isinstance(v, dict) and list(v) == ["/"] and isinstance(v["/"], str) and v["/"].startswith("baga")


def keys(v, fields, what):
    assert isinstance(v, dict) and sorted(v) == sorted(fields), f"{what}: keys {sorted(v) if isinstance(v, dict) else v} " \
                                                                f"are not Go's {fields}"


def check_allocated_sector(v, miner, number):
    keys(v, ALLOCATED_SECTOR, "AllocatedSector")
    keys(v["ID"], SECTOR_ID, "abi.SectorID")
    assert v["ID"] == {"Miner": miner, "Number": number} and v["ProofType"] == P2K


def check_sector_piece(p, miner, cid, size, payload):
    keys(p, SECTOR_PIECE_V2, "SectorPieceV2")
    keys(p["Piece"], ABI_PIECE_INFO, "abi.PieceInfo")
    assert p["Piece"] == {"Size": size, "PieceCID": {"/": cid}}
    d = p["DealInfo"]
    keys(d, DEAL_INFO_V2, "DealInfoV2")
    assert is_u64(d["DealID"]) and d["DealID"] > 0 and d["AllocationID"] == 0 and d["IsBuiltinMarket"] is True
    assert d["PublishCid"] is None or is_cid(d["PublishCid"])          # cid.Undef is null
    assert d["PieceCID"] == {"/": cid} and d["PieceSize"] == size and d["Length"] == size and d["PayloadSize"] == payload
    assert isinstance(d["Client"], str) and d["Provider"] == f"f0{miner}"
    assert all(is_int(d[k]) for k in ("Offset", "StartEpoch", "EndEpoch")) and d["IsCompatible"] is False


def check_public(v, sealed, activation, expiration):
    keys(v, SECTOR_PUBLIC_INFO, "SectorPublicInfo")
    assert is_bytes32(v["CommR"]) and bytes(v["CommR"]) == cid_to_commitment(sealed)[1]
    assert v["SealedCID"] == {"/": sealed} and v["Activation"] == activation and v["Expiration"] == expiration


def check_ticket(v):
    keys(v, TICKET, "Ticket")
    assert len(base64.b64decode(v["Ticket"], validate=True)) == 32 and is_int(v["Epoch"])   # abi.Randomness: []byte


class Rust:
    """A client that posts exactly what Damocles' Rust worker posts and hands back the raw answer."""

    def __init__(self, url, token):
        self.url, self.token = urlparse(url), token

    def answer(self, method, *params) -> dict:
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)
        try:
            conn.request("POST", self.url.path or "/rpc/v0",
                         json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}),
                         {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def __call__(self, method, *params):
        a = self.answer(method, *params)
        assert "error" not in a and "result" in a, (method, a)
        return a["result"]


@pytest.fixture
def manager(tmp_path):
    """A manager with two sectors of its own proven on chain (put there directly): 1000-1 holds a
    deal of PIECE and is persisted in persist-1 with its files gone (lost); 1000-2 is a CC sector
    persisted in persist-1 and a snap-up candidate, with a deal packed for it (the market's part is
tested elsewhere)."""
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    url = f"http://{host}:{port}"
    sealer = Rust(url, issue_token(svc.secret, "write", "sealer-01"))
    sids = [sealer("Venus.AllocateSector", {"AllowedMiners": None, "AllowedProofTypes": None})["ID"] for _ in range(2)]
    proof = svc.state.sector(sids[0]["Miner"], sids[0]["Number"])["proof"]
    with svc.devnet._tx():
        for sid in sids:
            svc.state.update(sid["Miner"], sid["Number"], ticket={"Ticket": base64.b64encode(bytes([9]) * 32).decode(), "Epoch": 7},
                             persisted="persist-1", pre={"CommD": "07" * 32}, state="Finished", finalized=True)
            svc.devnet.put_sector(SectorOnChain(sid["Miner"], sid["Number"], proof, SEALED, commd_to_cid(bytes([7]) * 32),
                                               11, 10**6))
        svc.devnet.assign_deadlines(sids[0]["Miner"], [s["Number"] for s in sids])
    miner = sids[0]["Miner"]
    with svc.state.tx() as db:
        db.execute("INSERT INTO deals (miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (?, ?, 2048, 2000, 0, 1000000, 'pieces', ?)", (miner, PIECE, sids[0]["Number"]))
        db.execute("INSERT INTO deals (miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store, sector) "
                   "VALUES (?, ?, 2048, 1500, 10000, 1000000, 'pieces', ?)", (miner, PIECE, sids[1]["Number"]))
        db.execute("INSERT INTO snap_candidates (miner, number, state, created, updated) VALUES (?, ?, 'candidate', 0, 0)",
                   (miner, sids[1]["Number"]))
    yield svc, url, sids
    svc.stop()


def rust_worker(svc, url, name="w1"):
    return Rust(url, issue_token(svc.secret, "write", name))


def test_allocate_sanp_up_sector_answers_allocated_snap_up_sector(manager):
    svc, url, (_, cc) = manager
    w = rust_worker(svc, url)
    # snapup.rs empty(): AllocateSnapUpSpec {Sector: AllocateSectorSpec, Deals: AcquireDealsSpec}; a worker without
    # allowed_miners configured sends Some(vec![]), an empty list
    spec = {"Sector": {"AllowedMiners": [], "AllowedProofTypes": []}, "Deals": {"MaxDeals": None, "MinUsedSpace": None}}
    a = w("Venus.AllocateSanpUpSector", spec)
    keys(a, ALLOCATED_SNAPUP_SECTOR, "AllocatedSnapUpSector")
    check_allocated_sector(a["Sector"], cc["Miner"], cc["Number"])
    assert isinstance(a["Pieces"], list) and len(a["Pieces"]) == 1      # SectorPieces; serde DealsV2 (not Option)
    check_sector_piece(a["Pieces"][0], cc["Miner"], PIECE, 2048, 1500)
    assert a["Pieces"][0]["DealInfo"]["Offset"] == 0
    check_public(a["Public"], SEALED, 11, 10**6)
    keys(a["Private"], ["AccessInstance"], "SectorPrivateInfo")
    assert a["Private"] == {"AccessInstance": "persist-1"}
    assert w("Venus.AllocateSanpUpSector", spec) is None               # *AllocatedSnapUpSector: nil is null


def test_submit_snap_up_proof_answers_go_codes_and_is_idempotent(manager):
    svc, url, (_, cc) = manager
    w = rust_worker(svc, url)
    w("Venus.AllocateSanpUpSector", {"Sector": {"AllowedMiners": None, "AllowedProofTypes": None},
                                     "Deals": {"MaxDeals": None, "MinUsedSpace": None}})
    # snapup.rs submit(): SnapUpOnChainInfo {CommR: [u8; 32], CommD: [u8; 32], AccessInstance, Pieces: Vec<CidJson>,
    # Proof: B64Vec}
    info = {"CommR": [1] * 32, "CommD": [7] * 32, "AccessInstance": "persist-1", "Pieces": [{"/": PIECE}], "Proof": ""}

    def submit(**change):
        r = w("Venus.SubmitSnapUpProof", cc, {**info, **change})
        keys(r, SUBMIT_SNAPUP_PROOF_RESP, "SubmitSnapUpProofResp")
        assert r["Res"] in (1, 2, 3, 4, 5) and (r["Desc"] is None or isinstance(r["Desc"], str))   # Desc *string
        return r
    r = submit()
    assert r["Res"] == SubmitResult.REJECTED and r["Desc"] == "empty proof is invalid"     # Go's check and words
    r = submit(Proof=base64.b64encode(b"not a proof").decode(), Pieces=[])
    assert r["Res"] == SubmitResult.REJECTED and "pieces" in r["Desc"]
    r = submit(Proof=base64.b64encode(b"not a proof").decode())
    assert r["Res"] == SubmitResult.REJECTED and "does not verify" in r["Desc"]
    # accepted before (the e2e test submits a real proof): the same CommR again is DuplicateSubmit, which the Rust
    # worker takes as accepted; another CommR is MismatchedSubmission
    with svc.state.tx() as db:
        db.execute("UPDATE snap_candidates SET state = 'submitted', message = 'bafy-msg' WHERE number = ?", (cc["Number"],))
    svc.state.update(cc["Miner"], cc["Number"], snap_comm_r=bytes([1] * 32).hex())
    r = submit(Proof="AAAA")
    assert r["Res"] == SubmitResult.DUPLICATE_SUBMIT, r
    r = submit(Proof="AAAA", CommR=[2] * 32)
    assert r["Res"] == SubmitResult.MISMATCHED_SUBMISSION and "0101" in r["Desc"], r
    # the worker is done: ReportFinalized answers core.Meta (null) and changes nothing, as Go's for an upgrading sector
    before = svc.state.sector(cc["Miner"], cc["Number"])
    assert w("Venus.ReportFinalized", cc) is None
    assert svc.state.sector(cc["Miner"], cc["Number"]) == before
    assert svc.state.one("SELECT state FROM snap_candidates WHERE number = ?", (cc["Number"],)) == ("submitted",)


def test_report_aborted_gives_an_allocated_snap_up_back(manager):
    svc, url, (_, cc) = manager
    w = rust_worker(svc, url)
    first = w("Venus.AllocateSanpUpSector", {"Sector": {"AllowedMiners": None, "AllowedProofTypes": None},
                                             "Deals": {"MaxDeals": None, "MinUsedSpace": None}})
    assert w("Venus.ReportAborted", cc, "deals required, got empty") is None       # core.Meta: null
    row = svc.state.one("SELECT state, worker, error FROM snap_candidates WHERE number = ?", (cc["Number"],))
    assert row == ("candidate", None, "deals required, got empty")
    again = rust_worker(svc, url, "w2")("Venus.AllocateSanpUpSector", {"Sector": {"AllowedMiners": None,
                                                                                 "AllowedProofTypes": None},
                                                                      "Deals": {"MaxDeals": None, "MinUsedSpace": None}})
    assert again["Pieces"] == first["Pieces"]          # the deal stayed with the sector


def test_allocate_rebuild_sector_answers_sector_rebuild_info(manager):
    svc, url, (lost, _) = manager
    admin = Rust(url, issue_token(svc.secret, "admin"))
    admin("Venus.RebuildRequest", lost)
    w = rust_worker(svc, url)
    # rebuild.rs empty(): AllocateSectorSpec
    r = w("Venus.AllocateRebuildSector", {"AllowedMiners": [lost["Miner"]], "AllowedProofTypes": [P2K]})
    keys(r, SECTOR_REBUILD_INFO, "SectorRebuildInfo")
    check_allocated_sector(r["Sector"], lost["Miner"], lost["Number"])
    check_ticket(r["Ticket"])
    assert r["Ticket"] == {"Ticket": base64.b64encode(bytes([9]) * 32).decode(), "Epoch": 7}
    assert r["Pieces"] is None                                  # legacy Deals: none here
    assert len(r["PiecesV2"]) == 1
    check_sector_piece(r["PiecesV2"][0], lost["Miner"], PIECE, 2048, 2000)
    assert r["IsSnapUp"] is False and r["UpgradePublic"] is None      # *SectorUpgradePublic: nil is null
    assert w("Venus.AllocateRebuildSector", {"AllowedMiners": None, "AllowedProofTypes": None}) is None
    # the end of a rebuild as rebuild.rs ends it: ReportAborted (its reason is the task's error) ...
    assert w("Venus.ReportAborted", lost, "persist: no space") is None
    task = admin("Venus.RebuildTasks")[0]
    assert task["State"] == "failed" and task["ErrorInfo"] == "persist: no space"


def test_rebuild_of_a_snap_upgraded_sector_names_its_sector_key(manager):
    svc, url, (lost, _) = manager
    rec = svc.state.sector(lost["Miner"], lost["Number"])
    with svc.devnet._tx():
        svc.devnet.db.execute("DELETE FROM sectors WHERE miner = ? AND number = ?", (lost["Miner"], lost["Number"]))
        svc.devnet.put_sector(SectorOnChain(lost["Miner"], lost["Number"], rec["proof"], SEALED, commd_to_cid(bytes([7]) * 32),
                                           11, 10**6, sector_key_cid=SECTOR_KEY))
    Rust(url, issue_token(svc.secret, "admin"))("Venus.RebuildRequest", lost)
    r = rust_worker(svc, url)("Venus.AllocateRebuildSector", {"AllowedMiners": None, "AllowedProofTypes": None})
    keys(r, SECTOR_REBUILD_INFO, "SectorRebuildInfo")
    assert r["IsSnapUp"] is True
    check_public(r["UpgradePublic"], SECTOR_KEY, 11, 10**6)     # the CC replica the update was applied to
    check_sector_piece(r["PiecesV2"][0], lost["Miner"], PIECE, 2048, 2000)


def test_unseal_methods_answer_sector_unseal_info_and_dest_strings(manager):
    svc, url, (sealed, _) = manager
    admin = Rust(url, issue_token(svc.secret, "admin"))
    admin("Venus.UnsealRequest", sealed, PIECE, "piecestore")
    w = rust_worker(svc, url)
    # unseal.rs acquire_task(): AllocateSectorSpec
    u = w("Venus.AllocateUnsealSector", {"AllowedMiners": [], "AllowedProofTypes": []})
    keys(u, SECTOR_UNSEAL_INFO, "SectorUnsealInfo")
    check_allocated_sector(u["Sector"], sealed["Miner"], sealed["Number"])
    assert u["PieceCid"] == {"/": PIECE}
    assert u["Offset"] == 0 and u["Size"] == 2000           # unpadded: the bytes of the piece that hold its payload
    keys(u["PrivateInfo"], ["AccessInstance"], "SectorPrivateInfo")
    check_ticket(u["Ticket"])
    assert is_bytes32(u["CommD"]) and bytes(u["CommD"]) == bytes([7]) * 32
    assert u["Dest"] == ["piecestore"] and u["State"] in UNSEAL_STATES and u["State"] == "unsealing"
    assert u["ErrorInfo"] == ""
    assert w("Venus.AllocateUnsealSector", {"AllowedMiners": None, "AllowedProofTypes": None}) is None
    # upload_piece(): AcquireUnsealDest(SectorID, CidJson) -> Vec<String>, then AchieveUnsealSector(.., "") -> ()
    assert w("Venus.AcquireUnsealDest", sealed, {"/": PIECE}) == ["piecestore"]
    other = rust_worker(svc, url, "w2").answer("Venus.AcquireUnsealDest", sealed, {"/": PIECE})
    assert "error" in other and "no unseal task" in other["error"]["message"]       # not the worker that took it
    assert w("Venus.AchieveUnsealSector", sealed, {"/": PIECE}, "") is None
    assert admin("Venus.UnsealTasks")[0]["State"] == "done"
    # then the Rust worker ends the plan with ReportFinalized: answered (Meta: null), the sector untouched
    before = svc.state.sector(sealed["Miner"], sealed["Number"])
    assert w("Venus.ReportFinalized", sealed) is None
    assert svc.state.sector(sealed["Miner"], sealed["Number"]) == before


def test_a_rust_unseal_thread_that_gives_up_fails_its_task(manager):
    svc, url, (sealed, _) = manager
    admin = Rust(url, issue_token(svc.secret, "admin"))
    admin("Venus.UnsealRequest", sealed, PIECE, "piecestore")
    w = rust_worker(svc, url)
    w("Venus.AllocateUnsealSector", {"AllowedMiners": None, "AllowedProofTypes": None})
    # a state change of the task's thread is answered as SectorStateResp and not recorded on the sector
    before = svc.state.sector(sealed["Miner"], sealed["Number"])
    state = w("Venus.ReportState", sealed, {"Worker": {"Instance": "w1", "Location": "/tmp/t0"},
                                            "StateChange": {"Prev": "Allocated", "Next": "Unsealed", "Event": "UnsealDone"},
                                            "Failure": None})
    assert state == {"Id": sealed, "Finalized": False, "AbortReason": ""}
    assert svc.state.sector(sealed["Miner"], sealed["Number"]) == before
    assert w("Venus.ReportAborted", sealed, "get access store instance named persist-1") is None
    task = admin("Venus.UnsealTasks")[0]
    assert task["State"] == "failed" and "persist-1" in task["ErrorInfo"]
    assert svc.state.sector(sealed["Miner"], sealed["Number"]) == before       # a proven sector is not aborted by it


def test_reports_on_a_sector_go_to_the_task_the_worker_holds_on_it(manager):
    svc, url, (_, cc) = manager
    w = rust_worker(svc, url)
    w("Venus.AllocateSanpUpSector", {"Sector": {"AllowedMiners": None, "AllowedProofTypes": None},
                                     "Deals": {"MaxDeals": None, "MinUsedSpace": None}})
    with svc.state.tx() as db:        # the upgrade landed before the worker's ReportFinalized came in
        db.execute("UPDATE snap_candidates SET state = 'landed', message = 'bafy-msg' WHERE number = ?", (cc["Number"],))
    before = svc.state.sector(cc["Miner"], cc["Number"])
    assert w("Venus.ReportFinalized", cc) is None                      # still the snap-up's: nothing changes
    assert svc.state.sector(cc["Miner"], cc["Number"]) == before
    # later the same worker rebuilds the sector (its files lost): its reports are the rebuild's
    admin = Rust(url, issue_token(svc.secret, "admin"))
    admin("Venus.RebuildRequest", cc)
    assert w("Venus.AllocateRebuildSector", {"AllowedMiners": None, "AllowedProofTypes": None})["Sector"]["ID"] == cc
    assert w("Venus.ReportAborted", cc, "pc1: out of memory") is None
    task = admin("Venus.RebuildTasks")[0]
    assert task["State"] == "failed" and task["ErrorInfo"] == "pc1: out of memory"
    assert svc.state.one("SELECT state FROM snap_candidates WHERE number = ?", (cc["Number"],)) == ("landed",)
