"""Moving in and out (issue 18, items 3 and 4), on a hand-moved devnet with the manager's RPC and
Damocles' commands: a lotus-miner storage path written by our engine for sectors already on
chain, found by ScanPersistStores from its lotus sectorstore.json, is imported; a corrupted
sector and one the chain does not have are refused by name with the reason; the repaired one is
imported next; `storage attach` re-indexes a sector moved to another store; the next WindowPoSt
of every deadline lands with no fault. Out: export-to-lotus files writes lotus' layout byte for
byte, metadata writes the JSON it can, and state export-json / import-json move a sector's state
to another manager and back unchanged."""

import json
import shutil

import pytest

from appliance import cli
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.config import ConfigError
from appliance.manager.config import parse_config
from appliance.manager.service import ManagerService, init_home
from appliance.chain.types import SectorOnChain
from appliance.core.sector import SectorID
from appliance.manager.store_scan import check_store_sector, names_in
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.proofs.seal import seal_sector
from appliance.worker.stores import scan_persist_stores

from .configs import manager_toml
from .pg_cluster import db_table, manager_store, own_database, pg_dsn, pg_server  # noqa: F401  (fixtures)
from .test_devnet_proving import P2K, SEED, onboard
from .test_poster import run_to

pytestmark = pytest.mark.timeout(240)

LOTUS_ID = "4a8a5c6e-2f1d-4e8b-9c0a-1d2e3f405161"
# a lotus-miner storage path's sectorstore.json as `lotus-miner storage attach --init --store` writes it
LOTUS_META = {"ID": LOTUS_ID, "Weight": 10, "CanSeal": False, "CanStore": True, "MaxStorage": 0, "Groups": None,
              "AllowTo": None, "AllowTypes": None, "DenyTypes": None, "AllowMiners": ["f01000"], "DenyMiners": None}
