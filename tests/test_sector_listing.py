"""Sector listings at farm scale: Venus.ListSectorsPage (keyset pages on the indexed columns,
filters, Total and Counts), `util sectors list` and `util sealer sectors list` one page at a time,
and Venus.ListSectors' online listing read from the open index (never every sector ever sealed),
its offline one in batches."""

import json
import time

import pytest

from appliance import cli
from appliance.manager import api_cli
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import INVALID_PARAMS, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from .pg_cluster import pg_dsn, pg_server  # noqa: F401  (fixtures)
from .test_web import CONFIG

pytestmark = pytest.mark.timeout(120)
STATES = ("PC1Done", "PC2Done", "C2Done")


def _info(miner: int, number: int) -> dict:
    """Every 10th sector in flight (a third of those failing), the rest finished."""
    if number % 10:
        return {"state": "Finished", "worker": f"w{number % 3}", "finalized": True, "allocated_at": 1000.0}
    info = {"state": STATES[number % 3], "worker": f"w{number % 3}", "allocated_at": 1000.0}
    if number % 30 == 0:
        info["failure"] = {"Level": "perm", "Desc": "boom"}
    return info


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A manager (not started: only its RPC) with 1,200 sectors over miners 1000 and 1001."""
    home = tmp_path_factory.mktemp("listing") / "m"
    init_home(home, CONFIG)
    svc = ManagerService(home)
    svc.state.bulk_add_sectors((miner, n, 5, _info(miner, n), 1000.0) for miner in (1000, 1001) for n in range(1, 601))
    host, port = svc.rpc.serve("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    yield svc, url, RPCClient(url, issue_token(svc.secret, "read"))
    svc.rpc.shutdown()
    svc.poster.close()
    svc.close()


def expected(online=None, miner=None, state=None, worker=None, failing=False):
    out = []
    for m in (1000, 1001):
        for n in range(1, 601):
            i = _info(m, n)
            if ((online is None or online == (not i.get("finalized"))) and miner in (None, m) and state in (None, i["state"])
                    and worker in (None, i["worker"]) and (not failing or "failure" in i)):
                out.append({"Miner": m, "Number": n})
    return out


def walk(client, query: dict, limit: int) -> list[dict]:
    seen, after = [], None
    for _ in range(1000):       # bounded
        page = client.call("Venus.ListSectorsPage", {**query, "Limit": limit, **({"After": after} if after else {})})
        assert len(page["Sectors"]) <= limit and page["Total"] == len(expected(**{k.lower(): v for k, v in query.items()}))
        seen += [s["ID"] for s in page["Sectors"]]
        after = page["Next"]
        if after is None:
            return seen
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("query", [{}, {"Online": True}, {"Online": False}, {"Miner": 1001}, {"State": "PC2Done"},
                                   {"Worker": "w2", "Online": True}, {"Failing": True}, {"Online": False, "Miner": 1000}])
def test_pages_walk_every_matching_sector_once_in_order(farm, query):
    _, _, client = farm
    assert walk(client, query, 170) == expected(**{k.lower(): v for k, v in query.items()})


def test_a_page_carries_sector_states_and_counts_by_state(farm):
    svc, _, client = farm
    page = client.call("Venus.ListSectorsPage", {"Online": True})
    assert len(page["Sectors"]) == api_cli.LIST_PAGE and page["Next"] == page["Sectors"][-1]["ID"] == {"Miner": 1001, "Number": 400}
    first = page["Sectors"][0]
    assert first["ID"] == {"Miner": 1000, "Number": 10} and first["State"] == "PC2Done" and first["Finalized"] is False
    assert page["Counts"] == {"PC1Done": 40, "PC2Done": 40, "C2Done": 40} and page["Total"] == 120
    assert client.call("Venus.ListSectorsPage", {"Online": False, "Limit": 1})["Counts"] == {"Finished": 1080}
    assert client.call("Venus.ListSectorsPage", {"State": "Nope"}) == {"Sectors": [], "Next": None, "Total": 0,
                                                                          "Counts": {"PC1Done": 40, "PC2Done": 40,
                                                                                     "C2Done": 40, "Finished": 1080}}


@pytest.mark.parametrize("query, says", [({"Limit": 0}, "query.Limit: expected 1 to 1000, got 0"),
                                         ({"Limit": 1001}, "query.Limit: expected 1 to 1000, got 1001"),
                                         ({"Sate": "PC1Done"}, "query.Sate: not a filter"),
                                         ({"Online": "yes"}, "query.Online"),
                                         ({"After": {"Miner": 1000}}, "query.After.Number"),
                                         ("all", "query: expected an object")])
def test_bad_page_queries_are_refused_naming_what_is_wrong(farm, query, says):
    with pytest.raises(RPCError) as e:
        farm[2].call("Venus.ListSectorsPage", query)
    assert e.value.code == INVALID_PARAMS and says in e.value.message


def test_a_sector_a_task_holds_is_online_as_damocles_has_it(farm):
    """A finished sector being rebuilt is online (ListSectors and the pages agree), not offline."""
    svc, _, client = farm
    with svc.state.tx() as db:
        db.execute("INSERT INTO rebuild_tasks (miner, number, state, reason, created, updated) "
                   "VALUES (1000, 15, 'pending', 'lost', 0, 0)")
    try:
        online = [s["ID"] for s in client.call("Venus.ListSectors", "online", 0)]
        assert online == sorted(expected(online=True) + [{"Miner": 1000, "Number": 15}], key=lambda i: (i["Miner"], i["Number"]))
        assert walk_ids(client, {"Online": True}) == online
        assert {"Miner": 1000, "Number": 15} not in walk_ids(client, {"Online": False})
        page = client.call("Venus.ListSectorsPage", {"Online": True, "Limit": 3})
        assert [s["ID"]["Number"] for s in page["Sectors"]] == [10, 15, 20] and page["Sectors"][1]["NeedRebuild"] is True
        assert page["Total"] == 121
        assert client.call("Venus.ListSectorsPage", {"Online": False, "Limit": 1})["Total"] == 1079
    finally:
        with svc.state.tx() as db:
            db.execute("DELETE FROM rebuild_tasks")


def walk_ids(client, query):
    seen, after = [], None
    while True:
        page = client.call("Venus.ListSectorsPage", {**query, "Limit": 97, **({"After": after} if after else {})})
        seen += [s["ID"] for s in page["Sectors"]]
        if (after := page["Next"]) is None:
            return seen


def test_list_sectors_online_reads_the_open_index_and_offline_in_batches(farm, monkeypatch):
    svc, _, client = farm
    statements = []
    svc.state.db.set_trace(statements.append)
    try:
        online = client.call("Venus.ListSectors", "online", 0)
    finally:
        svc.state.db.set_trace(None)
    assert [s["ID"] for s in online] == expected(online=True)
    reads = [s for s in statements if "FROM sectors" in s]
    assert reads and all("is_open = 1" in s or "number = " in s for s in reads), reads      # never every sector
    monkeypatch.setattr(api_cli, "LIST_BATCH", 250)
    statements.clear()
    svc.state.db.set_trace(statements.append)
    try:
        offline = client.call("Venus.ListSectors", "offline", 0)
        both = client.call("Venus.ListSectors", "", 0)
    finally:
        svc.state.db.set_trace(None)
    assert [s["ID"] for s in offline] == expected(online=False)
    assert [s["ID"] for s in both] == expected()
    batches = [s for s in statements if "FROM sectors" in s and "LIMIT" in s]
    assert len(batches) == 1080 // 250 + 1 + 1200 // 250 + 1        # pages of 250, not one read of everything


def run(url, home, capsys, *args):
    rc = cli.main(["util", *args, "--api", url, "--home", str(home)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_cli_lists_a_page_at_a_time(farm, capsys):
    svc, url, _ = farm
    rc, out, err = run(url, svc.home, capsys, "sectors", "list", "--json")
    r = json.loads(out)
    assert rc == 0 and len(r["sectors"]) == 100 and r["Total"] == 1200 and r["Next"] == {"Miner": 1000, "Number": 100}
    rc, out, err = run(url, svc.home, capsys, "sectors", "list", "--online", "--miner", "f01001", "--state", "C2Done",
                       "--limit", "5", "--after", "1001-30")
    lines = out.splitlines()
    assert rc == 0 and [ln.split()[0] for ln in lines[1:6]] == [f"s-t01001-{n}" for n in (50, 80, 110, 140, 170)], out
    assert lines[6] == "5 shown of 20 matching; next page: --after s-t01001-170"
    assert lines[7] == "by state: C2Done 40, PC1Done 40, PC2Done 40"
    rc, out, err = run(url, svc.home, capsys, "sectors", "list", "--failing", "--worker", "w0", "--limit", "1000")
    assert rc == 0 and "40 shown of 40 matching" in out and "next page" not in out
    rc, out, err = run(url, svc.home, capsys, "sectors", "list", "--limit", "0")
    assert rc != 0 and "--limit: expected 1 to 1000, got 0" in err
    # Damocles' names: its output, one page; the next page's flag on stderr
    rc, out, err = run(url, svc.home, capsys, "sealer", "sectors", "list", "--miner", "1001", "--limit", "2")
    assert rc == 0 and out.startswith("Sectors:\ns-t01001-10:\n") and "s-t01001-20:" in out and out.rstrip().endswith("Count: 2")
    assert err.strip() == "2 shown of 60 matching; next page: --after s-t01001-20"
    rc, out, err = run(url, svc.home, capsys, "sealer", "sectors", "list", "--offline", "--after", "1001-598")
    assert rc == 0 and "s-t01001-599:" in out and "s-t01001-600:" not in out and out.rstrip().endswith("Count: 1")
    assert err == ""


def test_a_farm_sized_listing_page_is_fast(tmp_path):
    """100,000 sectors: a page of the online ones, or of a state among the finished ones, in well
    under a second (the indexes, not a scan of every record)."""
    home = tmp_path / "m"
    init_home(home, CONFIG)
    svc = ManagerService(home)
    try:
        svc.state.bulk_add_sectors((1000 + n // 10 % 10, n, 5, _info(1000, n), 1000.0) for n in range(1, 100_001))
        client = api_cli.CliAPI(svc)
        for query in ({"Online": True}, {"Online": True, "After": {"Miner": 1005, "Number": 50_000}},
                      {"Online": False, "After": {"Miner": 1009, "Number": 99_000}}):
            full = {k: query.get(k) for k in api_cli.SECTORS_QUERY}
            t = time.perf_counter()
            page = client.list_sectors_page(full)
            took = time.perf_counter() - t
            assert page["Sectors"] and took < 1.0, (query, took)
    finally:
        svc.poster.close()
        svc.close()


@pytest.fixture(params=["sqlite", "postgres"])
def driver_state(request, tmp_path):
    """A ManagerState on each store driver (PostgreSQL: a throwaway cluster, tests/pg_cluster.py)."""
    from appliance.manager.config import DBConfig
    from appliance.manager.state import ManagerState
    store = DBConfig() if request.param == "sqlite" else DBConfig("postgres", request.getfixturevalue("pg_dsn"))
    s = ManagerState(tmp_path / "manager.db", store=store)
    yield s
    s.close()


def test_sector_pages_on_each_store_driver(driver_state):
    """The pages' SQL (keyset, filters, counts, held sectors) as SQLite and PostgreSQL both run it."""
    from appliance.manager import sector_pages
    from appliance.manager.sector_pages import SectorFilter
    s = driver_state
    with s.tx() as db:            # (bulk_add_sectors is SQLite's, for the bench)
        for miner in (1000, 1001):
            for n in range(1, 101):
                db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)",
                           (miner, n, 5, json.dumps(_info(miner, n)), 1000.0))
    rows, total, nxt = sector_pages.page(s, SectorFilter(is_open=True), (1000, 50), 3)
    assert [(r[0], r[1]) for r in rows] == [(1000, 60), (1000, 70), (1000, 80)] and total == 20 and nxt == (1000, 80)
    rows, total, nxt = sector_pages.page(s, SectorFilter(is_open=True, miner=1001, state="PC1Done", worker="w0"), None, 10)
    assert [(r[0], r[1]) for r in rows] == [(1001, 30), (1001, 60), (1001, 90)] and total == 3 and nxt is None
    rows, total, _ = sector_pages.page(s, SectorFilter(failing=True), None, 10)
    assert [(r[0], r[1]) for r in rows] == [(1000, 30), (1000, 60), (1000, 90), (1001, 30), (1001, 60), (1001, 90)]
    held = frozenset({(1000, 15), (1001, 20)})        # a finished one and one in flight
    rows, total, _ = sector_pages.page(s, SectorFilter(is_open=True, miner=1000), (1000, 10), 2, held)
    assert [(r[0], r[1]) for r in rows] == [(1000, 15), (1000, 20)] and total == 11
    rows, total, _ = sector_pages.page(s, SectorFilter(is_open=False, miner=1000), (1000, 13), 2, held)
    assert [(r[0], r[1]) for r in rows] == [(1000, 14), (1000, 16)] and total == 89
