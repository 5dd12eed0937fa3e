"""`damocles bench manager --sectors N`: what a manager's own work costs at farm scale.

It fills two fresh manager homes, one with N sectors and one with 1,000, by a bulk path (batched
inserts, no RPC): sectors across several 32GiB miners as a farm holds them (most finished and
proving on the devnet chain in its 48 deadlines and partitions, about 2% in flight across the
sealer states, about 0.5% paused with an error), their history rows (bounded as the manager bounds
them) and the workers' pings. Then both homes' managers run side by side as child processes (chain
clock stopped, PoSt off, so nothing moves by itself) and are measured through real HTTP JSON-RPC
with a worker token, in alternating slices of rounds so that the host's own noise falls on both:
AllocateSector, ReportState, SubmitPreCommit and PollPreCommitState (a worker's own flow, one new
sector per round); then the status page's overview and `/metrics` (time and size); each manager
process's peak resident memory. Then, in this process on each stopped home, the CPU of a
commitment pass (`Committer.tick`) and of a PoSt pass (`Poster.tick` with WindowPoSt on). Each
measurement has a time limit: one that passes it is reported as such and the bench goes on."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import json
import logging
import os
import queue
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from ..core.output import emit
from .ui import EVENTS, STATES, _time

PROOF = "StackedDrg32GiBV1_1"      # a farm's sectors: a partition holds 2,349 of them
# a 32GiB sector's PoRep proof as a real prover makes it: 10 Groth16 proofs of 192 bytes
PROOF_TEXT = base64.b64encode(bytes(range(256)) * 7 + bytes(128)).decode()
BATCH = 10_000                     # rows per insert transaction
SMALL = 1000                       # the reference size every figure is compared against
FINISHED_AGE = 365 * 86400.0       # the oldest sector finished this long ago
PROVING_FROM = 2 * 2880            # the chain's head while filling: sectors active since long before it
DEADLINES = 48
AT_HAND = 3                        # the deadlines a PoSt pass works on: the current one, the next, the one it declares faults for
METHODS = ("AllocateSector", "ReportState", "SubmitPreCommit", "PollPreCommitState")
FAILURE = {"Level": "perm", "Desc": "processor c2-0: CUDA out of memory on GPU 0 (after 5 temp retries)"}


def config_text(miners: int) -> str:
    blocks = "".join(f"""
[[Miners]]
Actor = {1000 + i}
SealProof = "{PROOF}"
[Miners.PoSt]
Enabled = false
[Miners.Proof]
Enabled = false
""" for i in range(miners))
    return """
[RPC]
Listen = "127.0.0.1:0"
[Chain]
BlockTime = "0s"
[[Common.PersistStores]]
Name = "persist-1"
Path = "persist-1"
""" + blocks


# ----------------------------------------------------------------------------- fill

def _comm_r(miner: int, number: int) -> bytes:
    """A sector's CommR: 32 bytes that are a field element (top bits clear), distinct per sector."""
    raw = bytearray(hashlib.sha256(b"%d-%d" % (miner, number)).digest())
    raw[31] &= 0x3F
    return bytes(raw)


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _share(count: int, fraction: float) -> int:
    return max(1, round(count * fraction)) if count >= 10 else 0