def farm_config(common: dict | None = None) -> str:
    return manager_toml(block_time="0s", miner={"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1}, "Proof": {"Enabled": False}},
                        config={"Chain": {"NetworkPower": "32KiB"}, "Common": {"ScanPersistStores": ["lotus-*"], **(common or {})}})


CONFIG = farm_config()
FINALIZED_CACHE = ("p_aux", "t_aux", "sc-02-data-tree-r-last.dat")      # what lotus keeps of a cache after finalize


def lay_out_as_lotus(rs: dict, store, miner: int = 1000) -> None:
    """The sealed sectors as lotus-miner keeps them in a storage path after finalize."""
    for d in ("sealed", "cache", "unsealed", "update", "update-cache"):
        (store / d).mkdir(parents=True, exist_ok=True)
    for n, r in rs.items():
        name = f"s-t0{miner}-{n}"
        shutil.copyfile(r.sector_dir / "sealed", store / "sealed" / name)
        (store / "cache" / name).mkdir()
        for f in FINALIZED_CACHE:
            shutil.copyfile(r.sector_dir / "cache" / f, store / "cache" / name / f)


class Farm:
    def __init__(self, tmp_path, name="manager", sectors=(1, 2, 3, 4), config=CONFIG):
        self.home = tmp_path / name
        self.home.mkdir()
        Devnet(self.home / "devnet.db", ChainPolicy(block_time=0), genesis_seed=SEED).close()
        init_home(self.home, config if name == "manager" else own_database(config))    # another manager: its own state
        self.store = self.home / "lotus-a"
        self.store.mkdir()
        (self.store / "sectorstore.json").write_text(json.dumps(LOTUS_META))
        # not started: the test runs the poster's passes itself (test_poster); only the RPC serves
        self.svc = ManagerService(self.home, _in_process_chain=True)
        self.svc.devnet.advance(20)
        self.rs = onboard(self.svc.devnet, tmp_path / f"{name}-sealed", list(sectors)) if sectors else {}
        lay_out_as_lotus(self.rs, self.store)
        host, port = self.svc.rpc.serve("127.0.0.1", 0)
        self.url = f"http://{host}:{port}"

    def close(self):
        self.svc.rpc.shutdown()
        self.svc.poster.close()
        self.svc.close()

    def run(self, capsys, *args, json_out=True):
        rc = cli.main(["util", *args, "--api", self.url, "--home", str(self.home), *(["--json"] if json_out else [])])
        out = capsys.readouterr()
        return rc, (json.loads(out.out) if json_out and out.out.strip() else out.out), out.err


@pytest.fixture
def farm(tmp_path, manager_store):  # noqa: F811
    """The farm, its state on each store driver (imports, exports and state moves on both)."""
    f = Farm(tmp_path, config=farm_config(db_table(manager_store)))
    yield f
    f.close()


def names(found: list[dict]) -> list[str]:
    return [f["Sector"] for f in found]


def test_lotus_store_imported_corrupt_sector_refused_by_name_then_windowpost_lands_without_fault(farm, capsys):
    svc, store, chain = farm.svc, farm.store, farm.svc.devnet
    assert [(s.name, s.path) for s in svc.config.persist_stores] == [("persist-1", farm.home / "persist-1"), (LOTUS_ID, store)]
    assert [s.allow_miners for s in svc.config.persist_stores] == [(), (1000,)]        # lotus' "f01000" read as an actor id
    shutil.copyfile(store / "cache" / "s-t01000-4" / "p_aux", store / "cache" / "s-t01000-3" / "p_aux")    # corrupt 3
    shutil.copyfile(store / "sealed" / "s-t01000-1", store / "sealed" / "s-t01000-9")       # a sector the chain lacks
    shutil.copytree(store / "cache" / "s-t01000-1", store / "cache" / "s-t01000-9")

    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", str(store))
    assert rc == 1, err
    assert r["Store"] == LOTUS_ID and names(r["Imported"]) == ["s-t01000-1", "s-t01000-2", "s-t01000-4"]
    refused = {f["Sector"]: f["Reason"] for f in r["Refused"]}
    comm_r = chain.sector(1000, 3).sealed_cid
    assert set(refused) == {"s-t01000-3", "s-t01000-9"}
    assert refused["s-t01000-3"].startswith("CommR from cache/s-t01000-3/p_aux (") and comm_r in refused["s-t01000-3"]
    assert refused["s-t01000-9"] == "not an active sector of f01000 on chain (never proven, expired or terminated)"
    for n in (1, 2, 4):
        rec = svc.state.sector(1000, n)
        assert (rec["state"], rec["finalized"], rec["persisted"], rec["imported"]) == ("Finished", True, LOTUS_ID, True)
        assert commr_to_cid(bytes.fromhex(rec["pre"]["CommR"])) == chain.sector(1000, n).sealed_cid
    assert svc.state.sector(1000, 3) is None and svc.state.sector(1000, 9) is None
    assert svc.state.next_numbers()[1000] == 5          # imported numbers are never allocated again
    rc, out, _ = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID, "--numbers", "3", json_out=False)
    assert rc == 1 and out.splitlines()[1].startswith("  s-t01000-3: refused: CommR from cache/s-t01000-3/p_aux (")
    assert out.splitlines()[-1] == "0 imported, 0 indexed, 0 unchanged, 1 refused"
    svc.committer.tick()              # their PreCommits and proofs were sent by lotus-miner: nothing is sent again
    assert svc.state.query("SELECT COUNT(*) FROM outbox") == [(0,)]

    # the operator repairs sector 3 and imports it alone; what is in already is left as it is
    shutil.copyfile(farm.rs[3].sector_dir / "cache" / "p_aux", store / "cache" / "s-t01000-3" / "p_aux")
    rc, out, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID, "--numbers", "3,1", json_out=False)
    assert rc == 0, err
    assert out.splitlines() == [f"store {LOTUS_ID} ({store}):", "  s-t01000-3: imported", "  s-t01000-1: already there",
                                "1 imported, 0 indexed, 1 unchanged, 0 refused"]
    rc, r, _ = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID, "--numbers", "2", "--override")
    assert rc == 0 and names(r["Imported"]) == ["s-t01000-2"]

    # sector 2's files moved to persist-1: `storage attach` points the sector at it
    other = farm.home / "persist-1"
    for d in ("sealed", "cache"):
        (other / d).mkdir(exist_ok=True)
        shutil.move(store / d / "s-t01000-2", other / d / "s-t01000-2")
    rc, out, err = farm.run(capsys, "storage", "attach", str(other), "--verbose", json_out=False)
    assert rc == 0 and "  s-t01000-2: indexed in this store" in out.splitlines(), (out, err)
    rc, out, _ = farm.run(capsys, "storage", "find", "1000", "2", json_out=False)
    assert out.splitlines()[0] == 'sector s-t01000-2 located, sealed file in "persist-1", cache dir in "persist-1"'
    rc, _, err = farm.run(capsys, "storage", "attach", str(farm.home / "elsewhere"))
    assert rc == 2 and "is not one of the manager's persist stores" in err and "ScanPersistStores" in err

    # the next WindowPoSt of every deadline proves the imported sectors, with no fault
    start = chain.head()
    run_to(svc, start + 2880 + 60)
    records = chain.deadline_records(1000)
    used = {d for d in range(48) if chain.deadline_partitions(1000, d)}
    assert used and {r["index"] for r in records} >= used, records
    assert sum(r["sectors_proven"] for r in records) >= 4
    assert sum(r.get("state") == "landed" for r in svc.poster.rounds(1000)) == len(records)
    assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records
    assert chain.penalties(1000) == [] and chain.miner_power(1000).active_sectors == 4
    assert all(not r.get("declared_faults") and not r.get("skipped") for r in svc.poster.rounds(1000))


