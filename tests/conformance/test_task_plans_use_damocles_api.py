"""Our worker runs a snap-up, a rebuild and an unseal, and proves WindowPoSt jobs in a wdpost
thread, against our manager (real processes on a hand-moved devnet) through nothing but Damocles' API: every manager method the worker called on
the way (the sealer plan's too, which seals the sectors first) is one of the 60 methods of
Damocles' damocles-manager/core/api.go at commit 4235a89557219de436bba441e727af3a42f903f0.

The calls are counted twice: by the worker's RPC client (`damocles_worker_rpc_calls_total`, per
method, on the worker's metrics exporter: exactly the calls this worker made, refused or not)
and by the manager's RPC server (`damocles_rpc_requests_total`, per method, on its /metrics: the
worker's calls and the test's own operator calls, which the test makes through a recorder so
that they can be told apart). Tokens presented to the worker's own RPC (checked with the
manager's AuthVerify) are apart: nothing calls the worker's RPC here."""

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import commp_file
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from ..configs import worker_toml
from ..conftest import read_line
from ..test_post_e2e import post_manager, prove_next_occurrence, seal_by_hand, until
from ..test_worker_e2e import start
from .api_go import API_GO

pytestmark = pytest.mark.timeout(600)

MANAGER = post_manager(2, miner={"Sector": {"EnableDeals": True, "SealingEpochs": 50}},
                       config={"Common": {"PieceStores": [{"Name": "pieces", "Path": "pieces"}]}})


class Operator(RPCClient):
    """The test's own calls (an operator's, and the devnet's clock), recorded by method."""

    def __init__(self, url, token):
        super().__init__(url, token)
        self.methods: set[str] = set()

    def call(self, method, *params):
        self.methods.add(method)
        return super().call(method, *params)


