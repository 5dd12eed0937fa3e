"""The random-kill campaign: a manager, a worker (two sealer threads, one of them taking deals,
and snapup, rebuild, unseal and wdpost threads) and a dedicated prover, all real processes on
loopback, with the devnet clock moved by hand. While they seal CC and deal sectors, upgrade a CC
sector with a deal, rebuild a sector whose files were deleted, unseal a deal's piece and prove
WindowPoSt deadlines, a seeded random schedule SIGKILLs the manager, the worker, the prover and
the worker's processor children (at least 30 kills), and restarts each killed role (a killed
processor child is the worker's to replace).

At the end: every allocated sector landed or was aborted with a reason, no number was allocated
twice, no chain message was sent twice, no completed step was redone, no thread waits for an
operator, every task ended done, and every WindowPoSt deadline with sectors was proven or a kill
fell in its window. The summary line printed at the end gives the counts.

DAMOCLES_KILL_SEED sets the seed (default: a fresh one, printed), DAMOCLES_KILLS the number of
kills (default 30)."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.rpc import RPCError
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient, TransportError

from .conftest import ROOT, damocles_cmd, read_line, run_cli, signal_all
from .configs import post_toml, worker_toml
from .test_post_e2e import post_manager

pytestmark = pytest.mark.slow

SECTORS = 24                    # 1 with a deal, the others CC: some upgraded, some rebuilt
WAVES = 3                       # waves of tasks while the sectors seal: snapups, 2 rebuilds, an unseal
EPOCH_S = 0.2                   # the hand-moved clock's pace while work is in flight
WINDOW_EPOCH_S = 0.1            # its pace through a WindowPoSt deadline's window
ROLES = ("manager", "worker", "prover", "pool")
KILL_GAP_S = (0.5, 4.0)         # seconds between the end of one restart and the next kill
RUN_LIMIT_S = 900               # the whole campaign; the test's own timeout is above it

MANAGER = post_manager(
    SECTORS, miner={"Sector": {"EnableDeals": True, "SealingEpochs": 1000}},
    config={"Common": {"Proving": {"WorkerProver": {"JobMaxTry": 50}},      # a job outlives many prover kills
                       "PieceStores": [{"Name": "pieces", "Path": "pieces"}]},
            # a manager killed between committing an allocation and answering it leaves a number no
            # worker heard of: released (aborted, saying so) within the campaign, not after 10 minutes
            "Sealing": {"UnreportedReleaseAfter": "20s"}})


def thread_tables(tmp: Path) -> list[dict]:
    """Two sealers (t1 takes deals of 1 KiB or more: the sealed deal, never the small snap deals),
    then one thread of each other plan."""
    return [{"location": tmp / "t0"},
            {"location": tmp / "t1", "sealing": {"enable_deals": True, "min_deal_space": 1024}},
            {"location": tmp / "t2", "plan": "snapup"},
            {"location": tmp / "t3", "plan": "rebuild"},
            {"location": tmp / "t4", "plan": "unseal"},
            {"location": tmp / "t5", "plan": "wdpost"}]


class CampaignFailure(AssertionError):
    pass


@dataclass
class Kill:
    role: str
    at: float                   # seconds since the campaign started
    head: int                   # the devnet head when it fell (only the driver moves it)
    what: str


@dataclass
class Cluster:
    """The processes of the campaign. `lock` is held while a role is killed and restarted, and
    by the driver around operator actions that must not be sent twice (a deal import)."""
    tmp: Path
    home: Path
    procs: dict = field(default_factory=dict)
    starts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.RLock = field(default_factory=threading.RLock)
    listen: str | None = None
    url: str | None = None
    secret: bytes | None = None

    def _start(self, role: str, args: list[str]) -> subprocess.Popen:
        self.starts[role] += 1
        log = self.tmp / "logs" / f"{role}-{self.starts[role]}.log"
        log.parent.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(log, "w") as err:
            proc = subprocess.Popen(damocles_cmd(*args), stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, env=env)
        proc.stderr = open(log)
        self.procs[role] = proc
        return proc

    def start_manager(self) -> None:
        args = ["manager", "run", "--home", str(self.home)] + (["--listen", self.listen] if self.listen else [])
        line = read_line(self._start("manager", args), timeout=60, what="'listening on' line")
        if not line.startswith("listening on "):
            raise CampaignFailure(f"the manager did not start: {line!r}\n{self.procs['manager'].stderr.read()}")
        if self.url is None:
            self.url = line.split()[-1]
            self.listen = self.url.split("//")[1].split("/")[0]
            self.secret = load_or_create_secret(self.home / "secret")

    def token(self, perm: str) -> str:
        return issue_token(self.secret, perm)

    def start_worker(self) -> None:
        line = read_line(self._start("worker", ["worker", "run", "-c", str(self.tmp / "worker.toml"),
                                                "--parent-cache", str(self.tmp / "parents")]), timeout=90, what="first line")
        if not line.startswith("worker "):
            raise CampaignFailure(f"the worker did not start: {line!r}\n{self.procs['worker'].stderr.read()}")

    def start_prover(self) -> None:
        line = read_line(self._start("prover", ["post", "run", "-c", str(self.tmp / "prover.toml")]), timeout=60,
                         what="first line")
        if not line.startswith("prover "):
            raise CampaignFailure(f"the prover did not start: {line!r}\n{self.procs['prover'].stderr.read()}")

    def restart(self, role: str) -> None:
        {"manager": self.start_manager, "worker": self.start_worker, "prover": self.start_prover}[role]()

    def pool_children(self) -> list[psutil.Process]:
        """The worker's processor processes: spawned pool members and external processors (not the
        resource tracker, which is multiprocessing's, not a processor)."""
        try:
            tree = psutil.Process(self.procs["worker"].pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in tree:
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in cmd:
                continue
            if "spawn_main" in cmd or "--multiprocessing-fork" in cmd or " processor " in f" {cmd} ":
                out.append(p)
        return out

    def kill(self, role: str, rng: random.Random) -> str | None:
        """SIGKILL `role` (its whole process tree, as the frozen executable needs) and restart it;
        for "pool" one processor child chosen by `rng`. None when there was nothing to kill."""
        if role == "pool":
            children = self.pool_children()
            if not children:
                return None
            victim = rng.choice(sorted(children, key=lambda p: p.pid))
            try:
                what = f"pool child {victim.pid} ({' '.join(victim.cmdline()[-2:])})"
                victim.kill()
            except psutil.Error:
                return None
            return what
        proc = self.procs[role]
        signal_all(proc, signal.SIGKILL)
        proc.wait(timeout=30)
        self.restart(role)
        return f"{role} pid {proc.pid}"

    def ensure_running(self) -> None:
        for role in ("manager", "worker", "prover"):
            if self.procs[role].poll() is not None:
                raise CampaignFailure(f"the {role} exited by itself with {self.procs[role].returncode}:\n"
                                      f"{self.procs[role].stderr.read()[-4000:]}")

    def stop_all(self) -> None:
        for role in ("prover", "worker", "manager"):
            p = self.procs.get(role)
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    signal_all(p, signal.SIGKILL)
                    p.wait(timeout=30)


class Killer(threading.Thread):
    """Kills roles at seeded random moments until it has `target` kills and the driver says the
    work is done. The roles come in seeded shuffled rounds, so every role is hit about as often."""

    def __init__(self, cluster: Cluster, rng: random.Random, target: int, started: float, head):
        super().__init__(name="killer", daemon=True)
        self.cluster, self.rng, self.target, self.started, self.head = cluster, rng, target, started, head
        self.kills: list[Kill] = []
        self.work_done = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        order: list[str] = []
        try:
            while not self.stop.is_set():
                if len(self.kills) >= self.target and self.work_done.is_set():
                    return
                if self.stop.wait(self.rng.uniform(*KILL_GAP_S)):   # the schedule's random gap, not a wait for an event
                    return
                if not order:
                    order = list(ROLES)
                    self.rng.shuffle(order)
                role = order.pop()
                with self.cluster.lock:
                    head, at = self.head(), time.monotonic() - self.started
                    what = self.cluster.kill(role, self.rng)
                if what is None:
                    order.append(role)          # no processor child right now: it comes again later
                    continue
                self.kills.append(Kill(role, at, head, what))
                print(f"kill {len(self.kills)}: {what} at {at:.1f} s, head {head}", flush=True)
        except BaseException as exc:   # reported by the driver, which fails the test with it
            self.error = exc


class Driver:
    """Moves the clock and asks for the work; every wait bounded."""

    def __init__(self, cluster: Cluster, started: float):
        self.c, self.started = cluster, started
        self.admin = RPCClient(cluster.url, cluster.token("admin"), timeout=20)
        self.head = 0
        self.killer: Killer | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_alive(self) -> None:
        if self.killer is not None and self.killer.error is not None:
            raise CampaignFailure(f"the killer failed: {self.killer.error!r}") from self.killer.error
        if self.elapsed() > RUN_LIMIT_S:
            raise CampaignFailure(f"the campaign ran past {RUN_LIMIT_S} s")
        with self.c.lock:
            self.c.ensure_running()

    def call(self, method: str, *params, timeout: float = 90):
        """An RPC to the manager; a manager being killed and restarted is waited for (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.admin.call(method, *params)
            except TransportError as exc:
                if time.monotonic() > deadline:
                    raise CampaignFailure(f"{method}: the manager did not answer for {timeout:g} s: {exc}") from None
                self.check_alive()
                time.sleep(0.2)   # the manager is restarting; bounded by the deadline

    def advance(self, epochs: int) -> None:
        if epochs > 0:
            self.head = self.call("Venus.DevnetAdvance", epochs)["Epoch"]

    def until(self, what: str, fn, timeout: float, tick: bool = True, explain=None):
        """Poll `fn` until it returns something true; while waiting the clock moves an epoch every
        EPOCH_S when `tick`. `explain()` says what was still missing when it times out."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                raise CampaignFailure(f"timed out after {timeout:g} s waiting for {what}"
                                      + (f": {explain()}" if explain else ""))
            if tick:
                self.advance(1)
            time.sleep(EPOCH_S)   # the clock's pace; bounded by the deadline

    def sectors_settled(self):
        listed = self.call("Venus.ListSectors", "", 0)
        done = [s for s in listed if s["Finalized"] or s["AbortReason"]]
        return listed if len(listed) == SECTORS and len(done) == SECTORS else None

    def used_deadlines(self) -> list[int]:
        return [d["Index"] for d in self.call("Venus.ProvingDeadlines", 1000) if d["Sectors"]]

    def proving_pass(self) -> list[int]:
        """Every used deadline's next occurrence, in order: the clock jumps to just before each
        challenge and then moves an epoch every EPOCH_S through the window, so the manager and the
        provers prove it as they would on a live chain. Returns the closes it went through."""
        info = self.call("Venus.ProvingInfo", 1000)
        used = self.used_deadlines()
        head = self.call("Venus.DevnetHead")["Epoch"]
        occurrences = sorted(o for d in used for ps in (info["PeriodStart"], info["PeriodStart"] + 2880,
                                                        info["PeriodStart"] + 5760)
                             for o in [ps + d * 60] if o - 22 > head)[: len(used)]
        closes = []
        for open_ in occurrences:
            self.head = self.call("Venus.DevnetHead")["Epoch"]
            self.advance(open_ - 22 - self.head)
            while self.head < open_ + 61:
                self.check_alive()
                self.advance(1)
                time.sleep(WINDOW_EPOCH_S)   # the clock's pace through the window
            closes.append(open_ + 60)
        return closes


