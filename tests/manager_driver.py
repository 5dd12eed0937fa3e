"""A manager process on loopback, and a worker-like driver that takes sectors through it over
HTTP with the builtin engine. The driver retries a call that got no answer, as a worker does
(transport errors are temporary); when the manager died at a crash point it is restarted."""

import base64
import os
import shutil
import subprocess
import time

from appliance.core.crash import EXIT_CODE
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import seal_commit_phase2
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.seal import seal_sector
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient, TransportError

from .configs import manager_toml
from .conftest import ROOT, damocles_cmd, read_line

P2K = seal_proof("StackedDrg2KiBV1_1")
CONFIG = manager_toml(None, 3, 4, "60s", block_time="0s", check_interval="50ms", miner={"SealProof": "StackedDrg2KiBV1_1"})


class ManagerProc:
    def __init__(self, home, crash_at=None):
        self.home, self.crash_at = home, crash_at
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "manager.toml").exists():
            (home / "manager.toml").write_text(CONFIG)
            (home / "persist-1").mkdir()
        self.crashes = 0
        self.proc = None
        self.start()

    def start(self):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DAMOCLES_CRASH_AT", None)
        if self.crash_at and not self.crashes:
            env["DAMOCLES_CRASH_AT"] = self.crash_at
        self.proc = subprocess.Popen(damocles_cmd("manager", "run", "--home", str(self.home)),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
        line = read_line(self.proc)
        assert line.startswith("listening on "), line
        url = line.split()[-1]
        secret = load_or_create_secret(self.home / "secret")
        self.rpc = RPCClient(url, issue_token(secret, "write"), timeout=30)
        self.admin = RPCClient(url, issue_token(secret, "admin"), timeout=30)

    def open_state(self):
        """The home's state as its manager keeps it: manager.db, or the database its config names."""
        from appliance.manager.config import load_config
        from appliance.manager.state import ManagerState
        return ManagerState(self.home / "manager.db", store=load_config(self.home / "manager.toml").db)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def _call(self, client_name, method, *params):
        for _ in range(3):
            try:
                return getattr(self, client_name).call(method, *params)
            except TransportError:
                code = self.proc.wait(timeout=20)          # it died: it must have been the crash point
                assert code == EXIT_CODE, f"manager exited with {code}, not at a crash point"
                self.crashes += 1
                self.start()
        raise AssertionError(f"{method}: manager keeps dying")

    def call(self, method, *params):
        return self._call("rpc", method, *params)

    def admin_call(self, method, *params):
        return self._call("admin", method, *params)

    def until(self, what, fn, attempts=400):
        for _ in range(attempts):
            out = fn()
            if out:
                return out
            self.admin_call("Venus.DevnetAdvance", 1)
            time.sleep(0.01)   # give the batching thread its turn; bounded loop
        raise AssertionError(f"timed out waiting for {what}")


def drive_sectors(m: ManagerProc, count: int, work) -> list[dict]:
    """Take `count` CC sectors from allocation to Finished; returns their SectorIDs."""
    return prove_sectors(m, precommit_sectors(m, count, work))


def precommit_sectors(m: ManagerProc, count: int, work) -> list[tuple]:
    """Take `count` CC sectors from allocation to a landed PreCommit; returns (SectorID, sealing
    result, ticket) of each, for prove_sectors."""
    m.admin_call("Venus.DevnetAdvance", 5)
    sectors = []
    for _ in range(count):
        alloc = m.call("Venus.AllocateSector", {})
        sid = alloc["ID"]
        ticket = m.call("Venus.AssignTicket", sid)
        r = seal_sector(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, work)
        info = {"CommR": list(r.comm_r), "CommD": list(r.comm_d), "Ticket": ticket}
        assert m.call("Venus.SubmitPreCommit", alloc, info, False)["Res"] in (1, 2)
        sectors.append((sid, r, ticket))
    for sid, _, _ in sectors:
        m.until("PreCommit landed", lambda: m.call("Venus.PollPreCommitState", sid)["State"] == 3)
    return sectors


def prove_sectors(m: ManagerProc, sectors: list[tuple]) -> list[dict]:
    """Persist, prove and finalize sectors whose PreCommit landed; returns their SectorIDs."""
    for sid, r, ticket in sectors:
        name = f"s-t0{sid['Miner']}-{sid['Number']}"
        store = m.call("Venus.StoreReserveSpace", sid, 4096, [])
        dest = m.home / "persist-1"
        assert store["Name"] == "persist-1"
        (dest / "sealed").mkdir(exist_ok=True)
        shutil.copy(r.sector_dir / "sealed", dest / "sealed" / name)
        shutil.copytree(r.sector_dir / "cache", dest / "cache" / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("sc-02-data-layer-*", "sc-02-data-tree-c*", "sc-02-data-tree-d*"))
        assert m.call("Venus.SubmitPersistedEx", sid, "persist-1", False) is True
        seed = m.until("seed", lambda: m.call("Venus.WaitSeed", sid, P2K.id)["Seed"])
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        c1 = seal_commit_phase1(P2K, SectorID(sid["Miner"], sid["Number"]), base64.b64decode(ticket["Ticket"]),
                                base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                                r.sector_dir / "sealed")
        proof = base64.b64encode(seal_commit_phase2(c1)).decode()
        assert m.call("Venus.SubmitProof", sid, {"Proof": proof}, False)["Res"] in (1, 2)
    for sid, _, _ in sectors:
        m.until("proof landed", lambda: m.call("Venus.PollProofState", sid)["State"] == 3)
        m.call("Venus.ReportFinalized", sid)
    return [sid for sid, _, _ in sectors]
