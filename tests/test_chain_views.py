"""The status page's chain views (web/chain_views.py): computed by the background refresher, read
by the overview and /metrics without a chain call; recomputed when the head moves into another
deadline or the interval passes, not otherwise; a chain error shown, not raised; a request never
waits for a walk."""

import threading

import pytest

from appliance.chain.types import ChainError, SectorOnChain
from appliance.manager.service import ManagerService, init_home
from appliance.web import chain_views

from .test_web import CONFIG

pytestmark = pytest.mark.timeout(60)
MINER = 1000


@pytest.fixture
def svc(tmp_path):
    """A manager (not started: the test runs the refresher's passes) whose miner has 10 sectors
    active on the devnet, 4 of them ending within 30 days."""
    home = tmp_path / "m"
    init_home(home, CONFIG)
    s = ManagerService(home)
    devnet = s.devnet
    devnet.advance(10)
    with devnet._tx():
        devnet._catch_up()
        for n in range(1, 11):
            expiration = devnet.head() + (1000 if n <= 4 else 400 * 2880)
            devnet.put_sector(SectorOnChain(MINER, n, 5, f"bagboea4b5abc{n:040d}", f"baga6ea4seaq{n:040d}", 0, expiration))
        devnet.assign_deadlines(MINER, list(range(1, 11)))
    yield s
    s.poster.close()
    s.close()


def chain_calls(svc, monkeypatch) -> list[str]:
    """Every request the manager's chain client makes from now on."""
    calls: list[str] = []
    real = svc.chain.client.call
    monkeypatch.setattr(svc.chain.client, "call", lambda method, *p: calls.append(method) or real(method, *p))
    return calls


def test_the_overview_and_metrics_answer_from_the_last_views_without_a_chain_call(svc, monkeypatch):
    calls = chain_calls(svc, monkeypatch)
    ov = svc.web.overview()
    assert ov["Proving"] == ov["Expiring"] == {"1000": {"Computing": True}} and calls == []   # before any result
    assert not svc.web.chain_views.ready()
    assert svc.web.chain_views.refresh() == [MINER] and svc.web.chain_views.ready()
    assert calls                                      # the refresher read the chain...
    calls.clear()
    ov = svc.web.overview()
    assert calls == []                                # ...the request did not
    head = svc.devnet.head()
    p, e = ov["Proving"]["1000"], ov["Expiring"]["1000"]
    assert p["AsOf"] == p["Epoch"] == head and p["Age"] >= 0
    assert sum(x["Sectors"] for d in p["Deadlines"] for x in d["Partitions"]) == 10
    assert e["AsOf"] == head and e["Total"] == 4 and sum(d["Count"] for d in e["Deadlines"]) == 4
    assert set(p) == {"Epoch", "PeriodStart", "Deadline", "Open", "Close", "Deadlines", "Records", "Declared", "Totals",
                      "AsOf", "Age"}
    text = svc.metrics.exposition().decode()
    assert calls == []                                # /metrics: the head the refresher read just now, no walk
    assert f"damocles_chain_head_epoch {float(head)}" in text
    assert f'damocles_chain_views_epoch{{miner="1000"}} {float(head)}' in text
    assert 'damocles_chain_views_error{miner="1000"} 0.0' in text
    assert 'damocles_wdpost_sectors{deadline="' in text and 'damocles_chain_views_age_seconds{miner="1000"}' in text
    views, real_clock = svc.web.chain_views, svc.web.chain_views._clock
    monkeypatch.setattr(views, "_clock", lambda: real_clock() + chain_views.HEAD_FRESH + 1)     # its loop stalled
    svc.metrics.exposition()
    assert calls == ["Filecoin.ChainHead"]            # then /metrics asks the chain itself


