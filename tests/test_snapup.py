"""SnapDeals end to end on a hand-moved devnet: a worker seals a CC sector, which is proven in its
deadline; a deal is imported, `damocles util snap fetch` makes the sector a candidate, the
worker's snapup thread encodes the deal into it, proves the update and persists `update/`; the
chain replaces its CommR (the old one kept as the sector key) and activates the deal; the next
WindowPoSt proves the updated replica. Both replicas lost, a rebuild reseals the sector key and
applies the update again."""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class SnapCluster:
    home: Path
    url: str
    admin: RPCClient
    deadline: int            # the deadline sector 1 is proven in
    procs: list

    @property
    def cli(self) -> list[str]:
        return ["--api", self.url, "--home", str(self.home)]

    def upgrade(self, piece: Path, timeout: float = 120) -> tuple[dict, dict]:
        """Import `piece` as a deal, make sector 1 a snap-up candidate and wait for the upgrade to
        land or fail: (the deal, the candidate)."""
        deal = json.loads(run_cli("util", "piece", "import", str(piece), "--miner", "1000", *self.cli, "--json", check=True).stdout)
        fetched = json.loads(run_cli("util", "snap", "fetch", "--miner", "1000", *self.cli, "--json", check=True).stdout)
        assert fetched["Added"] == [1]

        def upgraded():
            c = self.admin.call("Venus.SnapUpCandidateList", 1000)[0]
            if c["State"] == "submitted":
                self.admin.call("Venus.DevnetAdvance", 1)
                self.admin.call("Venus.SnapUpState", {"Miner": 1000, "Number": 1})
            return c if c["State"] in ("landed", "failed") else None
        return deal, until("the upgrade to land", upgraded, timeout=timeout, procs=self.procs)

    def rebuild_both_replicas(self) -> None:
        """Both replicas lost: the rebuild reseals the sector key and applies the update again."""
        persist = self.home / "persist-1"
        update = (persist / "update" / "s-t01000-1").read_bytes()
        (persist / "update" / "s-t01000-1").unlink()
        (persist / "sealed" / "s-t01000-1").unlink()
        task = json.loads(run_cli("util", "sectors", "rebuild", "1000-1", "--wait", "120", *self.cli, "--json", check=True).stdout)
        assert task["State"] == "done", task
        assert (persist / "update" / "s-t01000-1").read_bytes() == update
        assert (persist / "sealed" / "s-t01000-1").is_file()
        assert run_cli("util", "proving", "check", *self.cli).returncode == 0


@contextmanager
def snap_cluster(tmp_path: Path, processors: dict | None = None, worker_env: dict | None = None):
    """A manager with deals on and a worker with a sealer, a snapup and a rebuild thread (with
    `processors`); sector 1 sealed as CC and proven in its deadline. Both stop on the way out."""
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
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads,
                                                          processors=processors))
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")],
                       worker_env)
        seal_by_hand(admin, 1, [manager, worker])
        d = next(x["Index"] for x in admin.call("Venus.ProvingDeadlines", 1000) if x["Sectors"])
        assert prove_next_occurrence(admin, d, [manager])["state"] == "landed"   # the CC replica; its deadline is far away now
        yield SnapCluster(home, url, admin, d, [manager, worker])
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)


def test_a_cc_sector_is_upgraded_with_a_deal_and_proven_with_its_new_commr(tmp_path):
    with snap_cluster(tmp_path) as c:
        admin, home = c.admin, c.home
        old = admin.call("Venus.DevnetSectors", 1000)[0]
        piece = tmp_path / "deal.bin"
        piece.write_bytes(b"snap deal payload " * 20)
        deal, cand = c.upgrade(piece)
        assert cand["State"] == "landed", cand
        new = admin.call("Venus.DevnetSectors", 1000)[0]
        assert new["sector_key_cid"] == old["sealed_cid"] and new["sealed_cid"] != old["sealed_cid"]
        assert new["deal_ids"] == [deal["DealID"]]
        assert new["unsealed_cid"] == commd_to_cid(comm_d_from_pieces([commp_file(piece)[0]], 2048))
        assert [x["state"] for x in admin.call("Venus.DevnetDeals", 1000)] == ["active"]
        assert (home / "persist-1" / "update" / "s-t01000-1").is_file()
        assert run_cli("util", "proving", "check", *c.cli).returncode == 0           # the check reads update/ now
        r = prove_next_occurrence(admin, c.deadline, c.procs[:1])
        assert r["state"] == "landed", r                                           # WindowPoSt over the new replica
        assert admin.call("Venus.ProvingInfo", 1000)["Power"]["active_sectors"] == 1
        c.rebuild_both_replicas()
