"""The miner actor's WindowPoSt rules (builtin-actors actors/miner/src/lib.rs, deadline_state.rs,
partition_state.rs, deadline_assignment.rs), kept small enough for the devnet:

- activated sectors are assigned to a deadline and a partition (`assign_sectors`);
- SubmitWindowedPoSt, DeclareFaults and DeclareFaultsRecovered (`METHODS`);
- the deadline cron (`close_deadline`): partitions not proven in their window become faulty;
- power (`power`, and the history WinningPoSt elections read) and penalties.

Simplifications against builtin-actors (docs/devnet.md lists them all):
- every proof is verified when it lands (no optimistic acceptance, no disputes); the public
  sectors are the listed partitions' sectors minus the skipped ones and minus faults that are not
  recovering (no substitution of a good sector for faulty ones);
- no pledge, rewards or fees in FIL: penalties are counted in fault-fee units (below);
- sectors expire and terminate (lifecycle_actor.py), but faults never reach FaultMaxAge (no early
  expiry) and partitions never compact (ended sectors stay in their partition, terminated);
- power is raw bytes, quality adjusted power equals it (no deals, no verified deals);
- a sector is due in an occurrence of its deadline only if it was assigned before that
  occurrence's challenge epoch (assignment to mutable deadlines makes that the deadline's next
  occurrence, as builtin-actors' unproven sectors).

Each function runs inside the devnet's transaction; `state` is the Devnet, `state.epoch` the
epoch the message (or cron) executes at."""

from __future__ import annotations

import json

from ..core.proof_types import post_proof, seal_proof
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..proofs.post import PublicSector, decode_post, verify_post
from . import deadlines as dl
from .external_proofs import accept_unverified
from .bitfield import numbers_from_json
from .miner_actor import _arg, _bytes, _int, read_params
from .types import ActorError, ExitCode, MinerInfo, MinerPower, PartitionInfo
from . import lifecycle_actor

# Penalties, in fault-fee units per sector (builtin-actors charges FIL from the sector's expected
# reward; the devnet only counts units):
DECLARED_FAULT_FEE = 1.0        # each deadline close (once per proving period) a sector is faulty at
DETECTED_FAULT_PENALTY = 3.5    # once, when a fault is detected: partition not proven, or sector skipped

SCHEMA = """
CREATE TABLE IF NOT EXISTS sector_deadlines (miner INTEGER NOT NULL, number INTEGER NOT NULL,
    deadline INTEGER NOT NULL, partition INTEGER NOT NULL, since INTEGER NOT NULL,
    faulty INTEGER NOT NULL DEFAULT 0, recovering INTEGER NOT NULL DEFAULT 0, fault_epoch INTEGER,
    PRIMARY KEY (miner, number));
CREATE INDEX IF NOT EXISTS sector_deadlines_partition ON sector_deadlines (miner, deadline, partition);
CREATE TABLE IF NOT EXISTS partition_posts (miner INTEGER NOT NULL, deadline INTEGER NOT NULL,
    partition INTEGER NOT NULL, period_start INTEGER NOT NULL, epoch INTEGER NOT NULL, sectors INTEGER NOT NULL,
    PRIMARY KEY (miner, deadline, partition, period_start));
CREATE TABLE IF NOT EXISTS deadline_records (miner INTEGER NOT NULL, period_start INTEGER NOT NULL,
    deadline INTEGER NOT NULL, close INTEGER NOT NULL, partitions INTEGER NOT NULL, partitions_proven INTEGER NOT NULL,
    sectors INTEGER NOT NULL, sectors_proven INTEGER NOT NULL, sectors_faulty_new INTEGER NOT NULL,
    penalty REAL NOT NULL, PRIMARY KEY (miner, period_start, deadline));
CREATE TABLE IF NOT EXISTS penalties (seq INTEGER PRIMARY KEY AUTOINCREMENT, miner INTEGER NOT NULL,
    epoch INTEGER NOT NULL, deadline INTEGER, period_start INTEGER, reason TEXT NOT NULL, sectors TEXT NOT NULL,
    amount REAL NOT NULL);
CREATE TABLE IF NOT EXISTS power_history (miner INTEGER NOT NULL, epoch INTEGER NOT NULL,
    active INTEGER NOT NULL, faulty INTEGER NOT NULL, PRIMARY KEY (miner, epoch));
"""


def partition_size(info: MinerInfo) -> int:
    """Sectors per WindowPoSt partition of the miner's proof (2 for 2KiB/8MiB, 2349 for 32GiB)."""
    return seal_proof(info.seal_proof).window_post.sectors_per_partition


