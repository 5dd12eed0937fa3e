"""`damocles manager backup` under load and `manager restore` on another home: the restored
manager starts (its state is not behind its chain), knows every sector its chain knows, and
carries on sealing with no number or nonce reused. Restore checks the archive first. A home whose
state is on PostgreSQL is refused by both, naming the server's tools (the rest: SQLite homes only,
also under DAMOCLES_TEST_DB=postgres)."""

import hashlib
import io
import json
import sqlite3
import subprocess
import tarfile
import threading

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.manager.backup import BackupError, restore
from appliance.manager.state import MANAGER_SCHEMA, ManagerState
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import ROOT, damocles_cmd
from .manager_driver import ManagerProc, drive_sectors
from .pg_cluster import sqlite_only

pytestmark = pytest.mark.timeout(300)
MINER = 1000


def damocles(*args, timeout=120):
    return subprocess.run(damocles_cmd(*args), capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_a_home_whose_state_is_on_postgres_is_refused_naming_pg_dump(tmp_path):
    home = tmp_path / "m"
    home.mkdir()
    (home / "secret").write_text("x")
    (home / "sector-manager.cfg").write_text('[Common.DB]\nDriver = " Postgres "\n[Common.DB.Postgres]\n'
                                             'DSN = "postgresql://damocles@db-host/damocles"\n')
    (home / "manager.db").write_bytes(b"")          # an old file left in the home is not the state
    for args in (["backup", "--home", str(home), "--to", str(tmp_path / "b.tar.gz")],
                 ["restore", "--from", str(tmp_path / "b.tar.gz"), "--home", str(home)]):
        done = damocles("manager", *args)
        assert done.returncode != 0
        assert 'Driver = "postgres"' in done.stderr and "pg_dump" in done.stderr and "pg_restore" in done.stderr, done.stderr
        assert not (tmp_path / "b.tar.gz").exists()


@sqlite_only
def test_backup_under_load_restores_on_another_home_and_carries_on(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    stop, errors, allocated = threading.Event(), [], []

    def seal():
        try:
            for round_ in range(2):
                drive_sectors(m, 4, tmp_path / f"work{round_}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # the load comes from a credential of its own: a worker's in-flight limit ([Sealing]
    # MaxInFlightPerWorker) ends it, and never starves the sealing above
    load = RPCClient(m.rpc.url, issue_token(load_or_create_secret(m.home / "secret"), "write", "load"), timeout=30)

    def allocate():
        try:
            while not stop.is_set():
                got = load.call("Venus.AllocateSector", {})
                if got is None:               # the limit: this credential holds as many as it may
                    break
                allocated.append(got["ID"]["Number"])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    sealer, allocator = threading.Thread(target=seal), threading.Thread(target=allocate)
    sealer.start()
    allocator.start()
    try:
        archives, before = [], len(allocated)
        for i in range(3):                 # while sectors are sealed and numbers allocated
            archive = tmp_path / f"backup-{i}.tar.gz"
            out = damocles("manager", "backup", "--home", str(m.home), "--to", str(archive), "--json")
            assert out.returncode == 0, out.stderr
            archives.append(archive)
        during = len(allocated) - before
        sealer.join(240)
    finally:
        stop.set()
        allocator.join(60)
        m.stop()
    assert not errors and not sealer.is_alive(), errors
    assert during > 0                              # the manager kept answering while backed up
    manifest = json.loads(out.stdout)
    assert set(manifest["files"]) == {"manager.db", "devnet.db", "devnet-api.db", "secret", "manager.toml"}
    assert oct(archives[-1].stat().st_mode & 0o777) == "0o600"          # it holds the secret

    other = tmp_path / "restored"
    out = damocles("manager", "restore", "--from", str(archives[1]), "--home", str(other))
    assert out.returncode == 0, out.stderr
    state = ManagerState(other / "manager.db")
    known = {s["number"] for s in state.sectors(MINER)}
    top = max(known)
    state.close()
    chain = Devnet(other / "devnet.db", ChainPolicy(block_time=0))
    on_chain = {s.number for s in chain.sectors(MINER)} | {n for (n,) in chain.db.execute(
        "SELECT number FROM precommits WHERE miner = ?", (MINER,))}
    chain.close()
    assert on_chain <= known                     # no sector of the restored chain is unknown to its manager

    (other / "persist-1").mkdir()               # stores are the operator's, not in the archive
    # the proofs the archive holds unsent (as many as were in flight at that moment) are batched
    # with the new sectors' (Threshold 4): a remainder must not wait the 60 s MaxWait
    cfg = other / "manager.toml"
    assert 'MaxWait = "60s"' in cfg.read_text()
    cfg.write_text(cfg.read_text().replace('MaxWait = "60s"', 'MaxWait = "1s"'))
    m2 = ManagerProc(other)                      # starts: its state is not behind its chain
    try:
        done = drive_sectors(m2, 4, tmp_path / "work-after")
        listed = {s["ID"]["Number"] for s in m2.call("Venus.ListSectors", "", 0)}
    finally:
        m2.stop()
    numbers = [s["Number"] for s in done]
    assert min(numbers) > top and len(set(numbers)) == 4    # no number reused
    assert known <= listed                                   # no sector lost
    chain = Devnet(other / "devnet.db", ChainPolicy(block_time=0))
    assert all(chain.sector(MINER, n) for n in numbers)
    bad = [x for x in chain.messages(MINER) if x["exit_code"] not in (0, None)]
    chain.close()
    assert not bad, [(x["method"], x["exit_code"], x["error"]) for x in bad]     # no message refused (nonces, numbers)


def _small_home(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    try:
        for _ in range(3):
            m.call("Venus.AllocateSector", {})
        out = damocles("manager", "backup", "--home", str(m.home), "--to", str(tmp_path / "b.tar.gz"))
        assert out.returncode == 0, out.stderr
    finally:
        m.stop()
    return tmp_path / "b.tar.gz"


def _rewrite(archive, dest, change):
    """Copy an archive, changing members: change(name, data) -> data."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w:gz") as out:
        for info in src.getmembers():
            data = change(info.name, src.extractfile(info).read())
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


@sqlite_only
def test_restore_checks_the_archive_and_never_overwrites(tmp_path):
    archive = _small_home(tmp_path)
    target = tmp_path / "target"

    damaged = tmp_path / "damaged.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=str(damaged)):
        restore(damaged, target)

    def bump(name, body):
        if name != "manager.db":
            return body
        p = tmp_path / "tmp.db"
        p.write_bytes(body)
        db = sqlite3.connect(p)
        db.execute("PRAGMA user_version = 99")
        db.close()
        return p.read_bytes()
    newer = tmp_path / "newer.tar.gz"
    _rewrite(archive, newer, bump)
    with pytest.raises(BackupError, match="checksum"):
        restore(newer, target)

    # a newer file with a matching checksum: an archive from a newer release
    newer2 = tmp_path / "newer2.tar.gz"
    with tarfile.open(archive) as src:
        manifest = json.load(src.extractfile("manifest.json"))
        body = bump("manager.db", src.extractfile("manager.db").read())
    manifest["files"]["manager.db"]["sha256"] = hashlib.sha256(body).hexdigest()
    _rewrite(archive, newer2, lambda n, b: body if n == "manager.db" else
             json.dumps(manifest).encode() if n == "manifest.json" else b)
    with pytest.raises(BackupError, match=f"schema version 99, newer than this binary's {MANAGER_SCHEMA.version}"):
        restore(newer2, target)
    assert not (target / "manager.db").exists()

    out = damocles("manager", "restore", "--from", str(archive), "--home", str(target))
    assert out.returncode == 0, out.stderr
    before = (target / "manager.db").read_bytes()
    out = damocles("manager", "restore", "--from", str(archive), "--home", str(target))
    assert out.returncode == 2 and "already has manager.db" in out.stderr and "Traceback" not in out.stderr
    out = damocles("manager", "restore", "--from", str(archive), "--home", str(target), "--force", "--json")
    assert out.returncode == 0, out.stderr
    moved = json.loads(out.stdout)["moved_aside"]
    aside = [n for n in moved if n.startswith("manager.db.before-restore-")]
    assert len(aside) == 1 and (target / aside[0]).read_bytes() == before


@sqlite_only
def test_a_plain_copy_under_wal_misses_data_a_backup_has(tmp_path):
    """What docs/operations.md warns about: manager.db alone, while the manager runs, lacks what
    is still in manager.db-wal; the backup has it."""
    m = ManagerProc(tmp_path / "manager")
    try:
        numbers = [m.call("Venus.AllocateSector", {})["ID"]["Number"] for _ in range(3)]
        (tmp_path / "copy.db").write_bytes((m.home / "manager.db").read_bytes())
        out = damocles("manager", "backup", "--home", str(m.home), "--to", str(tmp_path / "b.tar.gz"))
        assert out.returncode == 0, out.stderr
    finally:
        m.stop()
    copy = sqlite3.connect(tmp_path / "copy.db")
    tables = {r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    copied = copy.execute("SELECT COUNT(*) FROM sectors").fetchone()[0] if "sectors" in tables else 0
    copy.close()
    assert copied < len(numbers)
    restore(tmp_path / "b.tar.gz", tmp_path / "r")
    state = ManagerState(tmp_path / "r" / "manager.db")
    assert [s["number"] for s in state.sectors(MINER)] == numbers
    state.close()


@sqlite_only
def test_ext_prover_cfg_travels_with_a_backup_and_a_homes_own_wins(tmp_path):
    from appliance.manager.backup import backup
    from appliance.manager.service import init_home
    home = tmp_path / "m"
    init_home(home)
    ManagerState(home / "manager.db").close()
    (home / "ext-prover.cfg").write_text('[[WdPost]]\nBin = "/opt/wdpost"\n')
    archive = tmp_path / "b.tar.gz"
    assert "ext-prover.cfg" in backup(home, archive)["files"]
    restore(archive, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "ext-prover.cfg").read_text() == '[[WdPost]]\nBin = "/opt/wdpost"\n'
    own = tmp_path / "own"
    own.mkdir()
    (own / "ext-prover.cfg").write_text("# this node's own\n")
    restore(archive, own)
    assert (own / "ext-prover.cfg").read_text() == "# this node's own\n"
