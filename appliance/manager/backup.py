"""`damocles manager backup` and `restore`: one archive with the manager's state, the devnet's
chain, the secret and the config, taken online while the manager runs.

The two databases are copied from one moment: the backup holds both write locks for the instant
it takes to open a read snapshot of each (the manager's writers wait on their busy timeout, a few
milliseconds), then copies each snapshot with SQLite's backup API while the manager carries on.
A plain `cp` of manager.db is not a backup: in WAL mode the newest data is in manager.db-wal.

Restore checks every file (checksums, SQLite integrity, schema versions no newer than this
binary's) before it puts anything in place, and never overwrites a database: with --force the
files it replaces are moved aside."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..config import ConfigError, load_toml
from ..chain.devnet import DEVNET_SCHEMA
from ..chain.devnet_api import DEVNET_API_SCHEMA
from ..core.db import BUSY_TIMEOUT_MS, DatabaseError, Schema, check_file, copy_database
from .config import config_path
from .home_lock import HomeLock, try_lock
from .state import MANAGER_SCHEMA

FORMAT = 1
DATABASES: dict[str, Schema] = {"manager.db": MANAGER_SCHEMA, "devnet.db": DEVNET_SCHEMA, "devnet-api.db": DEVNET_API_SCHEMA}
CHAIN_FILES = ("devnet.db", "devnet-api.db")     # the embedded devnet and its API's message record: kept together
CONFIG_FILES = ("sector-manager.cfg", "manager.toml")             # the config under either name
PLAIN_FILES = ("secret", *CONFIG_FILES, "ext-prover.cfg")       # ext-prover.cfg: `manager run --ext-prover`'s processors
SNAPSHOT_DEADLINE_S = 60.0


class BackupError(ValueError):
    """A backup that cannot be taken or an archive that cannot be restored (names the file)."""


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return conn


def _snapshots(paths: list[Path]) -> list[sqlite3.Connection]:
    """Read snapshots of every database, all from the same moment: no write can land between
    them, because each file's write lock is held while the snapshots are opened. The second and
    later locks are tried briefly and everything is released and retried on a busy answer, so
    a manager thread that holds one lock while waiting for the other is never deadlocked."""
    deadline = time.monotonic() + SNAPSHOT_DEADLINE_S
    while True:
        locks: list[sqlite3.Connection] = []
        try:
            for i, path in enumerate(paths):
                conn = _connect(path, BUSY_TIMEOUT_MS / 1000 if i == 0 else 0.5)
                locks.append(conn)
                conn.execute("BEGIN IMMEDIATE")
            snaps = []
            for path in paths:
                snap = _connect(path, BUSY_TIMEOUT_MS / 1000)
                snap.execute("BEGIN")
                snap.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()    # the snapshot starts here
                snaps.append(snap)
            return snaps
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise BackupError(f"cannot take a consistent snapshot of {', '.join(map(str, paths))}: {exc}") from None
        finally:
            for conn in locks:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.close()
        time.sleep(0.05)     # another writer held a lock: retry (bounded by the deadline)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refuse_server_store(home: Path, command: str) -> None:
    """A home whose config keeps the manager's state on PostgreSQL (`[Common.DB] Driver =
    "postgres"`): its state is not in the home, and an archive of the home would hold an old or
    empty manager.db beside it. The server's own tools back that database up."""
    try:
        path = config_path(home)
        raw = load_toml(path) if path.exists() else {}
    except (ConfigError, OSError):     # no readable config: nothing says the state is elsewhere
        return
    common = raw.get("Common")
    db = common.get("DB") if isinstance(common, dict) else None
    driver = db.get("Driver") if isinstance(db, dict) else None
    if isinstance(driver, str) and driver.strip().lower() == "postgres":
        raise BackupError(f"{path}: [Common.DB] Driver = \"postgres\": the manager's state is in its PostgreSQL "
                          f"database, not in {home}; `manager {command}` covers SQLite homes only. Back that database "
                          f"up with pg_dump (and restore it with pg_restore), and the home's secret, config and "
                          f"devnet.db as files")


def backup(home: Path, dest: Path) -> dict:
    """Write the archive `dest` (atomically, mode 0600: it holds the secret); returns its manifest
    (`online`: a manager was running; otherwise the home's lock was held, so none started mid-copy)."""
    home, dest = Path(home), Path(dest)
    refuse_server_store(home, "backup")
    if not (home / "manager.db").exists():
        raise BackupError(f"{home / 'manager.db'} not found: is {home} a manager home?")
    names = [n for n in DATABASES if (home / n).exists()]
    for n in names:
        check_file(home / n, DATABASES[n].kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = try_lock(home, "manager backup")     # None: a manager runs, the copy is taken online
    try:
        return _backup(home, dest, names, online=lock is None)
    finally:
        if lock is not None:
            lock.release()


def _backup(home: Path, dest: Path, names: list[str], online: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dest.parent) as tmp:
        tmp = Path(tmp)
        snaps = _snapshots([home / n for n in names])
        try:
            for n, snap in zip(names, snaps):
                copy_database(snap, tmp / n)
        finally:
            for snap in snaps:
                snap.close()
        files = {}
        for n in names:
            files[n] = {"sha256": _sha256(tmp / n), "schema_version": _version(tmp / n)}
        for n in PLAIN_FILES:
            if (home / n).exists():
                shutil.copyfile(home / n, tmp / n)
                files[n] = {"sha256": _sha256(tmp / n)}
        manifest = {"format": FORMAT, "created": time.time(), "damocles": __version__, "online": online, "files": files}
        part = dest.with_name(f".{dest.name}.part")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(body), int(manifest["created"])
            tar.addfile(info, io.BytesIO(body))
            for n in files:
                tar.add(tmp / n, arcname=n)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, dest)
    return manifest


def _version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def unpack(archive: Path, into: Path) -> dict:
    """Extract and check an archive: manifest, checksums, integrity, schema versions."""
    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                manifest = json.load(tar.extractfile("manifest.json"))
            except KeyError:
                raise BackupError(f"{archive} is not a damocles manager backup (no manifest.json)") from None
            files = manifest.get("files") if isinstance(manifest, dict) else None
            if manifest.get("format") != FORMAT or not isinstance(files, dict) or "manager.db" not in files:
                raise BackupError(f"{archive}: unsupported backup format {manifest.get('format')!r} "
                                  f"(this binary reads format {FORMAT}) or no manager.db in it")
            for name in files:
                if name not in DATABASES and name not in PLAIN_FILES:
                    raise BackupError(f"{archive}: unexpected member {name!r}")
                try:
                    tar.extract(name, into, filter="data")
                except KeyError:
                    raise BackupError(f"{archive}: {name} is listed in the manifest but missing") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BackupError):
            raise
        raise BackupError(f"{archive} cannot be read as a backup archive: {exc}") from None
    for name, meta in files.items():
        if _sha256(into / name) != meta.get("sha256"):
            raise BackupError(f"{archive}: {name} does not match its checksum (damaged archive)")
        schema = DATABASES.get(name)
        if schema is not None:
            try:
                check_file(into / name, f"backed-up {schema.kind}")
            except DatabaseError as exc:
                raise BackupError(f"{archive}: {exc}") from None
            version = _version(into / name)
            if version > schema.version:
                raise BackupError(f"{archive}: {name} has schema version {version}, newer than this binary's "
                                  f"{schema.version}: restore it with the damocles release that wrote it")
    return manifest


def restore(archive: Path, home: Path, keep_chain: bool = False, force: bool = False) -> dict:
    """Put an archive's files into `home` after checking it, holding the home's lock (refused
    while a manager runs on it). Returns what was done."""
    home = Path(home)
    refuse_server_store(home, "restore")
    home.mkdir(parents=True, exist_ok=True)
    lock = HomeLock(home, "manager restore", "stop the manager before restoring into its home")
    try:
        return _restore(archive, home, keep_chain, force)
    finally:
        lock.release()


def _restore(archive: Path, home: Path, keep_chain: bool, force: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=home) as tmp:
        tmp = Path(tmp)
        manifest = unpack(archive, tmp)
        names = [n for n in manifest["files"] if not (keep_chain and n in CHAIN_FILES)]
        if keep_chain and not (home / "devnet.db").exists():
            raise BackupError(f"--keep-chain: {home / 'devnet.db'} does not exist (nothing to keep)")
        databases = [n for n in names if n in DATABASES]
        present = [n for n in databases if (home / n).exists()]
        if present and not force:
            raise BackupError(f"{home} already has {', '.join(present)}: stop its manager and restore with --force "
                              f"(the current files are moved aside, not deleted), or restore into an empty home")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        replaced = [f"{n}{suffix}" for n in databases for suffix in ("", "-wal", "-shm")]   # a stale -wal would
        if "secret" in names and (home / "secret").exists() and _sha256(home / "secret") != _sha256(tmp / "secret"):
            replaced.append("secret")                                                   # be replayed into the file
        moved = []
        for n in replaced:
            if (home / n).exists():
                aside = home / f"{n}.before-restore-{stamp}"
                os.replace(home / n, aside)
                moved.append(aside.name)
        placed = []
        for n in names:
            if n in CONFIG_FILES and any((home / c).exists() for c in CONFIG_FILES):
                continue                              # the home's own config wins
            if n == "ext-prover.cfg" and (home / n).exists():
                continue                              # so does its own ext-prover.cfg
            if n == "secret":
                os.chmod(tmp / n, 0o600)
            os.replace(tmp / n, home / n)
            placed.append(n)
    return {"archive": str(archive), "home": str(home), "restored": placed, "moved_aside": moved,
            "created": manifest["created"], "damocles": manifest.get("damocles")}