# ------------------------------------------------------------------------------- state

def _rows(state, miner: int, deadline: int, partition: int | None = None) -> list[tuple]:
    """(number, partition, since, faulty, recovering, fault_epoch) of a deadline's sectors."""
    return state.db.execute(
        "SELECT number, partition, since, faulty, recovering, fault_epoch FROM sector_deadlines "
        "WHERE miner = ? AND deadline = ? AND (? IS NULL OR partition = ?) ORDER BY number",
        (miner, deadline, partition, partition)).fetchall()


def power(state, miner: int) -> MinerPower:
    info = state.miner_info(miner)
    active, faulty = state.db.execute(
        "SELECT COALESCE(SUM(faulty = 0), 0), COALESCE(SUM(faulty != 0), 0) FROM sector_deadlines WHERE miner = ?",
        (miner,)).fetchone()
    return MinerPower(active * info.sector_size, active * info.sector_size, active, faulty)


def record_power(state, miner: int) -> None:
    """Power from `state.epoch` on: the state after everything executed at that epoch (and the
    deadline crons closing at it), which is what WinningPoSt elections at that epoch use."""
    p = power(state, miner)
    state.db.execute("INSERT INTO power_history (miner, epoch, active, faulty) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (miner, epoch) DO UPDATE SET active = excluded.active, faulty = excluded.faulty",
                     (miner, state.epoch, p.active_sectors, p.faulty_sectors))