def test_the_refresher_recomputes_when_the_deadline_moves_or_the_interval_passes(svc, monkeypatch):
    views, clock = svc.web.chain_views, [100.0]
    monkeypatch.setattr(views, "_clock", lambda: clock[0])
    assert views.refresh() == [MINER]
    first, etag = views.views("Proving")["1000"], svc.web.version()["ETag"]
    calls = chain_calls(svc, monkeypatch)
    assert views.refresh() == [] and calls == ["Filecoin.ChainHead"]      # the same deadline, within the interval
    dl = svc.chain.proving_deadline(MINER)
    svc.devnet.advance(1)
    assert dl.close - svc.devnet.head() > 1 and views.refresh() == []      # a new epoch alone: not yet
    clock[0] += chain_views.MIN_INTERVAL
    assert views.refresh() == [MINER]                                      # the interval passed
    assert views.views("Proving")["1000"]["AsOf"] == svc.devnet.head()
    svc.devnet.advance(dl.close + 1 - svc.devnet.head())                   # into the next deadline
    assert views.refresh() == [MINER]
    moved = views.views("Proving")["1000"]
    assert moved["Deadline"] == (first["Deadline"] + 1) % 48 and moved["AsOf"] == svc.devnet.head()
    assert svc.web.version()["ETag"] != etag                               # the page asks for the overview again
    # a slow walk is recomputed less often: COST_FACTOR times what the walks of all miners took
    monkeypatch.setattr(views, "_done", {MINER: (views._done[MINER][0], clock[0], 60.0)})
    clock[0] += 60 * chain_views.COST_FACTOR - 1
    assert views.refresh() == []
    clock[0] += 1
    assert views.refresh() == [MINER]


def test_metrics_render_the_deadline_series_once_per_new_result(svc, monkeypatch):
    """The per-deadline series (thousands at a farm's scale) are rendered when the refresher has a
    new result, not at every scrape, and then show what the new result shows."""
    from appliance.metrics import manager as metrics
    rendered = []
    real = metrics.proving_families
    monkeypatch.setattr(metrics, "proving_families", lambda proving: rendered.append(1) or real(proving))
    views = svc.web.chain_views
    assert views.refresh() == [MINER]
    first = svc.metrics.exposition().decode()
    assert svc.metrics.exposition().decode().count("damocles_wdpost_sectors{") == first.count("damocles_wdpost_sectors{") > 0
    assert len(rendered) == 1
    live = 'damocles_wdpost_sectors{deadline="%d",miner="1000",status="live"}'
    counts = {int(d["Index"]): sum(x["Sectors"] for x in d["Partitions"]) for d in views.views("Proving")["1000"]["Deadlines"]}
    index = next(iter(counts))
    assert f"{live % index} {float(counts[index])}" in first
    with svc.devnet._tx():                                    # one more sector in that deadline's partition
        svc.devnet._catch_up()
        svc.devnet.put_sector(SectorOnChain(MINER, 11, 5, "bagboea4b5abc" + "1" * 40, "baga6ea4seaq" + "1" * 40, 0,
                                            svc.devnet.head() + 400 * 2880))
        svc.devnet.assign_deadlines(MINER, [11])
    svc.metrics.exposition()                                  # a scrape before the refresher saw the change
    assert len(rendered) == 1                                 # not rendered again before a new result
    assert views.refresh(force=True) == [MINER]
    text = svc.metrics.exposition().decode()
    assert len(rendered) == 2
    after = {int(d["Index"]): sum(x["Sectors"] for x in d["Partitions"]) for d in views.views("Proving")["1000"]["Deadlines"]}
    assert sum(after.values()) == sum(counts.values()) + 1
    assert all(f"{live % i} {float(n)}" in text for i, n in after.items())


