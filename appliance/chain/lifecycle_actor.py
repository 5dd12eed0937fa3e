"""A sector's end of life on the devnet, as builtin-actors b0a3bdd6 applies it (actors/miner/src/
lib.rs, expiration_queue.rs, policy.rs, monies.rs): on-time expiry at the deadline cron,
ExtendSectorExpiration2 (method 32) and TerminateSectors (method 9).

- Expiry: a live sector leaves its partition's live set at the cron of the first occurrence of
  its deadline whose last epoch is at or after its expiration (the expiration quantised up to the
  deadline's last epoch, `quantized_expiration`). Its power goes and its initial pledge is
  unlocked (back in the available balance); it stays in the partition's sector set, terminated,
  and its info stays readable (builtin-actors deletes it only when partitions compact, which the
  devnet never does).
- ExtendSectorExpiration2: validate_extended_expiration and validate_expiration, with their words.
- TerminateSectors: only live sectors of mutable deadlines; the early-termination fee of
  monies.rs pledge_penalty_for_termination, paid from the sector's released pledge (the miner's
  balance); power and pledge go at once; Return {Done: true} (nothing is left queued).

Simplifications (docs/devnet.md): faults never expire early (no FaultMaxAge), so Early is 0 in
StateSectorExpiration; no verified claims (SectorsWithClaims must be empty); deals of ended
sectors are not slashed; the fault fee in the termination fee's lower bound is BR(3.51 days) of
the devnet's money constants (money.expected_reward) rather than of smoothed estimates.

Each function runs inside the devnet's transaction; `state` is the Devnet."""

from __future__ import annotations

import json

from . import deadlines as dl
from . import money
from .bitfield import numbers_from_json
from .miner_actor import _arg, _int, read_params
from .types import ActorError, ExitCode

EPOCHS_IN_DAY = 2880
EPOCHS_IN_YEAR = 365 * EPOCHS_IN_DAY + EPOCHS_IN_DAY // 4          # builtin-actors runtime policy
ADDRESSED_PARTITIONS_MAX = 3000          # runtime/src/runtime/policy.rs (= MAX_PARTITIONS_PER_DEADLINE)
ADDRESSED_SECTORS_MAX = 25_000           # runtime/src/runtime/policy.rs
DECLARATIONS_MAX = ADDRESSED_PARTITIONS_MAX   # go-state-types builtin/v16/miner/policy.go DeclarationsMax
# monies.rs: the termination fee (FIP-0098)
TERM_FEE_PLEDGE_MULTIPLE = (85, 1000)
TERM_FEE_MIN_PLEDGE_MULTIPLE = (2, 100)
TERM_FEE_MAX_FAULT_FEE_MULTIPLE = (105, 100)
TERMINATION_LIFETIME_CAP = 140 * EPOCHS_IN_DAY
CONTINUED_FAULT_PROJECTION_PERIOD = EPOCHS_IN_DAY * 351 // 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS terminated_sectors (miner INTEGER NOT NULL, number INTEGER NOT NULL,
    deadline INTEGER NOT NULL, partition INTEGER NOT NULL, epoch INTEGER NOT NULL, reason TEXT NOT NULL,
    fee TEXT NOT NULL DEFAULT '0', PRIMARY KEY (miner, number));
CREATE INDEX IF NOT EXISTS terminated_sectors_partition ON terminated_sectors (miner, deadline, partition)
"""


def migration(db) -> None:
    """Version 4 of devnet.db: ended sectors (expired or terminated) and a message's return value.
    Sectors of older databases are all live (nothing expired before), so nothing to move."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    have = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    if "return_value" not in have:
        db.execute("ALTER TABLE messages ADD COLUMN return_value TEXT")


# ------------------------------------------------------------------------- arithmetic

def seal_proof_max_lifetime(seal_proof: int) -> int | None:
    """policy.rs seal_proof_sector_maximum_lifetime: 540 days for V1 proofs, 5 years for V1_1
    (and its SyntheticPoRep / NiPoRep variants); None for an unknown proof."""
    if 0 <= seal_proof <= 4:
        return 540 * EPOCHS_IN_DAY
    if 5 <= seal_proof <= 19:
        return 5 * EPOCHS_IN_YEAR
    return None