def methods_counted(url: str, name: str, token: str | None = None, **labels) -> set[str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return {s.labels["method"] for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name and s.value > 0 and all(s.labels.get(k) == v for k, v in labels.items())}


def exporter_url(worker) -> str | None:
    """The worker's metrics exporter, from its log line (it listens on a port of its own choosing)."""
    found = re.search(r"metrics on (http://\S+/metrics)", worker.stderr.read())
    return found.group(1) if found else None


def import_deal(op: Operator, path) -> str:
    """Upload a piece to the manager's piece store and publish a deal for it (as `util piece import`)."""
    cid = commd_to_cid(commp_file(path)[0].commitment)
    op.upload(f"/piecestore/{cid}", path)
    # a start far enough ahead (3000 epochs, 5 min at 100 ms) that a worker slow to start on a busy
    # machine still finds the deal more than SealingEpochs before its start, and packs it
    head = op.call("Venus.DevnetHead")["Epoch"]
    op.call("Venus.MarketImportDeal", 1000, cid, head + 3000, None)
    return cid


def test_snapup_rebuild_unseal_and_wdpost_plans_call_only_api_go_methods(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    out = tmp_path / "unsealed"
    out.mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        secret = load_or_create_secret(home / "secret")
        op = Operator(url, issue_token(secret, "admin"))
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "snapup"},
                   {"location": tmp_path / "t2", "plan": "rebuild"}, {"location": tmp_path / "t3", "plan": "unseal"},
                   {"location": tmp_path / "t4", "plan": "wdpost"}]     # proves the WindowPoSt jobs of the snap-up part
        (tmp_path / "worker.toml").write_text(worker_toml(
            url, issue_token(secret, "write"), home / "persist-1", threads, name="w-api",
            worker={"unseal_output_dirs": [str(out)]}, sealing={"enable_deals": True}, metrics={"enable": True, "http_listen": "127.0.0.1:0"}))
        # the sealer plan: sector 1 with a deal (imported before the worker starts), sector 2 CC
        sealed_piece = tmp_path / "sealed.bin"
        sealed_piece.write_bytes(b"a deal sealed with its sector " * 30)
        sealed_cid = import_deal(op, sealed_piece)
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")])
        procs = [manager, worker]
        # the clock stays until sector 1 holds the deal: moved while the worker starts, the deal's
        # start epoch would come too close for any sector to take it
        until("sector 1 to take the deal", lambda: any(s["ID"]["Number"] == 1 and s["Pieces"]
                                                       for s in op.call("Venus.ListSectors", "", 0)), procs=procs)
        seal_by_hand(op, 2, procs)
        on_chain = {s["number"]: s for s in op.call("Venus.DevnetSectors", 1000)}
        assert on_chain[1]["deal_ids"] and not on_chain[2]["deal_ids"], on_chain

        # unseal: the deal's piece of sector 1 into a file (AllocateUnsealSector, AcquireUnsealDest, AchieveUnsealSector)
        op.call("Venus.UnsealRequest", {"Miner": 1000, "Number": 1}, sealed_cid, f"file://{out / 'piece.bin'}")
        task = until("the unseal", lambda: next((t for t in op.call("Venus.UnsealTasks") if t["State"] in ("done", "failed")),
                                                None), timeout=120, procs=procs)
        assert task["State"] == "done", task
        assert (out / "piece.bin").read_bytes() == sealed_piece.read_bytes()

        # rebuild: sector 1's sealed file lost (AllocateRebuildSector, ..., SubmitPersistedEx, ReportFinalized)
        original = (home / "persist-1" / "sealed" / "s-t01000-1").read_bytes()
        (home / "persist-1" / "sealed" / "s-t01000-1").unlink()
        op.call("Venus.RebuildRequest", {"Miner": 1000, "Number": 1})
        task = until("the rebuild", lambda: next((t for t in op.call("Venus.RebuildTasks") if t["State"] in ("done", "failed")),
                                                 None), timeout=180, procs=procs)
        assert task["State"] == "done", task
        assert (home / "persist-1" / "sealed" / "s-t01000-1").read_bytes() == original

        # snap-up: sector 2, proven once so that its deadline is far away, upgraded with a new deal
        # (AllocateSanpUpSector, SubmitSnapUpProof, ReportFinalized); the manager follows the message itself
        for d in [x["Index"] for x in op.call("Venus.ProvingDeadlines", 1000) if x["Sectors"]]:
            assert prove_next_occurrence(op, d, [manager])["state"] == "landed"
        snap_piece = tmp_path / "snap.bin"
        snap_piece.write_bytes(b"a deal snapped into a CC sector " * 20)
        import_deal(op, snap_piece)
        assert op.call("Venus.SnapUpFetch", 1000, None)["Added"] == [2]

        def landed():
            c = next(c for c in op.call("Venus.SnapUpCandidateList", 1000) if c["Sector"]["Number"] == 2)
            if c["State"] == "submitted":
                op.call("Venus.DevnetAdvance", 1)         # housekeeping settles the message; the clock is the test's
            return c if c["State"] in ("landed", "failed") else None
        c = until("the upgrade to land", landed, timeout=180, procs=procs)
        assert c["State"] == "landed", c
        assert (home / "persist-1" / "update" / "s-t01000-2").is_file()

        worker.stderr.seek(0)
        metrics_url = exporter_url(worker)
        assert metrics_url, "the worker logged no metrics exporter"
        by_worker = methods_counted(metrics_url, "damocles_worker_rpc_calls_total", worker_name="w-api")
        for m in ("AllocateSanpUpSector", "SubmitSnapUpProof", "AllocateRebuildSector", "SubmitPersistedEx",
                  "AllocateUnsealSector", "AcquireUnsealDest", "AchieveUnsealSector", "ReportFinalized",
                  "WdPoStAllocateJobs", "WdPoStFinishJob"):          # a 2KiB job ends before a heartbeat is due
            assert f"Venus.{m}" in by_worker, (m, sorted(by_worker))       # the plans ran through the counted client
        assert by_worker <= API_GO, f"the worker called methods that are not Damocles': {sorted(by_worker - API_GO)}"
        answered = methods_counted(f"{url}/metrics", "damocles_rpc_requests_total", op.token)
        assert by_worker <= answered                     # the server counted every one of them
        assert answered - API_GO <= op.methods, \
            f"the manager answered non-Damocles methods nobody but the worker called: {sorted(answered - API_GO - op.methods)}"
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
