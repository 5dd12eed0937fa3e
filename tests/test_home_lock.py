"""One manager per home: a second `manager run` on a home in use, and `manager restore` into it,
are refused naming the home and the holder's pid; a backup of a running manager is taken online,
one of a stopped manager holds the lock; a manager killed with SIGKILL frees its home."""

import json
import os
import signal
import stat
import subprocess

import pytest

from appliance.manager.home_lock import LOCK_FILE, HomeInUse, HomeLock

from .conftest import ROOT, damocles_cmd, signal_all
from .manager_driver import ManagerProc, drive_sectors
from .pg_cluster import sqlite_only

pytestmark = pytest.mark.timeout(240)


def damocles(*args, timeout=60):
    return subprocess.run(damocles_cmd(*args), capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def _holder_pid(home) -> int:
    return int((home / LOCK_FILE).read_text().split()[0])


def _is_manager_process(pid: int, proc) -> bool:
    """pid is the manager we started, or its child (the frozen executable's bootloader forks it)."""
    if pid == proc.pid:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1]) == proc.pid


def test_a_second_lock_on_a_home_is_refused_until_the_first_is_released(tmp_path):
    first = HomeLock(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / LOCK_FILE).st_mode) == 0o600
    with pytest.raises(HomeInUse, match=rf"manager home {tmp_path} is in use by damocles manager run \(pid {os.getpid()}\)"):
        HomeLock(tmp_path)
    first.release()
    HomeLock(tmp_path).release()


@sqlite_only       # backup and restore: SQLite homes only
def test_run_and_restore_are_refused_while_a_manager_runs_on_the_home(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    try:
        drive_sectors(m, 4, tmp_path / "work")
        archive = tmp_path / "online.tar.gz"
        out = damocles("manager", "backup", "--home", str(m.home), "--to", str(archive), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["online"] is True
        pid = _holder_pid(m.home)
        assert _is_manager_process(pid, m.proc)
        held = f"manager home {m.home} is in use by damocles manager run (pid {pid})"

        second = damocles("manager", "run", "--home", str(m.home))
        assert second.returncode == 2, second
        assert held in second.stderr and "one manager at a time" in second.stderr and "Traceback" not in second.stderr

        before = sorted(p.name for p in m.home.iterdir())
        out = damocles("manager", "restore", "--from", str(archive), "--home", str(m.home), "--force")
        assert out.returncode == 2, out
        assert held in out.stderr and "stop the manager before restoring" in out.stderr and "Traceback" not in out.stderr
        assert sorted(p.name for p in m.home.iterdir()) == before        # nothing moved aside
        assert m.call("Venus.AllocateSector", {})["ID"]["Number"] == 5   # the running manager is untouched
    finally:
        m.stop()

    out = damocles("manager", "backup", "--home", str(m.home), "--to", str(tmp_path / "offline.tar.gz"), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["online"] is False, out
    out = damocles("manager", "restore", "--from", str(archive), "--home", str(m.home), "--force")
    assert out.returncode == 0, out.stderr                               # stopped: restore goes ahead
    assert (m.home / LOCK_FILE).read_text() == ""                        # released, holder cleared


def test_a_manager_killed_with_sigkill_frees_its_home(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    try:
        signal_all(m.proc, signal.SIGKILL)
        m.proc.wait(timeout=20)
        m.start()                                   # the kernel dropped the lock with the process
        assert _is_manager_process(_holder_pid(m.home), m.proc)
    finally:
        m.stop()