def test_export_to_lotus_writes_the_layout_byte_for_byte_and_states_move_between_managers(farm, tmp_path, capsys):
    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID)
    assert rc == 0 and len(r["Imported"]) == 4, err
    dest = tmp_path / "lotus-dest"
    rc, r, err = farm.run(capsys, "sealer", "sectors", "export-to-lotus", "--miner", "1000", "files", "--dest-path", str(dest),
                          "--reserve")
    assert rc == 0 and r["Failed"] == [] and names(r["Exported"]) == [f"s-t01000-{n}" for n in (1, 2, 3, 4)], err
    for n, sealed in farm.rs.items():
        name = f"s-t01000-{n}"
        assert (dest / "sealed" / name).read_bytes() == (sealed.sector_dir / "sealed").read_bytes()
        assert sorted(p.name for p in (dest / "cache" / name).iterdir()) == sorted(FINALIZED_CACHE)
        for f in FINALIZED_CACHE:
            assert (dest / "cache" / name / f).read_bytes() == (sealed.sector_dir / "cache" / f).read_bytes()
        assert (farm.store / "sealed" / name).is_file()        # --reserve: the manager keeps its copy
    meta = json.loads((dest / "sectorstore.json").read_text())
    assert meta["CanStore"] is True and meta["CanSeal"] is False and meta["ID"]
    # the exported path is a store lotus (and this manager's ScanPersistStores) takes as it is
    assert [n for n, _, _ in scan_persist_stores([str(dest)], "test")] == [meta["ID"]]

    # without --reserve the files move, as Damocles' command moves them
    rc, r, _ = farm.run(capsys, "sealer", "sectors", "export-to-lotus", "--miner", "1000", "files", "--dest-path",
                        str(tmp_path / "moved"), "--numbers", "4")
    assert rc == 0 and names(r["Exported"]) == ["s-t01000-4"]
    assert not (farm.store / "sealed" / "s-t01000-4").exists()
    assert (tmp_path / "moved" / "sealed" / "s-t01000-4").read_bytes() == (farm.rs[4].sector_dir / "sealed").read_bytes()

    rc, r, _ = farm.run(capsys, "sealer", "sectors", "export-to-lotus", "--miner", "1000", "metadata", "--dest-repo",
                        str(tmp_path / "repo"), "--next-number", "10")
    assert rc == 0 and r["Sectors"] == 4 and r["NextNumber"] == 10 and r["DatastoreWritten"] is False
    doc = json.loads((tmp_path / "repo" / "damocles-export" / "sectors-f01000.json").read_text())
    s1 = doc["Sectors"][0]
    assert (s1["SectorNumber"], s1["State"]) == (1, "Proving") and s1["CommR"] == {"/": farm.svc.devnet.sector(1000, 1).sealed_cid}
    assert s1["OnChain"]["SealedCID"] == s1["CommR"] and "LevelDB" in doc["NotWritten"]

    # state export-json from this manager, import-json into another, and the state reads the same there
    other = Farm(tmp_path, "other", sectors=())
    try:
        rc, out, _ = farm.run(capsys, "sealer", "sectors", "state", "export-json", "1000", "2", json_out=False)
        exported = json.loads(out)
        path = tmp_path / "s-t01000-2.json"
        path.write_text(out)
        rc, out, _ = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), json_out=False)
        assert rc == 0 and "(pass --really-do-it to import it)" in out and other.svc.state.sector(1000, 2) is None
        rc, _, err = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), "--really-do-it")
        assert rc == 0, err
        rc, out, _ = other.run(capsys, "sealer", "sectors", "state", "export-json", "1000", "2", json_out=False)
        assert json.loads(out) == exported and exported["Imported"] is True and exported["Persisted"] == LOTUS_ID
        assert other.svc.state.next_numbers()[1000] == 3
        rc, _, err = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), "--really-do-it")
        assert rc == 2 and "not imported, perhaps you need to set --override flag" in err
        rc, _, err = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), "--really-do-it", "--override")
        assert rc == 0, err
        # a sector in flight does not move: its messages are journalled in the other manager's outbox
        path.write_text(json.dumps({**exported, "Finalized": False, "State": "PC2Done"}))
        rc, _, err = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), "--really-do-it")
        assert rc == 2 and "is not finalized" in err
        path.write_text(json.dumps({**exported, "Pre": {**exported["Pre"], "CommR": exported["Pre"]["CommD"]}}))
        rc, _, err = other.run(capsys, "sealer", "sectors", "state", "import-json", str(path), "--really-do-it", "--override")
        assert rc == 2 and "state.Pre.CommR" in err and "is a unsealed commitment, expected a sealed one" in err
    finally:
        other.close()


