"""Our worker (a real `damocles worker run` process) seals a deal sector and a CC sector against
our manager, and every JSON-RPC method it called on the way is one of Damocles' manager API:
nothing project-only on the sealer plan's path. The manager runs in this process so that its RPC
server's per-method call counter can be read; the test itself reads state in-process, never over
RPC, so every counted call is the worker's. (Pieces come over plain HTTP from the manager's piece
store, as Damocles' workers fetch them from its piece store proxy: not a JSON-RPC method.)"""

from __future__ import annotations

import time

import pytest

from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import commp_file
from appliance.rpc.auth import issue_token

from ..configs import manager_toml, worker_toml
from ..test_worker_e2e import start
from .api_go import API_GO

pytestmark = pytest.mark.timeout(300)

# what the sealer plan must have called to take a deal sector to Finished
SEALER_PATH = {f"Venus.{m}" for m in """
    WorkerPing StoreBasicInfo AllocateSector AcquireDeals AssignTicket SubmitPreCommit PollPreCommitState
    StoreReserveSpace SubmitPersistedEx WaitSeed SubmitProof PollProofState ReportState ReportFinalized
""".split()}


def test_api_go_list_is_complete():
    assert len(API_GO) == 60


def test_the_sealer_plan_calls_only_damocles_methods(tmp_path):
    home = tmp_path / "manager"
    init_home(home, manager_toml(2, 1, 1, None, pre_wait=None,
                                 miner={"PoSt": {"Enabled": False}, "Sector": {"EnableDeals": True, "SealingEpochs": 100}},
                                 config={"Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    worker = None
    try:
        piece = tmp_path / "piece.bin"
        piece.write_bytes(b"a deal for the sealer plan" * 10)
        info, payload = commp_file(piece)
        cid = commd_to_cid(info.commitment)
        with open(piece, "rb") as f:
            svc.sealer.market.store_piece(cid, f, payload)
        deal = svc.sealer.market.import_deal(1000, cid, None, None)
        assert sum(svc.rpc.calls.values()) == 0

        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(f"http://{host}:{port}", issue_token(svc.secret, "write", "w1"), home / "persist-1",
                                   [{"location": tmp_path / "t0"}], sealing={"enable_deals": True}))
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
        deadline = time.monotonic() + 240
        while True:
            sectors = svc.state.sectors()
            if len(sectors) == 2 and all(s.get("finalized") for s in sectors):
                break
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, sectors
            time.sleep(0.3)   # polling a live system; bounded by the deadline
        assert [s.get("state") for s in sectors] == ["Finished", "Finished"]
        assert not any(s.get("abort_reason") for s in sectors)
        assert [(s.number, s.deal_ids) for s in svc.devnet.sectors(1000)] == [(1, [deal["DealID"]]), (2, [])]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        called = set(svc.rpc.calls)
        svc.stop()
    assert called - API_GO == set(), f"project-only methods on the sealer plan's path: {sorted(called - API_GO)}"
    assert SEALER_PATH <= called, sorted(SEALER_PATH - called)
