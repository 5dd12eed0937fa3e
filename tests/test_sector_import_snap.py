"""Moving in a snap-upgraded sector (issue 18, item 3): sectors proven CC on the devnet, then
upgraded with our engine (deals encoded into the sector key, ProveReplicaUpdates3 landed with a
real update proof), laid out as lotus-miner keeps them: the upgraded replica in `update/`, its
cache in `update-cache/`, the old `sealed/` and `cache/` kept for one sector and removed (as
lotus' finalize may) for another. The import records each in the store as upgraded, checks the
update's p_aux against the chain's new sealed CID (an update-cache holding the sector key's p_aux is
refused by name), the next WindowPoSt of their deadline proves the update replicas with no fault,
export-to-lotus writes `update/` and `update-cache/` back byte for byte, and once terminated they
are listed by `expired` and `--remove-expired` deletes their update and the sector key recorded
with it (a sector key that is not the chain's is left out of the record, saying why)."""

import base64
import os
import shutil

import pytest

from appliance.chain import deadlines as dl
from appliance.chain.actor_params import market_piece
from appliance.proofs.addpiece import add_pieces
from appliance.proofs.cid import cid_to_commitment, commd_to_cid, commr_to_cid
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.poseidon import hash_nodes
from appliance.proofs.snap import update_proof_for_seal
from appliance.proofs.snap_encode import SectorFiles, encode_files
from appliance.proofs.snap_proof import generate_update_proof, prove_update_partitions

from .test_devnet_proving import P2K, land
from .test_poster import run_to
from .test_sector_import import FINALIZED_CACHE, LOTUS_ID, Farm, names

pytestmark = pytest.mark.timeout(300)

MINER = 1000
U2K = update_proof_for_seal(P2K)
NORMAL, KEPT_KEY, NO_KEY, BAD_P_AUX = 1, 2, 3, 4       # sector 1 stays CC; 2-4 are snap-upgraded


def upgrade(chain, r, number: int, work) -> SectorFiles:
    """Encode a deal into the proven CC sector `number` (files of its seal report `r`) and land its
    ProveReplicaUpdates3; returns the sector key's and the update's files."""
    work.mkdir(parents=True)
    piece = work / "piece.bin"
    piece.write_bytes(os.urandom(1000))
    staged = add_pieces(P2K.size, [piece], work / "staged")
    info = staged[0].info
    deal = chain.publish_deal(MINER, commd_to_cid(info.commitment), info.size, chain.head() + 1000, 180 * 2880)
    files = SectorFiles(r.sector_dir / "sealed", r.sector_dir / "cache", work / "update", work / "update-cache")
    enc = encode_files(U2K, files, work / "staged", [info])
    proof = generate_update_proof(prove_update_partitions(U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, files.sealed,
                                                          files.cache, files.update, files.update_cache))
    index, partition = chain.db.execute("SELECT deadline, partition FROM sector_deadlines WHERE miner = ? AND number = ?",
                                        (MINER, number)).fetchone()
    start = chain.miner_info(MINER).proving_period_start
    while not dl.is_mutable(chain.policy, start, index, chain.head() + chain.policy.message_delay):
        chain.advance(1)
    rec = land(chain, "ProveReplicaUpdates3", {
        "SectorUpdates": [{"Sector": number, "Deadline": index, "Partition": partition,
                           "NewSealedCID": {"/": commr_to_cid(enc.comm_r_new)},
                           "Pieces": [market_piece(deal, commd_to_cid(info.commitment), info.size)]}],
        "SectorProofs": [base64.b64encode(proof).decode()], "AggregateProof": "", "UpdateProofsType": U2K.id,
        "AggregateProofType": None, "RequireActivationSuccess": True, "RequireNotificationSuccess": True})
    assert rec.ok, rec
    s = chain.sector(MINER, number)
    assert s.sector_key_cid == commr_to_cid(enc.comm_r_old) and s.sealed_cid == commr_to_cid(enc.comm_r_new)
    return files


def lay_out_update(files: SectorFiles, store, number: int) -> None:
    """The upgraded replica as lotus keeps it after FinalizeReplicaUpdate."""
    name = f"s-t0{MINER}-{number}"
    shutil.copyfile(files.update, store / "update" / name)
    (store / "update-cache" / name).mkdir()
    for f in FINALIZED_CACHE:
        shutil.copyfile(files.update_cache / f, store / "update-cache" / name / f)


@pytest.fixture
def farm(tmp_path):
    f = Farm(tmp_path)                     # sectors 1-4 proven CC, in the lotus store's sealed/ and cache/
    chain = f.svc.devnet
    f.updates = {n: upgrade(chain, f.rs[n], n, tmp_path / f"upgrade-{n}") for n in (KEPT_KEY, NO_KEY, BAD_P_AUX)}
    for n, files in f.updates.items():
        lay_out_update(files, f.store, n)
    for d in ("sealed", "cache"):          # lotus removed sector 3's sector key after finalize
        path = f.store / d / f"s-t0{MINER}-{NO_KEY}"
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    yield f
    f.close()


