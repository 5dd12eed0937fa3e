"""`damocles util sealer actor balance|add-balance|withdraw` and `util message wait|search` against
a live manager (its RPC on loopback, the devnet's clock running at 50 ms epochs): what they print
(damocles 4235a895 cmd/damocles-manager/internal/util_sealer_actor.go, util_message.go), what they
change on the chain, and how bad input is refused."""

import json

import pytest

from appliance import cli
from appliance.chain.devnet_api import worker_address
from appliance.chain.money import FIL
from appliance.manager.service import ManagerService, init_home

from .configs import manager_toml

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def farm(tmp_path):
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="50ms", miner={"PoSt": {"Enabled": False}},
                                 config={"Chain": {"GenesisMinerBalance": "2 FIL"}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    yield svc, f"{host}:{port}", home
    svc.stop()


def run(farm, capsys, *args, json_out=False):
    _, listen, home = farm
    rc = cli.main(["util", "--listen", listen, *args, "--home", str(home), *(["--json"] if json_out else [])])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if json_out and rc == 0 else out.out), out.err


def test_balance_add_balance_withdraw_and_messages(farm, capsys):
    svc, _, _ = farm
    rc, out, err = run(farm, capsys, "sealer", "actor", "--miner", "f01000", "balance")
    assert rc == 0 and out.splitlines()[:2] == ["balance: 2 FIL", "available: 2 FIL"], (out, err)
    # the worker as the chain's MinerInfo names it: through the devnet's Lotus API an ID address,
    # f0<1e9 + actor> (the in-process devnet's account name "f01000-worker" is no Filecoin address)
    assert f"worker {worker_address(1000)}: 10000 FIL" in out

    rc, out, err = run(farm, capsys, "sealer", "actor", "add-balance", "--miner", "1000", worker_address(1000), "0.5")
    assert rc == 0 and "landed at height" in out and "exit code 0" in out, (out, err)
    assert svc.devnet.balance("f01000") == 25 * FIL // 10
    msg = out.split()[1].rstrip(":")
    rc, out, _ = run(farm, capsys, "message", "search", msg)
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "State: OnChainMsg" and lines[1] == f"Cid: {msg}" and "ExitCode: 0" in lines
    assert any(line.startswith("gas_used: ") and int(line.split()[1]) > 0 for line in lines)
    rc, m, _ = run(farm, capsys, "message", "wait", msg, "--confidence", "2", json_out=True)
    assert rc == 0 and m["Confidence"] >= 2 and m["Receipt"]["ExitCode"] == 0

    rc, out, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "withdraw", "1 FIL", "--confidence", "1")
    assert rc == 0, err
    assert out.startswith("Requested rewards withdrawal in message bafy") and "waiting for 1 epochs for confirmation.." in out
    assert "Successfully withdrew up to 1 FIL" in out
    assert svc.devnet.balance("f01000") == 15 * FIL // 10
    [row] = [r for r in svc.state.sent_since(0) if r["method"] == "WithdrawBalance"]     # through the outbox, with its nonce
    assert row["kind"] == "withdraw" and row["params"] == {"AmountRequested": str(FIL)}

    rc, b, _ = run(farm, capsys, "sealer", "actor", "--miner", "1000", "balance", json_out=True)
    assert rc == 0 and b["Balance"] == str(15 * FIL // 10) and b["PreCommitDeposits"] == "0"


def test_bad_input_is_refused_naming_it(farm, capsys):
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "add-balance", worker_address(1000), "lots")
    assert rc != 0 and "amount" in err and "'lots' is not an amount of FIL" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "add-balance", "f01000-worker", "1")
    assert rc != 0 and "from: address 'f01000-worker'" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "withdraw", "3 FIL")
    assert rc != 0 and "can't withdraw more funds than available" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "add-balance", "f0999", "1")
    assert rc != 0 and "not enough funds in f0999" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "balance")
    assert rc != 0 and "--miner" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "77", "balance")
    assert rc != 0 and "f077 not found" in err
    rc, _, err = run(farm, capsys, "message", "search", "bafynope")
    assert rc != 0 and "bafynope not found" in err
    rc, _, err = run(farm, capsys, "sealer", "actor", "--miner", "1000", "withdraw", "--beneficiary")
    assert rc != 0 and "one key" in err
