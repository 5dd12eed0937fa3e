"""The status page at farm scale: the overview carries counts from the counts table and only the
first page of the sectors in flight and of those failing; the rest come by `/ui/api/sectors`
pages (keyset, by sector number, filterable), a sector by its number. The views' queries run on
each store driver (SQLite, PostgreSQL)."""

import json
import urllib.error
import urllib.request

import pytest

from appliance.manager.state import ManagerState
from appliance.rpc.auth import issue_token
from appliance.web.views import ATTENTION_PAGE, LIVE_PAGE, WebViews
from tests.pg_cluster import manager_store, pg_dsn, pg_server  # noqa: F401  (fixtures)

from .test_web import manager  # noqa: F401  (the fixture: a manager serving the page on loopback)

MINER = 1000
FAILURE = {"Level": "perm", "Desc": "c2: out of memory"}


def _fill(state, open_n: int, failing_every: int, finished_n: int) -> None:
    rows = []
    for n in range(1, open_n + 1):
        info = {"state": "PC1Done" if n % 3 else "PC2Done", "worker": f"w{n % 4}"}
        if n % failing_every == 0:
            info["failure"] = FAILURE
        rows.append((MINER, n, 5, json.dumps(info), float(n)))
    for n in range(open_n + 1, open_n + finished_n + 1):
        rows.append((MINER, n, 5, json.dumps({"state": "Finished", "finalized": True}), float(n)))
    with state.tx() as db:
        db.executemany("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?)", rows)


@pytest.fixture
def views(tmp_path, manager_store):  # noqa: F811
    state = ManagerState(tmp_path / "manager.db", store=manager_store)
    _fill(state, open_n=450, failing_every=2, finished_n=300)
    yield WebViews(state, None, None, None, None, now=lambda: 1000.0)
    state.close()


def test_the_overview_carries_counts_and_first_pages_only(views):
    page = views.sectors()
    assert page["LiveTotal"] == 450 and page["LiveCounts"] == {"PC1Done": 300, "PC2Done": 150}
    assert [s["Number"] for s in page["Live"]] == list(range(1, LIVE_PAGE + 1))
    assert page["Failing"] == 225 and len(page["Attention"]) == ATTENTION_PAGE
    assert all(s["Failure"] == FAILURE for s in page["Attention"])
    assert page["FinalizedCounts"] == {"Finished": 300} and len(page["Recent"]) == 30
    assert [s["Number"] for s in page["Recent"]][:2] == [750, 749]        # the last written first


def test_paging_walks_every_sector_once_in_order_with_filters(views):
    seen, after, pages = [], None, 0
    while True:
        page = views.sectors_page({"limit": "100", **({"after": after} if after else {})})
        assert page["Total"] == 450
        seen += [s["Number"] for s in page["Sectors"]]
        pages += 1
        after = page["Next"]
        if after is None:
            break
    assert seen == list(range(1, 451)) and pages == 5
    failing = views.sectors_page({"failing": "1", "state": "PC2Done", "limit": "500"})
    assert failing["Total"] == len(failing["Sectors"]) == 75 and failing["Next"] is None
    assert all(s["Number"] % 6 == 0 for s in failing["Sectors"])
    worker = views.sectors_page({"worker": "w1", "limit": "10"})
    assert worker["Total"] == 113 and [s["Number"] for s in worker["Sectors"]][:3] == [1, 5, 9]
    done = views.sectors_page({"open": "0", "after": "1000-700"})
    assert done["Total"] == 300 and [s["Number"] for s in done["Sectors"]] == list(range(701, 751))


@pytest.mark.parametrize("query,says", [
    ({"limit": "0"}, "limit: expected a number from 1 to 500"),
    ({"limit": "501"}, "limit: expected a number from 1 to 500"),
    ({"open": "yes"}, "open: expected 0 or 1"),
    ({"after": "nonsense"}, "'nonsense' is not a sector id"),
    ({"colour": "red"}, "unknown filter 'colour'"),
])
def test_bad_page_requests_say_what_is_wrong(views, query, says):
    with pytest.raises(ValueError, match=says):
        views.sectors_page(query)


def test_the_page_endpoint_over_http(manager):  # noqa: F811
    svc, url = manager
    _fill(svc.state, open_n=5, failing_every=5, finished_n=0)
    read = issue_token(svc.secret, "read")

    def get(path):
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {read}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    page = get("/ui/api/sectors?limit=2&after=1000-1")
    assert [s["Sector"] for s in page["Sectors"]] == ["s-t01000-2", "s-t01000-3"] and page["Next"] == "s-t01000-3"
    assert get("/ui/api/sectors?failing=1")["Total"] == 1
    with pytest.raises(urllib.error.HTTPError) as e:
        get("/ui/api/sectors?limit=x")
    assert e.value.code == 400 and "limit" in json.loads(e.value.read())["error"]
    ov = get("/ui/api/overview")
    assert ov["Sectors"]["LiveTotal"] == 5 and ov["Sectors"]["Failing"] == 1
