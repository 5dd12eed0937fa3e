"""Crash safety of the manager: for every declared crash point, the manager is killed exactly
there while sectors go through it, restarted, and the sectors finish with nothing lost (every
allocated number still known) and nothing sent twice (each sector in exactly one PreCommit and
one successful ProveCommit message on the chain)."""

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.crash import POINTS

from .manager_driver import ManagerProc, drive_sectors



@pytest.mark.parametrize("point", sorted(p for p in POINTS if p.startswith("manager.")))
def test_manager_survives_crash_point(point, tmp_path):
    m = ManagerProc(tmp_path / "manager", crash_at=point)
    try:
        done = drive_sectors(m, 4, tmp_path / "work")
        listed = m.call("Venus.ListSectors", "", 0)
    finally:
        m.stop()
    assert m.crashes == 1, f"the crash point {point} was never reached"
    numbers = [s["ID"]["Number"] for s in listed]
    assert numbers == list(range(1, len(numbers) + 1))               # no allocation lost
    chain = Devnet(m.home / "devnet.db", ChainPolicy(block_time=0))
    msgs = [x for x in chain.messages(1000)]
    for sid in done:
        n = sid["Number"]
        pre = [x for x in msgs if x["method"] == "PreCommitSectorBatch2"
               and any(s["SectorNumber"] == n for s in x["params"]["Sectors"])]
        prove = [x for x in msgs if x["method"] == "ProveCommitSectors3" and x["exit_code"] == 0
                 and n in [a["SectorNumber"] for a in x["params"]["SectorActivations"]]]
        assert len(pre) == 1 and pre[0]["exit_code"] == 0, (n, pre)
        assert len(prove) == 1, (n, prove)
        assert chain.sector(1000, n) is not None
    chain.close()
