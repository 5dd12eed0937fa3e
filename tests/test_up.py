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


def test_util_chain_works_against_up(tmp_path):
    """up's manager reaches the devnet through its API, and still answers the devnet's own
    administration (`util chain advance|head`, the Venus.Devnet* methods): before, it answered
    'method not found' there."""
    import json
    import signal

    from .conftest import read_line
    from .test_worker_e2e import start
    home = tmp_path / "up"
    up = start(["up", "--home", str(home), "--block-time", "0", "--threads", "1"])
    try:
        line = read_line(up, 120, "its manager's address")
        api = re.search(r"manager on (http://127\.0\.0\.1:\d+)", line)
        assert api, line + up.stderr.read()
        common = ["--api", api.group(1), "--home", str(home / "manager")]
        out = json.loads(run_cli("util", "chain", "advance", "5", *common, "--json", check=True).stdout)
        assert out["Epoch"] >= 5
        assert json.loads(run_cli("util", "chain", "head", *common, "--json", check=True).stdout)["Epoch"] == out["Epoch"]
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, up.stderr.read()
