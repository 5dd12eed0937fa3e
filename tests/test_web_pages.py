"""The status page at farm scale: the overview carries counts from the counts table and only the
first page of the sectors in flight, of those failing and of the workers (those needing attention
first); the rest come by `/ui/api/sectors` and `/ui/api/workers` pages (keyset, by sector number
or worker name, filterable), a sector by its number. The overview of a million sectors stays
under 200 KB. The views' queries run on each store driver (SQLite, PostgreSQL)."""

import json
import urllib.error
import urllib.request
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from appliance.chain.policy import ChainPolicy
from appliance.chain.types import PartitionInfo
from appliance.manager.state import ManagerState
from appliance.rpc.auth import issue_token
from appliance.web.views import ATTENTION_PAGE, FAULTS_SHOWN, LIVE_PAGE, WORKERS_PAGE, WebViews
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


# ------------------------------------------------------------------------------ workers

NOW = 100_000.0


def _ping_all(state, workers: list[tuple[str, dict, float]]) -> None:
    with state.tx() as db:       # as many WorkerPings, in one transaction
        db.executemany("INSERT INTO workers (name, info, last_ping) VALUES (?, ?, ?)",
                       [(n, json.dumps(info), last) for n, info, last in workers])


def _worker(name: str, last: float, paused: int = 0, errors: int = 0) -> tuple[str, dict, float]:
    summary = {"Threads": 8, "Empty": 0, "Paused": paused, "Running": 8 - paused, "Waiting": 0, "Errors": errors}
    return name, {"Name": name, "Dest": "10.1.2.3:17890", "Version": "damocles v1.2.3", "Summary": summary}, last


@pytest.fixture
def worker_views(tmp_path, manager_store):  # noqa: F811
    clock = [NOW]
    state = ManagerState(tmp_path / "manager.db", now=lambda: clock[0], store=manager_store)
    # 300 workers: w000-w299 fresh, but w010 silent, w020 late, w030 paused, w040 with errors
    rows = [_worker(f"w{i:03}", NOW - 5) for i in range(300)]
    rows[10] = _worker("w010", NOW - 3600)
    rows[20] = _worker("w020", NOW - 120)
    rows[30] = _worker("w030", NOW - 5, paused=1)
    rows[40] = _worker("w040", NOW - 5, errors=2)
    _ping_all(state, rows)
    views = WebViews(state, None, None, None, None, now=lambda: clock[0])
    views.clock = clock         # the tests move it
    yield views
    state.close()


def test_the_overview_lists_the_workers_needing_attention_first_and_counts_all(worker_views):
    w = worker_views.workers()
    assert w["Total"] == 300 and w["Attention"] == 4 and w["Pinged"] == {"Fresh": 298, "Late": 1, "Silent": 1}
    names = [x["Name"] for x in w["Workers"]]
    assert len(names) == WORKERS_PAGE
    assert names[:4] == ["w010", "w020", "w030", "w040"]         # the stalest ping first, then by name
    assert names[4:7] == ["w000", "w001", "w002"] and "w010" not in names[4:]
    assert w["Workers"][0]["PingAge"] == 3600.0
    # version sends the pings of the workers listed only (the page ticks their ages)
    assert sorted(worker_views.version()["Pings"]) == sorted(names)


def test_the_etag_moves_when_a_worker_turns_late(worker_views):
    clock = worker_views.clock
    e0 = worker_views.version()["ETag"]
    clock[0] += 10
    assert worker_views.version()["ETag"] == e0          # the pings 15 s old: still fresh, nothing to list again
    clock[0] += 50
    e1 = worker_views.version()["ETag"]
    assert e1 != e0                                      # 65 s: late, the overview lists them first
    worker_views.state.ping(*_worker("w001", 0)[:2])     # a late worker pings again (its info unchanged): fresh
    e2 = worker_views.version()["ETag"]
    assert e2 != e1
    clock[0] += 540
    assert worker_views.version()["ETag"] not in (e0, e1, e2)      # late ones turn silent


def test_worker_pages_walk_every_worker_once_by_name_with_filters(worker_views):
    seen, after, pages = [], None, 0
    while True:
        page = worker_views.workers_page({"limit": "70", **({"after": after} if after else {})})
        assert page["Total"] == 300
        seen += [x["Name"] for x in page["Workers"]]
        pages += 1
        after = page["Next"]
        if after is None:
            break
    assert seen == [f"w{i:03}" for i in range(300)] and pages == 5
    assert [x["Name"] for x in worker_views.workers_page({"attention": "1"})["Workers"]] == ["w010", "w020", "w030", "w040"]
    others = worker_views.workers_page({"attention": "0", "limit": "500"})
    assert others["Total"] == 296 and others["Next"] is None
    found = worker_views.workers_page({"name": "w29"})
    assert [x["Name"] for x in found["Workers"]] == [f"w29{i}" for i in range(10)] and found["Total"] == 10
    assert worker_views.workers_page({"name": "nobody"}) == {"Workers": [], "Total": 0, "Next": None}