def test_snap_upgraded_sectors_imported_from_update_dirs_and_proven_by_the_next_windowpost(farm, capsys):
    svc, store, chain = farm.svc, farm.store, farm.svc.devnet
    bad = f"s-t0{MINER}-{BAD_P_AUX}"
    # the update-cache holds the sector key's p_aux: its CommR is the old (sector key) one
    shutil.copyfile(farm.rs[BAD_P_AUX].sector_dir / "cache" / "p_aux", store / "update-cache" / bad / "p_aux")

    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID)
    assert rc == 1, err
    assert names(r["Imported"]) == [f"s-t0{MINER}-{n}" for n in (NORMAL, KEPT_KEY, NO_KEY)]
    assert [f["Kind"] for f in r["Imported"]] == ["normal", "upgrade", "upgrade"]
    assert names(r["Refused"]) == [bad]
    on_chain = chain.sector(MINER, BAD_P_AUX)
    key_comm_r = cid_to_commitment(on_chain.sector_key_cid)[1]
    assert r["Refused"][0]["Reason"] == (f"CommR from update-cache/{bad}/p_aux ({key_comm_r.hex()}) is not the on-chain sealed "
                                         f"CID's ({cid_to_commitment(on_chain.sealed_cid)[1].hex()}, {on_chain.sealed_cid})")
    for n in (KEPT_KEY, NO_KEY):
        rec = svc.state.sector(MINER, n)
        assert (rec["state"], rec["finalized"], rec["upgraded"], rec["imported"]) == ("Finished", True, LOTUS_ID, True)
        # the check that let it in: the update's p_aux hashes to the chain's new sealed CID, not the sector key's
        s = chain.sector(MINER, n)
        update_comm_r = hash_nodes(list(read_p_aux(store / "update-cache" / f"s-t0{MINER}-{n}")))
        assert commr_to_cid(update_comm_r) == s.sealed_cid != s.sector_key_cid
    assert svc.state.sector(MINER, NORMAL)["persisted"] == LOTUS_ID and svc.state.sector(MINER, BAD_P_AUX) is None
    # the sector key kept beside sector 2's update is its too (checked against the chain's sector key CID)
    assert [f["SectorKey"] for f in r["Imported"]] == [False, True, False]
    assert svc.state.sector(MINER, KEPT_KEY)["persisted"] == LOTUS_ID and "persisted" not in svc.state.sector(MINER, NO_KEY)
    # the poster proves the update replica of an upgraded sector, the sealed file of the CC one
    targets = {t.number: t for t in svc.poster.targets(MINER, [NORMAL, KEPT_KEY, NO_KEY])}
    assert targets[NORMAL].sealed == str(store / "sealed" / f"s-t0{MINER}-{NORMAL}") and not targets[NORMAL].upgraded
    for n in (KEPT_KEY, NO_KEY):
        assert targets[n].upgraded and targets[n].sealed == str(store / "update" / f"s-t0{MINER}-{n}")
        assert targets[n].cache == str(store / "update-cache" / f"s-t0{MINER}-{n}")

    # the operator puts the update's p_aux back: sector 4 is imported alone
    shutil.copyfile(farm.updates[BAD_P_AUX].update_cache / "p_aux", store / "update-cache" / bad / "p_aux")
    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID, "--numbers", str(BAD_P_AUX))
    assert rc == 0 and names(r["Imported"]) == [bad], (r, err)
    assert svc.state.sector(MINER, BAD_P_AUX)["upgraded"] == LOTUS_ID
    # a sector key that is not the chain's is left out of the record, and the operator is told why
    shutil.copyfile(farm.rs[NORMAL].sector_dir / "cache" / "p_aux", store / "cache" / bad / "p_aux")
    rc, out, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID, "--numbers", f"{BAD_P_AUX},{KEPT_KEY}",
                            "--override", json_out=False)
    key_cid = on_chain.sector_key_cid
    assert rc == 0 and out.splitlines()[1:3] == [
        f"  s-t0{MINER}-{KEPT_KEY}: imported (snap-upgraded: update/ and its sector key in sealed/)",
        f"  {bad}: imported (snap-upgraded: update/; sector key not taken: CommR from cache/{bad}/p_aux "
        f"({cid_to_commitment(chain.sector(MINER, NORMAL).sealed_cid)[1].hex()}) is not the on-chain sector key CID's "
        f"({cid_to_commitment(key_cid)[1].hex()}, {key_cid}))"], (out, err)
    assert "persisted" not in svc.state.sector(MINER, BAD_P_AUX) and svc.state.sector(MINER, KEPT_KEY)["persisted"] == LOTUS_ID

    # the next WindowPoSt of every deadline proves them all (the update replicas), with no fault
    run_to(svc, chain.head() + 2880 + 60)
    records = chain.deadline_records(MINER)
    used = {d for d in range(48) if chain.deadline_partitions(MINER, d)}
    assert used and {r["index"] for r in records} >= used, records
    assert sum(r["sectors_proven"] for r in records) >= 4
    assert sum(r.get("state") == "landed" for r in svc.poster.rounds(MINER)) == len(records)
    assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records
    assert chain.penalties(MINER) == [] and chain.miner_power(MINER).active_sectors == 4
    assert all(not r.get("declared_faults") and not r.get("skipped") for r in svc.poster.rounds(MINER))