def _penalize(state, miner: int, reason: str, numbers: list[int], units: float, deadline: int,
              period_start: int) -> float:
    if not numbers:
        return 0.0
    amount = units * len(numbers)
    state.db.execute("INSERT INTO penalties (miner, epoch, deadline, period_start, reason, sectors, amount) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (miner, state.epoch, deadline, period_start, reason, json.dumps(sorted(numbers)), amount))
    return amount


def _set(state, miner: int, numbers, **columns) -> None:
    sets = ", ".join(f"{k} = ?" for k in columns)
    for n in numbers:
        state.db.execute(f"UPDATE sector_deadlines SET {sets} WHERE miner = ? AND number = ?",
                         (*columns.values(), miner, n))


# -------------------------------------------------------------------------- assignment

def _assignment_key(live: int, total: int, size: int, index: int) -> tuple:
    """builtin-actors deadline_assignment.rs cmp: fewest partitions after assignment (ended
    sectors keep their place: `total` counts them), then fill a partial partition (the fullest),
    then fewest live sectors, then the lowest index."""
    full_now = total % size == 0
    return (-(-(total + 1) // size), full_now, 0 if full_now else -total, live, index)


def assign_sectors(state, miner: int, numbers: list[int]) -> None:
    """Give newly activated sectors a deadline (only mutable ones: not the current one nor the
    next) and a partition (filling partial partitions first). They have power from now."""
    if not numbers:
        return
    info, policy, epoch = state.miner_info(miner), state.policy, state.epoch
    size = partition_size(info)
    mutable = [d for d in range(policy.wpost_period_deadlines)
               if dl.is_mutable(policy, info.proving_period_start, d, epoch)]
    if not mutable:
        raise ActorError(ExitCode.ILLEGAL_STATE, f"no mutable deadline at epoch {epoch}")
    live, total = dict.fromkeys(mutable, 0), dict.fromkeys(mutable, 0)
    for d, n in state.db.execute("SELECT deadline, COUNT(*) FROM sector_deadlines WHERE miner = ? GROUP BY deadline",
                                 (miner,)):
        if d in live:
            live[d] = total[d] = n
    for d, n in state.db.execute("SELECT deadline, COUNT(*) FROM terminated_sectors WHERE miner = ? GROUP BY deadline",
                                 (miner,)):
        if d in total:
            total[d] += n
    for number in sorted(numbers):
        d = min(mutable, key=lambda i: _assignment_key(live[i], total[i], size, i))
        counts = dict(state.db.execute(     # ended sectors keep their place (partitions never compact)
            "SELECT partition, COUNT(*) FROM (SELECT partition FROM sector_deadlines WHERE miner = ? AND deadline = ? "
            "UNION ALL SELECT partition FROM terminated_sectors WHERE miner = ? AND deadline = ?) GROUP BY partition",
            (miner, d, miner, d)).fetchall())
        partition = next((p for p in sorted(counts) if counts[p] < size), len(counts))
        state.db.execute("INSERT INTO sector_deadlines (miner, number, deadline, partition, since) VALUES (?, ?, ?, ?, ?)",
                         (miner, number, d, partition, epoch))
        live[d] += 1
        total[d] += 1
    record_power(state, miner)


# ---------------------------------------------------------------------------- messages

def _sector_set(obj: dict, key: str) -> set[int]:
    """A bitfield of sector numbers (Go's run-length JSON, checked by read_params)."""
    return set(numbers_from_json(obj[key]))


def _objects(params: dict, key: str, where: str) -> list[dict]:
    v = params.get(key)
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ActorError(ExitCode.SERIALIZATION, f"{where}.{key}: expected a list of objects")
    return v


def submit_windowed_post(state, miner: int, params: dict) -> None:
    where = "SubmitWindowedPoSt"
    params = read_params(where, params)
    info, policy, epoch = state.miner_info(miner), state.policy, state.epoch
    index = _int(params, "Deadline", where)
    partitions = _objects(params, "Partitions", where)
    proofs = _objects(params, "Proofs", where)
    _arg(len(proofs) == 1, f"expected exactly one proof, got {len(proofs)}")
    proof_type = _int(proofs[0], "PoStProof", f"{where}.Proofs[0]")
    proof_bytes = _bytes(proofs[0], "ProofBytes", f"{where}.Proofs[0]")
    commit_epoch = _int(params, "ChainCommitEpoch", where)
    commit_rand = _bytes(params, "ChainCommitRand", where)
    _arg(0 <= index < policy.wpost_period_deadlines, f"invalid deadline {index}, must be < {policy.wpost_period_deadlines}")
    _arg(proof_type == info.window_post_proof, f"expected proof of type {info.window_post_proof}, got {proof_type}")
    _arg(len(partitions) <= policy.posted_partitions_max,
         f"too many partitions {len(partitions)}, limit {policy.posted_partitions_max}")
    cur = dl.current_deadline(policy, info.proving_period_start, epoch)
    if index != cur.index:
        this = dl.new_deadline_info(policy, cur.period_start, index, epoch)
        why = (f"too late: its window closed at {this.close}" if this.elapsed
               else f"too early: its window opens at {this.open}")
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"invalid deadline {index} at epoch {epoch}, expected {cur.index} "
                                                    f"(window {cur.open}..{cur.close - 1}): {why}")
    _arg(commit_epoch >= max(cur.challenge, 0),
         f"expected chain commit epoch {commit_epoch} to be at or after the challenge epoch {cur.challenge}")
    _arg(commit_epoch < epoch, f"chain commit epoch {commit_epoch} must be less than the current epoch {epoch}")
    _arg(commit_rand == state.draw_chain_commit(commit_epoch), "post commit randomness mismatched")

    proven: dict[int, list[int]] = {}      # partition -> sectors it proves
    skipped_all: list[tuple] = []
    seen: set[int] = set()
    for i, p in enumerate(partitions):
        here = f"{where}.Partitions[{i}]"
        pidx = _int(p, "Index", here)
        skipped = _sector_set(p, "Skipped")
        _arg(pidx not in seen, f"duplicate partitions proven: {pidx}")
        seen.add(pidx)
        rows = _rows(state, miner, index, pidx)
        _arg(bool(rows) or pidx in lifecycle_actor.ended(state, miner, index),      # a partition of ended sectors is one
             f"no such partition {pidx} in deadline {index}", ExitCode.NOT_FOUND)
        _arg(state.db.execute("SELECT 1 FROM partition_posts WHERE miner = ? AND deadline = ? AND partition = ? "
                              "AND period_start = ?", (miner, index, pidx, cur.period_start)).fetchone() is None,
             f"partition already proven: {pidx} of deadline {index} in the period starting at {cur.period_start}")
        outside = skipped - {r[0] for r in rows}
        _arg(not outside, f"skipped faults contains sectors outside partition {pidx}: {sorted(outside)}")
        due = [r for r in rows if r[2] < cur.challenge]
        proven[pidx] = [r[0] for r in due if r[0] not in skipped and (not r[3] or r[4])]
        skipped_all += [r for r in due if r[0] in skipped]
    numbers = sorted(n for ns in proven.values() for n in ns)
    _arg(bool(numbers), "cannot prove partitions with no active sectors")
    public = []
    for n in numbers:
        _, comm_r = cid_to_commitment(state.get_sector(miner, n).sealed_cid)
        public.append(PublicSector(n, comm_r))
    ptype = post_proof(info.window_post_proof)
    try:
        trusted = accept_unverified(state.policy, "window_post", proof_bytes, f"WindowPoSt of deadline {index}")
    except ProofError as exc:      # a Groth16 proof the devnet cannot verify: refused, saying so
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, str(exc)) from None
    try:
        if not trusted:
            verify_post(ptype, state.draw_window_post(miner, cur.challenge), public, decode_post(proof_bytes, expected=ptype))
    except ProofError as exc:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"invalid post was submitted: {exc}") from None

    for pidx, ns in proven.items():
        state.db.execute("INSERT INTO partition_posts (miner, deadline, partition, period_start, epoch, sectors) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (miner, index, pidx, cur.period_start, epoch, len(ns)))
        _set(state, miner, ns, faulty=0, recovering=0, fault_epoch=None)       # recovered sectors: power back
    retracted = [r[0] for r in skipped_all if r[3] and r[4]]
    _set(state, miner, retracted, recovering=0)
    new_faults = [r[0] for r in skipped_all if not r[3]]
    _set(state, miner, new_faults, faulty=1, fault_epoch=epoch)
    _penalize(state, miner, "skipped", new_faults, DETECTED_FAULT_PENALTY, index, cur.period_start)
    record_power(state, miner)


def _declarations(state, miner: int, params: dict, key: str, where: str) -> list[tuple[list[tuple], set[int]]]:
    """Validate every {Deadline, Partition, Sectors} entry: the deadline's next occurrence must not
    be past its fault cutoff, and the sectors must be in that partition. Returns (rows, sectors)."""
    info, policy, epoch = state.miner_info(miner), state.policy, state.epoch
    params = read_params(where, params)
    out = []
    for i, e in enumerate(_objects(params, key, where)):
        here = f"{where}.{key}[{i}]"
        index, pidx = _int(e, "Deadline", here), _int(e, "Partition", here)
        numbers = _sector_set(e, "Sectors")
        _arg(0 <= index < policy.wpost_period_deadlines,
             f"invalid fault declaration deadline {index}: must be < {policy.wpost_period_deadlines}")
        target = dl.declaration_deadline(policy, info.proving_period_start, index, epoch)
        _arg(not target.fault_cutoff_passed,
             f"failed fault declaration at deadline {index}: late fault or recovery declaration at epoch {epoch} "
             f"(cutoff {target.fault_cutoff} for the window opening at {target.open})")
        rows = _rows(state, miner, index, pidx)
        _arg(bool(rows), f"no such partition {pidx} in deadline {index}", ExitCode.NOT_FOUND)
        outside = numbers - {r[0] for r in rows}
        _arg(not outside, f"failed fault declaration: sectors {sorted(outside)} are not all assigned to partition "
                          f"{pidx} of deadline {index}")
        out.append((rows, numbers))
    return out


def declare_faults(state, miner: int, params: dict) -> None:
    """Declared sectors lose power now; a recovering one goes back to plain faulty (its recovery
    is retracted). The fault fee is charged at each close of their deadline while faulty."""
    for rows, numbers in _declarations(state, miner, params, "Faults", "DeclareFaults"):
        mine = [r for r in rows if r[0] in numbers]
        _set(state, miner, [r[0] for r in mine if r[3] and r[4]], recovering=0)
        _set(state, miner, [r[0] for r in mine if not r[3]], faulty=1, fault_epoch=state.epoch)
    record_power(state, miner)


def declare_faults_recovered(state, miner: int, params: dict) -> None:
    """Faulty sectors are marked recovering; their power returns only when a WindowPoSt that
    includes them is accepted. Sectors that are not faulty are ignored (as builtin-actors)."""
    for rows, numbers in _declarations(state, miner, params, "Recoveries", "DeclareFaultsRecovered"):
        _set(state, miner, [r[0] for r in rows if r[0] in numbers and r[3] and not r[4]], recovering=1)


METHODS = {
    "SubmitWindowedPoSt": submit_windowed_post,
    "DeclareFaults": declare_faults,
    "DeclareFaultsRecovered": declare_faults_recovered,
}


# -------------------------------------------------------------------------------- cron

def proving_deadlines(state) -> list[tuple[int, int, int]]:
    """(miner, deadline, proving period offset) of every deadline that has partitions: one index
    probe per miner and deadline (a DISTINCT over the table read every sector: at a million,
    a third of a second at every epoch the chain executes)."""
    out = []
    for m in state.miners():
        for d in range(state.policy.wpost_period_deadlines):
            if state.db.execute("SELECT 1 FROM sector_deadlines WHERE miner = ? AND deadline = ? LIMIT 1",
                                (m.actor, d)).fetchone():
                out.append((m.actor, d, m.proving_period_start))
    return out


def close_deadline(state, miner: int, index: int, close: int) -> None:
    """Cron for the occurrence of deadline `index` whose window closes at `close` (runs with
    state.epoch == close, before the messages landing at `close`). Due sectors of partitions not
    proven become faulty (detected-fault penalty), their recoveries fail; sectors that were already
    faulty before the window opened pay the fault fee; one deadline record is written."""
    occ = dl.occurrence_closing_at(state.policy, index, close)
    due = [r for r in _rows(state, miner, index) if r[2] < occ.challenge]
    if due:
        _close_occurrence(state, miner, index, close, occ, due)
    # then, as builtin-actors' handle_proving_deadline, the sectors whose (quantised) expiration
    # is this deadline's last epoch leave: proven (or penalized) in this occurrence, gone after it
    lifecycle_actor.expire_at_close(state, miner, index, close)


def _close_occurrence(state, miner: int, index: int, close: int, occ, due: list[tuple]) -> None:
    posts = dict(state.db.execute("SELECT partition, sectors FROM partition_posts WHERE miner = ? AND deadline = ? "
                                  "AND period_start = ?", (miner, index, occ.period_start)).fetchall())
    fee, missed, failed = [], [], []
    for number, partition, _, faulty, recovering, fault_epoch in due:
        if faulty and fault_epoch < occ.open:
            fee.append(number)
        if partition not in posts:
            if not faulty:
                missed.append(number)
            elif recovering:
                failed.append(number)
    _set(state, miner, missed, faulty=1, fault_epoch=close)
    _set(state, miner, failed, recovering=0)
    _penalize(state, miner, "fault-fee", fee, DECLARED_FAULT_FEE, index, occ.period_start)
    _penalize(state, miner, "missed-post", missed, DETECTED_FAULT_PENALTY, index, occ.period_start)
    partitions = {r[1] for r in due}
    new_faulty = state.db.execute(
        "SELECT COUNT(*) FROM sector_deadlines WHERE miner = ? AND deadline = ? AND since < ? AND faulty != 0 "
        "AND fault_epoch >= ?", (miner, index, occ.challenge, occ.open)).fetchone()[0]
    penalty = state.db.execute("SELECT COALESCE(SUM(amount), 0) FROM penalties WHERE miner = ? AND deadline = ? "
                               "AND period_start = ?", (miner, index, occ.period_start)).fetchone()[0]
    state.db.execute(
        "INSERT OR REPLACE INTO deadline_records (miner, period_start, deadline, close, partitions, partitions_proven, "
        "sectors, sectors_proven, sectors_faulty_new, penalty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (miner, occ.period_start, index, close, len(partitions), len(partitions & set(posts)), len(due),
         sum(posts.values()), new_faulty, penalty))
    if missed:
        record_power(state, miner)


