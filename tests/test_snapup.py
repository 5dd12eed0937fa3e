"""SnapDeals end to end on a hand-moved devnet: a worker seals a CC sector, which is proven in its
deadline; a deal is imported, `damocles util snap fetch` makes the sector a candidate, the
worker's snapup thread encodes the deal into it, proves the update and persists `update/`; the
chain replaces its CommR (the old one kept as the sector key) and activates the deal; the next
WindowPoSt proves the updated replica. Both replicas lost, a rebuild reseals the sector key and
applies the update again."""

import json

from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_file
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import run_cli, read_line
from .test_post_e2e import post_manager, prove_next_occurrence, seal_by_hand, until
from .configs import worker_toml
from .test_worker_e2e import start

SNAP_MANAGER = post_manager(1, miner={"Sector": {"EnableDeals": True, "SealingEpochs": 50}},
                            config={"Common": {"PieceStores": [{"Name": "pieces", "Path": "pieces"}]}})


def test_a_cc_sector_is_upgraded_with_a_deal_and_proven_with_its_new_commr(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(SNAP_MANAGER)
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "snapup"},
                   {"location": tmp_path / "t2", "plan": "rebuild"}]
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")])

        seal_by_hand(admin, 1, [manager, worker])
        d = next(x["Index"] for x in admin.call("Venus.ProvingDeadlines", 1000) if x["Sectors"])
        assert prove_next_occurrence(admin, d, [manager])["state"] == "landed"   # the CC replica; its deadline is far away now
        old = admin.call("Venus.DevnetSectors", 1000)[0]

        piece = tmp_path / "deal.bin"
        piece.write_bytes(b"snap deal payload " * 20)
        cli = ["--api", url, "--home", str(home)]
        deal = json.loads(run_cli("util", "piece", "import", str(piece), "--miner", "1000", *cli, "--json", check=True).stdout)
        fetched = json.loads(run_cli("util", "snap", "fetch", "--miner", "1000", *cli, "--json", check=True).stdout)
        assert fetched["Added"] == [1]

        def upgraded():
            c = admin.call("Venus.SnapUpCandidateList", 1000)[0]
            if c["State"] in ("submitted",):
                admin.call("Venus.DevnetAdvance", 1)
                admin.call("Venus.SnapUpState", {"Miner": 1000, "Number": 1})
            return c if c["State"] in ("landed", "failed") else None
        c = until("the upgrade to land", upgraded, timeout=120, procs=[manager, worker])
        assert c["State"] == "landed", c
        new = admin.call("Venus.DevnetSectors", 1000)[0]
        assert new["sector_key_cid"] == old["sealed_cid"] and new["sealed_cid"] != old["sealed_cid"]
        assert new["deal_ids"] == [deal["DealID"]]
        assert new["unsealed_cid"] == commd_to_cid(comm_d_from_pieces([commp_file(piece)[0]], 2048))
        assert [x["state"] for x in admin.call("Venus.DevnetDeals", 1000)] == ["active"]
        assert (home / "persist-1" / "update" / "s-t01000-1").is_file()
        assert run_cli("util", "proving", "check", *cli).returncode == 0           # the check reads update/ now
        r = prove_next_occurrence(admin, d, [manager])
        assert r["state"] == "landed", r                                           # WindowPoSt over the new replica
        assert admin.call("Venus.ProvingInfo", 1000)["Power"]["active_sectors"] == 1

        # both replicas lost: the rebuild reseals the sector key and applies the update again
        update = (home / "persist-1" / "update" / "s-t01000-1").read_bytes()
        (home / "persist-1" / "update" / "s-t01000-1").unlink()
        (home / "persist-1" / "sealed" / "s-t01000-1").unlink()
        task = json.loads(run_cli("util", "sectors", "rebuild", "1000-1", "--wait", "120", *cli, "--json", check=True).stdout)
        assert task["State"] == "done", task
        assert (home / "persist-1" / "update" / "s-t01000-1").read_bytes() == update
        assert (home / "persist-1" / "sealed" / "s-t01000-1").is_file()
        assert run_cli("util", "proving", "check", *cli).returncode == 0
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