class _Miner:
    """One miner's sectors, numbered 1..count: the oldest finished, the newest in flight or
    failing. `kinds` holds only the numbers that are not finished."""

    def __init__(self, actor: int, count: int, rng: random.Random, finished: int | None = None):
        """With `finished`, the sectors in flight and failing are those of a miner of `count`
        sectors, and so are the sectors of the AT_HAND deadlines a PoSt pass works on (`at_hand`,
        the first finished numbers); only `finished` other finished ones come before them (the
        same work, less history)."""
        live, failing = _share(count, 0.02), _share(count, 0.005)
        self.at_hand = 0
        if finished is not None:
            self.at_hand = AT_HAND * -(-(count - live - failing) // DEADLINES)
            count = self.at_hand + finished + live + failing
        self.actor, self.count = actor, count
        recent = list(range(count - live - failing + 1, count + 1))
        fail = set(rng.sample(recent, failing))
        # in flight and failing sectors: a sealer state each (Allocated .. ProofSubmitted)
        self.kinds = {n: ("failing" if n in fail else "live", rng.randrange(1, len(STATES) - 1)) for n in recent}
        self.finished = count - len(recent)
        self.nonce = 0


def _message_cid(kind: str, miner: int, batch: int) -> str:
    """A chain message's CID as the manager stores it (62 characters, distinct per batch)."""
    digest = hashlib.sha256(b"%s-%d-%d" % (kind.encode(), miner, batch)).digest()
    return "bafy2bzace" + base64.b32encode(digest).decode().lower()[:52]


def _record(m: _Miner, number: int, kind: str, last: int, t0: float, t_end: float, worker: str, comm_d: bytes) -> dict:
    """A sector record with the keys the normal path (a worker's calls and reports) leaves at
    state STATES[last]; tests/test_bench_manager.py holds it to a sector sealed through a manager."""
    k = STATES.index
    info = {"allocated_at": t0, "owner": f"bench-{worker}", "state": STATES[last], "worker": worker,
            "location": f"/var/lib/damocles/{worker}/sealing-{number % 12}", "reported_at": t_end, "entered_at": t_end}
    if last >= k("TicketAssigned"):
        info["ticket"] = {"Ticket": base64.b64encode(hashlib.sha256(b"t%d" % number).digest()).decode(), "Epoch": 100}
    if last >= k("PCSubmitted"):
        batch = number // 8                # a PreCommit batch of 8, a proof batch of 4
        info.update(pre={"CommR": _comm_r(m.actor, number).hex(), "CommD": comm_d.hex()}, pre_queued_at=t0 + 3600,
                    pre_nonce=2 * batch, pre_msg=_message_cid("pre", m.actor, batch))
        m.nonce = max(m.nonce, 2 * batch + 2)
    if last >= k("Persisted"):
        info["reserved_store"] = "persist-1"
    if last >= k("PersistanceSubmitted"):
        info["persisted"] = "persist-1"
    if last >= k("SeedAssigned"):
        info["seed"] = {"Seed": base64.b64encode(hashlib.sha256(b"s%d" % number).digest()).decode(), "Epoch": 250}
    if last >= k("ProofSubmitted"):
        batch = number // 4
        info.update(commit_proof=PROOF_TEXT, proof_queued_at=t_end - 600, proof_nonce=2 * batch + 1,
                    proof_msg=_message_cid("proof", m.actor, batch))
        m.nonce = max(m.nonce, 2 * batch + 2)
    if last == len(STATES) - 1:
        info["finalized"] = True
    if kind == "failing":
        info["failure"] = FAILURE
    return info


def _sector_rows(miners: list[_Miner], proof: int, now: float, workers: int, comm_d: bytes, history: list):
    """(miner, number, proof, info, updated) of every sector, one miner after the other; appends
    to `history` the (miner, number, kind, last, times, worker) of the sectors whose transitions
    are kept (every one not finished: they are few)."""
    for m in miners:
        for number in range(1, m.count + 1):
            kind, last = m.kinds.get(number, ("finished", len(STATES) - 1))
            worker = f"worker-{number % workers}"
            if kind == "finished":        # finished over the last year, oldest first
                t0 = now - FINISHED_AGE * (1 - number / (m.finished + 1)) - 8 * 3600
                t_end = t0 + 7 * 3600
            else:                          # in flight: allocated within the last few hours
                t0 = now - 6 * 3600 + (number % 97) * 60
                t_end = t0 + last * 600
                history.append((m.actor, number, kind, last, t0, worker))
            yield m.actor, number, proof, _record(m, number, kind, last, t0, t_end, worker, comm_d), t_end


def _history_rows(entries, location: str = "/var/lib/damocles"):
    """sector_history rows: each transition up to the sector's state, and its failure report."""
    for miner, number, kind, last, t0, worker in entries:
        for s in range(1, last + 1):
            yield miner, number, t0 + s * 600, STATES[s - 1], STATES[s], EVENTS[s], worker, None, None
        if kind == "failing":
            yield (miner, number, t0 + last * 600 + 60, STATES[last], STATES[last], "Failure", worker,
                   FAILURE["Level"], FAILURE["Desc"])


def _finished_history(miners: list[_Miner], budget: int, now: float, workers: int):
    """Full histories of the most recently finished sectors, `budget` rows at most (the manager
    keeps the newest HISTORY_MAX_ROWS rows of all)."""
    per = len(STATES) - 1
    for m in miners:
        take = min(m.finished, budget // per // len(miners))
        for number in range(m.finished - take + 1, m.finished + 1):
            t0 = now - FINISHED_AGE * (1 - number / (m.finished + 1)) - 8 * 3600
            worker = f"worker-{number % workers}"
            for s in range(1, per + 1):
                yield m.actor, number, t0 + s * 1500, STATES[s - 1], STATES[s], EVENTS[s], worker, None, None


def _batches(rows, size: int = BATCH):
    batch = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _placement(i: int, at_hand: int, current: int, others: list[int]) -> tuple[int, int]:
    """(deadline, position in it) of a miner's i-th finished sector: the first `at_hand` fill the
    AT_HAND deadlines from `current` on, the others spread over `others` (_other_deadlines)."""
    if i < at_hand:
        return (current + i % AT_HAND) % DEADLINES, i // AT_HAND
    k = i - at_hand
    return others[k % len(others)], k // len(others)


def _other_deadlines(at_hand: int, current: int) -> list[int]:
    """The deadlines outside the AT_HAND ones from `current` (all 48 when none are filled apart)."""
    return [d for d in range(DEADLINES) if not at_hand or (d - current) % DEADLINES >= AT_HAND]


def _chain_rows(m: _Miner, proof: int, comm_d_cid: str, partition: int, current: int):
    """The devnet's rows of a miner's finished sectors: (sectors row, sector_deadlines row),
    spread over the 48 deadlines with full partitions (as a chain that has run for a year);
    `current` is the miner's deadline at the head."""
    from ..proofs.cid import commr_to_cid
    from ..chain.types import SectorOnChain
    others = _other_deadlines(m.at_hand, current)
    for i, number in enumerate(range(1, m.finished + 1)):
        s = SectorOnChain(m.actor, number, proof, commr_to_cid(_comm_r(m.actor, number)), comm_d_cid, 0,
                          PROVING_FROM + 540 * 2880)
        deadline, position = _placement(i, m.at_hand, current, others)
        yield ((m.actor, number, json.dumps(dataclasses.asdict(s))),
               (m.actor, number, deadline, position // partition, 0))


def fill(home: Path, n: int, miners: int, seed: int = 1, finished: int | None = None) -> dict:
    """A manager home holding n sectors across `miners` miners, written in batches; returns what
    went in. Memory stays bounded: records are made and written BATCH at a time. With `finished`,
    the home holds n sectors' in-flight and failing ones and their PoSt deadlines at hand, but only
    `finished` other finished ones."""
    from ..chain import proving
    from ..chain.deadlines import current_deadline
    from ..core.proof_types import seal_proof
    from ..manager.service import ManagerService, init_home
    from ..manager.state import HISTORY_MAX_ROWS
    from ..proofs.cid import commd_to_cid
    from ..proofs.commitment import comm_d_from_pieces
    rng = random.Random(seed)
    init_home(home, config_text(miners))
    sp = seal_proof(PROOF)
    comm_d = comm_d_from_pieces([], sp.size.bytes)
    done = _split(finished, miners) if finished is not None else [None] * miners
    plan = [_Miner(1000 + i, c, rng, f) for i, (c, f) in enumerate(zip(_split(n, miners), done))]
    in_flight = sum(len(m.kinds) for m in plan)
    workers = max(8, min(1000, in_flight // 32))        # ~32 sealing threads per worker machine
    now = time.time()
    svc = ManagerService(home)       # opened, not started: only its databases are used here
    state, chain = svc.state, svc.devnet
    try:
        chain.advance(PROVING_FROM)      # no sectors yet: nothing runs on the way
        entries: list = []
        t = time.perf_counter()
        for batch in _batches(_sector_rows(plan, sp.id, now, workers, comm_d, entries)):
            state.bulk_add_sectors(batch)
        sectors_s = time.perf_counter() - t
        for m in plan:         # the messages those sectors went in came before the next
            state.raise_counters(m.actor, 0, m.nonce)
        budget = HISTORY_MAX_ROWS - sum(last + 1 for _, _, _, last, _, _ in entries)
        history = 0
        for rows in (_history_rows(entries), _finished_history(plan, max(0, budget), now, workers)):
            for batch in _batches(rows):
                with state.tx() as db:
                    db.executemany("INSERT INTO sector_history (miner, number, at, prev, next, event, worker, level, error) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
                history += len(batch)
        for w in range(workers):
            state.ping(f"worker-{w}", {"Name": f"worker-{w}", "Dest": f"10.0.{w // 250}.{w % 250 + 2}:17890",
                                       "Version": "bench", "Owner": f"bench-worker-{w}",
                                       "Summary": {"Threads": 32, "Empty": 0, "Paused": 1, "Running": 29, "Waiting": 2,
                                                   "Errors": 1}})
        t = time.perf_counter()
        cid_d = commd_to_cid(comm_d)
        for m in plan:
            info = chain.miner_info(m.actor)
            current = current_deadline(chain.policy, info.proving_period_start, chain.head()).index
            for batch in _batches(_chain_rows(m, sp.id, cid_d, proving.partition_size(info), current)):
                with chain._tx() as db:
                    db.executemany("INSERT INTO sectors (miner, number, info) VALUES (?, ?, ?)", [a for a, _ in batch])
                    db.executemany("INSERT INTO allocated (miner, number) VALUES (?, ?)", [(a[0], a[1]) for a, _ in batch])
                    db.executemany("INSERT INTO sector_deadlines (miner, number, deadline, partition, since) "
                                   "VALUES (?, ?, ?, ?, ?)", [b for _, b in batch])
            with chain._tx():
                chain._catch_up()
                proving.record_power(chain, m.actor)
        chain_s = time.perf_counter() - t
    finally:
        svc.stop()
    failing = sum(1 for m in plan for kind, _ in m.kinds.values() if kind == "failing")
    return {"sectors": sum(m.count for m in plan), "miners": miners, "finished": sum(m.finished for m in plan),
            "at_hand": sum(m.at_hand for m in plan),
            "in_flight": in_flight - failing,
            "failing": failing, "workers": workers, "history_rows": history,
            "seconds": {"manager_records": round(sectors_s, 1), "chain_records": round(chain_s, 1)}}


# ------------------------------------------------------------------------ measure

class _Rpc:
    """One worker's connection: JSON-RPC calls over HTTP/1.1 keep-alive, each call timed."""

    def __init__(self, addr, token: str, timeout: float):
        self.conn = http.client.HTTPConnection(*addr, timeout=timeout)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.id = 0

    def call(self, method: str, *params) -> tuple[object, float]:
        self.id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.id, "method": f"Venus.{method}", "params": list(params)})
        t = time.perf_counter()
        self.conn.request("POST", "/rpc/v0", body, self.headers)
        resp = self.conn.getresponse()
        answer = json.loads(resp.read())
        elapsed = time.perf_counter() - t
        if resp.status != 200 or answer.get("error"):
            raise RuntimeError(f"{method}: HTTP {resp.status} {answer.get('error')}")
        return answer["result"], elapsed

    def close(self) -> None:
        self.conn.close()


def _percentiles(samples: list[float]) -> dict:
    s = sorted(samples)
    if not s:
        return {"calls": 0, "p50_ms": None, "p99_ms": None}
    return {"calls": len(s), "p50_ms": round(statistics.median(s) * 1000, 3),
            "p99_ms": round(s[max(0, -(-len(s) * 99 // 100) - 1)] * 1000, 3)}


class _WorkerFlow:
    """A worker's own calls on new sectors, each call timed, run `step` rounds at a time (two
    managers' flows alternate): AllocateSector, ReportState (Allocated -> DealsAcquired),
    AssignTicket (not timed), SubmitPreCommit, PollPreCommitState. Stops at an error or at `limit`
    seconds from its start (reported as timed_out)."""

    def __init__(self, addr, token: str, limit: float):
        from ..core.proof_types import seal_proof
        from ..proofs.commitment import comm_d_from_pieces
        self.comm_d = list(comm_d_from_pieces([], seal_proof(PROOF).size.bytes))
        self.times: dict[str, list[float]] = {m: [] for m in METHODS}
        self.rpc = _Rpc(addr, token, timeout=limit)
        self.deadline = time.monotonic() + limit
        self.error: str | None = None

    def step(self, rounds: int) -> bool:
        """`rounds` more rounds; False when it stopped (an error, or past its limit)."""
        from ..core.protocol import OnChainState, SubmitResult
        try:
            for _ in range(rounds):
                if time.monotonic() > self.deadline:
                    return False
                i = len(self.times["PollPreCommitState"])
                alloc = self._timed("AllocateSector", {})
                if alloc is None:
                    raise RuntimeError("AllocateSector answered null (no miner could allocate)")
                sid = alloc["ID"]
                report = {"Worker": {"Instance": "bench-worker", "Location": f"/bench/sealing-{i % 32}"},
                          "StateChange": {"Prev": "Allocated", "Next": "DealsAcquired", "Event": "AcquireDeals"}}
                self._timed("ReportState", sid, report)
                ticket, _ = self.rpc.call("AssignTicket", sid)
                info = {"CommR": list(_comm_r(sid["Miner"], sid["Number"])), "CommD": self.comm_d, "Ticket": ticket}
                res = self._timed("SubmitPreCommit", {"ID": sid, "ProofType": alloc["ProofType"]}, info, False)
                if res["Res"] != SubmitResult.ACCEPTED:
                    raise RuntimeError(f"SubmitPreCommit of {sid} refused: {res}")
                res = self._timed("PollPreCommitState", sid)
                if res["State"] != OnChainState.PENDING:      # queued for its batch: nothing sent yet
                    raise RuntimeError(f"PollPreCommitState of {sid}: {res}, expected pending")
        except (OSError, RuntimeError) as exc:      # a timeout is an OSError: reported, not raised
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _timed(self, method: str, *params):
        result, t = self.rpc.call(method, *params)
        self.times[method].append(t)
        return result

    def result(self, rounds: int) -> dict:
        self.rpc.close()
        out = {m: _percentiles(self.times[m]) for m in METHODS}
        out["rounds"] = len(self.times["PollPreCommitState"])
        out["timed_out"] = out["rounds"] < rounds and self.error is None
        out["error"] = self.error
        return out


def worker_flow(addr, token: str, rounds: int, limit: float) -> dict:
    """`rounds` rounds of a worker's own calls on one manager (_WorkerFlow), their percentiles."""
    flow = _WorkerFlow(addr, token, limit)
    flow.step(rounds)
    return flow.result(rounds)


SLICE = 20          # rounds a flow runs before the other manager's takes its turn


def alternating_flows(flows: dict[str, _WorkerFlow], rounds: int) -> dict[str, dict]:
    """`rounds` rounds on each manager, SLICE at a time in turn: what the host does meanwhile
    (another process, the kernel's writeback, a neighbour on the same hardware) falls on both
    alike, so that their ratio is the managers' own. A flow that stops leaves the others going."""
    running, done = dict(flows), 0
    while done < rounds and running:
        k = min(SLICE, rounds - done)
        running = {key: f for key, f in running.items() if f.step(k)}
        done += k
    return {key: f.result(rounds) for key, f in flows.items()}


def _page(url: str, token: str, count: int, limit: float) -> dict:
    try:
        return _time(url, token, count, timeout=limit)
    except OSError as exc:          # a request past the limit (urllib's timeout) and refused connections
        return {"error": f"{type(exc).__name__}: {exc}"}


def _chain_views_ready(base: str, token: str, limit: float, started: float) -> float | None:
    """Seconds from the manager's start until the overview shows every miner's chain views (the
    manager computes them in the background; a request never waits for them); None past `limit`."""
    import urllib.request
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        req = urllib.request.Request(base + "/ui/api/overview", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=limit) as r:
                ov = json.loads(r.read())
        except OSError:
            return None
        if not any(v.get("Computing") for views in (ov["Proving"], ov["Expiring"]) for v in views.values()):
            return round(time.perf_counter() - started, 2)
        threading.Event().wait(0.2)     # polling the manager for its background work; bounded by `limit`
    return None


def _peak_rss(pid: int) -> int | None:
    """The process's peak resident set (VmHWM), bytes; None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _Overran(Exception):
    """A pass still running at the time limit: the home is left to it, nothing more is measured there."""


def _bounded(fn, limit: float):
    """fn() in a daemon thread, its result within `limit` seconds, else _Overran (a daemon thread:
    a pass that never ends cannot hold the bench's exit)."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:      # noqa: BLE001 - handed to the caller below
            box["error"] = exc
    t = threading.Thread(target=target, name="bench-pass", daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        raise _Overran(f"a pass took more than {limit:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _cpu_passes(fn, passes: int, limit: float) -> dict:
    """CPU of `passes` calls of fn (the first apart: it does what the others find done), each
    bounded by `limit` seconds: process CPU (this process: the pass, its helper threads and the
    embedded devnet's API answering it) and the passing thread's own CPU. Raises _Overran."""
    def one():
        t_thread, t_proc, t_wall = time.thread_time(), time.process_time(), time.perf_counter()
        fn()
        return (time.process_time() - t_proc, time.thread_time() - t_thread, time.perf_counter() - t_wall)
    runs, error = [], None
    for _ in range(passes):
        try:
            runs.append(_bounded(one, limit))
        except _Overran:
            raise
        except Exception as exc:       # noqa: BLE001 - a failing pass is reported with the figures
            error = f"{type(exc).__name__}: {exc}"
            break
    ms = lambda xs: round(statistics.median(xs) * 1000, 2) if xs else None      # noqa: E731
    rest = runs[1:] or runs
    return {"passes": len(runs), "first_cpu_ms": ms([r[0] for r in runs[:1]]),
            "cpu_ms": ms([r[0] for r in rest]), "thread_cpu_ms": ms([r[1] for r in rest]),
            "wall_ms": ms([r[2] for r in rest]), "error": error}


def _not_measured(why: str) -> dict:
    return {"passes": 0, "first_cpu_ms": None, "cpu_ms": None, "thread_cpu_ms": None, "wall_ms": None, "error": why}


def in_process(home: Path, passes: int, limit: float) -> dict:
    """A commitment pass and a PoSt pass (WindowPoSt on) on the stopped home, in this process.
    The manager's log is held to errors meanwhile: the first PoSt pass declares every sector of
    a deadline faulty (the home has no sealed files), one warning each. A pass that overruns
    the limit keeps the home: what follows it is reported as not measured."""
    from ..manager.poster import Poster
    from ..manager.service import ManagerService
    quiet = logging.getLogger("damocles")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    out, overran = {}, False
    try:
        svc = ManagerService(home)
        cfg = dataclasses.replace(svc.config, miners=[dataclasses.replace(m, post=dataclasses.replace(m.post, enabled=True))
                                                       for m in svc.config.miners])
        poster = Poster(cfg, svc.state, svc.chain, svc.jobs, svc.committer, svc.sealer)
        try:
            for key, fn in (("committer", svc.committer.tick), ("poster", poster.tick)):
                if overran:
                    out[key] = _not_measured("not measured: the pass before it overran the time limit")
                    continue
                try:
                    out[key] = _cpu_passes(fn, passes, limit)
                except _Overran as exc:
                    out[key], overran = _not_measured(str(exc)), True
        finally:
            if not overran:         # an overrunning pass still uses the home: it is left open
                poster.close()
                svc.close()
    finally:
        quiet.setLevel(level)
    return out


def _address(child, q, home: Path, limit: float) -> tuple[str, int]:
    """The manager child's address once it listens; RuntimeError when it exits or stays silent."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return q.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the manager of {home} exited with status {child.exitcode} before it listened") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the manager of {home} did not listen within {limit:g} s") from None


class _ManagerChild:
    """A home's manager as a child process, with a worker's and a page reader's tokens; `start`
    returns once it listens, `views_ready` once its chain views are computed."""

    def __init__(self, home: Path, limit: float):
        from ..proofs.pc2 import mp_context
        from ..rpc.auth import issue_token, load_or_create_secret
        secret = load_or_create_secret(home / "secret")
        self.home, self.limit = home, limit
        self.worker, self.reader = issue_token(secret, "write", "bench-worker"), issue_token(secret, "read", "bench-page")
        ctx = mp_context()
        self.q, self.stop_event = ctx.Queue(), ctx.Event()
        self.ctx, self.child, self.addr, self.started = ctx, None, None, 0.0

    def start(self) -> float:
        from .rpc import _manager_child
        self.started = time.perf_counter()
        self.child = self.ctx.Process(target=_manager_child, args=(str(self.home), self.q, self.stop_event))
        self.child.start()
        self.addr = _address(self.child, self.q, self.home, self.limit)
        return round(time.perf_counter() - self.started, 2)

    @property
    def base(self) -> str:
        return f"http://{self.addr[0]}:{self.addr[1]}"

    def views_ready(self) -> float | None:
        return _chain_views_ready(self.base, self.reader, self.limit, self.started)

    def stop(self) -> None:
        if self.child is None:
            return
        self.stop_event.set()
        self.child.join(timeout=60)
        if self.child.is_alive():
            self.child.kill()
            self.child.join(timeout=10)


def measure(homes: list[tuple[str, Path]], rounds: int, requests: int, passes: int, limit: float) -> dict[str, dict]:
    """Every home's manager started (one after the other, each with its chain views computed),
    then their RPCs timed in alternating slices (alternating_flows), their page and /metrics, their
    peak memory; stopped, then each home's passes in this process."""
    out: dict[str, dict] = {key: {} for key, _ in homes}
    children = {key: _ManagerChild(home, limit) for key, home in homes}
    try:
        for key, c in children.items():
            out[key]["start_seconds"] = c.start()
            out[key]["chain_views_seconds"] = c.views_ready()      # the background refresher's first result
        flows = {key: _WorkerFlow(c.addr, c.worker, limit) for key, c in children.items()}
        for key, r in alternating_flows(flows, rounds).items():
            out[key]["rpc"] = r
        for key, c in children.items():
            out[key]["overview"] = _page(c.base + "/ui/api/overview", c.reader, requests, limit)
            out[key]["metrics"] = _page(c.base + "/metrics", c.reader, requests, limit)
            out[key]["peak_rss_bytes"] = _peak_rss(c.child.pid)
    finally:
        for c in children.values():
            c.stop()
    for key, home in homes:
        out[key].update(in_process(home, passes, limit))
    return out


def _settle() -> None:
    """The fill's writes on disk before anything is measured: a manager that has run for a year has
    not just written its gigabytes, and the kernel's writeback of them would slow every commit's
    fsync meanwhile."""
    os.sync()


def run(homes: list[tuple[str, Path, int]], miners: int, rounds: int, requests: int, passes: int, limit: float,
        work_home: Path | None = None) -> dict:
    """Measure each home; then, in `work_home`, the passes again on a home with the N home's
    sectors in flight and failing, and as many sectors as it in the AT_HAND deadlines a PoSt pass
    works on, but only SMALL other finished ones: the passes' cost with the same work and a
    fraction of the history (a farm's in-flight count follows its sealing capacity, not its age;
    a deadline's size follows the miner's, which the PoSt pass cannot choose)."""
    out = {"miners": miners, "limit_seconds": limit, "homes": {}}
    for key, home, n in homes:
        t = time.perf_counter()
        filled = fill(home, n, miners)
        out["homes"][key] = {"filled": filled, "fill_seconds": round(time.perf_counter() - t, 1)}
        _settle()
    for key, r in measure([(key, home) for key, home, _ in homes], rounds, requests, passes, limit).items():
        out["homes"][key].update(r)
    big, small = out["homes"]["n"], out["homes"]["small"]
    out["p99_ratio"] = {m: (round(big["rpc"][m]["p99_ms"] / small["rpc"][m]["p99_ms"], 2)
                            if big["rpc"][m]["p99_ms"] and small["rpc"][m]["p99_ms"] else None) for m in METHODS}
    if work_home is not None:
        n = homes[-1][2]
        t = time.perf_counter()
        w = {"filled": fill(work_home, n, miners, finished=min(SMALL, n))}
        w["fill_seconds"] = round(time.perf_counter() - t, 1)
        _settle()
        w.update(in_process(work_home, passes, limit))
        out["same_work"] = w
        out["pass_ratio"] = {k: (round(big[k]["thread_cpu_ms"] / w[k]["thread_cpu_ms"], 2)
                                 if big[k]["thread_cpu_ms"] and w[k]["thread_cpu_ms"] else None)
                             for k in ("committer", "poster")}
    return out


# --------------------------------------------------------------------------- CLI

def add_parser(bench) -> None:
    p = bench.add_parser("manager", help="RPC latency, status page, /metrics, commitment and PoSt pass CPU and peak "
                                         "memory of a manager holding N sectors, against one holding 1,000")
    p.add_argument("--sectors", type=int, default=100_000)
    p.add_argument("--miners", type=int, default=10)
    p.add_argument("--calls", type=int, default=300, help="calls of each RPC method per home (default 300)")
    p.add_argument("--requests", type=int, default=10, help="requests of the overview and of /metrics (default 10)")
    p.add_argument("--passes", type=int, default=11, help="commitment and PoSt passes timed (default 11: the median of 10 after the first)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a measurement may take (default 600)")
    p.add_argument("--home", type=Path, help="fill the homes under this (new or empty) directory and keep them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_manager)


def _check(args) -> None:
    for name, least in (("sectors", 1), ("miners", 1), ("calls", 1), ("requests", 1), ("passes", 1)):
        if getattr(args, name) < least:
            raise ValueError(f"--{name} must be at least {least}, got {getattr(args, name)}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    if args.home and args.home.exists() and any(args.home.iterdir()):
        raise ValueError(f"--home {args.home} is not empty")


def cmd_bench_manager(args) -> int:
    _check(args)
    def go(root: Path) -> dict:
        homes = [("small", root / f"manager-{SMALL}", SMALL), ("n", root / f"manager-{args.sectors}", args.sectors)]
        if args.sectors == SMALL:
            homes[1] = ("n", root / f"manager-{SMALL}-b", SMALL)
        return run(homes, args.miners, args.calls, args.requests, args.passes, args.timeout,
                   root / f"manager-{args.sectors}-work")
    if args.home:
        out = go(args.home)
    else:
        with tempfile.TemporaryDirectory(prefix="damocles-bench-manager-") as d:
            out = go(Path(d))
    emit(out, args.json, report_lines(out))
    failed = [h for h in out["homes"].values() if h["rpc"]["error"] or h["rpc"]["timed_out"]
              or any("error" in h[k] for k in ("overview", "metrics")) or h["committer"]["error"] or h["poster"]["error"]]
    return 1 if failed else 0


def _ms(v) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _cells(out: dict, fn) -> list[str]:
    return [fn(out["homes"][key]) for key in ("small", "n")]


def report_lines(out: dict) -> list[str]:
    homes = out["homes"]
    lines = []
    for key in ("small", "n"):
        f, h = homes[key]["filled"], homes[key]
        lines.append(f"{f['sectors']:,} sectors over {f['miners']} miners ({f['finished']:,} proving, {f['in_flight']:,} in "
                     f"flight, {f['failing']:,} failing, {f['workers']} workers, {f['history_rows']:,} history rows): "
                     f"filled in {h['fill_seconds']} s, manager started in {h.get('start_seconds', '-')} s")
    sizes = _cells(out, lambda h: f"at {h['filled']['sectors']:,} sectors")
    rows = [("", sizes, "p99 ratio")]
    for m in METHODS:
        rows.append((f"{m} p50 / p99 ms", _cells(out, lambda h: f"{_ms(h['rpc'][m]['p50_ms'])} / {_ms(h['rpc'][m]['p99_ms'])}"),
                     "-" if out["p99_ratio"][m] is None else f"{out['p99_ratio'][m]:.2f}x"))
    for key, label in (("overview", "overview median ms, size"), ("metrics", "/metrics median ms, size")):
        rows.append((label, _cells(out, lambda h: "error" if "error" in h[key] else
                                   f"{_ms(h[key]['median_ms'])}, {h[key]['bytes'] / 1e3:,.0f} kB"), ""))
    rows.append(("chain views ready s (start)", _cells(out, lambda h: "-" if h.get("chain_views_seconds") is None
                                                        else f"{h['chain_views_seconds']:,.2f}"), ""))
    for key, label in (("committer", "commitment pass CPU ms (first)"), ("poster", "PoSt pass CPU ms (first)")):
        rows.append((label, _cells(out, lambda h: f"{_ms(h[key]['cpu_ms'])} ({_ms(h[key]['first_cpu_ms'])})"), ""))
        rows.append(("  its own thread's CPU ms", _cells(out, lambda h: _ms(h[key]["thread_cpu_ms"])), ""))
    rows.append(("manager peak RSS MiB", _cells(out, lambda h: "-" if not h.get("peak_rss_bytes") else
                                                 f"{h['peak_rss_bytes'] / 2**20:,.1f}"), ""))
    for label, cells, ratio in rows:
        lines.append(f"  {label:<32}{cells[0]:>24}{cells[1]:>24}  {ratio}".rstrip())
    for key in ("small", "n"):
        h = homes[key]
        for what in ("rpc", "overview", "metrics", "committer", "poster"):
            err = h[what].get("error") or (h[what].get("timed_out") and f"stopped at the time limit ({out['limit_seconds']:g} s)")
            if err:
                lines.append(f"  ! {h['filled']['sectors']:,} sectors, {what}: {err}")
    w = out.get("same_work")
    if w:
        f = w["filled"]
        lines.append(f"the same work with less history: {f['sectors']:,} sectors ({f['finished']:,} proving, "
                     f"{f['at_hand']:,} of them in the {AT_HAND} deadlines a PoSt pass works on, "
                     f"{f['in_flight']:,} in flight, {f['failing']:,} failing), the passes' own thread CPU ms: "
                     f"commitment {_ms(w['committer']['thread_cpu_ms'])}, PoSt {_ms(w['poster']['thread_cpu_ms'])}; "
                     "the N home's against it: " + ", ".join(
                         f"{k} {'-' if r is None else f'{r:.2f}x'}" for k, r in out["pass_ratio"].items()))
        for k in ("committer", "poster"):
            if w[k].get("error"):
                lines.append(f"  ! the same work with less history, {k}: {w[k]['error']}")
    lines.append("(commitment and PoSt passes: in this process on the stopped home, median of the passes after the "
                 "first; process CPU includes the embedded devnet answering them, the thread's CPU is the pass's own)")
    return lines