# ------------------------------------------------------------------------------- reads

def partitions(state, miner: int, index: int) -> list[PartitionInfo]:
    info = state.miner_info(miner)
    cur = dl.current_deadline(state.policy, info.proving_period_start, state.epoch)
    posted = {p for (p,) in state.db.execute("SELECT partition FROM partition_posts WHERE miner = ? AND deadline = ? "
                                              "AND period_start = ?", (miner, index, cur.period_start))}
    parts: dict[int, list[tuple]] = {}
    for r in _rows(state, miner, index):
        parts.setdefault(r[1], []).append(r)
    ended = lifecycle_actor.ended(state, miner, index)
    return [PartitionInfo(p, tuple(r[0] for r in rows), tuple(r[0] for r in rows if r[3]),
                          tuple(r[0] for r in rows if r[3] and r[4]), p in posted, tuple(ended.get(p, ())))
            for p, rows in sorted((p, parts.get(p, [])) for p in set(parts) | set(ended))]


def deadline_records(state, miner: int) -> list[dict]:
    rows = state.db.execute("SELECT period_start, deadline, close, partitions, partitions_proven, sectors, sectors_proven, "
                            "sectors_faulty_new, penalty FROM deadline_records WHERE miner = ? ORDER BY close, deadline",
                            (miner,)).fetchall()
    keys = ("period_start", "index", "close", "partitions", "partitions_proven", "sectors", "sectors_proven",
            "sectors_faulty_new", "penalty")
    return [dict(zip(keys, r)) for r in rows]


def penalties(state, miner: int) -> list[dict]:
    rows = state.db.execute("SELECT epoch, reason, sectors, amount, deadline, period_start FROM penalties WHERE miner = ? "
                            "ORDER BY seq", (miner,)).fetchall()
    return [{"epoch": r[0], "reason": r[1], "sectors": json.loads(r[2]), "amount": r[3], "deadline": r[4],
             "period_start": r[5]} for r in rows]
