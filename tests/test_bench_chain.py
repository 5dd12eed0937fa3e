"""bench chain: one run seals through the devnet's Lotus API and in process, and reports each
way's chain calls per sector, counted at the client, and its sealing rate (its JSON, not its speed)."""

import json

import pytest

from appliance.bench.chain import CallCounter

from .conftest import run_cli

pytestmark = pytest.mark.timeout(300)


def test_bench_chain_reports_calls_and_rates_both_ways():
    p = run_cli("bench", "chain", "--sectors", "2", "--threads", "2", "--json", check=True)
    r = json.loads(p.stdout)
    api, local = r["lotus_api"], r["in_process"]
    assert api["sectors"] == local["sectors"] == 2 and r["size"] == "2KiB"
    # through the API every call is a Lotus JSON-RPC method (and the devnet's answer to whether it
    # takes the engine's aggregate, asked once); each sector's PreCommit and proof were sent
    assert all(m.startswith("Filecoin.") for m in api["calls"] if m != "Devnet.TakesBuiltinAggregate"), api["calls"]
    assert api["calls"].get("Devnet.TakesBuiltinAggregate", 0) <= 1
    assert api["calls"]["Filecoin.MpoolPushMessage"] >= 2 and api["calls"]["Filecoin.ChainHead"] > 0
    assert api["calls"]["Filecoin.StateGetRandomnessDigestFromTickets"] >= 2     # a ticket per sector
    # in process the Chain interface's own methods are counted, none of Lotus'
    assert not any(m.startswith("Filecoin.") for m in local["calls"]) and local["calls"]["push_message"] >= 1
    for x in (api, local):
        assert x["calls_per_sector_total"] == pytest.approx(sum(x["calls"].values()) / 2, abs=0.01)
        assert x["calls_per_sector"] == {m: round(n / 2, 2) for m, n in x["calls"].items()}
        assert x["sectors_per_hour"] == pytest.approx(2 * 3600 / x["seconds"], rel=0.01)
    assert r["lotus_api_vs_in_process"] == pytest.approx(api["sectors_per_hour"] / local["sectors_per_hour"], abs=1e-4)


def test_bench_chain_refuses_bad_arguments():
    p = run_cli("bench", "chain", "--sectors", "0")
    assert p.returncode == 2 and "--sectors must be at least 1, got 0" in p.stderr


def test_call_counter_counts_the_chain_interface_in_process(tmp_path):
    from types import SimpleNamespace

    from appliance.chain.devnet import Devnet
    from appliance.chain.policy import ChainPolicy
    devnet = Devnet(tmp_path / "d.db", ChainPolicy(block_time=0))
    try:
        counter = CallCounter()
        counter.attach(SimpleNamespace(chain=devnet))
        devnet.head()
        devnet.head()
        devnet.advance(1)           # the devnet's own administration: not a Chain call
        assert dict(counter.counts) == {"head": 2}
    finally:
        devnet.close()
