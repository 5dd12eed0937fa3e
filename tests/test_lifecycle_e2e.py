"""A sector's whole life with real processes (issue 18): four 2KiB sectors proving on the devnet,
a `damocles manager run` process, Damocles' commands against it. Within the check-expire window
two are extended, one is terminated, the last is left to expire; WindowPoSt keeps proving exactly
the live ones; `remove` deletes a sector's files only once the chain says it is gone; the miner's
power and the status page agree at each step."""

import json
import time
import urllib.request

import pytest

from appliance import cli
from appliance.rpc.auth import issue_token, load_or_create_secret

from .configs import manager_toml
from .manager_driver import ManagerProc
from .test_expiry import Farm, files_of
from .test_post_e2e import until

pytestmark = pytest.mark.timeout(300)
MINER = 1000
CONFIG = manager_toml(block_time="0s", check_interval="50ms",
                      miner={"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1}, "Proof": {"Enabled": False},
                             "Commitment": {"Terminate": {"Batch": {"Threshold": 1, "CheckInterval": "50ms"}}}},
                      config={"Chain": {"NetworkPower": "32KiB", "MinSectorExpiration": 60}})


class Cluster:
    def __init__(self, tmp_path, capsys):
        # deadline 0 holds 1 and 2 (expiring at 200 and 400), deadline 1 holds 3 and 4 (5000, 300)
        farm = Farm(tmp_path, {1: 200, 2: 400, 3: 5000, 4: 300}, CONFIG)
        farm.close()
        self.home, self.store, self.capsys = farm.home, farm.store, capsys
        (self.home / "sector-manager.cfg").rename(self.home / "manager.toml")
        self.m = ManagerProc(self.home)
        self.url = self.m.rpc.url.removesuffix("/rpc/v0")
        self.read = issue_token(load_or_create_secret(self.home / "secret"), "read")

    def run(self, *args):
        rc = cli.main(["util", "sealer", "sectors", *args, "--api", self.url, "--home", str(self.home), "--json"])
        out = self.capsys.readouterr()
        return rc, (json.loads(out.out) if out.out.strip() else None), out.err

    def head(self) -> int:
        return self.m.call("Venus.DevnetHead")["Epoch"]

    def advance(self, n: int) -> None:
        self.m.admin_call("Venus.DevnetAdvance", n)

    def live(self) -> set[int]:
        """The sectors the chain's partitions hold live, all deadlines."""
        return {n for d in range(48) for p in self.m.call("Venus.ProvingDeadline", MINER, d)["Partitions"] for n in p["Sectors"]}

    def agree(self, expected: set[int]) -> dict:
        """Power, the partitions and the status page all say `expected` are the live sectors."""
        power = self.m.call("Venus.ProvingInfo", MINER)["Power"]["active_sectors"]
        head, page = self.head(), {}
        for _ in range(300):      # the chain views of this head (the manager's refresher: within 5 s); bounded, 30 s
            req = urllib.request.Request(self.url + "/ui/api/overview", headers={"Authorization": f"Bearer {self.read}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                page = json.loads(r.read())
            if all(page[v][str(MINER)].get("AsOf") == head for v in ("Proving", "Expiring")):
                break
            time.sleep(0.1)       # polling the page for the background computation
        else:
            raise AssertionError(f"the status page's chain views never reached epoch {head}: {page}")
        on_page = sum(p["Sectors"] for d in page["Proving"][str(MINER)]["Deadlines"] for p in d["Partitions"])
        soon = page["Expiring"][str(MINER)]          # all of them end within 30 days
        expiring = {n for d in soon["Deadlines"] for n in d["First"]}
        assert (power, self.live(), on_page, expiring, soon["Total"]) == (len(expected), expected, len(expected), expected,
                                                                        len(expected)), page["Expiring"]
        return page

    def prove(self, period_start: int, d: int) -> dict:
        """Drive the clock through deadline `d` of the period starting at `period_start` until the
        manager's WindowPoSt for it lands, then past its close; returns the poster's round."""
        open_ = period_start + d * 60
        if self.head() < open_ - 18:                   # challenge + ChallengeConfidence
            self.advance(open_ - 18 - self.head())

        def landed():
            r = next((r for r in self.m.call("Venus.ProvingDeadline", MINER, d)["Rounds"] if r["PeriodStart"] == period_start), {})
            if r.get("state") in ("landed", "failed", "empty"):
                return r
            if r.get("state") in ("proved", "submitted") or self.head() < open_ + 1:
                self.advance(1)                         # to the submit epoch, then to the message's execution
            return None
        r = until(f"deadline {d} of period {period_start} to land", landed, procs=[self.m.proc])
        if self.head() < open_ + 61:
            self.advance(open_ + 61 - self.head())
        return r

    def close(self):
        self.m.stop()


@pytest.fixture
def cluster(tmp_path, capsys):
    c = Cluster(tmp_path, capsys)
    yield c
    c.close()


def test_extend_half_terminate_one_let_the_rest_expire(cluster):
    c = cluster
    page = c.agree({1, 2, 3, 4})
    assert page["Terminations"] == []

    # the check-expire window: the three that end within 1000 epochs, by expiration
    rc, r, err = c.run("check-expire", "--miner", "1000", "--cutoff", str(1000 - c.head()))
    assert rc == 0 and [s["ID"] for s in r["Sectors"]] == [1, 4, 2], err

    # extend 1 and 2 (half of them); terminate 3
    rc, r, err = c.run("extend", "--miner", "1000", "1", "2", "--new-expiration", "6000", "--tolerance", "0",
                       "--really-do-it", "--no-wait")
    assert rc == 0 and len(r["Messages"]) == 1, err
    rc, _, err = c.run("terminate", "1000", "3", "--really-do-it")
    assert rc == 0, err
    head = c.head()
    until("the TerminateSectors to be sent", lambda: c.run("terminate", "query", "1000", "3")[1]["TerminateCid"],
          procs=[c.m.proc])
    assert c.head() == head                                                 # the clock stood still
    rc, _, err = c.run("remove", "1000", "3", "--really-do-it")              # not landed: its files stay
    assert rc == 2 and "live on chain" in err and files_of(c.store, 3) == ["sealed", "cache"]
    c.advance(1)                                                            # both land
    rc, r, _ = c.run("check-expire", "--miner", "1000", "--cutoff", "10000")
    assert {s["ID"]: s["Expiration"] for s in r["Sectors"]} == {1: 6000, 2: 6000, 4: 300}
    page = c.agree({1, 2, 4})
    [t] = page["Terminations"]
    assert t["Sector"] == "s-t01000-3" and t["State"] in ("sent", "landed")

    # remove 3 once the chain has ended it (and WinningPoSt's lookback has passed)
    c.advance(11)
    c.m.until("the termination to be confirmed", lambda: c.run("terminate", "query", "1000", "3")[1]["TerminatedAt"])
    rc, _, err = c.run("remove", "1000", "3", "--really-do-it")
    assert rc == 0, err
    assert files_of(c.store, 3) == [] and all(files_of(c.store, n) == ["sealed", "cache"] for n in (1, 2, 4))
    rc, _, err = c.run("remove", "1000", "4", "--really-do-it")              # live until its deadline's end
    assert rc == 2 and "live on chain until epoch 2800" in err and files_of(c.store, 4) == ["sealed", "cache"]

    # the first proving period: deadline 0 proves 1 and 2, deadline 1 proves 4 alone; 4 then expires
    period = c.m.call("Venus.ProvingInfo", MINER)["PeriodStart"]
    while period - 18 <= c.head():                 # the next period whose deadline 0 has not begun
        period += 2880
    assert period == 2681
    assert (lambda r: (r["state"], r["sectors"]))(c.prove(period, 0)) == ("landed", [1, 2])
    assert [p["Sectors"] for p in c.m.call("Venus.ProvingDeadline", MINER, 1)["Partitions"]] == [[4]]
    assert (lambda r: (r["state"], r["sectors"]))(c.prove(period, 1)) == ("landed", [4])
    assert c.head() > 2800
    c.agree({1, 2})
    rc, r, _ = c.run("expired", "--miner", "1000")
    assert [s["ID"] for s in r["Sectors"]] == [4]               # 3's files are removed already
    rc, _, err = c.run("remove", "1000", "4", "--really-do-it")
    assert rc == 0 and files_of(c.store, 4) == [], err
    rc, _, err = c.run("remove", "1000", "1", "--really-do-it")
    assert rc == 2 and "live on chain" in err and files_of(c.store, 1) == ["sealed", "cache"]

    # the next period: the extended sectors are proven past their old expirations; deadline 1 has none
    assert (lambda r: (r["state"], r["sectors"]))(c.prove(period + 2880, 0)) == ("landed", [1, 2])
    assert c.prove(period + 2880, 1)["state"] == "empty"
    c.agree({1, 2})
    assert c.m.call("Venus.ProvingFaults", MINER) == []