def test_lotus_sectorstore_json_is_a_persist_store_for_manager_and_worker(tmp_path):
    """ScanPersistStores (manager) and scan_persist_stores (worker) take a lotus storage path's
    sectorstore.json (LocalStorageMeta: ID, no Name, CanSeal/CanStore..., miners as addresses)."""
    (tmp_path / "lotus" / "a").mkdir(parents=True)
    (tmp_path / "lotus" / "a" / "sectorstore.json").write_text(json.dumps(LOTUS_META))
    (tmp_path / "lotus" / "b").mkdir()
    (tmp_path / "lotus" / "b" / "sectorstore.json").write_text(json.dumps({**LOTUS_META, "ID": "b-id", "AllowMiners": None,
                                                                          "DenyMiners": ["t01001"]}))
    cfg = parse_config({"Common": {"ScanPersistStores": ["lotus/*"]}}, tmp_path)
    assert cfg.warnings == []
    assert [(s.name, s.path, s.read_only, s.allow_miners, s.deny_miners) for s in cfg.persist_stores] == [
        (LOTUS_ID, tmp_path / "lotus" / "a", False, (1000,), ()), ("b-id", tmp_path / "lotus" / "b", False, (), (1001,))]
    assert scan_persist_stores([str(tmp_path / "lotus" / "*")], "w") == [
        (LOTUS_ID, tmp_path / "lotus" / "a", False), ("b-id", tmp_path / "lotus" / "b", False)]
    (tmp_path / "lotus" / "b" / "sectorstore.json").write_text(json.dumps({**LOTUS_META, "ID": "b-id", "AllowMiners": ["miner-x"]}))
    with pytest.raises(ConfigError, match=r"AllowMiners: \['miner-x'\] is not a list of miner actor ids"):
        parse_config({"Common": {"ScanPersistStores": ["lotus/*"]}}, tmp_path)


class _Chain:
    """The chain as store_scan reads it: sectors 1-5 of miner 1000 hold `comm_r`; 5 is snap-upgraded."""
    def __init__(self, comm_r: bytes, comm_d: bytes):
        self.comm_r, self.comm_d = comm_r, comm_d

    def sector(self, miner, number):
        if miner != 1000 or not 1 <= number <= 5:
            return None
        return SectorOnChain(miner, number, P2K.id, commr_to_cid(self.comm_r), commd_to_cid(self.comm_d), 10, 10**6,
                             sector_key_cid=commr_to_cid(self.comm_r) if number == 5 else None)


def test_each_bad_sector_is_refused_with_its_reason(tmp_path):
    r = seal_sector(P2K, SectorID(1000, 1), bytes([1]) * 32, bytes([9]) * 32, tmp_path / "sealed")
    store = tmp_path / "store"
    lay_out_as_lotus({n: r for n in (1, 2, 3, 4, 5)}, store)
    (store / "sealed" / "s-t01000-2").write_bytes((r.sector_dir / "sealed").read_bytes()[:1024])
    (store / "cache" / "s-t01000-3" / "t_aux").unlink()
    tree = store / "cache" / "s-t01000-4" / "sc-02-data-tree-r-last.dat"
    data = bytearray(tree.read_bytes())
    data[-32] ^= 1                     # the stored root (its lowest byte: still a field element)
    tree.write_bytes(bytes(data))
    shutil.copyfile(store / "sealed" / "s-t01000-1", store / "sealed" / "s-t01000-07")
    (store / "cache" / "notes.txt").write_text("not a sector")
    chain = _Chain(r.comm_r, r.comm_d)
    found = {n: check_store_sector(chain, store, n) for n in names_in(store)}
    assert list(found) == ["s-t01000-1", "s-t01000-2", "s-t01000-3", "s-t01000-4", "s-t01000-5", "s-t01000-07", "notes.txt"]
    reasons = {n: f.reason for n, f in found.items()}
    assert reasons["s-t01000-1"] is None and found["s-t01000-1"].kind == "normal"
    assert reasons["s-t01000-2"] == "sealed file sealed/s-t01000-2 has 1024 bytes, the sector size is 2048"
    assert reasons["s-t01000-3"] == "cache/s-t01000-3/ lacks t_aux (WindowPoSt reads them)"
    assert reasons["s-t01000-4"].startswith("cache/s-t01000-4: ") and "tree_r_last" in reasons["s-t01000-4"]
    assert reasons["s-t01000-5"].startswith("update/s-t01000-5 is missing (the chain has the sector snap-upgraded")
    assert reasons["s-t01000-07"] == "not a sector name as lotus writes it (expected s-t01000-7)"
    assert reasons["notes.txt"] == "not a sector name (expected s-t0<miner>-<number>)"
    assert [n for n in names_in(store, "s-t01000-[23]")] == ["s-t01000-2", "s-t01000-3"]     # attach --pattern