def test_worker_pages_walk_every_name_whatever_order_the_database_reads_them_in():
    """PostgreSQL's `ORDER BY name` follows the database's collation (en_US: case and punctuation
    ignored at first), while `after` compares as Python does: the pages sort the names themselves."""
    names = ["b", "B", "a-1", "a1", "_x", "Zed", "é"]
    collated = sorted(names, key=lambda n: ("".join(c for c in n.lower() if c.isalnum()), n))
    assert collated != sorted(names)
    state = SimpleNamespace(workers=lambda: [_worker(n, NOW) for n in collated])
    views = WebViews(state, None, None, None, None, now=lambda: NOW)
    seen, after = [], None
    for _ in range(len(names) + 1):       # one page each, and the last says there is no next
        page = views.workers_page({"limit": "1", **({"after": after} if after else {})})
        seen += [x["Name"] for x in page["Workers"]]
        after = page["Next"]
        if after is None:
            break
    assert seen == sorted(names)


@pytest.mark.parametrize("query,says", [
    ({"limit": "0"}, "limit: expected a number from 1 to 500"),
    ({"limit": "many"}, "limit: expected a number from 1 to 500"),
    ({"attention": "yes"}, "attention: expected 0 or 1"),
    ({"worker": "w1"}, "unknown filter 'worker'"),
])
def test_bad_worker_page_requests_say_what_is_wrong(worker_views, query, says):
    with pytest.raises(ValueError, match=says):
        worker_views.workers_page(query)


def test_the_workers_endpoint_over_http(manager):  # noqa: F811
    svc, url = manager
    _ping_all(svc.state, [_worker(f"w{i}", 1e12) for i in range(3)])
    read = issue_token(svc.secret, "read")

    def get(path):
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {read}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    page = get("/ui/api/workers?limit=2")
    assert [x["Name"] for x in page["Workers"]] == ["w0", "w1"] and page["Next"] == "w1" and page["Total"] == 3
    assert [x["Name"] for x in get("/ui/api/workers?after=w1")["Workers"]] == ["w2"]
    with pytest.raises(urllib.error.HTTPError) as e:
        get("/ui/api/workers?attention=2")
    assert e.value.code == 400 and "attention" in json.loads(e.value.read())["error"]
    ov = get("/ui/api/overview")
    assert ov["Workers"]["Total"] == 3 and "Pings" not in ov


# ------------------------------------------------------------------------ at farm scale

MINERS = 10
PER_PARTITION = 2032          # 975,000 sectors proving over 10 miners' 48 deadlines
DEAD_DISK = 2349              # one 32GiB partition's sectors, all faulty


class _FarmChain:
    """The chain a farm's proving view reads: per miner 48 deadlines of one full partition each;
    miner 1000's deadline 7 lost a disk (every sector faulty, 100 of them declared recovered)."""
    policy = ChainPolicy()

    def head(self):
        return 2880 * 30 + 100

    def pinned_head(self):
        return nullcontext()

    def miner_info(self, miner):
        return SimpleNamespace(proving_period_start=0)

    def all_deadline_partitions(self, miner):
        out = []
        for d in range(48):
            first = d * 10_000
            sectors = tuple(range(first, first + (DEAD_DISK if (miner, d) == (1000, 7) else PER_PARTITION)))
            faulty = sectors if (miner, d) == (1000, 7) else ()
            out.append([PartitionInfo(0, sectors, faulty, faulty[:100], proven=d < 20)])
        return out

    def deadline_records(self, miner):
        return [{"period_start": 2880 * 29, "index": d, "close": 2880 * 29 + 60 * (d + 1), "partitions": 1,
                 "partitions_proven": 1, "sectors": PER_PARTITION, "sectors_proven": PER_PARTITION,
                 "sectors_faulty_new": 0, "penalty": 0} for d in range(48)]

    def blocks(self, miner):
        return [{"epoch": e, "won": e % 7 != 0} for e in range(0, 2880, 50)]