def test_export_to_lotus_writes_an_upgraded_sector_to_update_dirs_byte_for_byte(farm, tmp_path, capsys):
    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID)
    assert rc == 0 and len(r["Imported"]) == 4, err
    # sector 3's update moved to persist-1 by hand: `storage attach` points its upgraded record there
    other, name = farm.home / "persist-1", f"s-t0{MINER}-{NO_KEY}"
    for d in ("update", "update-cache"):
        (other / d).mkdir(exist_ok=True)
        shutil.move(farm.store / d / name, other / d / name)
    rc, out, err = farm.run(capsys, "storage", "attach", str(other), "--verbose", json_out=False)
    assert rc == 0 and f"  {name}: indexed in this store (snap-upgraded: update/)" in out.splitlines(), (out, err)
    assert farm.svc.state.sector(MINER, NO_KEY)["upgraded"] == "persist-1"
    dest = tmp_path / "lotus-dest"
    rc, r, err = farm.run(capsys, "sealer", "sectors", "export-to-lotus", "--miner", str(MINER), "files", "--dest-path",
                          str(dest), "--reserve")
    assert rc == 0 and r["Failed"] == [] and len(r["Exported"]) == 4, err
    for n, files in farm.updates.items():
        name = f"s-t0{MINER}-{n}"
        assert (dest / "update" / name).read_bytes() == files.update.read_bytes()
        assert sorted(p.name for p in (dest / "update-cache" / name).iterdir()) == sorted(FINALIZED_CACHE)
        for f in FINALIZED_CACHE:
            assert (dest / "update-cache" / name / f).read_bytes() == (files.update_cache / f).read_bytes()
        assert not (dest / "sealed" / name).exists() and not (dest / "cache" / name).exists()
    name = f"s-t0{MINER}-{NORMAL}"
    assert (dest / "sealed" / name).read_bytes() == (farm.rs[NORMAL].sector_dir / "sealed").read_bytes()
    assert not (dest / "update" / name).exists()


def test_imported_upgraded_sectors_listed_as_expired_once_terminated_and_all_their_files_removed(farm, capsys):
    svc, store, chain = farm.svc, farm.store, farm.svc.devnet
    rc, r, err = farm.run(capsys, "sealer", "sectors", "import", "--store", LOTUS_ID)
    assert rc == 0 and len(r["Imported"]) == 4, err
    for n in (KEPT_KEY, NO_KEY):
        svc.terminator.submit({"Miner": MINER, "Number": n})
    deadline = chain.head() + 2 * 2880            # the actor refuses immutable deadlines: the terminator waits
    while not all((svc.state.sector(MINER, n).get("terminate") or {}).get("terminated_at") for n in (KEPT_KEY, NO_KEY)):
        assert chain.head() < deadline, [svc.state.sector(MINER, n).get("terminate") for n in (KEPT_KEY, NO_KEY)]
        svc.terminator.tick()
        chain.advance(1)
    chain.advance(20)                             # past WinningPoSt's lookback after the termination
    rc, r, err = farm.run(capsys, "sealer", "sectors", "expired", "--miner", str(MINER))
    assert rc == 0 and [s["ID"] for s in r["Sectors"]] == [KEPT_KEY, NO_KEY], (r, err)
    rc, r, err = farm.run(capsys, "sealer", "sectors", "expired", "--miner", str(MINER), "--remove-expired",
                          "--confirm-remove-count", "2")
    assert rc == 0 and r["Failed"] == [], (r, err)

    def present(n):
        name = f"s-t0{MINER}-{n}"
        return [d for d in ("sealed", "cache", "update", "update-cache") if (store / d / name).exists()]
    assert present(KEPT_KEY) == present(NO_KEY) == []      # the update and, for 2, its sector key
    assert present(NORMAL) == ["sealed", "cache"] and present(BAD_P_AUX) == ["sealed", "cache", "update", "update-cache"]
