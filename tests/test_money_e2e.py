"""Money end to end, with real processes (a manager and a worker on loopback, 2KiB, the devnet's
clock running): the miner starts with an empty balance and its PreCommit does not carry the
deposit (SendFund = false), so the sealed sector's PreCommit waits, saying so in the sector's
state; `damocles util sealer actor add-balance` funds the miner, and the PreCommit lands and the
sector is proven."""

import subprocess
import time

import pytest

from appliance.chain.devnet_api import worker_address
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, worker_toml
from .conftest import ROOT, damocles_cmd, read_line
from .test_worker_e2e import start

pytestmark = pytest.mark.timeout(300)

MANAGER = manager_toml(1, 1, 1, "1s", block_time="100ms", config={"Chain": {"GenesisMinerBalance": "0"}},
                       miner={"Commitment": {"Pre": {"SendFund": False}, "Prove": {"SendFund": False}}})


def cli(url, token, *args):
    p = subprocess.run(damocles_cmd(*args, "--api", url, "--token", token), capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def until(what, fn, seconds, proc):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.3)       # polling a live system, bounded by the deadline
    raise AssertionError(f"no {what} after {seconds}s")


def test_precommit_waits_for_funds_then_lands_after_add_balance(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    procs = [manager]
    try:
        line = read_line(manager)
        assert line.startswith("listening on "), manager.stderr.read()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin_token = issue_token(secret, "admin")
        admin = RPCClient(url, admin_token)
        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", [{"location": tmp_path / "t0"}]))
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
        procs.append(worker)

        def waiting():
            rows = admin.call("Venus.ListSectors", "", 0)
            return rows and rows[0].get("FundsWait") and rows[0]
        row = until("sector waiting for funds", waiting, 120, worker)
        assert "waiting for funds: PreCommit deposit" in row["FundsWait"] and "f01000 has 0 FIL available" in row["FundsWait"]
        assert row["MessageInfo"]["PreCommitCid"] is None and admin.call("Venus.DevnetSectors", 1000) == []
        code, out, err = cli(url, admin_token, "util", "sectors", "list")
        assert code == 0 and "waiting for funds" in out, (out, err)
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "1000", "balance")
        assert code == 0 and out.splitlines()[0] == "balance: 0", (out, err)

        # from the miner's worker as the chain names it (an ID address through the devnet's Lotus API)
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "f01000", "add-balance",
                             worker_address(1000), "1 FIL")
        assert code == 0 and "landed at height" in out and "exit code 0" in out, (out, err)

        until("sector proven", lambda: admin.call("Venus.DevnetSectors", 1000), 180, worker)
        [row] = admin.call("Venus.ListSectors", "", 0)
        assert not row.get("FundsWait")
        pre = row["MessageInfo"]["PreCommitCid"]["/"]      # a Go cid.Cid in JSON
        code, out, err = cli(url, admin_token, "util", "message", "search", pre)
        assert code == 0 and "State: OnChainMsg" in out and "ExitCode: 0" in out, (out, err)
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "1000", "balance", "--json")
        assert code == 0, err
        import json
        b = json.loads(out)
        assert int(b["Balance"]) == 10 ** 18 and int(b["InitialPledge"]) > 0 and int(b["PreCommitDeposits"]) == 0
        assert int(b["Available"]) == 10 ** 18 - int(b["InitialPledge"])
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
