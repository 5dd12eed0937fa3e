"""Kill tests of terminate and remove: a child process runs the manager's terminate pass (or a
removal) over the same manager.db and devnet.db and is killed at a crash point (core/crash.py);
a second process then restarts from the files. The TerminateSectors message lands exactly once,
and a removal deletes exactly the journalled files of its sector, nothing else."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.core.crash import ENV, EXIT_CODE
from appliance.core.sector import sector_name

from .term_fixtures import MINER, onboard, open_farm, tree

ROOT = Path(__file__).resolve().parent.parent
STEP = """
import sys
from pathlib import Path
from tests.term_fixtures import MINER, open_farm
from appliance.manager.sector_removal import remove_sector_files, resume_removals
farm = open_farm(Path(sys.argv[1]))
try:
    if sys.argv[2] == "terminate":
        farm.tick()
    elif sys.argv[2] == "remove":
        remove_sector_files(farm.config, farm.state, farm.chain, MINER, int(sys.argv[3]))
    elif sys.argv[2] == "restart":           # what a manager start and its loops do
        resume_removals(farm.state)
        farm.tick()
        farm.chain.advance(farm.chain.policy.message_delay + 2)
        farm.tick()
finally:
    farm.close()
"""


def step(tmp_path, *args, crash: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash:
        env[ENV] = crash
    return subprocess.run([sys.executable, "-c", STEP, str(tmp_path), *map(str, args)], cwd=ROOT, env=env,
                          timeout=120).returncode


@pytest.mark.parametrize("point", ["manager.commit.before_push", "manager.commit.after_push",
                                   "lifecycle.terminate.after_send"])
def test_a_manager_killed_while_sending_a_termination_sends_it_exactly_once(tmp_path, point):
    farm = open_farm(tmp_path)
    numbers = onboard(farm, 2)
    for n in numbers:
        farm.terminator.submit({"Miner": MINER, "Number": n})
    farm.close()
    assert step(tmp_path, "terminate", crash=point) == EXIT_CODE
    farm = open_farm(tmp_path)
    sent = [m for m in farm.chain.messages(MINER) if m["method"] == "TerminateSectors"]
    assert len(sent) == (0 if point == "manager.commit.before_push" else 1)
    unrecorded = point in ("manager.commit.before_push", "manager.commit.after_push")    # the outbox lacks its id
    assert [r["kind"] for r in farm.state.unsent()] == (["terminate"] if unrecorded else [])
    farm.close()
    assert step(tmp_path, "restart") == 0
    farm = open_farm(tmp_path)
    try:
        [msg] = [m for m in farm.chain.messages(MINER) if m["method"] == "TerminateSectors"]
        assert farm.chain.receipt(msg["id"]).ok
        for n in numbers:
            t = farm.state.sector(MINER, n)["terminate"]
            assert (t["msg"], t["terminated_at"]) == (msg["id"], farm.chain.receipt(msg["id"]).epoch)
            assert farm.chain.sector_expiration(MINER, n) is None
    finally:
        farm.close()


@pytest.mark.parametrize("point", ["lifecycle.remove.after_journal", "lifecycle.remove.mid_files"])
def test_a_manager_killed_mid_removal_finishes_exactly_that_removal(tmp_path, point):
    farm = open_farm(tmp_path)
    a, b = onboard(farm, 2)
    store = farm.config.persist_stores[0].path
    farm.state.update(MINER, a, abort_reason="by hand")
    farm.chain.advance(1)
    farm.terminator.submit({"Miner": MINER, "Number": a})
    farm.terminator.submit({"Miner": MINER, "Number": b})
    farm.tick()
    farm.chain.advance(farm.chain.policy.message_delay + 12)
    farm.tick()
    before = tree(store)
    farm.close()
    assert step(tmp_path, "remove", a, crash=point) == EXIT_CODE
    left = tree(store)
    assert set(left) <= set(before)
    if point == "lifecycle.remove.mid_files":
        assert left != before            # some went, not all
    assert step(tmp_path, "restart") == 0
    farm = open_farm(tmp_path)
    try:
        assert farm.state.sector(MINER, a)["removed"] is True
        assert not farm.state.sector(MINER, b).get("removed")
        after = tree(store)
        assert set(after) == {k for k in before if sector_name(MINER, a) not in k}
        assert all(after[k] == before[k] for k in after)
    finally:
        farm.close()


# --------------------------------------------------------------- the manager process itself

def manager_with_sectors(tmp_path, numbers=(1, 2, 3)):
    """A `damocles manager run` whose miner has `numbers` proven on the devnet, finalized in its
    state, their files in persist-1; stopped, so that a test restarts it with a crash point."""
    from appliance.chain.devnet import Devnet
    from appliance.chain.policy import ChainPolicy
    from appliance.chain.types import SectorOnChain
    from appliance.proofs.cid import commd_to_cid, commr_to_cid

    from .configs import manager_toml
    from .manager_driver import ManagerProc
    from .term_fixtures import write_files
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(manager_toml(None, block_time="0s", check_interval="50ms", miner={
        "SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False},
        "Commitment": {"Terminate": {"Batch": {"Threshold": 2, "MaxWait": "1h0m0s", "CheckInterval": "50ms"}}}}))
    (home / "persist-1").mkdir()
    m = ManagerProc(home)
    m.stop()
    chain, state = Devnet(home / "devnet.db", ChainPolicy(block_time=0)), m.open_state()
    try:
        for n in numbers:
            assert state.allocate(MINER, 5, 1, None) == n
            state.update(MINER, n, state="Finished", finalized=True, persisted="persist-1")
            write_files(home / "persist-1", n)
            with chain._tx():
                chain.put_sector(SectorOnChain(MINER, n, 5, commr_to_cid(bytes([n]) * 32), commd_to_cid(bytes(32)), 1, 10**6))
                chain.assign_deadlines(MINER, [n])
    finally:
        state.close()
        chain.close()
    return m


@pytest.mark.parametrize("point", ["manager.commit.before_push", "lifecycle.terminate.after_send"])
def test_the_manager_process_killed_while_terminating_lands_it_once(tmp_path, point):
    from appliance.chain.devnet import Devnet
    from appliance.chain.policy import ChainPolicy
    m = manager_with_sectors(tmp_path)
    m.crash_at, m.crashes = point, 0
    m.start()
    try:
        for n in (1, 2):
            assert m.admin_call("Venus.TerminateSector", {"Miner": MINER, "Number": n}) == {"Res": 1, "Desc": None}
        info = m.until("TerminatedAt", lambda: (i := m.admin_call("Venus.PollTerminateSectorState",
                                                                   {"Miner": MINER, "Number": 1}))["TerminatedAt"] and i)
    finally:
        m.stop()
    assert m.crashes == 1, f"the crash point {point} was never reached"
    chain = Devnet(m.home / "devnet.db", ChainPolicy(block_time=0))
    try:
        sent = [x for x in chain.messages(MINER) if x["method"] == "TerminateSectors"]
        assert len(sent) == 1 and sent[0]["exit_code"] == 0 and info["TerminateCid"] is not None      # its API names it by another CID
        assert [chain.sector_expiration(MINER, n) is None for n in (1, 2, 3)] == [True, True, False]
    finally:
        chain.close()


def test_the_manager_process_killed_mid_removal_finishes_it_at_start(tmp_path):
    m = manager_with_sectors(tmp_path)
    store = m.home / "persist-1"
    m.start()
    try:           # 1 and 2 terminated on chain, past WinningPoSt's lookback
        for n in (1, 2):
            m.admin_call("Venus.TerminateSector", {"Miner": MINER, "Number": n})
        m.until("TerminatedAt", lambda: m.admin_call("Venus.PollTerminateSectorState", {"Miner": MINER, "Number": 1})
                ["TerminatedAt"])
        m.admin_call("Venus.DevnetAdvance", 10)
    finally:
        m.stop()
    before = tree(store)
    m.crash_at, m.crashes = "lifecycle.remove.mid_files", 0
    m.start()
    try:
        assert m.admin_call("Venus.RemoveSector", {"Miner": MINER, "Number": 1}) is None   # died mid-way, restarted, finished
        removed = [m.admin_call("Venus.FindSectorInAllStates", {"Miner": MINER, "Number": n})["Removed"] for n in (1, 2, 3)]
    finally:
        m.stop()
    assert m.crashes == 1 and removed == [True, False, False]
    after = tree(store)
    assert set(after) == {k for k in before if sector_name(MINER, 1) not in k} and all(after[k] == before[k] for k in after)
