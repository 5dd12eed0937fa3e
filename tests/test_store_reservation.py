"""Venus.StoreReserveSpace: a sector waiting for a persist store says why (its record, `util
sectors list`, the status page's rows, the log), a store the manager does not know is an error
the worker sees, and the wait ends on its own when space returns."""

import json
import logging

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.manager.cli_util import _why
from appliance.manager.config import parse_config
from appliance.manager.sealer import STORE_WAIT_LOG_EVERY, Sealer
from appliance.manager.state import ManagerState
from appliance.rpc import INVALID_PARAMS, RPCError
from appliance.web.views import WebViews

from .conftest import run_cli
from .manager_driver import ManagerProc

P2K = seal_proof("StackedDrg2KiBV1_1")


@pytest.fixture
def sealer(tmp_path):
    (tmp_path / "ps-a").mkdir()
    (tmp_path / "ps-b").mkdir()
    cfg = parse_config({"Common": {"PersistStores": [{"Name": "ps-a", "Path": str(tmp_path / "ps-a")},
                                                     {"Name": "ps-b", "Path": str(tmp_path / "ps-b"), "ReadOnly": True}]},
                        "Miners": [{"Actor": 1000}]})
    chain = Devnet(tmp_path / "d.db", ChainPolicy(block_time=0))
    chain.create_miner(1000, P2K.id)
    clock = [1000.0]
    state = ManagerState(tmp_path / "m.db", now=lambda: clock[0])
    s = Sealer(cfg, state, chain, now=lambda: clock[0])
    yield s, state, clock
    state.close()


def _listed(sealer, number):
    return next(r for r in sealer.list_sectors() if r["ID"]["Number"] == number)


def test_a_store_the_manager_does_not_know_is_an_error_and_shows(sealer, caplog):
    s, state, _ = sealer
    sid = s.allocate_sector({})["ID"]
    with caplog.at_level(logging.WARNING, logger="damocles.manager.sectors"):
        with pytest.raises(RPCError) as info:
            s.store_reserve_space(sid, 4096, ["ps-old"])
    assert info.value.code == INVALID_PARAMS
    assert "ps-old" in info.value.message and "it has: ps-a, ps-b" in info.value.message
    row = _listed(s, sid["Number"])
    assert "none of the worker's persist stores (ps-old)" in row["StoreWait"]
    assert _why(row).startswith("persist store: none of the worker's persist stores (ps-old)")
    assert any("waiting for a persist store" in r.getMessage() and "ps-old" in r.getMessage() for r in caplog.records)


def test_no_room_says_why_logs_without_flooding_and_clears_when_space_returns(sealer, caplog):
    s, state, clock = sealer
    sid = s.allocate_sector({})["ID"]
    huge = 1 << 60
    with caplog.at_level(logging.WARNING, logger="damocles.manager.sectors"):
        assert s.store_reserve_space(sid, huge, []) is None
        assert s.store_reserve_space(sid, huge, []) is None          # a worker polling: no second log line yet
        clock[0] += STORE_WAIT_LOG_EVERY
        assert s.store_reserve_space(sid, huge, []) is None          # a reminder once the interval has passed
    waits = [r.getMessage() for r in caplog.records if "waiting for a persist store" in r.getMessage()]
    assert len(waits) == 2
    why = state.sector(1000, sid["Number"])["store_wait"]
    assert why.startswith("no persist store has room: ps-a has ")
    assert "needs 1048576.0 TiB" in why and "ps-b is read-only" in why
    assert "ps-a has" in _listed(s, sid["Number"])["StoreWait"]
    page = WebViews(state, s, s.chain, None, s.config, now=lambda: clock[0]).sectors()["Live"]
    assert [r["StoreWait"] for r in page] == [why]                   # the status page's pipeline shows it
    assert s.store_reserve_space(sid, huge, ["ps-a", "ps-gone"]) is None
    assert "ps-gone is not one of the manager's persist stores" in state.sector(1000, sid["Number"])["store_wait"]
    got = s.store_reserve_space(sid, 4096, [])                         # room again (a smaller need stands in for freed space)
    assert got["Name"] == "ps-a"
    rec = state.sector(1000, sid["Number"])
    assert "store_wait" not in rec and rec["reserved_store"] == "ps-a" and state.reservation(1000, sid["Number"]) == ("ps-a", 4096)
    assert _listed(s, sid["Number"])["StoreWait"] is None


def test_a_held_reservation_is_kept_and_not_counted_against_itself(sealer):
    s, state, _ = sealer
    sid = s.allocate_sector({})["ID"]
    assert s.store_reserve_space(sid, 4096, ["ps-a"])["Name"] == "ps-a"
    assert s.store_reserve_space(sid, 4096, ["ps-a"])["Name"] == "ps-a"
    assert state.reserved("ps-a") == 4096


def test_the_worker_sees_the_unknown_store_error_and_sectors_list_shows_it(tmp_path):
    m = ManagerProc(tmp_path / "manager")
    try:
        sid = m.call("Venus.AllocateSector", {})["ID"]
        with pytest.raises(RPCError, match=r"none of the worker's persist stores \(persist-renamed\).*it has: persist-1"):
            m.call("Venus.StoreReserveSpace", sid, 4096, ["persist-renamed"])
        api = m.rpc.url[: -len("/rpc/v0")]
        common = ["--api", api, "--home", str(m.home)]
        text = run_cli("util", "sectors", "list", *common, check=True).stdout
        assert "WAITING FOR" in text and "persist store: none of the worker's persist stores (persist-renamed)" in text
        listed = json.loads(run_cli("util", "sectors", "list", *common, "--json", check=True).stdout)["sectors"]
        assert "persist-renamed" in listed[0]["StoreWait"]
    finally:
        m.stop()