class Work:
    """The sealing run and the waves of tasks, advanced a poll at a time by `step`."""

    def __init__(self, driver: Driver, cluster: Cluster, tmp: Path, cli: list[str], sealed_deal: dict):
        self.d, self.c, self.tmp, self.cli, self.sealed_deal = driver, cluster, tmp, cli, sealed_deal
        self.waves = 0
        self.upgraded: list[int] = []       # snap candidates added
        self.rebuilt: list[int] = []
        self.unsealed: list[Path] = []
        self.snap_deals: list[dict] = []
        self.next_pause_check = 0.0

    def tasks(self) -> tuple[list, list, list]:
        snaps = [x for x in self.d.call("Venus.SnapUpCandidateList", 1000) if x["Sector"]["Number"] in self.upgraded]
        return snaps, self.d.call("Venus.RebuildTasks"), self.d.call("Venus.UnsealTasks")

    @staticmethod
    def unfinished(snaps, rebuilds, unseals) -> list[dict]:
        return ([x for x in snaps if x["State"] != "landed"] + [x for x in rebuilds + unseals if x["State"] != "done"])

    def _import(self, path: Path) -> dict:
        with self.c.lock:       # an operator action is sent once: no kill while it is asked
            return json.loads(run_cli("util", "piece", "import", str(path), "--miner", "1000", *self.cli, "--json",
                                      check=True).stdout)

    def _feed_snap_deal(self, snaps) -> None:
        """One small deal at a time: an upgrade takes every pending deal that fits, so each
        candidate gets its own deal only once the one before has taken its."""
        pending = [x for x in self.d.call("Venus.MarketDeals", 1000) if x["Sector"] is None]
        if any(x["State"] == "candidate" for x in snaps) and not pending:
            p = self.tmp / f"snap-{len(self.snap_deals)}.bin"
            p.write_bytes(f"snap deal {len(self.snap_deals)} ".encode() * 8)       # a 128-byte piece
            self.snap_deals.append(self._import(p))

    def _wave(self, landed: list[int], deal_sector: int) -> bool:
        """Ask for the next wave of tasks if enough CC sectors have landed; True if it did."""
        used = set(self.upgraded) | set(self.rebuilt) | {deal_sector}
        free = [n for n in landed if n not in used]
        if len(free) < 3:
            return False
        members = {i: [n for part in self.d.call("Venus.ProvingDeadline", 1000, i)["Partitions"] for n in part["Sectors"]]
                   for i in self.d.used_deadlines()}
        # the deadline where a fetch adds the fewest sectors (it adds every CC sector not upgraded yet)
        fetchable = sorted((len([n for n in ns if n not in self.upgraded and n != deal_sector]), i)
                           for i, ns in members.items() if any(n in free for n in ns))
        if not fetchable:
            return False
        with self.c.lock:       # operator actions are sent once: no kill while they are asked
            added = self.d.call("Venus.SnapUpFetch", 1000, fetchable[0][1])["Added"]
            self.upgraded += added
            for n in [n for n in free if n not in added][:2]:
                (self.c.home / "persist-1" / "sealed" / f"s-t01000-{n}").unlink()
                self.d.call("Venus.RebuildRequest", {"Miner": 1000, "Number": n})
                self.rebuilt.append(n)
            out = self.tmp / "unsealed" / f"unsealed-{self.waves}.bin"     # inside the worker's unseal_output_dirs
            self.d.call("Venus.UnsealRequest", {"Miner": 1000, "Number": deal_sector}, self.sealed_deal["PieceCID"], f"file://{out}")
            self.unsealed.append(out)
        self.waves += 1
        print(f"wave {self.waves} at {self.d.elapsed():.1f} s: upgrade {added}, rebuilt so far {self.rebuilt}, unseal {out.name}",
              flush=True)
        return True

    def describe(self) -> str:
        listed = self.d.call("Venus.ListSectors", "", 0)
        states = collections.Counter((s["State"], s["Finalized"], s["AbortReason"]) for s in listed)
        return (f"{len(listed)} sectors {dict(states)}; {self.waves} waves; unfinished tasks {self.unfinished(*self.tasks())}")

    def _no_thread_paused(self) -> None:
        """Every few seconds: a thread paused for an operator fails the campaign at once (it would
        only time out later), with the thread's error."""
        if time.monotonic() < self.next_pause_check:
            return
        self.next_pause_check = time.monotonic() + 5
        # the sealing worker: the prover's name is listed too (bound to its token), without an address
        workers = [w for w in self.d.call("Venus.WorkerPingInfoList") if w["Info"].get("Dest")]
        if not workers:
            return
        try:
            rows = RPCClient(f"http://{workers[0]['Info']['Dest']}", self.c.token("admin"), timeout=10).call("VenusWorker.WorkerList")
        except (TransportError, RPCError):
            return              # the worker is restarting; the next check sees it
        paused = [(r["index"], r["plan"], r["job_id"], r["last_error"]) for r in rows if r["thread_state"]["state"] == "Paused"]
        if paused:
            raise CampaignFailure(f"threads paused for an operator at {self.d.elapsed():.0f} s: {paused}")

    def step(self) -> bool:
        self._no_thread_paused()
        listed = self.d.call("Venus.ListSectors", "", 0)
        landed = [s["ID"]["Number"] for s in listed if s["Finalized"] and not s["AbortReason"]]
        deal_sector = next((x["Sector"] for x in self.d.call("Venus.MarketDeals", 1000)
                            if x["DealID"] == self.sealed_deal["DealID"]), None)
        snaps, rebuilds, unseals = self.tasks()
        self._feed_snap_deal(snaps)
        pending = self.unfinished(snaps, rebuilds, unseals)
        if deal_sector in landed and self.waves < WAVES and not pending:
            self._wave(landed, deal_sector)
            return False
        settled = len(listed) == SECTORS and all(s["Finalized"] or s["AbortReason"] for s in listed)
        failed = [x for x in pending if x["State"] == "failed"]
        if failed:
            raise CampaignFailure(f"tasks failed: {failed}")
        return settled and self.waves >= WAVES and not pending


