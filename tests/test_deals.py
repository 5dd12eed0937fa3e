"""Deals end to end: pieces imported into the manager's piece store with deals published on the
devnet, packed into a sector by AcquireDeals, fetched by the worker, sealed with the right CommD,
pre-committed without DealIDs and activated by the ProveCommit's piece manifests (direct data
onboarding). Bad imports are refused without side effects; an aborted sector
gives its deals back to the next one."""

import json
import sqlite3
import time

import pytest

from appliance.chain.actor_params import market_piece
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_file
from appliance.rpc import RPCError
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml
from .conftest import run_cli, read_line
from .configs import worker_toml
from .test_worker_e2e import start

def _landed_messages(devnet_db) -> list[tuple[str, dict]]:
    """(method, params) of every message the devnet executed successfully, oldest first."""
    db = sqlite3.connect(f"file:{devnet_db}?mode=ro", uri=True)
    try:
        return [(m, json.loads(p)) for m, p in db.execute("SELECT method, params FROM messages WHERE exit_code = 0 ORDER BY seq")]
    finally:
        db.close()


def deals_manager(max_number: int, block_time: str = "100ms") -> str:
    """A devnet manager that hands out deals (piece store `pieces-1`), one-sector batches."""
    return manager_toml(max_number, 1, 1, None, pre_wait=None, block_time=block_time,
                        miner={"Sector": {"EnableDeals": True, "SealingEpochs": 100}},
                        config={"Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}})


def test_a_sector_with_two_deals_is_sealed_and_its_deals_activated(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(deals_manager(1))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        cli = ["--api", url, "--home", str(home)]
        big, small = tmp_path / "big.bin", tmp_path / "small.bin"
        big.write_bytes(bytes(range(256)) + b"piece one" * 10)      # 346 bytes: a 512-byte piece
        small.write_bytes(b"the second piece")                     # 16 bytes: a 128-byte piece
        deals = [json.loads(run_cli("util", "piece", "import", str(f), "--miner", "1000", *cli, "--json", check=True).stdout)
                 for f in (big, small)]
        assert [d["PieceSize"] for d in deals] == [512, 128]

        # bad imports change nothing
        huge = tmp_path / "huge.bin"
        huge.write_bytes(b"x" * 2100)
        p = run_cli("util", "piece", "import", str(huge), "--miner", "1000", *cli)
        assert p.returncode == 2 and "larger than any sector" in p.stderr
        p = run_cli("util", "piece", "import", str(small), "--miner", "1000", "--start-epoch", "1", *cli)
        assert p.returncode == 2 and "too soon" in p.stderr
        admin = RPCClient(url, issue_token(load_or_create_secret(home / "secret"), "admin"))
        unknown = commd_to_cid(bytes(31) + b"\x01")
        with pytest.raises(Exception, match="in no piece store"):
            admin.call("Venus.MarketImportDeal", 1000, unknown, None, None)
        assert [d["DealID"] for d in admin.call("Venus.MarketDeals", 1000)] == [d["DealID"] for d in deals]

        cfg = tmp_path / "worker.toml"
        secret = load_or_create_secret(home / "secret")
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "unseal"}]
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads,
                                   sealing={"enable_deals": True}, worker={"unseal_output_dirs": [str(tmp_path / "out")]}))
        (tmp_path / "out").mkdir()
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
        deadline = time.monotonic() + 180
        while True:
            listed = admin.call("Venus.ListSectors", "", 0)
            if listed and all(s["Finalized"] for s in listed):
                break
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, listed
            time.sleep(0.3)   # polling a live system; bounded by the deadline
        assert listed[0]["State"] == "Finished" and listed[0]["AbortReason"] == ""
        on_chain = admin.call("Venus.DevnetSectors", 1000)
        chain_deals = admin.call("Venus.DevnetDeals", 1000)

        # unseal: each piece back to a file, byte for byte; to a store; refusals and a failed write
        for f, d in ((big, deals[0]), (small, deals[1])):
            out = tmp_path / "out" / f"unsealed-{f.name}"
            task = json.loads(run_cli("util", "sectors", "unseal", "1000-1", "--piece", d["PieceCID"], "--dest", f"file://{out}",
                                      "--wait", "60", *cli, "--json", check=True).stdout)
            assert task["State"] == "done" and out.read_bytes() == f.read_bytes()
        task = json.loads(run_cli("util", "sectors", "unseal", "1000-1", "--piece", deals[1]["PieceCID"], "--dest",
                                  "store://persist-1/unsealed/small", "--wait", "60", *cli, "--json", check=True).stdout)
        assert task["State"] == "done" and (home / "persist-1" / "unsealed" / "small").read_bytes() == small.read_bytes()
        p = run_cli("util", "sectors", "unseal", "1000-1", "--piece", deals[1]["PieceCID"], "--dest",
                    f"file://{tmp_path}/out/no-such-dir/out", "--wait", "60", *cli)
        assert p.returncode == 1 and "failed" in p.stdout and "cannot write" in p.stdout
        assert not (tmp_path / "out" / "no-such-dir").exists()
        # the attack: the worker writing over its own config; then over a file it wrote; then a symlink out
        config_before = cfg.read_bytes()
        (tmp_path / "out" / "link").symlink_to(tmp_path)
        for dest, msg in ((f"file://{cfg}", "outside the worker's unseal_output_dirs"),
                          (f"file://{tmp_path}/out/../worker.toml", "'..'"),
                          (f"file://{tmp_path}/out/link/worker.toml", "leads outside"),
                          (f"file://{tmp_path}/out/unsealed-{small.name}", "already exists")):
            p = run_cli("util", "sectors", "unseal", "1000-1", "--piece", deals[0]["PieceCID"], "--dest", dest, "--wait", "60", *cli)
            assert p.returncode == 1 and "failed" in p.stdout and msg in p.stdout, (dest, p.stdout, p.stderr)
        assert cfg.read_bytes() == config_before and (tmp_path / "out" / f"unsealed-{small.name}").read_bytes() == small.read_bytes()
        for args, msg in (([unknown, "file:///tmp/x"], "is not in sector"), ([deals[0]["PieceCID"], "store://nope/x"],
                          "no persist store named"), ([deals[0]["PieceCID"], "ftp://x"], "is not file:///path")):
            p = run_cli("util", "sectors", "unseal", "1000-1", "--piece", args[0], "--dest", args[1], *cli)
            assert p.returncode == 2 and msg in p.stderr, p.stderr
        (home / "pieces" / deals[0]["PieceCID"]).unlink()            # a lost piece comes back from the sector
        task = json.loads(run_cli("util", "sectors", "unseal", "1000-1", "--piece", deals[0]["PieceCID"], "--dest", "piecestore",
                                  "--wait", "60", *cli, "--json", check=True).stdout)
        assert task["State"] == "done" and (home / "pieces" / deals[0]["PieceCID"]).read_bytes() == big.read_bytes()
        assert len(admin.call("Venus.UnsealTasks")) == 9       # the refused ones left nothing behind
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
    assert [s["deal_ids"] for s in on_chain] == [[d["DealID"] for d in deals]]
    # direct data onboarding: the PreCommit names no deals and declares their CommD; the proof's
    # piece manifests notify the market actor (f05) of each deal, in the sector's order
    landed = _landed_messages(home / "devnet.db")
    [pre] = [p["Sectors"][0] for m, p in landed if m == "PreCommitSectorBatch2"]
    assert (pre["DealIDs"], pre["UnsealedCid"]) == ([], {"/": on_chain[0]["unsealed_cid"]})
    [activation] = [p["SectorActivations"][0] for m, p in landed if m == "ProveCommitSectors3"]
    assert activation["Pieces"] == [market_piece(d["DealID"], d["PieceCID"], d["PieceSize"]) for d in deals]
    assert [(d["state"], d["sector"]) for d in chain_deals] == [("active", 1), ("active", 1)]
    infos = [commp_file(f)[0] for f in (big, small)]
    assert on_chain[0]["unsealed_cid"] == commd_to_cid(comm_d_from_pieces(infos, 2048))
    assert not (tmp_path / "t0" / "data" / "pieces" / "s-t01000-1").exists()      # cleaned up after Finished