def quantized_expiration(policy, offset: int, deadline: int, expiration: int) -> int:
    """The epoch a sector of `deadline` expiring at `expiration` leaves at: QuantSpec.quantize_up
    with the proving period as unit and the deadline's last epoch as offset
    (State::quant_spec_for_deadline)."""
    last = (offset + (deadline + 1) * policy.wpost_challenge_window - 1) % policy.wpost_proving_period
    return expiration + (last - expiration) % policy.wpost_proving_period


def termination_fee(state, miner: int, number: int) -> int:
    """monies.rs pledge_penalty_for_termination(initial_pledge, age, fault_fee): 8.5% of the
    pledge scaled by age over 140 days, at least max(2% of the pledge, 1.05 x the fault fee),
    the fault fee being BR(3.51 days) of the sector's power (money.expected_reward)."""
    pledge = _pledge(state, miner, number)
    sector = state.get_sector(miner, number)
    age = max(0, state.epoch - sector.activation)
    fault_fee = money.expected_reward(state, state.miner_info(miner).sector_size, CONTINUED_FAULT_PROJECTION_PERIOD)
    simple = pledge * TERM_FEE_PLEDGE_MULTIPLE[0] // TERM_FEE_PLEDGE_MULTIPLE[1]
    base = min(simple, age * simple // TERMINATION_LIFETIME_CAP)
    minimum = max(pledge * TERM_FEE_MIN_PLEDGE_MULTIPLE[0] // TERM_FEE_MIN_PLEDGE_MULTIPLE[1],
                  fault_fee * TERM_FEE_MAX_FAULT_FEE_MULTIPLE[0] // TERM_FEE_MAX_FAULT_FEE_MULTIPLE[1])
    return max(base, minimum)


def _pledge(state, miner: int, number: int) -> int:
    row = state.db.execute("SELECT amount FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'pledge'",
                           (miner, number)).fetchone()
    return int(row[0]) if row else 0


# ------------------------------------------------------------------------------ ending

def _end(state, miner: int, numbers: list[int], reason: str, fees: dict[int, int] | None = None) -> None:
    """Live sectors leave their partition's live set: power and pledge go; a fee is burnt."""
    for n in numbers:
        row = state.db.execute("SELECT deadline, partition FROM sector_deadlines WHERE miner = ? AND number = ?",
                               (miner, n)).fetchone()
        fee = (fees or {}).get(n, 0)
        state.db.execute("DELETE FROM sector_deadlines WHERE miner = ? AND number = ?", (miner, n))
        state.db.execute("INSERT INTO terminated_sectors (miner, number, deadline, partition, epoch, reason, fee) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (miner, n, row[0], row[1], state.epoch, reason, str(fee)))
        state.db.execute("DELETE FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'pledge'", (miner, n))
        if fee:
            money.burn(state, miner, fee)
    from .proving import record_power
    record_power(state, miner)


def expire_at_close(state, miner: int, index: int, close: int) -> list[int]:
    """Cron of deadline `index` closing at `close` (its last epoch close - 1): the sectors whose
    expiration is at or before the last epoch expire. Returns their numbers."""
    numbers = [n for (n,) in state.db.execute(
        "SELECT d.number FROM sector_deadlines d JOIN sectors s ON s.miner = d.miner AND s.number = d.number "
        "WHERE d.miner = ? AND d.deadline = ? AND json_extract(s.info, '$.expiration') <= ? ORDER BY d.number",
        (miner, index, close - 1))]
    if numbers:
        _end(state, miner, numbers, "expired")
    return numbers


# ---------------------------------------------------------------------------- messages

def _declarations(params: dict, key: str, where: str) -> list[dict]:
    v = params.get(key)
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ActorError(ExitCode.SERIALIZATION, f"{where}.{key}: expected a list of objects")
    return v


def _partition_rows(state, miner: int, index: int, partition: int) -> tuple[set[int], set[int]]:
    """(live, terminated) sector numbers of a partition."""
    live = {n for (n,) in state.db.execute("SELECT number FROM sector_deadlines WHERE miner = ? AND deadline = ? "
                                           "AND partition = ?", (miner, index, partition))}
    ended = {n for (n,) in state.db.execute("SELECT number FROM terminated_sectors WHERE miner = ? AND deadline = ? "
                                            "AND partition = ?", (miner, index, partition))}
    return live, ended


def extend_sector_expiration2(state, miner: int, params: dict) -> None:
    where = "ExtendSectorExpiration2"
    params = read_params(where, params)
    policy, epoch = state.policy, state.epoch
    decls = _declarations(params, "Extensions", where)
    _arg(len(decls) <= DECLARATIONS_MAX, f"too many declarations {len(decls)}, max {DECLARATIONS_MAX}")
    updates: dict[int, int] = {}
    for i, d in enumerate(decls):
        here = f"{where}.Extensions[{i}]"
        index, pidx = _int(d, "Deadline", here), _int(d, "Partition", here)
        new_expiration = _int(d, "NewExpiration", here)
        _arg(index < policy.wpost_period_deadlines, f"deadline {index} not in range 0..{policy.wpost_period_deadlines}")
        _arg(not d.get("SectorsWithClaims"), f"{here}.SectorsWithClaims: the devnet has no verified claims")
        numbers = numbers_from_json(d["Sectors"])
        live, ended = _partition_rows(state, miner, index, pidx)
        _arg(bool(live or ended), f"no such partition {{ deadline: {index}, partition: {pidx} }}", ExitCode.NOT_FOUND)
        for n in numbers:
            sector = state.get_sector(miner, n)
            _arg(sector is not None, f"failed to load sectors: sector not found: {n}", ExitCode.NOT_FOUND)
            _arg(n in live or n in ended, f"failed to replace sector expirations at {{ deadline: {index}, partition: "
                                          f"{pidx} }}: sector {n} is not in this partition", ExitCode.ILLEGAL_STATE)
            if n in ended or sector.expiration < epoch:
                raise ActorError(ExitCode.FORBIDDEN, f"cannot extend expiration for expired sector {n} at {sector.expiration}")
            _arg(new_expiration >= sector.expiration,
                 f"cannot reduce sector {n} expiration to {new_expiration} from {sector.expiration}")
            validate_expiration(policy, epoch, sector.activation, new_expiration, sector.seal_proof)
            updates[n] = new_expiration
    for n, expiration in updates.items():       # the sector's info; its deadline's cron reads it
        state.db.execute("UPDATE sectors SET info = json_set(info, '$.expiration', ?) WHERE miner = ? AND number = ?",
                         (expiration, miner, n))


def validate_expiration(policy, epoch: int, activation: int, expiration: int, seal_proof: int) -> None:
    """lib.rs validate_expiration, its checks and words in its order."""
    _arg(expiration > activation, f"sector expiration {expiration} must be after activation {activation}")
    _arg(expiration - activation >= policy.min_sector_expiration,
         f"invalid expiration {expiration}, total sector lifetime ({expiration - activation}) must exceed "
         f"{policy.min_sector_expiration} after activation {activation}")
    _arg(expiration <= epoch + policy.max_sector_expiration_extension,
         f"invalid expiration {expiration}, cannot be more than {policy.max_sector_expiration_extension} past current "
         f"epoch {epoch}")
    max_lifetime = seal_proof_max_lifetime(seal_proof)
    _arg(max_lifetime is not None, f"unrecognized seal proof type {seal_proof}")
    _arg(expiration - activation <= max_lifetime,
         f"invalid expiration {expiration}, total sector lifetime ({expiration - activation}) cannot exceed "
         f"{max_lifetime} after activation {activation}")


def terminate_sectors(state, miner: int, params: dict) -> dict:
    where = "TerminateSectors"
    params = read_params(where, params)
    policy, epoch = state.policy, state.epoch
    info = state.miner_info(miner)
    by_partition: dict[tuple[int, int], set[int]] = {}
    for i, t in enumerate(_declarations(params, "Terminations", where)):
        here = f"{where}.Terminations[{i}]"
        index, pidx = _int(t, "Deadline", here), _int(t, "Partition", here)
        _arg(index < policy.wpost_period_deadlines,
             f"failed to process deadline {index}, partition {pidx}: invalid deadline {index}")
        by_partition.setdefault((index, pidx), set()).update(numbers_from_json(t["Sectors"]))
    count = sum(len(s) for s in by_partition.values())
    _arg(len(by_partition) <= ADDRESSED_PARTITIONS_MAX,
         f"cannot process requested parameters: too many partitions {len(by_partition)}, max {ADDRESSED_PARTITIONS_MAX}")
    _arg(count <= ADDRESSED_SECTORS_MAX,
         f"cannot process requested parameters: too many sectors {count}, max {ADDRESSED_SECTORS_MAX}")
    ending: list[int] = []
    for (index, pidx), numbers in sorted(by_partition.items()):
        _arg(dl.is_mutable(policy, info.proving_period_start, index, epoch),
             f"cannot terminate sectors in immutable deadline {index}")
        live, ended = _partition_rows(state, miner, index, pidx)
        _arg(bool(live or ended), f"failed to terminate sectors in deadline {index}: failed to find partition {pidx}",
             ExitCode.NOT_FOUND)
        _arg(numbers <= live, f"can only terminate live sectors ({sorted(numbers - live)} are not live in partition "
                              f"{pidx} of deadline {index})")
        ending += sorted(numbers)
    fees = {n: termination_fee(state, miner, n) for n in ending}
    _end(state, miner, ending, "terminated", fees)
    return {"Done": True}


METHODS = {
    "ExtendSectorExpiration2": extend_sector_expiration2,
    "TerminateSectors": terminate_sectors,
}


# ------------------------------------------------------------------------------- reads

def ended(state, miner: int, index: int) -> dict[int, list[int]]:
    """partition -> its terminated (expired or terminated) sectors, for deadline `index`."""
    out: dict[int, list[int]] = {}
    for p, n in state.db.execute("SELECT partition, number FROM terminated_sectors WHERE miner = ? AND deadline = ? "
                                 "ORDER BY number", (miner, index)):
        out.setdefault(p, []).append(n)
    return out


def location(state, miner: int, number: int) -> tuple[int, int] | None:
    """(deadline, partition) of a sector live or ended (State::find_sector), None if none."""
    row = state.db.execute("SELECT deadline, partition FROM sector_deadlines WHERE miner = ? AND number = ? UNION ALL "
                           "SELECT deadline, partition FROM terminated_sectors WHERE miner = ? AND number = ?",
                           (miner, number, miner, number)).fetchone()
    return (row[0], row[1]) if row else None


def expiration(state, miner: int, number: int) -> tuple[int, int] | None:
    """(on_time, early) as Lotus' GetSectorExpiration gives it for a live sector; None if the
    sector is not live (ended or never activated). Early is always 0 (module docstring)."""
    row = state.db.execute("SELECT deadline FROM sector_deadlines WHERE miner = ? AND number = ?", (miner, number)).fetchone()
    if row is None:
        return None
    offset = state.miner_info(miner).proving_period_start
    return quantized_expiration(state.policy, offset, row[0], state.get_sector(miner, number).expiration), 0


def ended_list(state, miner: int) -> list[dict]:
    """Every ended sector: number, deadline, partition, epoch, reason (expired | terminated), fee."""
    rows = state.db.execute("SELECT number, deadline, partition, epoch, reason, fee FROM terminated_sectors "
                            "WHERE miner = ? ORDER BY number", (miner,)).fetchall()
    return [{"number": r[0], "deadline": r[1], "partition": r[2], "epoch": r[3], "reason": r[4], "fee": int(r[5])}
            for r in rows]


def dumps(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)
