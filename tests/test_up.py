"""`damocles up --sectors 4` from a fresh home: manager, devnet and worker on one machine, exits 0
once 4 sectors are Finished; a second run reuses the home."""


import re

from .conftest import run_cli


def test_up_from_a_fresh_home(tmp_path):
    home = tmp_path / "up"
    p = run_cli("up", "--home", str(home), "--sectors", "4", "--block-time", "0.1", "--threads", "2",
                "--stall-timeout", "120")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "damocles up: 4 sectors finished" in p.stdout
    # the manager reached the devnet through the Lotus client, on the devnet's Filecoin API
    assert re.search(r"its Filecoin API on http://127\.0\.0\.1:\d+/rpc/v1", p.stdout), p.stdout
    import sqlite3
    with sqlite3.connect(home / "manager" / "devnet-api.db") as db:       # its PreCommits and proofs, by MpoolPushMessage
        assert db.execute("SELECT COUNT(*) FROM pushed WHERE signed IS NOT NULL").fetchone()[0] >= 2
    # the status page's address is a one-time login link: no token (a JWT starts "eyJ") anywhere
    link = re.search(r"status page (http://\S+/ui/login\?code=[\w-]+) ", p.stdout)
    assert link and "token=" not in p.stdout + p.stderr and "eyJ" not in p.stdout + p.stderr, p.stdout
    assert (home / "manager" / "sector-manager.cfg").exists() and (home / "worker" / "worker.toml").exists()
    assert len(list((home / "manager" / "persist-1" / "sealed").iterdir())) >= 4
    p = run_cli("up", "--home", str(home), "--sectors", "1", "--block-time", "0.1")   # the home is reused
    assert p.returncode == 0 and int(re.search(r"up: (\d+) sectors finished", p.stdout).group(1)) >= 1


def test_up_refuses_bad_arguments(tmp_path):
    p = run_cli("up", "--home", str(tmp_path / "x"), "--threads", "0")
    assert p.returncode == 2 and "--threads must be at least 1" in p.stderr
    p = run_cli("up", "--home", str(tmp_path / "y"), "--size", "3KiB")
    assert p.returncode == 2 and "unknown sector size" in p.stderr