def test_an_aborted_sector_gives_its_deals_back(tmp_path):
    home = tmp_path / "manager"
    init_home(home, deals_manager(10, block_time="0s"))
    svc = ManagerService(home)
    try:
        piece = tmp_path / "p.bin"
        piece.write_bytes(b"a deal's payload")
        info, payload = commp_file(piece)
        cid = commd_to_cid(info.commitment)
        with open(piece, "rb") as f:
            svc.sealer.market.store_piece(cid, f, payload)
        deal = svc.sealer.market.import_deal(1000, cid, None, None)
        a = svc.sealer.allocate_sector({"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
        got = svc.sealer.acquire_deals(a, {"MaxDeals": None, "MinUsedSpace": None})
        assert [d["DealInfo"]["DealID"] for d in got] == [deal["DealID"]]
        assert svc.sealer.acquire_deals(a, {"MaxDeals": None, "MinUsedSpace": None}) == got        # asked again: the same
        b = svc.sealer.allocate_sector({"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
        assert svc.sealer.acquire_deals(b, {"MaxDeals": None, "MinUsedSpace": None}) is None        # taken
        assert svc.sealer.acquire_deals(b, {"MaxDeals": None, "MinUsedSpace": 1024}) is None
        svc.sealer.abort(a, "operator")
        with pytest.raises(RPCError, match="was aborted and takes no deals: operator"):      # aborted: told why, not CC
            svc.sealer.acquire_deals(a, {"MaxDeals": None, "MinUsedSpace": None})
        c = svc.sealer.allocate_sector({"AllowedMiners": None, "AllowedProofTypes": None})["ID"]
        assert svc.sealer.acquire_deals(c, {"MaxDeals": None, "MinUsedSpace": 1024}) is None        # 128 < 1024 used
        assert [d["DealInfo"]["DealID"] for d in svc.sealer.acquire_deals(c, {"MaxDeals": 1, "MinUsedSpace": None})] == [deal["DealID"]]
    finally:
        svc.close()
