"""Money end to end through the Lotus API path, with real processes: `damocles devnet serve` (its
miner f01000 created with an empty balance), `damocles manager run` with `[Common.API] Chain`
pointing at it (no devnet of its own: every balance, deposit and message goes through
LotusChain), and a worker sealing a 2KiB sector. The PreCommit does not carry its deposit
(SendFund = false), so it waits, saying so in the sector's state; `damocles util sealer actor
add-balance` sends 1 FIL through the node (a plain Send), and the PreCommit lands and the
sector is proven; `withdraw` then takes 0.1 FIL back to the owner through the node."""

import json
from dataclasses import replace

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.devnet_api import worker_address
from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, worker_toml
from .conftest import read_line
from .test_money_e2e import cli, until
from .test_worker_e2e import start

pytestmark = pytest.mark.timeout(300)
P2K = seal_proof("StackedDrg2KiBV1_1")


def test_precommit_waits_for_funds_then_lands_after_add_balance_through_the_node(tmp_path):
    chain_home = tmp_path / "devnet"
    chain_home.mkdir()
    empty = Devnet(chain_home / "devnet.db", replace(ChainPolicy(), genesis_miner_balance=0))
    empty.create_miner(1000, P2K.id)        # the miner actor with nothing in it (its worker is funded)
    empty.close()
    devnet = start(["devnet", "serve", "--home", str(chain_home), "--listen", "127.0.0.1:0",
                    "--miner", "1000:StackedDrg2KiBV1_1", "--block-time", "0.1"])
    procs = [devnet]
    try:
        line = read_line(devnet, 60, "the API info line").strip()
        assert line.startswith("FULLNODE_API_INFO="), devnet.stderr.read()
        api_info = line.split("=", 1)[1]
        node = LotusChain(LotusClient(parse_endpoint(api_info)))
        assert node.available_balance(1000) == 0

        home = tmp_path / "manager"
        home.mkdir()
        (home / "manager.toml").write_text(manager_toml(
            1, 1, 1, "1s", block_time="100ms", config={"Common": {"API": {"Chain": api_info}}},
            miner={"Commitment": {"Pre": {"SendFund": False}, "Prove": {"SendFund": False}}}))
        (home / "persist-1").mkdir()
        manager = start(["manager", "run", "--home", str(home)])
        procs.append(manager)
        line = read_line(manager)
        assert line.startswith("listening on "), manager.stderr.read()
        assert not (home / "devnet.db").exists()          # the node is the chain
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
        assert row["MessageInfo"]["PreCommitCid"] is None
        number = row["ID"]["Number"] if "ID" in row else row["SectorID"]["Number"]
        assert node.precommit(1000, number) is None
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "1000", "balance")
        assert code == 0 and out.splitlines()[0] == "balance: 0", (out, err)

        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "f01000", "add-balance",
                             worker_address(1000), "1 FIL")
        assert code == 0 and "landed at height" in out and "exit code 0" in out, (out, err)
        assert node.balance("f01000") == 10 ** 18

        until("sector proven", lambda: node.sector(1000, number), 180, worker)
        [row] = admin.call("Venus.ListSectors", "", 0)
        assert not row.get("FundsWait")
        pre = row["MessageInfo"]["PreCommitCid"]["/"]
        assert node.receipt(pre).ok and node.receipt(pre).gas_used > 0
        code, out, err = cli(url, admin_token, "util", "message", "search", pre)
        assert code == 0 and "State: OnChainMsg" in out and "ExitCode: 0" in out, (out, err)
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "1000", "balance", "--json")
        assert code == 0, err
        b = json.loads(out)
        assert int(b["Balance"]) == 10 ** 18 and 0 < int(b["Available"]) < 10 ** 18      # the pledge is locked
        assert int(b["Available"]) == node.available_balance(1000)
        worker_before = node.balance(worker_address(1000))
        code, out, err = cli(url, admin_token, "util", "sealer", "actor", "--miner", "1000", "withdraw", "0.1 FIL",
                             "--confidence", "1")
        assert code == 0 and out.startswith("Requested rewards withdrawal in message bafy") and "Successfully withdrew" in out, (out, err)
        assert node.available_balance(1000) == int(b["Available"]) - 10 ** 17
        assert node.balance(worker_address(1000)) > worker_before          # the owner (the worker here) got it, less gas
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
