"""What the database layer leaves behind as a process runs: a thread's connection is closed when
the thread ends; the -wal file shrinks back after a burst and is emptied on close (a copy of the
file alone is then whole); databases, their -wal/-shm, migration copies and backup archives are
readable by their owner only."""

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from appliance.core.db import WAL_SIZE_LIMIT, Database, Schema
from appliance.manager.state import ManagerState

from .conftest import ROOT, damocles_cmd

pytestmark = pytest.mark.timeout(120)
BLOBS = Schema("test", ["CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"])


@pytest.fixture(autouse=True)
def _usual_umask():
    old = os.umask(0o022)            # what a service runs with: files 0644 unless asked otherwise
    yield
    os.umask(old)


def _open_fds(path: Path) -> int:
    return sum(1 for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == str(path))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_threads_connection_is_closed_when_the_thread_ends(tmp_path):
    """Before, a finished thread's connection stayed open until another thread first used the
    database (the RPC server's threads come and go with each request)."""
    db = Database(tmp_path / "t.db", BLOBS)
    for _ in range(3):
        threads = [threading.Thread(target=lambda: db.query("SELECT COUNT(*) FROM blobs")) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert db.connections() == 1                              # the main thread's only
    db.close()
    assert db.connections() == 0 and _open_fds(tmp_path / "t.db") == 0


def test_the_wal_shrinks_back_after_a_burst_and_is_emptied_on_close(tmp_path):
    path = tmp_path / "t.db"
    db = Database(path, BLOBS)
    wal = Path(f"{path}-wal")
    held, release = threading.Event(), threading.Event()

    def reader():                        # an old snapshot holds checkpoints back: the WAL grows
        with db.read() as conn:
            conn.execute("SELECT COUNT(*) FROM blobs").fetchone()
            held.set()
            release.wait(60)

    t = threading.Thread(target=reader)
    t.start()
    assert held.wait(10)
    body = os.urandom(100_000)
    for _ in range(2 * WAL_SIZE_LIMIT // len(body)):
        with db.tx() as conn:
            conn.execute("INSERT INTO blobs (body) VALUES (?)", (body,))
    grown = wal.stat().st_size
    assert grown > 2 * WAL_SIZE_LIMIT * 0.9
    release.set()
    t.join(10)
    for _ in range(60):                 # the next autocheckpoints copy it all; then the WAL restarts
        with db.tx() as conn:
            conn.execute("INSERT INTO blobs (body) VALUES (?)", (body,))
    assert wal.stat().st_size <= WAL_SIZE_LIMIT, (grown, wal.stat().st_size)

    other = sqlite3.connect(path)       # another process's connection: SQLite would leave the WAL to it
    other.execute("SELECT COUNT(*) FROM blobs").fetchone()
    db.close()
    assert wal.stat().st_size == 0      # emptied: everything is in the file itself
    shutil.copy(path, tmp_path / "copy.db")
    other.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 2 * WAL_SIZE_LIMIT // len(body) + 60
    copy.close()


def test_databases_and_their_copies_are_readable_by_their_owner_only(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    state = ManagerState(home / "manager.db")
    state.allocate(1000, 0, 1, None)
    for name in ("manager.db", "manager.db-wal", "manager.db-shm"):
        assert _mode(home / name) == 0o600, name
    (home / "manager.toml").write_text("")
    (home / "secret").write_text("00" * 32 + "\n")
    out = subprocess.run(damocles_cmd("manager", "backup", "--home", str(home), "--to", str(tmp_path / "b.tar.gz")),
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    state.close()
    assert _mode(tmp_path / "b.tar.gz") == 0o600
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert {m.name: m.mode & 0o777 for m in tar.getmembers() if m.name.endswith(".db")} == {"manager.db": 0o600}

    old = tmp_path / "old.db"           # a file from before: 0644, and a migration copy of it
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE kept (x)")
    conn.commit()
    conn.close()
    os.chmod(old, 0o644)
    Database(old, BLOBS).close()
    assert _mode(old) == 0o600
    assert _mode(tmp_path / "old.db.v0.bak") == 0o600


# The script a child Python runs: a thread of it holds the Database's _conns_lock (as a thread
# closing its connection does) while the main thread starts a program with a preexec_fn, which
# forks. The child drops that thread's connection: it must not wait for a lock nobody will free.
_FORK_WHILE_HELD = """
import subprocess, sys, threading
from appliance.core.db import Database, Schema
db = Database(sys.argv[1], Schema("t", ["CREATE TABLE t (x INTEGER);"]))
held, release = threading.Event(), threading.Event()
def other():
    db.conn().execute("SELECT 1")      # this thread's connection, in its thread-local storage
    with db._conns_lock:
        held.set()
        release.wait(30)
t = threading.Thread(target=other)
t.start()
held.wait(30)
rc = subprocess.run(["true"], preexec_fn=lambda: None, timeout=30).returncode
release.set()
t.join(30)
print("started", rc)
"""


def test_a_forked_child_does_not_wait_on_a_connection_lock_its_parent_held(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", _FORK_WHILE_HELD, str(tmp_path / "t.db")], stdout=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)     # the stuck fork child too
        p.communicate()
        pytest.fail("starting a program while another thread held a connection's lock hung (the fork child waited on it)")
    assert p.returncode == 0 and out.strip() == "started 0"
