"""Expiry in the manager (manager/expiry.py): `util sealer sectors check-expire | expired |
extend` against the devnet, in process with real 2KiB sectors and the clock moved by hand; the
policy's minimum sector lifetime is cut to 60 epochs so that sectors end within a test."""

import json
import shutil
import threading
from contextlib import contextmanager

import pytest

from appliance.rpc import RPCError

from appliance import cli
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.manager.service import ManagerService, init_home

from .configs import manager_toml
from .test_devnet_lifecycle import onboard
from .test_devnet_proving import P2K, SEED

pytestmark = pytest.mark.timeout(240)
MINER = 1000
CONFIG = manager_toml(block_time="0s", miner={"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1}, "Proof": {"Enabled": False}},
                      config={"Chain": {"NetworkPower": "32KiB", "MinSectorExpiration": 60}})


class Farm:
    """A manager (not started: the test moves the clock and runs its passes) whose sectors are
    sealed on the devnet with the given expirations and persisted in persist-1."""
    def __init__(self, tmp_path, expirations: dict[int, int], config: str = CONFIG):
        self.home = tmp_path / "manager"
        self.home.mkdir()
        Devnet(self.home / "devnet.db", ChainPolicy(block_time=0, min_sector_expiration=60), genesis_seed=SEED).close()
        init_home(self.home, config)
        self.svc = ManagerService(self.home, _in_process_chain=True)
        self.chain = self.svc.devnet
        self.chain.advance(20)
        self.rs = onboard(self.chain, tmp_path, expirations)
        self.store = self.home / "persist-1"
        for n, r in self.rs.items():
            name = f"s-t0{MINER}-{n}"
            (self.store / "sealed").mkdir(exist_ok=True)
            shutil.copyfile(r.sector_dir / "sealed", self.store / "sealed" / name)
            shutil.copytree(r.sector_dir / "cache", self.store / "cache" / name,
                            ignore=shutil.ignore_patterns("sc-02-data-layer-*", "sc-02-data-tree-c*", "sc-02-data-tree-d*"))
            assert self.svc.state.allocate(MINER, P2K.id, 1, None) == n
            self.svc.state.update(MINER, n, persisted="persist-1", state="Finished", finalized=True)
        host, port = self.svc.rpc.serve("127.0.0.1", 0)
        self.url = f"http://{host}:{port}"

    def close(self):
        self.svc.rpc.shutdown()
        self.svc.poster.close()
        self.svc.close()

    def run(self, capsys, *args, json_out=True):
        rc = cli.main(["util", "sealer", "sectors", *args, "--api", self.url, "--home", str(self.home),
                       *(["--json"] if json_out else [])])
        out = capsys.readouterr()
        return rc, (json.loads(out.out) if json_out and out.out.strip() else out.out), out.err


@pytest.fixture
def farm(tmp_path):
    # deadline 0 (period start 2681: open 2681, last epoch 2740) holds 1 and 2; deadline 1 holds 3 and 4
    f = Farm(tmp_path, {1: 200, 2: 400, 3: 5000, 4: 6000})
    yield f
    f.close()


def extends_in_outbox(svc) -> int:
    return svc.state.query("SELECT COUNT(*) FROM outbox WHERE kind = 'extend'")[0][0]


def test_check_expire_lists_the_window_and_extend_plans_batches_without_sending(farm, capsys):
    chain, head = farm.chain, farm.chain.head()
    rc, r, _ = farm.run(capsys, "check-expire", "--miner", "1000", "--cutoff", str(1000 - head))
    assert rc == 0 and [s["ID"] for s in r["Sectors"]] == [1, 2]          # 200 and 400 within head + cutoff
    rc, r, _ = farm.run(capsys, "check-expire", "--miner", "f01000", "--cutoff", str(5000 - head))
    assert [(s["ID"], s["Expiration"]) for s in r["Sectors"]] == [(1, 200), (2, 400), (3, 5000)]   # by expiration
    one = r["Sectors"][0]
    assert one["Activation"] == chain.sector(MINER, 1).activation
    assert one["MaxExpiration"] == one["Activation"] + 5 * (365 * 2880 + 720)      # V1_1 proofs: five years
    assert one["MaxExtendNow"] == head + 1278 * 2880
    rc, out, _ = farm.run(capsys, "check-expire", "--miner", "1000", json_out=False)      # 60 days: all four
    assert out.splitlines()[0] == "Sectors(4):" and "\tID: 4" in out.splitlines() and "\tExpiration: 200 (in " in out

    # dry run: the declarations, grouped by deadline and partition, nothing journalled or sent
    rc, r, _ = farm.run(capsys, "extend", "--miner", "1000", "1", "2", "3", "--new-expiration", "9000", "--tolerance", "0")
    assert rc == 0 and r["DryRun"] and r["Total"] == 3
    assert [m["Extensions"] for m in r["Messages"]] == [[
        {"Deadline": 0, "Partition": 0, "Sectors": "1-2", "NewExpiration": 9000},
        {"Deadline": 1, "Partition": 0, "Sectors": "3", "NewExpiration": 9000}]]
    assert r["Messages"][0]["Message"] is None and extends_in_outbox(farm.svc) == 0
    # --max-sectors splits messages; new expirations apart by more than the tolerance are separate declarations
    rc, r, _ = farm.run(capsys, "extend", "--miner", "1000", "--from", "0", "--to", "10000", "--extension", "20000",
                        "--tolerance", "100", "--max-sectors", "2")
    assert [[(d["Deadline"], d["Sectors"], d["NewExpiration"]) for d in m["Extensions"]] for m in r["Messages"]] == [
        [(0, "1", 20200), (0, "2", 20400)], [(1, "3", 25000), (1, "4", 26000)]]
    rc, r, _ = farm.run(capsys, "extend", "--miner", "1000", "1", "2", "--extension", "20000", "--tolerance", "300")
    assert [m["Extensions"] for m in r["Messages"]] == [[{"Deadline": 0, "Partition": 0, "Sectors": "1-2", "NewExpiration": 20200}]]
    # the max extension holds a far new expiration to head + 1278 days
    rc, r, _ = farm.run(capsys, "extend", "--miner", "1000", "4", "--new-expiration", str(10 ** 9))
    assert r["Messages"][0]["Extensions"][0]["NewExpiration"] == head + 1278 * 2880
    rc, out, _ = farm.run(capsys, "extend", "--miner", "1000", "4", "--new-expiration", "6100", json_out=False)
    assert rc == 0 and out.strip() == "nothing to extend"       # within the tolerance (7 days)
    assert extends_in_outbox(farm.svc) == 0 and chain.sector(MINER, 1).expiration == 200

    # refused: a sector that is not active, a max-sectors above the actor's limit, an unknown miner
    rc, _, err = farm.run(capsys, "extend", "--miner", "1000", "9", "--new-expiration", "9000")
    assert rc == 2 and "sector 9 is not active" in err
    rc, _, err = farm.run(capsys, "extend", "--miner", "1000", "1", "--max-sectors", "25001")
    assert rc == 2 and "max-sectors (25001) exceeds the maximum limit (25000)" in err
    rc, _, err = farm.run(capsys, "check-expire", "--miner", "1001")
    assert rc == 2 and "miner 1001 is not one of this manager's miners" in err


@contextmanager
def clock_moving(chain, start, every: float = 0.2, most: int = 50):
    """The devnet's clock moved an epoch at a time in the background, once `start()` is true,
    while a command waits."""
    stop = threading.Event()

    def move():
        while not start():
            if stop.wait(0.05):
                return
        for _ in range(most):
            if stop.wait(every):
                return
            chain.advance(1)
    t = threading.Thread(target=move, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=30)


def test_extend_lands_windowpost_proves_past_the_old_expiration_and_the_actor_refusal_is_reported(farm, capsys):
    from .test_poster import run_to
    svc, chain = farm.svc, farm.chain
    rc, r, err = farm.run(capsys, "extend", "--miner", "1000", "1", "--new-expiration", "3000", "--tolerance", "0",
                          "--really-do-it", "--no-wait")
    assert rc == 0 and not r["DryRun"] and r["Messages"][0]["Message"], err
    msg = r["Messages"][0]["Message"]
    assert svc.state.query("SELECT kind, method, message FROM outbox WHERE kind = 'extend'") == [
        ("extend", "ExtendSectorExpiration2", msg)]
    # sent, not executed: a second extend leaves sector 1 out (no second message for it)
    rc, r, _ = farm.run(capsys, "extend", "--miner", "1000", "1", "--new-expiration", "3000", "--tolerance", "0", "--really-do-it")
    assert rc == 0 and r["Pending"] == [1] and r["Messages"] == [] and extends_in_outbox(svc) == 1
    chain.advance(1)
    assert chain.receipt(msg).ok
    assert chain.sector(MINER, 1).expiration == 3000 and chain.sector(MINER, 2).expiration == 400
    assert chain.sector_expiration(MINER, 1).on_time == 2740 + 2880          # quantised to deadline 0's next end
    rc, out, _ = farm.run(capsys, "extend", "--miner", "1000", "1", "--new-expiration", "3000", "--tolerance", "0",
                          "--really-do-it", json_out=False)
    assert out.strip() == "nothing to extend" and extends_in_outbox(svc) == 1

    # the actor's refusal: sector 2's expiration (400) passes before its extend executes; the command
    # waits for the receipt and reports the actor's reason
    chain.advance(400 - chain.head())
    with clock_moving(chain, lambda: extends_in_outbox(svc) == 2):
        rc, r, err = farm.run(capsys, "extend", "--miner", "1000", "2", "--new-expiration", "9000", "--tolerance", "0",
                              "--really-do-it", "--wait-timeout", "60")
    assert rc == 1 and r["Messages"][0]["Receipt"]["ExitCode"] == 18, (r, err)
    assert r["Messages"][0]["Receipt"]["Error"] == "cannot extend expiration for expired sector 2 at 400"
    assert chain.sector(MINER, 2).expiration == 400
    # now that it has passed, the manager refuses it before a message is spent, in the actor's words
    rc, _, err = farm.run(capsys, "extend", "--miner", "1000", "2", "--new-expiration", "9000", "--really-do-it")
    assert rc == 2 and "cannot extend expiration for expired sector 2 at 400" in err and extends_in_outbox(svc) == 2

    # WindowPoSt: deadline 0 proven in the first period (1 and 2), sector 2 leaves at 2740, sector 1
    # is proven again in the next period, past its old expiration
    chain.advance(2600 - chain.head())
    run_to(svc, 2745)
    assert chain.sector_expiration(MINER, 2) is None and chain.sector_expiration(MINER, 1).on_time == 5620
    (p,) = chain.deadline_partitions(MINER, 0)
    assert (p.sectors, p.terminated) == ((1,), (2,))
    chain.advance(5480 - chain.head())
    run_to(svc, 5625)
    proven = [(rec["period_start"], rec["sectors_proven"]) for rec in chain.deadline_records(MINER) if rec["index"] == 0]
    assert proven == [(2681, 2), (5561, 1)], proven
    assert chain.sector_expiration(MINER, 1) is None        # it left at its new expiration's deadline end


def files_of(store, n) -> list[str]:
    name = f"s-t0{MINER}-{n}"
    return [sub for sub in ("sealed", "cache") if (store / sub / name).exists()]


def test_expired_removes_files_only_of_sectors_the_chain_says_ended_and_a_crash_mid_way_is_finished(farm, capsys,
                                                                                                  monkeypatch):
    svc, chain, store = farm.svc, farm.chain, farm.store
    rc, r, _ = farm.run(capsys, "expired", "--miner", "1000")
    assert rc == 0 and r["Sectors"] == []                       # all live
    # sector 1 and 2 pass their expirations (200, 400) but stay live until deadline 0 ends at 2740
    chain.advance(2740 - chain.head())
    rc, r, _ = farm.run(capsys, "expired", "--miner", "1000")
    assert r["Sectors"] == []
    rc, _, err = farm.run(capsys, "expired", "--miner", "1000", "--remove-expired", "--confirm-remove-count", "0")
    assert rc == 0 and files_of(store, 1) == ["sealed", "cache"]
    chain.advance(1)                                            # deadline 0's cron: 1 and 2 expire
    assert chain.sector_expiration(MINER, 1) is None and chain.sector_expiration(MINER, 3) is not None
    rc, out, _ = farm.run(capsys, "expired", "--miner", "1000", json_out=False)
    assert out.splitlines() == ["SectorID", "1", "2"]
    rc, r, _ = farm.run(capsys, "expired", "--miner", "1000", "--expired-epoch", "300")
    assert [s["ID"] for s in r["Sectors"]] == [1]              # 2's expiration (400) is after that epoch
    # without the count, removal only says what it would remove and how to confirm it
    rc, out, _ = farm.run(capsys, "expired", "--miner", "1000", "--remove-expired", json_out=False)
    assert rc == 0 and "--confirm-remove-count=2" in out and files_of(store, 1) == ["sealed", "cache"]
    rc, _, err = farm.run(capsys, "expired", "--miner", "1000", "--remove-expired", "--confirm-remove-count", "3")
    assert rc == 2 and "doesn't match the number of sectors which can be removed (2)" in err
    # a live sector is never removed, whatever asks
    with pytest.raises(ValueError, match="is live on chain"):
        svc.expiry.remove_files(MINER, 3)
    assert files_of(store, 3) == ["sealed", "cache"]

    # the manager dies after journalling sector 1's removal, before a file goes: the next run finishes it
    def die(name):
        if name == "lifecycle.remove.after_journal":
            raise SystemExit(86)
    monkeypatch.setattr("appliance.manager.sector_removal.crash_point", die)
    with pytest.raises(SystemExit):
        svc.expiry.remove_expired(MINER, None, 2)
    monkeypatch.undo()
    rec = svc.state.sector(MINER, 1)
    assert rec["removal"]["paths"] and not rec.get("removed") and files_of(store, 1) == ["sealed", "cache"]
    rc, r, _ = farm.run(capsys, "expired", "--miner", "1000")
    assert [(s["ID"], s["Removing"]) for s in r["Sectors"]] == [(1, True), (2, False)]
    rc, r, err = farm.run(capsys, "expired", "--miner", "1000", "--remove-expired", "--confirm-remove-count", "2")
    assert rc == 0 and [s["ID"] for s in r["Removed"]] == [1, 2] and r["Failed"] == [], err
    assert files_of(store, 1) == files_of(store, 2) == [] and files_of(store, 3) == files_of(store, 4) == ["sealed", "cache"]
    assert all(svc.state.sector(MINER, n)["removed"] and svc.state.sector(MINER, n)["removal"]["done"] for n in (1, 2))
    rc, r, _ = farm.run(capsys, "expired", "--miner", "1000")
    assert r["Sectors"] == []
    rc, out, _ = farm.run(capsys, "expired", "--miner", "1000", "--show-removed", json_out=False)
    assert out.splitlines() == ["SectorID", "1 (removed)", "2 (removed)"]


@pytest.mark.parametrize("point", ["manager.commit.before_push", "manager.commit.after_push"])
def test_manager_killed_around_the_push_of_an_extend_sends_it_once(tmp_path, point):
    """A manager process killed after the extend is journalled, before or after its push: after the
    restart the message lands once and the sectors are extended once."""
    from .manager_driver import ManagerProc
    f = Farm(tmp_path, {1: 200, 2: 400, 3: 5000, 4: 6000})
    f.close()
    home = f.home
    (home / "sector-manager.cfg").rename(home / "manager.toml")     # ManagerProc's config name
    m = ManagerProc(home, crash_at=point)
    try:
        spec = {"Numbers": [1, 2], "NewExpiration": 3000, "Tolerance": 0, "ReallyDoIt": True}
        r = m.admin_call("Venus.SectorsExtend", 1000, spec)      # dies at the point, restarted, asked again
        assert m.crashes == 1
        assert r["Messages"] == [] and r["Pending"] == [1, 2]    # the journalled extend covers them: none sent again
        m.until("the extend executed", lambda: all(s["expiration"] == 3000 for s in m.call("Venus.DevnetSectors", 1000)
                                                   if s["number"] in (1, 2)))
        # pending until the restarted manager's commitment pass has pushed (again) what it journalled
        m.until("the extend recorded", lambda: not m.admin_call("Venus.SectorsExtend", 1000, {**spec, "ReallyDoIt": False})["Pending"])
        r = m.admin_call("Venus.SectorsExtend", 1000, spec)
        assert r["Messages"] == [] and r["Pending"] == [] and r["Skipped"] == [1, 2]     # extended already
    finally:
        m.stop()
    chain = Devnet(home / "devnet.db", ChainPolicy(block_time=0, min_sector_expiration=60))
    try:
        sent = chain.database.query("SELECT exit_code FROM messages WHERE method = 'ExtendSectorExpiration2'")
        assert sent == [(0,)]
        assert [chain.sector(MINER, n).expiration for n in (1, 2, 3)] == [3000, 3000, 5000]
    finally:
        chain.close()


def test_status_page_shows_expiring_sectors_by_deadline_read_once_per_head(farm, capsys, monkeypatch):
    svc, chain = farm.svc, farm.chain
    reads = []
    active = chain.active_sectors
    monkeypatch.setattr(chain, "active_sectors", lambda miner: reads.append(miner) or active(miner))
    assert svc.web.overview()["Expiring"]["1000"] == {"Computing": True}      # the refresher computes it, not the request
    svc.web.chain_views.refresh()
    page = svc.web.overview()["Expiring"]["1000"]
    assert (page["Days"], page["Total"], page["AsOf"]) == (30, 4, chain.head())
    assert page["Deadlines"] == [{"Deadline": 0, "Count": 2, "First": [1, 2]}, {"Deadline": 1, "Count": 2, "First": [3, 4]}]
    svc.web.overview()
    svc.web.chain_views.refresh(force=True)
    assert len(reads) == 1                                   # the same head: no second read of the chain
    rc, r, err = farm.run(capsys, "extend", "--miner", "1000", "1", "2", "--new-expiration", str(100 * 2880), "--tolerance", "0",
                          "--really-do-it", "--no-wait")
    assert rc == 0, err
    chain.advance(1)
    svc.web.chain_views.refresh(force=True)
    page = svc.web.overview()["Expiring"]["1000"]
    assert page["Total"] == 2 and page["Deadlines"] == [{"Deadline": 1, "Count": 2, "First": [3, 4]}]
    assert svc.expiry.expiring_by_deadline(1000, days=60, first=1)["Deadlines"] == [
        {"Deadline": 1, "Count": 2, "First": [3]}]


def test_extend_max_fee_lowers_the_fee_cap_so_gas_limit_times_fee_cap_fits(farm, capsys):
    from appliance.chain.money import cap_gas_fee
    assert cap_gas_fee({"gas_limit": 1000, "fee_cap": 50, "premium": 40}, 10_000) == {"gas_limit": 1000, "fee_cap": 10, "premium": 10}
    assert cap_gas_fee({"gas_limit": 1000, "fee_cap": 5, "premium": 4}, 10_000) == {"gas_limit": 1000, "fee_cap": 5, "premium": 4}
    assert cap_gas_fee({"value": 0}, 10) == {"value": 0}            # the node fills the gas: nothing to hold
    with clock_moving(farm.chain, lambda: extends_in_outbox(farm.svc) == 1):      # the command waits for the receipt
        rc, out, err = farm.run(capsys, "extend", "--miner", "1000", "3", "--new-expiration", "90000", "--max-fee", "0.001",
                                "--really-do-it", "--wait-timeout", "60", json_out=False)
    ((spec, msg),) = [(json.loads(row[0]), row[1]) for row in farm.svc.state.query("SELECT spec, message FROM outbox "
                                                                                    "WHERE kind = 'extend'")]
    assert rc == 0 and out.splitlines() == [f"Extending 1 sectors: {msg}", "  exit code 0", "1 sectors extended"], (out, err)
    uncapped = farm.svc.committer._spec(MINER, "ExtendSectorExpiration2", {}, 0)
    assert spec["gas_limit"] * uncapped["fee_cap"] > 10 ** 15 >= spec["gas_limit"] * spec["fee_cap"] > 0
    assert farm.chain.receipt(msg).ok and farm.chain.sector(MINER, 3).expiration == 90000


def test_an_ended_sector_stays_ended_when_the_devnet_is_opened_again(tmp_path):
    """devnet.db opened again (every manager start) must not put an expired sector back in a deadline."""
    f = Farm(tmp_path, {1: 200, 2: 400, 3: 5000, 4: 6000})
    f.chain.advance(2741 - f.chain.head())
    assert f.chain.sector_expiration(MINER, 1) is None
    f.close()
    chain = Devnet(f.home / "devnet.db", ChainPolicy(block_time=0, min_sector_expiration=60))
    try:
        assert chain.sector_expiration(MINER, 1) is None and chain.sector_location(MINER, 1).deadline == 0
        assert [s.number for s in chain.active_sectors(MINER)] == [3, 4]
    finally:
        chain.close()


def test_manager_killed_after_journalling_a_removal_finishes_it_when_asked_again(tmp_path):
    """The manager process dies after sector 1's removal is journalled, before any file goes: the
    restarted manager finishes that removal as it starts; asked again, it removes sector 2's files,
    and no live sector's."""
    from .manager_driver import ManagerProc
    f = Farm(tmp_path, {1: 200, 2: 400, 3: 5000, 4: 6000})
    f.close()
    home, store = f.home, f.store
    (home / "sector-manager.cfg").rename(home / "manager.toml")
    m = ManagerProc(home, crash_at="lifecycle.remove.after_journal")
    try:
        m.admin_call("Venus.DevnetAdvance", 2741 - m.call("Venus.DevnetHead")["Epoch"])     # 1 and 2 end at 2740
        assert [s["ID"] for s in m.call("Venus.SectorsExpired", 1000, False, None)["Sectors"]] == [1, 2]
        with pytest.raises(RPCError, match=r"can be removed \(1\)"):   # dies, restarted (1 finished), asked again
            m.admin_call("Venus.SectorsRemoveExpired", 1000, None, 2)
        assert m.crashes == 1 and files_of(store, 1) == []
        r = m.admin_call("Venus.SectorsRemoveExpired", 1000, None, 1)
        assert [s["ID"] for s in r["Removed"]] == [2] and r["Failed"] == []
        assert [(s["ID"], s["Removed"]) for s in m.call("Venus.SectorsExpired", 1000, True, None)["Sectors"]] == [
            (1, True), (2, True)]
    finally:
        m.stop()
    assert files_of(store, 1) == files_of(store, 2) == [] and files_of(store, 3) == files_of(store, 4) == ["sealed", "cache"]