def test_a_chain_error_is_shown_not_raised(svc, monkeypatch):
    def down(miner):
        raise ChainError("StateMinerActiveSectors: node unavailable")
    monkeypatch.setattr(svc.chain, "active_sectors", down)      # the expiring view's read
    assert svc.web.chain_views.refresh() == [MINER]
    ov = svc.web.overview()
    assert ov["Expiring"]["1000"]["Error"] == "StateMinerActiveSectors: node unavailable"
    assert "Deadlines" in ov["Proving"]["1000"]                 # the other view on its own

    def deadlines_down(miner):
        raise ChainError("StateMinerDeadlines: node unavailable")
    monkeypatch.setattr(svc.chain, "all_deadline_partitions", deadlines_down)
    assert svc.web.chain_views.refresh(force=True) == [MINER]
    assert svc.web.overview()["Proving"]["1000"]["Error"] == "StateMinerDeadlines: node unavailable"
    text = svc.metrics.exposition().decode()
    assert 'damocles_chain_views_error{miner="1000"} 1.0' in text and 'damocles_wdpost_current_deadline{' not in text
    # the head itself unreadable before any result: every miner says so
    views = chain_views.ChainViews(svc.chain, [MINER], svc.web.chain_views_of)

    def no_head():
        raise ChainError("ChainHead: connection refused")
    monkeypatch.setattr(svc.chain, "head", no_head)
    assert views.refresh() == []
    assert views.views("Proving") == {"1000": {"Error": "chain head: ChainHead: connection refused"}}


def test_a_request_never_waits_for_the_walk(svc, monkeypatch):
    walking, release = threading.Event(), threading.Event()
    compute = svc.web.chain_views._compute

    def slow(miner):
        walking.set()
        assert release.wait(30)
        return compute(miner)
    monkeypatch.setattr(svc.web.chain_views, "_compute", slow)
    refresher = threading.Thread(target=svc.web.chain_views.refresh)
    refresher.start()
    try:
        assert walking.wait(10)
        answered = []
        request = threading.Thread(target=lambda: answered.append(svc.web.overview()))
        request.start()
        request.join(10)
        assert answered and answered[0]["Proving"] == {"1000": {"Computing": True}}      # answered mid-walk
    finally:
        release.set()
        refresher.join(30)
    assert "Deadlines" in svc.web.overview()["Proving"]["1000"]


def test_the_started_manager_runs_the_refresher(tmp_path):
    home = tmp_path / "m"
    init_home(home, CONFIG)
    s = ManagerService(home)
    s.start("127.0.0.1:0")
    try:
        done = threading.Event()
        for _ in range(200):          # bounded: 20 s
            if s.web.chain_views.ready() or done.wait(0.1):
                break
        assert s.web.chain_views.ready() and "Deadlines" in s.web.proving()["1000"]
    finally:
        s.stop()


def test_walking_takes_a_bounded_share_of_time_over_all_miners():
    """Two miners whose walks take 3 s each: neither is walked again before COST_FACTOR x 6 s,
    unless the head moves into another of its deadlines."""
    from contextlib import nullcontext
    from types import SimpleNamespace
    clock, head = [0.0], [100]

    def compute(miner):
        clock[0] += 3.0
        return {"Proving": {"Miner": miner}}
    chain = SimpleNamespace(head=lambda: head[0], pinned_head=nullcontext, policy=SimpleNamespace(wpost_challenge_window=60),
                            miner_info=lambda m: SimpleNamespace(proving_period_start={1000: 0, 1001: 50}[m]))
    views = chain_views.ChainViews(chain, [1000, 1001], compute, clock=lambda: clock[0])
    assert views.refresh() == [1000, 1001] and views.ready()
    clock[0] = 3.0 + 6.0 * chain_views.COST_FACTOR - 1          # 1000 was walked by 3 s, 1001 by 6 s: a second short
    assert views.refresh() == []
    clock[0] += 1
    assert views.refresh() == [1000, 1001]                       # (1001's turn came while 1000 was walked)
    assert views.refresh() == []
    head[0] = 115                 # 1001's deadline (offset 50) moves at 110; 1000's (offset 0) at 120
    assert views.refresh() == [1001]