def _journal_logs(tmp: Path) -> dict[str, list[tuple]]:
    """Each thread's journal log: (sector, prev, next, event, level, error) rows."""
    out = {}
    for path in sorted(tmp.glob("t*/meta/journal.db")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            out[path.parent.parent.name] = db.execute(
                "SELECT sector, prev, next, event, level, error FROM log ORDER BY seq").fetchall()
        finally:
            db.close()
    return out


# the sealer plan's resubmits go back a state, so the submit after them is allowed once more
RESUBMIT_EVENTS = {"ReSubmitPC": ("PC2Done", "PCSubmitted", "SubmitPC"),
                   "ReSubmitProof": ("C2Done", "ProofSubmitted", "SubmitProof")}


def _runs(rows: list[tuple]) -> list[list[tuple]]:
    """A journal's log cut into runs, one per sector or task: each ends with the clear row (no
    next state, an event) written when it finished or was aborted; the last may be unfinished."""
    runs, current = [], []
    for row in rows:
        sector, prev, nxt, event, level, error = row
        if sector is None:
            continue            # a failure before any sector (no work, manager unreachable)
        current.append(row)
        if nxt is None and event is not None:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def _redone(run: list[tuple]) -> list[tuple]:
    steps = collections.Counter(r[1:4] for r in run if r[2] is not None and r[3] not in RESUBMIT_EVENTS)
    for r in run:
        if r[3] in RESUBMIT_EVENTS:
            steps[RESUBMIT_EVENTS[r[3]]] -= 1
    return [step for step, k in steps.items() if k > 1]


def _message_keys(m: dict, period_offset: int) -> list[tuple]:
    """What a chain message acts on: (kind, sector) for sealing messages; for a WindowPoSt the
    deadline, its partitions and the proving period it was pushed in (a second proof of the same
    window is a resend whatever its ChainCommitEpoch); the whole params otherwise."""
    p = m["params"]
    if m["method"] == "PreCommitSectorBatch2":
        return [("pre", s["SectorNumber"]) for s in p["Sectors"]]
    if m["method"] == "ProveCommitSectors3":
        return [("prove", a["SectorNumber"]) for a in p["SectorActivations"]]
    if m["method"] == "ProveReplicaUpdates3":
        return [("update", u["Sector"]) for u in p["SectorUpdates"]]
    if m["method"] == "SubmitWindowedPoSt":
        period = (m["pushed_epoch"] - period_offset - p["Deadline"] * 60) // 2880
        return [("post", p["Deadline"], period, tuple(x["Index"] for x in p["Partitions"]))]
    return [(m["method"], json.dumps(p, sort_keys=True))]


def _sent_twice(messages: list[dict], period_offset: int) -> list[tuple]:
    """Keys sent again although the message before for the same key had not failed: it was
    still pending when the next was pushed, or it succeeded. (A resend after a failure on chain
    is what the plans' resubmits do.)"""
    last: dict[tuple, dict] = {}
    twice = []
    for m in messages:          # in push order
        for key in _message_keys(m, period_offset):
            prev = last.get(key)
            if prev is not None and (prev["exit_code"] in (0, None) or prev["executed_epoch"] > m["pushed_epoch"]):
                twice.append((key, prev["id"], m["id"]))
            last[key] = m
    return twice


def _check(problems: list[str], ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


@pytest.mark.timeout(1200)
def test_random_kills_lose_nothing_and_stick_nowhere(tmp_path):
    seed = int(os.environ.get("DAMOCLES_KILL_SEED") or random.SystemRandom().randrange(1 << 32))
    target = int(os.environ.get("DAMOCLES_KILLS") or 30)
    print(f"kill campaign seed {seed} (DAMOCLES_KILL_SEED={seed} repeats the schedule), {target} kills", flush=True)
    rng = random.Random(seed)
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    (home / "pieces").mkdir()
    c = Cluster(tmp_path, home)
    started = time.monotonic()
    killer = None
    try:
        c.start_manager()
        cli = ["--api", c.url, "--home", str(home)]
        deal_piece = tmp_path / "deal-sealed.bin"
        deal_piece.write_bytes(bytes(range(256)) * 3 + b"sealed with its deal" * 10)   # 968 bytes: a 1 KiB piece
        sealed_deal = json.loads(run_cli("util", "piece", "import", str(deal_piece), "--miner", "1000", *cli, "--json",
                                         check=True).stdout)
        (tmp_path / "unsealed").mkdir()
        (tmp_path / "worker.toml").write_text(worker_toml(c.url, c.token("write"), home / "persist-1", thread_tables(tmp_path),
                                                          worker={"unseal_output_dirs": [str(tmp_path / "unsealed")]}))
        (tmp_path / "prover.toml").write_text(post_toml(c.url, c.token("write"), home / "persist-1", name="prover"))
        c.start_worker()
        c.start_prover()
        d = Driver(c, started)
        killer = d.killer = Killer(c, rng, target, started, lambda: d.head)
        killer.start()

        # 1-2. seal the sectors (one with a deal) and, as CC sectors land, run waves of tasks:
        # upgrade the CC sectors of a deadline, rebuild two lost sectors, unseal the deal's piece
        work = Work(d, c, tmp_path, cli, sealed_deal)
        d.until(f"{SECTORS} sectors sealed and {WAVES} waves of tasks done", work.step, timeout=480, explain=work.describe)
        sealed_at = d.elapsed()
        snaps, rebuilds, unseals = work.tasks()

        # 3. WindowPoSt rounds until the killer has its kills (at least one whole pass)
        closes = d.proving_pass()
        while killer.is_alive() and len(killer.kills) < target:
            closes += d.proving_pass()
        killer.work_done.set()
        killer.join(timeout=120)
        assert not killer.is_alive(), "the killer did not stop within 120 s"
        d.check_alive()

        # settle: no kills now; every sector and task must be where it was left, or finish
        listed = d.until("every sector settled after the last kill", d.sectors_settled, timeout=120)
        dest = next(w["Info"]["Dest"] for w in d.call("Venus.WorkerPingInfoList") if w["Info"].get("Dest"))
        threads = json.loads(run_cli("worker", "list", "--worker", dest, "--home", str(home), "--json", check=True).stdout)["threads"]
        snaps, rebuilds, unseals = work.tasks()
        unfinished = work.unfinished(snaps, rebuilds, unseals)
        on_chain = {s["number"]: s for s in d.call("Venus.DevnetSectors", 1000)}
        power = d.call("Venus.ProvingInfo", 1000)["Power"]
    finally:
        if killer is not None:
            killer.stop.set()
            killer.join(timeout=120)
        c.stop_all()
    elapsed = time.monotonic() - started

    problems: list[str] = []
    # every allocated sector landed (finalized, active on the chain) or aborted with a reason
    numbers = [s["ID"]["Number"] for s in listed]
    _check(problems, len(numbers) == len(set(numbers)), f"a sector number listed twice: {sorted(numbers)}")
    aborted = {s["ID"]["Number"]: s["AbortReason"] for s in listed if s["AbortReason"]}
    landed = [n for n in numbers if n not in aborted]
    for s in listed:
        n = s["ID"]["Number"]
        if n in aborted:
            continue
        _check(problems, s["Finalized"] and s["State"] == "Finished" and n in on_chain,
               f"sector {n} neither landed nor aborted: {s['State']}, finalized {s['Finalized']}, on chain {n in on_chain}")

    # no number allocated twice: no sector in two runs of the sealing threads' journals
    runs = {thread: _runs(rows) for thread, rows in _journal_logs(tmp_path).items()}
    owners = collections.defaultdict(list)
    for thread in ("t0", "t1"):
        for run in runs.get(thread, []):
            owners[run[0][0]].append(thread)
    twice = {s: t for s, t in owners.items() if len(t) > 1}
    _check(problems, not twice, f"sector numbers allocated twice (journal runs): {twice}")

    # no completed step redone: within a run, each transition once (a resubmit allows one more submit)
    for thread, thread_runs in runs.items():
        for run in thread_runs:
            redone = _redone(run)
            _check(problems, not redone, f"{thread} redid completed steps of {run[0][0]}: {redone}")

    # no chain message sent twice; no nonce used twice
    chain = Devnet(home / "devnet.db", ChainPolicy(block_time=0), create=False)
    try:
        messages = chain.messages(1000)
        nonces = chain.db.execute("SELECT nonce, message FROM nonces WHERE miner = 1000 ORDER BY nonce").fetchall()
        records = chain.deadline_records(1000)
    finally:
        chain.close()
    twice = _sent_twice(messages, records[0]["period_start"] % 2880 if records else 0)
    _check(problems, not twice, f"chain messages sent twice (the first had not failed): {twice}")
    used_nonces = [n for n, _ in nonces]
    _check(problems, used_nonces == list(range(len(used_nonces))), f"nonces not 0..n-1 once each: {used_nonces}")
    _check(problems, len(nonces) == len(messages) and len({m for _, m in nonces}) == len(nonces),
           f"{len(messages)} messages but {len(nonces)} nonces ({len({m for _, m in nonces})} distinct messages)")

    # no thread waits for an operator
    stuck = [t for t in threads if t["thread_state"]["state"] == "Paused"]
    _check(problems, not stuck, f"threads paused for an operator: {stuck}")

    # the tasks ended done
    _check(problems, snaps and rebuilds and unseals and not unfinished, f"tasks not done: {unfinished}")
    wrong = [str(f) for f in work.unsealed if not f.is_file() or f.read_bytes() != deal_piece.read_bytes()]
    _check(problems, not wrong, f"unsealed pieces that are not the imported one: {wrong}")

    # every WindowPoSt deadline with sectors proven, or a kill of a proving role in its window
    # (challenge to close: head in [close - 80, close])
    missed, explained = [], []
    for r in records:
        if r["partitions"] and r["partitions_proven"] < r["partitions"]:
            by = [k for k in killer.kills if k.role in ("manager", "worker", "prover") and r["close"] - 80 <= k.head <= r["close"]]
            (explained if by else missed).append((r["index"], r["close"], [k.what for k in by]))
    _check(problems, not missed, f"WindowPoSt deadlines missed with no kill in their window: {missed}")
    proven = sum(1 for r in records if r["partitions"] and r["partitions_proven"] == r["partitions"])

    per_role = collections.Counter(k.role for k in killer.kills)
    reasons = collections.Counter(aborted.values())
    summary = (f"kill campaign: seed {seed}; {len(killer.kills)} kills ({', '.join(f'{r} {per_role[r]}' for r in ROLES)}); "
               f"sectors allocated {len(numbers)}, landed {len(landed)}, aborted {len(aborted)}"
               f"{' (' + '; '.join(f'{k} x{v}' for k, v in reasons.items()) + ')' if reasons else ''}; "
               f"tasks: sealer {len(numbers)}, snapup {len(snaps)}, rebuild {len(rebuilds)}, unseal {len(unseals)}, "
               f"wdpost {sum(1 for m in messages if m['method'] == 'SubmitWindowedPoSt')} proofs sent; "
               f"{len(closes)} windows driven, deadlines proven {proven}/{len([r for r in records if r['partitions']])}, missed with a kill "
               f"{len(explained)}; power {power['active_sectors']} active {power['faulty_sectors']} faulty; "
               f"sealing and tasks done at {sealed_at:.0f} s, "
               f"elapsed {elapsed:.0f} s")
    print(summary, flush=True)
    (tmp_path / "summary.txt").write_text(summary + "\n")
    assert not problems, f"{summary}\n" + "\n".join(problems)