def _poster():
    """Every deadline's round proven, but miner 1000's deadline 7: it declared the dead disk faulty."""
    def round_(miner, start, index):
        if (miner, index) == (1000, 7):
            return {"state": "declared", "declared_faults": list(range(70_000, 70_000 + DEAD_DISK)), "declared_recoveries": []}
        return {"state": "proven"}
    return SimpleNamespace(round=round_, rounds=lambda miner: [])


def test_the_overview_of_a_million_sectors_is_under_200_kb(tmp_path):
    state = ManagerState(tmp_path / "manager.db")
    try:
        # 20,000 sectors in flight on 800 workers' threads (5,000 of them failing), 1,000 finished
        flight = [(1000 + n % MINERS, 1_000_000 + n, 8,
                   {"state": "PC1Done", "worker": f"worker-sealing-{n % 800:04}", "location": f"/data/sealing/t{n % 16:02}",
                    "allocated_at": NOW - 9000, "entered_at": NOW - 600,
                    **({"failure": {"Level": "perm", "Desc": "c2: CUDA out of memory: tried to allocate 2.00 GiB"}}
                       if n % 4 == 0 else {})}, NOW - 600) for n in range(20_000)]
        done = [(1000 + n % MINERS, n, 8, {"state": "Finished", "finalized": True, "worker": "worker-sealing-0001"}, NOW - n)
                for n in range(1000)]
        assert state.bulk_add_sectors(flight + done) == 21_000
        _ping_all(state, [_worker(f"worker-sealing-{i:04}", NOW - (3600 if i % 50 == 0 else 5)) for i in range(800)])
        config = SimpleNamespace(miners=[SimpleNamespace(actor=1000 + m) for m in range(MINERS)])
        sealer = SimpleNamespace(store_list=lambda: [{"Name": "persist-1", "Path": "/data/persist", "Total": 1 << 50,
                                                      "Free": 1 << 49, "Reserved": 0}])
        views = WebViews(state, sealer, _FarmChain(), _poster(), config, now=lambda: NOW)
        views.chain_views.refresh(force=True)
        ov = views.overview()
        body = json.dumps(ov, separators=(",", ":"))       # as the page receives it
        assert len(body) < 200_000, {k: len(json.dumps(v, separators=(",", ":"))) for k, v in ov.items()}
        # what the page shows is all there: counts whole, lists bounded
        assert ov["Sectors"]["LiveTotal"] == 20_000 and ov["Sectors"]["Failing"] == 5_000
        assert len(ov["Sectors"]["Live"]) == LIVE_PAGE and len(ov["Sectors"]["Attention"]) == ATTENTION_PAGE
        w = ov["Workers"]
        assert w["Total"] == 800 and w["Attention"] == 16 and len(w["Workers"]) == WORKERS_PAGE
        assert all(x["PingAge"] == 3600 for x in w["Workers"][:16])
        assert len(ov["Proving"]) == MINERS and all(len(p["Deadlines"]) == 48 for p in ov["Proving"].values())
        dead = ov["Proving"]["1000"]["Deadlines"][7]["Partitions"][0]
        assert dead["Sectors"] == DEAD_DISK and dead["Faulty"] == DEAD_DISK and dead["Recovering"] == 100
        assert dead["FaultyFirst"] == list(range(70_000, 70_000 + FAULTS_SHOWN)) and len(dead["RecoveringFirst"]) == FAULTS_SHOWN
        assert ov["Proving"]["1000"]["Deadlines"][7]["Round"] == {"state": "declared", "declared_faults": DEAD_DISK,
                                                                  "declared_recoveries": 0}
        healthy = ov["Proving"]["1000"]["Deadlines"][8]["Partitions"][0]
        assert healthy["Faulty"] == 0 and "FaultyFirst" not in healthy
    finally:
        state.close()


def test_the_proving_metrics_count_every_fault_of_a_dead_disk(tmp_path):
    """/metrics reads the same view: the faulty and recovering series are the whole counts, not
    the numbers the page lists."""
    from appliance.metrics.manager import proving_families
    views = WebViews(None, None, _FarmChain(), _poster(), SimpleNamespace(miners=[SimpleNamespace(actor=1000)]), now=lambda: NOW)
    views.chain_views.refresh(force=True)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in proving_families(views.proving()) for s in fam.samples}
    assert got[("damocles_wdpost_sectors", (("deadline", "7"), ("miner", "1000"), ("status", "faulty")))] == DEAD_DISK
    assert got[("damocles_wdpost_sectors", (("deadline", "7"), ("miner", "1000"), ("status", "recovering")))] == 100
    assert got[("damocles_wdpost_sectors", (("deadline", "8"), ("miner", "1000"), ("status", "faulty")))] == 0
