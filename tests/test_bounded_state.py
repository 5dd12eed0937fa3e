"""Bounded state (security review, item 4): what a write token can make the manager keep. Each
test replays an attack on a live manager (in this process, its clock injected, never slept on)
and shows it refused or expired with the rest of the state unchanged: worker names per
credential and silent workers, the piece store's quota and its unused pieces, deals held by a
sector that does not move, and the error texts of WindowPoSt, unseal and rebuild tasks."""

import http.client
import time
from urllib.parse import urlparse

import pytest

from appliance.config import ConfigError
from appliance.manager.config import parse_config
from appliance.manager.rebuild import Rebuilder
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import comm_d_from_pieces, commp_bytes
from appliance.rpc import INVALID_PARAMS, UNAUTHORIZED, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient

from .configs import manager_toml
from .test_worker_identity import metrics, refused

pytestmark = pytest.mark.timeout(180)
HOUR = 3600.0


class Clock:
    """The manager's clock, moved by hand (state, sealer and market read it)."""

    def __init__(self):
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def start(tmp_path):
    """start(sealing=..., market=..., deals=False) -> (service, url, clock); stopped at the end."""
    started = []

    def _start(sealing=None, market=None, deals=False):
        home = tmp_path / f"m{len(started)}"
        miner = {"SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False}}
        if deals:
            miner["Sector"] = {"EnableDeals": True, "SealingEpochs": 100}
        init_home(home, manager_toml(None, block_time="0s", miner=miner, config={
            "Sealing": sealing or {}, "Market": market or {}, "Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}}))
        svc = ManagerService(home)
        clock = Clock()
        svc.state._now = svc.sealer._now = svc.sealer.market._now = clock
        host, port = svc.start("127.0.0.1:0")
        started.append(svc)
        return svc, f"http://{host}:{port}", clock

    yield _start
    for svc in started:
        svc.stop()


def client(svc, url, name=None, perm="write") -> RPCClient:
    return RPCClient(url, issue_token(svc.secret, perm, name))




def limited(text: str, kind: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(f'damocles_manager_limited_total{{kind="{kind}"}}'))
    return float(line.split()[-1])


def ping(c, name, dest="10.0.0.5:17890"):
    return c.call("Venus.WorkerPing", {"Name": name, "Dest": dest, "Version": "v"})


def report(c, sid, prev, nxt, event="Step", worker="w1"):
    return c.call("Venus.ReportState", sid, {"Worker": {"Instance": worker, "Location": "/w/t0"},
                                             "StateChange": {"Prev": prev, "Next": nxt, "Event": event}, "Failure": None})


def names(c) -> dict:
    return {w["Info"]["Name"]: w["Info"] for w in c.call("Venus.WorkerPingInfoList")}


# ------------------------------------------------------------------------ worker list

def test_two_thousand_worker_names_from_one_credential_are_refused_past_the_bound(start):
    svc, url, _ = start()
    attacker, other = client(svc, url, "attacker"), client(svc, url, "sealer-01")
    ping(other, "sealer-01")
    bound = svc.config.max_worker_names          # the default, 256
    refusals = []
    for i in range(2000):
        try:
            ping(attacker, f"fake-{i}")
        except RPCError as exc:
            refusals.append(exc)
    assert len(refusals) == 2000 - bound
    assert {e.code for e in refusals} == {INVALID_PARAMS}
    assert "MaxWorkerNamesPerCredential" in refusals[0].message and f"holds {bound} worker names" in refusals[0].message
    listed = names(other)
    assert len(listed) == bound + 1 and "fake-1999" not in listed and "sealer-01" in listed
    # a name first used in a report is bound the same way: refused, and the sector does not move
    sid = attacker.call("Venus.AllocateSector", {})
    assert sid is not None
    before = svc.state.sector(sid["ID"]["Miner"], sid["ID"]["Number"])
    refused(INVALID_PARAMS, report, attacker, sid["ID"], "Empty", "Allocated", "Allocate", "fake-2000")
    assert svc.state.sector(sid["ID"]["Miner"], sid["ID"]["Number"]) == before and len(names(other)) == bound + 1
    # the names it holds still work; another credential is not held back
    ping(attacker, "fake-0", "10.0.0.9:1")
    assert names(other)["fake-0"]["Dest"] == "10.0.0.9:1"
    ping(client(svc, url, "sealer-02"), "sealer-02")
    assert limited(metrics(svc, url), "worker_names") == 2000 - bound + 1


def test_a_silent_worker_expires_from_the_list_and_frees_its_name(start):
    svc, url, clock = start(sealing={"WorkerExpiry": "24h", "MaxWorkerNamesPerCredential": 2})
    old, admin = client(svc, url, "old-install"), client(svc, url, perm="admin")
    ping(old, "w1", "10.0.0.5:17890")
    clock.t += 20 * HOUR
    ping(old, "w2", "10.0.0.6:17890")
    assert "MaxWorkerNamesPerCredential" in refused(INVALID_PARAMS, ping, old, "w3")    # holds 2
    assert 'worker="w1"' in metrics(svc, url)
    clock.t += 4 * HOUR + 1          # w1: 24h and 1s without a ping; w2: 4h
    svc.housekeep()
    assert set(names(admin)) == {"w2"}
    assert 'worker="w1"' not in metrics(svc, url) and 'worker="w2"' in metrics(svc, url)
    assert "w1" not in svc.state.pings()                        # the page's last pings too
    # the name's binding went with it: the re-installed machine (a new credential) takes it
    new = client(svc, url, "new-install")
    ping(new, "w1", "10.0.0.7:17890")
    assert names(admin)["w1"]["Dest"] == "10.0.0.7:17890"
    assert "registered by another credential" in refused(UNAUTHORIZED, ping, old, "w1")
    ping(old, "w3")                                            # and the old credential has room for one name again
    assert set(names(admin)) == {"w1", "w2", "w3"}
    assert limited(metrics(svc, url), "worker_expired") == 1



def test_a_prover_that_polls_for_jobs_keeps_its_name(start):
    """A prover never pings; its WindowPoSt job calls count as pings, so its name does not expire
    (and become anyone's) while it works."""
    svc, url, clock = start(sealing={"WorkerExpiry": "24h"})
    prover, other = client(svc, url, "prover-1"), client(svc, url, "intruder")
    for _ in range(3):                              # polling for jobs for three days
        assert prover.call("Venus.WdPoStAllocateJobs", {}, 1, "p1") == []
        clock.t += 20 * HOUR
        svc.housekeep()
        assert svc.state.worker_owner("p1") is not None      # never free between two polls
    assert "registered by another credential" in refused(UNAUTHORIZED, lambda c, n: c.call(
        "Venus.WdPoStAllocateJobs", {}, 1, n), other, "p1")
    clock.t += 24 * HOUR + 1                        # then silent for a day: it expires like a worker
    svc.housekeep()
    assert svc.state.worker_owner("p1") is None


# ------------------------------------------------------------------------- piece store

PIECES = [bytes([i]) * 600 + b"piece %d" % i for i in range(4)]      # 607 bytes: a 1 KiB piece each
CIDS = [commd_to_cid(commp_bytes(p).commitment) for p in PIECES]


def put(url, token, cid, body: bytes | None, length: int | None = None) -> tuple[int, str]:
    """PUT /piecestore/<cid>; body None sends the headers alone (the body held back)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/piecestore/{cid}")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(body) if body is not None else length))
        conn.endheaders()
        if body is not None:
            conn.send(body)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_an_upload_past_the_piece_store_quota_is_refused_before_its_body_is_read(start):
    svc, url, _ = start(market={"PieceStoreQuota": 1300})
    token = issue_token(svc.secret, "write")
    store = svc.config.piece_stores[0].path
    assert put(url, token, CIDS[0], PIECES[0])[0] == 200
    assert put(url, token, CIDS[1], PIECES[1])[0] == 200        # 1214 of 1300 bytes
    assert put(url, token, CIDS[1], PIECES[1])[0] == 200        # the same piece again replaces itself: no more room taken
    # the body is never sent: the answer comes from the headers alone
    status, text = put(url, token, CIDS[2], None, len(PIECES[2]))
    assert status == 507, (status, text)
    assert "hold 1214 bytes of pieces; 607 more would pass [Market] PieceStoreQuota (1300 bytes)" in text
    assert sorted(p.name for p in store.iterdir()) == sorted(CIDS[:2])    # nothing else written, no temporary left
    # an upload still running holds its bytes against the quota: a second one cannot slip in beside it
    svc.config.piece_store_quota = 3 * 607
    u = urlparse(url)
    held = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    held.putrequest("PUT", f"/piecestore/{CIDS[2]}")
    for k, v in (("Authorization", f"Bearer {token}"), ("Content-Type", "application/octet-stream"),
                 ("Content-Length", str(len(PIECES[2])))):
        held.putheader(k, v)
    held.endheaders()
    held.send(PIECES[2][:100])
    deadline = time.monotonic() + 20
    while not list(store.glob(".*.tmp")):           # the held upload is writing its temporary
        assert time.monotonic() < deadline, "the held upload never started"
        time.sleep(0.02)   # polling a live server, bounded by the deadline
    status, text = put(url, token, CIDS[3], PIECES[3])
    assert status == 507 and "1214 bytes of pieces and 607 bytes being uploaded" in text, (status, text)
    held.send(PIECES[2][100:])
    assert held.getresponse().status == 200
    held.close()
    assert sorted(p.name for p in store.iterdir()) == sorted(CIDS[:3])
    text = metrics(svc, url)
    assert limited(text, "piece_quota") == 2
    assert f"damocles_piece_store_used_bytes {3 * 607}.0" in text


def test_pieces_no_deal_uses_expire_and_pieces_of_deals_stay(start):
    svc, url, clock = start(sealing={"DealHoldTimeout": "48h"}, market={"PieceStoreQuota": 3 * 607, "UnusedPieceExpiry": "24h"},
                            deals=True)
    token = issue_token(svc.secret, "write")
    admin = client(svc, url, perm="admin")
    store = svc.config.piece_stores[0].path
    for i in range(3):
        assert put(url, token, CIDS[i], PIECES[i])[0] == 200
    sealing = admin.call("Venus.MarketImportDeal", 1000, CIDS[0], None, None)["DealID"]
    pending = admin.call("Venus.MarketImportDeal", 1000, CIDS[1], None, None)["DealID"]
    w = client(svc, url, "sealer-01")
    sid = w.call("Venus.AllocateSector", {})["ID"]
    report(w, sid, "Empty", "Allocated", "Allocate")
    got = w.call("Venus.AcquireDeals", sid, {"MaxDeals": 1, "MinUsedSpace": None})
    assert [d["DealInfo"]["DealID"] for d in got] == [sealing]                 # the first deal is now a sealing sector's
    assert put(url, token, CIDS[3], PIECES[3])[0] == 507       # full
    clock.t += 23 * HOUR
    svc.housekeep()
    assert sorted(p.name for p in store.iterdir()) == sorted(CIDS[:3])       # not yet
    clock.t += 1 * HOUR + 1
    svc.housekeep()
    assert sorted(p.name for p in store.iterdir()) == sorted(CIDS[:2])       # only the piece no deal names
    deals = {d["DealID"]: d["Sector"] for d in admin.call("Venus.MarketDeals", 1000)}
    assert deals == {sealing: sid["Number"], pending: None}
    assert put(url, token, CIDS[3], PIECES[3])[0] == 200       # its room is free again
    assert limited(metrics(svc, url), "piece_expired") == 1


# ----------------------------------------------------------------- deals held by a sector

def _deals(svc, url, admin, n) -> list[int]:
    token = issue_token(svc.secret, "write")
    ids = []
    for i in range(n):
        assert put(url, token, CIDS[i], PIECES[i])[0] == 200
        ids.append(admin.call("Venus.MarketImportDeal", 1000, CIDS[i], None, None)["DealID"])
    return ids


def test_deals_held_by_a_sector_that_does_not_move_go_back_to_pending(start):
    svc, url, clock = start(sealing={"DealHoldTimeout": "6h"}, deals=True)
    admin = client(svc, url, perm="admin")
    ids = _deals(svc, url, admin, 2)
    spec = {"MaxDeals": None, "MinUsedSpace": None}
    # the attack: a sector takes every pending deal and is never sealed
    attacker = client(svc, url, "attacker")
    stuck = attacker.call("Venus.AllocateSector", {})["ID"]
    report(attacker, stuck, "Empty", "Allocated", "Allocate", "att-1")
    assert [d["DealInfo"]["DealID"] for d in attacker.call("Venus.AcquireDeals", stuck, spec)] == ids
    honest = client(svc, url, "sealer-01")
    other = honest.call("Venus.AllocateSector", {})["ID"]
    report(honest, other, "Empty", "Allocated", "Allocate")
    assert honest.call("Venus.AcquireDeals", other, spec) is None          # nothing left
    clock.t += 6 * HOUR - 60
    svc.housekeep()
    assert {d["DealID"]: d["Sector"] for d in admin.call("Venus.MarketDeals", 1000)} == dict.fromkeys(ids, stuck["Number"])
    clock.t += 61
    svc.housekeep()
    assert {d["DealID"]: d["Sector"] for d in admin.call("Venus.MarketDeals", 1000)} == dict.fromkeys(ids)
    rec = svc.state.sector(stuck["Miner"], stuck["Number"])
    assert rec["state"] == "Aborted" and "DealHoldTimeout" in rec["abort_reason"]
    # the sector is told, at each call it can make, never handed other deals nor dropped silently
    answer = report(attacker, stuck, "Allocated", "DealsAcquired", "AcquireDeals", "att-1")
    assert answer["Finalized"] and "DealHoldTimeout" in answer["AbortReason"]
    assert "DealHoldTimeout" in refused(INVALID_PARAMS, attacker.call, "Venus.AcquireDeals", stuck, spec)
    listed = admin.call("Venus.FindSector", "", stuck)
    assert listed["State"] == "Aborted" and "DealHoldTimeout" in listed["AbortReason"]
    # the deals serve the next sector
    assert [d["DealInfo"]["DealID"] for d in honest.call("Venus.AcquireDeals", other, spec)] == ids
    assert limited(metrics(svc, url), "deal_hold") == 1


def test_a_sector_that_moves_or_precommitted_keeps_its_deals(start):
    svc, url, clock = start(sealing={"DealHoldTimeout": "6h"}, deals=True)
    admin = client(svc, url, perm="admin")
    ids = _deals(svc, url, admin, 2)
    w = client(svc, url, "sealer-01")
    moving, committed = (w.call("Venus.AllocateSector", {})["ID"] for _ in range(2))
    for sid in (moving, committed):
        report(w, sid, "Empty", "Allocated", "Allocate")
    assert [d["DealInfo"]["DealID"] for d in w.call("Venus.AcquireDeals", moving, {"MaxDeals": 1, "MinUsedSpace": None})] == ids[:1]
    assert [d["DealInfo"]["DealID"] for d in w.call("Venus.AcquireDeals", committed, {"MaxDeals": 1, "MinUsedSpace": None})] == ids[1:]
    # `committed` submits its PreCommit (the deals are in its CommD now) and then goes quiet
    ticket = svc.sealer.assign_ticket(committed)
    pieces = svc.sealer.market.pieces(committed["Miner"], committed["Number"])
    res = svc.sealer.submit_pre_commit({"ID": committed, "ProofType": 5}, {
        "CommR": bytes(range(32)), "CommD": comm_d_from_pieces(pieces, 2048), "Ticket": ticket}, False)
    assert res["Res"] == 1, res          # accepted
    steps = ["Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt", "TicketAssigned"]
    for prev, nxt in zip(steps, steps[1:]):          # `moving` reports a step every 5 hours: it is sealing, slowly
        clock.t += 5 * HOUR
        report(w, moving, prev, nxt)
        svc.housekeep()
    deals = {d["DealID"]: d["Sector"] for d in admin.call("Venus.MarketDeals", 1000)}
    assert deals == {ids[0]: moving["Number"], ids[1]: committed["Number"]}
    for sid in (moving, committed):
        assert not svc.state.sector(sid["Miner"], sid["Number"]).get("abort_reason")
    assert limited(metrics(svc, url), "deal_hold") == 0


def test_a_precommit_written_after_an_abort_is_refused(start):
    """The deal hold's abort and a PreCommit race: the write checks the sector again."""
    svc, _, _ = start(deals=True)
    sid = svc.sealer.allocate_sector({})["ID"]
    svc.sealer.abort(sid, "gone")
    before = svc.state.sector(sid["Miner"], sid["Number"])
    assert svc.state.update_open(sid["Miner"], sid["Number"], pre={"CommR": "00"}, state="PCSubmitted") is None
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before



def test_a_state_report_written_after_an_abort_changes_nothing(start):
    """A ReportState that passed its check just before an abort (the deal hold's, the operator's)
    writes nothing: the write checks the sector again, in its own transaction."""
    svc, _, _ = start(deals=True)
    sid = svc.sealer.allocate_sector({})["ID"]
    svc.sealer.abort(sid, "gone")
    before = svc.state.sector(sid["Miner"], sid["Number"])
    history = svc.state.history(sid["Miner"], sid["Number"])
    rec, seconds = svc.state.report(sid["Miner"], sid["Number"], {"state": "PC1Done", "worker": "w1"},
                                    "Allocated", "PC1Done", "Done", "w1")
    assert rec == before and seconds is None
    assert svc.state.sector(sid["Miner"], sid["Number"]) == before
    assert svc.state.history(sid["Miner"], sid["Number"]) == history


# --------------------------------------------------------------- error texts of tasks

def test_task_error_texts_are_cut_like_sector_reports(start):
    from .test_wdpost_jobs import _input
    svc, url, _ = start(sealing={"MaxTextLength": 1000})
    huge = "e" * (1 << 20)
    cut = "e" * 1000 + f"... [{(1 << 20) - 1000} more characters cut]"
    # WindowPoSt: a prover finishes its job with a 1 MiB reason
    job = svc.jobs.create(1000, 5, 0, [0], _input())
    svc.jobs.allocate(None, None, 1, "p1")
    svc.jobs.finish(job, None, huge)
    assert svc.jobs.get(job)["ErrorReason"] == cut
    # unseal and rebuild: a worker fails its task with one
    now = time.time()
    with svc.state.tx() as db:
        db.execute("INSERT INTO unseal_tasks (miner, number, piece_cid, dest, state, worker, created, updated) "
                   "VALUES (1000, 1, ?, 'piecestore', 'allocated', 'w1', ?, ?)", (CIDS[0], now, now))
        db.execute("INSERT INTO rebuild_tasks (miner, number, state, worker, created, updated) "
                   "VALUES (1000, 2, 'allocated', 'w1', ?, ?)", (now, now))
    svc.unsealer.achieve({"Miner": 1000, "Number": 1}, CIDS[0], huge)
    Rebuilder(svc.state, svc.chain, svc.sealer.market, svc.poster).done({"Miner": 1000, "Number": 2}, huge)
    assert svc.state.one("SELECT state, error FROM unseal_tasks") == ("failed", cut)
    assert svc.state.one("SELECT state, error FROM rebuild_tasks") == ("failed", cut)
    assert limited(metrics(svc, url), "text_truncated") == 3


# ---------------------------------------------------------------------------- config

def test_the_new_bounds_are_in_config_with_defaults_and_checked():
    cfg = parse_config({})
    assert (cfg.worker_expiry, cfg.max_worker_names, cfg.deal_hold_timeout) == (24 * HOUR, 256, 12 * HOUR)
    assert (cfg.piece_store_quota, cfg.unused_piece_expiry) == (1 << 40, 24 * HOUR)
    cfg = parse_config({"Sealing": {"WorkerExpiry": "2h", "MaxWorkerNamesPerCredential": 8, "DealHoldTimeout": "90m"},
                        "Market": {"PieceStoreQuota": "500GiB", "UnusedPieceExpiry": "3d"}})
    assert (cfg.worker_expiry, cfg.max_worker_names, cfg.deal_hold_timeout) == (2 * HOUR, 8, 1.5 * HOUR)
    assert (cfg.piece_store_quota, cfg.unused_piece_expiry) == (500 << 30, 72 * HOUR)
    for raw, msg in (({"Sealing": {"WorkerExpiry": "10s"}}, r"\[Sealing\].WorkerExpiry: 10 is below"),
                     ({"Sealing": {"MaxWorkerNamesPerCredential": 0}}, r"MaxWorkerNamesPerCredential: 0 is below"),
                     ({"Sealing": {"DealHoldTimeout": "soon"}}, r"\[Sealing\].DealHoldTimeout: invalid duration"),
                     ({"Market": {"PieceStoreQuota": "lots"}}, r"\[Market\].PieceStoreQuota: invalid byte size"),
                     ({"Market": {"UnusedPieceExpiry": -1}}, r"\[Market\].UnusedPieceExpiry: invalid duration")):
        with pytest.raises(ConfigError, match=msg):
            parse_config(raw)
    assert parse_config({"Market": {"Quota": 1}}).warnings == ["[Market]: unknown key 'Quota' ignored"]
