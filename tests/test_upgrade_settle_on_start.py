"""A snap-up whose message landed while the manager was down settles when the manager starts, not
one housekeeping interval (60 s) later: in the slow kill campaign the manager never lived 60 s,
so a submitted upgrade stayed 'submitted' although its message had executed."""

import time

import pytest

from appliance.manager.service import ManagerService, init_home

from .configs import manager_toml

pytestmark = pytest.mark.timeout(120)


def test_an_upgrade_whose_message_landed_while_the_manager_was_down_settles_at_start(tmp_path):
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}}))
    svc = ManagerService(home)
    svc.start("127.0.0.1:0")
    number = svc.state.allocate(1000, 5, 1, None)
    # sent as the manager sends, through its chain (LotusChain to the devnet's API): an id the chain knows
    message = svc.chain.push_message(1000, "ProveReplicaUpdates3", {
        "SectorUpdates": [], "SectorProofs": [], "AggregateProof": "", "UpdateProofsType": 0, "AggregateProofType": None,
        "RequireActivationSuccess": True, "RequireNotificationSuccess": True})
    with svc.state.tx() as db:
        db.execute("INSERT INTO snap_candidates (miner, number, state, worker, message, created, updated) "
                   "VALUES (1000, ?, 'submitted', 'name:w1', ?, 0, 0)", (number, message))
    svc.stop()
    restarted = ManagerService(home)
    restarted.devnet.advance(10)                       # the message executes while no manager runs
    assert restarted.chain.receipt(message) is not None
    restarted.start("127.0.0.1:0")
    try:
        deadline = time.monotonic() + 15              # well inside the 60 s housekeeping interval
        while restarted.state.one("SELECT state FROM snap_candidates")[0] == "submitted" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert restarted.state.one("SELECT state FROM snap_candidates")[0] in ("landed", "failed")
    finally:
        restarted.stop()
