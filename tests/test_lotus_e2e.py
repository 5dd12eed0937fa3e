"""Real processes: `damocles devnet serve` (the devnet's Filecoin API) and `damocles manager run`
with `[Common.API] Chain` pointing at it, a sector driven through the manager's RPC as a worker
does. The manager has no devnet of its own: every chain read and message goes through LotusChain
over HTTP, the devnet's clock moving on its own (BlockTime 100ms)."""

import base64
import shutil
import subprocess
import time

import pytest

from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.cid import commr_to_cid
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import write_manager_config
from .conftest import ROOT, damocles_cmd, read_line

P2K = seal_proof("StackedDrg2KiBV1_1")


def _start(args, what):
    proc = subprocess.Popen(damocles_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, read_line(proc, 60, what).strip()


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _until(what, fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.1)          # the devnet's clock moves on its own; bounded by the deadline
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.mark.timeout(240)
def test_manager_seals_and_proves_through_the_devnet_api(tmp_path):
    devnet, line = _start(["devnet", "serve", "--home", str(tmp_path / "devnet"), "--listen", "127.0.0.1:0",
                           "--miner", "1000:StackedDrg2KiBV1_1", "--block-time", "0.1"], "the API info line")
    manager = None
    try:
        assert line.startswith("FULLNODE_API_INFO="), line
        api_info = line.split("=", 1)[1]
        home = tmp_path / "manager"
        write_manager_config(home, 2, 1, 1, config={"Common": {"API": {"Chain": api_info}}})
        (home / "persist-1").mkdir()
        manager, line = _start(["manager", "run", "--home", str(home)], "its listening line")
        assert line.startswith("listening on "), line
        assert not (home / "devnet.db").exists()          # no embedded chain: the node is the chain
        rpc = RPCClient(line.split()[-1], issue_token(load_or_create_secret(home / "secret"), "write"), timeout=30)

        alloc = _until("an allocation", lambda: rpc.call("Venus.AllocateSector", {}))
        sid = alloc["ID"]
        ticket = rpc.call("Venus.AssignTicket", sid)
        r = seal_sector(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32,
                        tmp_path / "work")
        info = {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket}
        assert rpc.call("Venus.SubmitPreCommit", alloc, info, False)["Res"] == 1
        _until("PreCommit landed", lambda: rpc.call("Venus.PollPreCommitState", sid)["State"] == 3)
        name = f"s-t0{sid['Miner']}-{sid['Number']}"
        assert rpc.call("Venus.StoreReserveSpace", sid, 4096, [])["Name"] == "persist-1"
        (home / "persist-1" / "sealed").mkdir(exist_ok=True)
        shutil.copy(r.sector_dir / "sealed", home / "persist-1" / "sealed" / name)
        shutil.copytree(r.sector_dir / "cache", home / "persist-1" / "cache" / name, dirs_exist_ok=True)
        assert rpc.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is True
        seed = _until("the seed", lambda: rpc.call("Venus.WaitSeed", sid, P2K.id)["Seed"])
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        c1 = seal_commit_phase1(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]),
                                base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                                r.sector_dir / "sealed")
        proof = base64.b64encode(seal_commit_phase2(c1)).decode()
        assert rpc.call("Venus.SubmitProof", sid, {"Proof": proof}, False)["Res"] == 1
        _until("the proof landed", lambda: rpc.call("Venus.PollProofState", sid)["State"] == 3)
        rpc.call("Venus.ReportFinalized", sid)

        chain = LotusChain(LotusClient(parse_endpoint(api_info)))
        on_chain = chain.sector(1000, sid["Number"])
        assert on_chain is not None and on_chain.sealed_cid == commr_to_cid(r.comm_r)
        assert chain.highest_sector_number(1000) == sid["Number"]

        # restarted, the manager checks its state against the node (StateMinerAllocated) and serves on
        _stop(manager)
        manager, line = _start(["manager", "run", "--home", str(home)], "its listening line after a restart")
        assert line.startswith("listening on "), line
    finally:
        for p in (manager, devnet):
            if p is not None:
                _stop(p)
    assert devnet.returncode == 0, devnet.stderr.read()
