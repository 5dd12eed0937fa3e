"""Money on the devnet: account balances, PreCommit deposits, initial pledge, gas and the base fee
(docs/devnet.md, "Money"). Amounts are attoFIL as Python ints (stored as decimal text: they pass
2^63). The formulas are builtin-actors' and Lotus' with the network's moving parts replaced by
constants of the devnet's policy; each function says what it simplifies.

- Accounts: one balance per address string. A miner's actor is `f0<id>`; its worker (also its
  owner: the devnet's miners have one key) is MinerInfo.worker. Genesis funds both.
- PreCommit deposit (builtin-actors actors/miner/src/monies.rs pre_commit_deposit_for_power):
  BR(20 days) of the sector's power, locked when the PreCommit lands, released when its sector
  is proven, burnt when the PreCommit expires.
- Initial pledge (monies.rs initial_pledge_for_power): BR(20 days) + 3/10 of the circulating
  supply times the sector's share of network power, capped at 1 FIL per 32GiB; locked at
  ProveCommit (after the deposit is released).
- BR(d) (monies.rs expected_reward_for_power) = sector power x epoch reward x d / network power,
  at least 1 attoFIL. Simplified: no smoothed filter estimates (the reward and the network power
  are the policy's constants; the network power is at least the devnet's own), every sector's
  quality-adjusted power is its raw size (no deal weight), no FIP-0081 ramp (gamma = 1: the
  baseline formulation only).
- Available balance = balance - deposits - pledges (no vesting rewards, no fee debt).
- Gas: every message has GasLimit, GasFeeCap, GasPremium; the sender pays
  gas used x min(fee cap, base fee + premium) (Lotus chain/vm/burn.go splits this into a base-fee
  burn, a miner tip over the whole limit and an over-estimation burn: simplified to one charge).
  A message whose fee cap is below the base fee is not included (it waits in the pool).
- Base fee (Lotus chain/store/basefee.go ComputeNextBaseFee): after each epoch,
  next = base + base x (gas limits used - target) / target / 8 (the change capped at 1/8),
  never below 100 attoFIL.
"""

from __future__ import annotations

import json

from .types import ActorError, ChainError, ExitCode

FIL = 10 ** 18
NANO_FIL = 10 ** 9
EPOCHS_PER_DAY = 2880
PROJECTION_PERIOD = 20 * EPOCHS_PER_DAY          # PRE_COMMIT_DEPOSIT_FACTOR and INITIAL_PLEDGE_FACTOR: 20 days
LOCK_TARGET_NUM, LOCK_TARGET_DENOM = 3, 10       # monies.rs LOCK_TARGET_FACTOR
PLEDGE_CAP_PER_BYTE = FIL // (32 << 30)          # monies.rs INITIAL_PLEDGE_MAX_PER_BYTE (1 FIL per 32GiB)
MIN_BASE_FEE = 100                               # Lotus build.MinimumBaseFee
BASE_FEE_MAX_CHANGE_DENOM = 8                    # Lotus build.BaseFeeMaxChangeDenom
DEFAULT_FEE_CAP = 5 * NANO_FIL                   # Damocles' default GasFeeCap ("5 nanoFIL")
DEFAULT_PREMIUM = 100_000                        # Lotus' MinGasPremium
GAS_OVERESTIMATION = (5, 4)                      # Lotus' default GasLimitOverestimation, 1.25
RBF_NUM, RBF_DENOM = 5, 4                        # Lotus mpool ReplaceByFeeRatioDefault 1.25 (ComputeMinRBF)

# Gas a method uses (simplified: builtin-actors' real figures vary with state; these are of the
# same order as mainnet's): (base, per item), items being sectors or partitions; plus
# GAS_PER_PARAM_BYTE of the params' JSON and a storage term that grows with the log of the
# miner's sector count (what makes a limit estimated earlier fall short later).
METHOD_GAS = {
    "PreCommitSectorBatch2": (20_000_000, 8_000_000), "ProveCommitSectors3": (40_000_000, 20_000_000),
    "ProveCommitAggregate": (40_000_000, 10_000_000), "SubmitWindowedPoSt": (50_000_000, 5_000_000),
    "DeclareFaults": (15_000_000, 2_000_000), "DeclareFaultsRecovered": (15_000_000, 2_000_000),
    "ProveReplicaUpdates3": (40_000_000, 20_000_000), "WithdrawBalance": (10_000_000, 0), "Send": (500_000, 0),
    "ExtendSectorExpiration2": (20_000_000, 1_000_000), "TerminateSectors": (30_000_000, 1_000_000),
}
DEFAULT_METHOD_GAS = (15_000_000, 0)
GAS_PER_PARAM_BYTE = 1_300
GAS_PER_STATE_LEVEL = 200_000

_MESSAGE_COLUMNS = ("sender TEXT", "value TEXT", "gas_limit INTEGER", "fee_cap TEXT", "premium TEXT", "gas_used INTEGER",
                    "replaced_by TEXT")


def MIGRATION(db) -> None:
    """Version 2 of devnet.db: accounts, locked funds, the messages' gas fields. Messages from
    version 1 carry no gas fields: they execute free, as before. Miners created before it get
    their genesis funds on first open (grant_genesis). Columns already there (a file from
    before schema versions, written by this version) are kept."""
    db.execute("CREATE TABLE IF NOT EXISTS accounts (address TEXT PRIMARY KEY, balance TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS locked_funds (miner INTEGER NOT NULL, number INTEGER NOT NULL, "
               "kind TEXT NOT NULL, amount TEXT NOT NULL, PRIMARY KEY (miner, number, kind))")
    have = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
    for column in _MESSAGE_COLUMNS:
        if column.split()[0] not in have:
            db.execute(f"ALTER TABLE messages ADD COLUMN {column}")


def parse_fil(raw, where: str) -> int:
    """An amount as Damocles' ParseFIL reads it ("1.5", "1.5 FIL", "5 nanoFIL", "100 attoFIL")
    or a plain integer of attoFIL; refused naming `where`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            raise ValueError(f"{where}: {raw} is negative")
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"{where}: {raw!r} is not an amount of FIL")
    from decimal import Decimal, InvalidOperation
    text = raw.strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
    unit = text[len(number):].strip().lower()
    scale = {"": 18, "fil": 18, "nanofil": 9, "nfil": 9, "attofil": 0, "afil": 0}.get(unit)
    try:
        value = Decimal(number) if scale is not None and number else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise ValueError(f"{where}: {raw!r} is not an amount of FIL (e.g. \"1.5 FIL\", \"5 nanoFIL\", \"100 attoFIL\")")
    atto = value.scaleb(scale)
    if atto != atto.to_integral_value() or atto < 0:
        raise ValueError(f"{where}: {raw!r} is not a whole, non-negative number of attoFIL")
    return int(atto)


def cap_gas_fee(spec: dict, max_fee: int) -> dict:
    """Lotus' capGasFee: gas limit x fee cap held to `max_fee` (0: no cap) by lowering the fee
    cap, the premium no higher than the fee cap. A spec without a gas limit (the node fills
    it) is left as it is."""
    limit = int(spec.get("gas_limit") or 0)
    if not max_fee or not limit or limit * int(spec.get("fee_cap") or 0) <= max_fee:
        return spec
    cap = max_fee // limit
    return {**spec, "fee_cap": cap, "premium": min(int(spec.get("premium") or 0), cap)}


def format_fil(atto: int) -> str:
    """Like Lotus' types.FIL: "0.000000001 FIL", exact, trailing zeros dropped."""
    sign = "-" if atto < 0 else ""
    whole, frac = divmod(abs(atto), FIL)
    text = f"{whole}.{frac:018d}".rstrip("0").rstrip(".")
    return f"{sign}{text} FIL"


# ------------------------------------------------------------------------------ accounts

def balance(state, address: str) -> int:
    row = state.db.execute("SELECT balance FROM accounts WHERE address = ?", (address,)).fetchone()
    return int(row[0]) if row else 0


def credit(state, address: str, amount: int) -> None:
    if amount < 0:
        raise ChainError(f"cannot credit a negative amount {amount} to {address}")
    _set_balance(state, address, balance(state, address) + amount)


def _set_balance(state, address: str, value: int) -> None:
    state.db.execute("INSERT INTO accounts (address, balance) VALUES (?, ?) ON CONFLICT(address) DO UPDATE SET "
                     "balance = excluded.balance", (address, str(value)))


def transfer(state, sender: str, to: str, amount: int, code: ExitCode = ExitCode.SYS_INSUFFICIENT_FUNDS) -> None:
    """Move `amount` (raises ActorError with `code` when the sender lacks it)."""
    have = balance(state, sender)
    if have < amount:
        raise ActorError(code, f"transfer failed, insufficient balance in sender actor {sender}: "
                               f"{format_fil(have)} < {format_fil(amount)}")
    _set_balance(state, sender, have - amount)
    _set_balance(state, to, balance(state, to) + amount)


def debit(state, address: str, amount: int) -> None:
    """Take `amount` (gas, a burn) that the caller checked is there."""
    _set_balance(state, address, balance(state, address) - amount)


def grant_genesis(state, actor: int, worker: str) -> None:
    """Genesis funds for a miner created now (or created before money existed): its actor and
    its worker get the policy's amounts unless they already have an account."""
    for address, amount in ((f"f0{actor}", state.policy.genesis_miner_balance),
                            (worker, state.policy.genesis_worker_balance)):
        if state.db.execute("SELECT 1 FROM accounts WHERE address = ?", (address,)).fetchone() is None:
            _set_balance(state, address, amount)


# ------------------------------------------------------------- deposits and pledge

def _locked(state, miner: int, kind: str | None = None) -> int:
    rows = state.db.execute("SELECT amount FROM locked_funds WHERE miner = ? AND (? IS NULL OR kind = ?)",
                            (miner, kind, kind)).fetchall()
    return sum(int(r[0]) for r in rows)


def available_balance(state, miner: int) -> int:
    """Balance - PreCommit deposits - initial pledges (Lotus StateMinerAvailableBalance; no
    vesting funds or fee debt on the devnet)."""
    return balance(state, f"f0{miner}") - _locked(state, miner)


def network_power(state) -> int:
    """The network's quality-adjusted power the money formulas divide by: the policy's
    `money_network_power`, or the devnet's own active power where that is larger."""
    row = state.db.execute("SELECT COALESCE(SUM(json_extract(m.info, '$.sector_size')), 0) FROM sector_deadlines s "
                           "JOIN miners m ON m.actor = s.miner").fetchone()      # live sectors (ended ones have none)
    return max(state.policy.money_network_power, int(row[0]))


def expected_reward(state, qa_power: int, epochs: int) -> int:
    """BR(t): the block reward `qa_power` is expected to earn over `epochs`, at least 1 attoFIL."""
    return max(1, qa_power * state.policy.epoch_reward * epochs // network_power(state))


def precommit_deposit_per_sector(state, sector_size: int) -> int:
    return expected_reward(state, sector_size, PROJECTION_PERIOD)


def initial_pledge_per_sector(state, sector_size: int) -> int:
    base = expected_reward(state, sector_size, PROJECTION_PERIOD)
    share_denom = max(network_power(state), sector_size)
    consensus = state.policy.circulating_supply * LOCK_TARGET_NUM * sector_size // (share_denom * LOCK_TARGET_DENOM)
    return min(base + consensus, PLEDGE_CAP_PER_BYTE * sector_size)


def lock_precommit_deposits(state, miner: int, numbers: list[int]) -> None:
    """PreCommit: each sector's deposit is locked; the batch fails with ErrInsufficientFunds (19)
    when the miner's available balance cannot cover all of them (lib.rs pre_commit_sector_batch2)."""
    size = state.miner_info(miner).sector_size
    each = precommit_deposit_per_sector(state, size)
    need, have = each * len(numbers), available_balance(state, miner)
    if have < need:
        raise ActorError(ExitCode.INSUFFICIENT_FUNDS, f"insufficient funds {format_fil(have)} for pre-commit deposit: "
                                                      f"{format_fil(need)}")
    for n in numbers:
        state.db.execute("INSERT INTO locked_funds (miner, number, kind, amount) VALUES (?, ?, 'deposit', ?)",
                         (miner, n, str(each)))


def pledge_on_prove(state, miner: int, numbers: list[int]) -> None:
    """ProveCommit: the sectors' deposits are released and their initial pledge locked; fails with
    ErrInsufficientFunds (19) when the available balance (with the deposits back) falls short."""
    state.db.executemany("DELETE FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'deposit'",
                         [(miner, n) for n in numbers])
    size = state.miner_info(miner).sector_size
    each = initial_pledge_per_sector(state, size)
    need, have = each * len(numbers), available_balance(state, miner)
    if have < need:
        raise ActorError(ExitCode.INSUFFICIENT_FUNDS, f"insufficient funds for aggregate pledge: {format_fil(have)} "
                                                      f"available, {format_fil(need)} required")
    state.db.executemany("INSERT INTO locked_funds (miner, number, kind, amount) VALUES (?, ?, 'pledge', ?)",
                         [(miner, n, str(each)) for n in numbers])


def burn_expired_deposits(state, pairs: list[tuple[int, int]]) -> None:
    """Expired PreCommits: their deposits are burnt (taken from the miner's balance)."""
    for miner, number in pairs:
        row = state.db.execute("SELECT amount FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'deposit'",
                               (miner, number)).fetchone()
        if row is None:
            continue
        state.db.execute("DELETE FROM locked_funds WHERE miner = ? AND number = ? AND kind = 'deposit'", (miner, number))
        burn(state, miner, int(row[0]))


def burn(state, miner: int, amount: int) -> int:
    """Take `amount` from the miner actor's balance and burn it (a burnt deposit, a termination
    fee); returns what was taken. What covers it was locked in the balance and released by the
    caller (a deposit; a sector's pledge, above its termination fee), so it is all there."""
    amount = min(amount, balance(state, f"f0{miner}"))
    debit(state, f"f0{miner}", amount)
    _set_meta_int(state, "burnt_funds", _meta_int(state, "burnt_funds", 0) + amount)
    return amount


def withdraw_balance(state, miner: int, params: dict, sender: str | None) -> None:
    """WithdrawBalance from the owner: min(AmountRequested, available) goes to the owner."""
    info = state.miner_info(miner)
    if sender is not None and sender != info.worker:
        raise ActorError(ExitCode.FORBIDDEN, f"WithdrawBalance: caller {sender} is not the owner {info.worker}")
    try:
        requested = int(params.get("AmountRequested"))
    except (TypeError, ValueError):
        raise ActorError(ExitCode.SERIALIZATION, "WithdrawBalance.AmountRequested: expected a decimal string") from None
    if requested < 0:
        raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"negative fund requested for withdrawal: {requested}")
    amount = max(0, min(requested, available_balance(state, miner)))
    transfer(state, f"f0{miner}", info.worker, amount)


# -------------------------------------------------------------------------------- gas

def _items(method: str, params: dict) -> int:
    for key in ("Sectors", "SectorActivations", "SectorUpdates", "Partitions", "Faults", "Recoveries", "Extensions",
                "Terminations"):
        v = params.get(key)
        if isinstance(v, list):
            return max(1, len(v))
    return 1


def gas_used(state, miner: int, method: str, params: dict) -> int:
    """What the method uses at the current state (the devnet's gas model, module docstring)."""
    base, per_item = METHOD_GAS.get(method, DEFAULT_METHOD_GAS)
    items = _items(method, params)
    size = len(json.dumps(params, sort_keys=True))
    count = state.db.execute("SELECT (SELECT COUNT(*) FROM sectors WHERE miner = ?) + "
                             "(SELECT COUNT(*) FROM precommits WHERE miner = ?)", (miner, miner)).fetchone()[0]
    storage = 0 if method == "Send" else items * GAS_PER_STATE_LEVEL * max(1, int(count).bit_length())
    return base + per_item * items + GAS_PER_PARAM_BYTE * size + storage


def price(base_fee: int, fee_cap: int, premium: int) -> int:
    """attoFIL per gas unit the sender pays: base fee + premium, capped by the fee cap."""
    return min(fee_cap, base_fee + premium)


def _meta_int(state, key: str, default: int) -> int:
    v = state._meta(key)
    return default if v is None else int(v)


def _set_meta_int(state, key: str, value: int) -> None:
    state._set_meta(key, str(value))


def base_fee(state, epoch: int) -> int:
    """The base fee of `epoch`: the recorded one rolled forward over the epochs since, each
    with the gas limits its messages used (zero for the epochs not yet executed)."""
    at = _meta_int(state, "base_fee_epoch", epoch)
    fee = _meta_int(state, "base_fee", MIN_BASE_FEE)
    used = _meta_int(state, "base_fee_used", 0)
    target = state.policy.block_gas_target
    while at < epoch:
        delta = max(-target, min(target, used - target))        # the change is capped at 12.5%
        fee = max(MIN_BASE_FEE, fee + fee * delta // target // BASE_FEE_MAX_CHANGE_DENOM)    # floor, as Go's big.Div
        used, at = 0, at + 1
        if fee == MIN_BASE_FEE:        # an empty epoch at the floor stays there
            at = epoch
    return fee


def record_gas(state, epoch: int, gas_limit: int) -> None:
    """A message included at `epoch` used `gas_limit` of the block's gas (Lotus counts limits)."""
    fee = base_fee(state, epoch)
    used = _meta_int(state, "base_fee_used", 0) if _meta_int(state, "base_fee_epoch", epoch) == epoch else 0
    _set_meta_int(state, "base_fee", fee)
    _set_meta_int(state, "base_fee_epoch", epoch)
    _set_meta_int(state, "base_fee_used", used + gas_limit)


def set_base_fee(state, epoch: int, fee: int) -> None:
    """Admin (tests): the base fee from `epoch` on, moving with the chain's fullness after it."""
    _set_meta_int(state, "base_fee", max(MIN_BASE_FEE, fee))
    _set_meta_int(state, "base_fee_epoch", epoch)
    _set_meta_int(state, "base_fee_used", 0)


def default_gas(state, miner: int, method: str, params: dict, gas_limit, fee_cap, premium, epoch: int) -> tuple[int, int, int]:
    """Fill what the sender left out, as Lotus' GasEstimateMessageGas does: the limit estimated
    at head x 1.25, the premium Lotus' minimum, the fee cap enough for twice the base fee."""
    if premium is None:
        premium = DEFAULT_PREMIUM
    if gas_limit is None:
        num, den = GAS_OVERESTIMATION
        gas_limit = gas_used(state, miner, method, params) * num // den
    if fee_cap is None:
        fee_cap = max(DEFAULT_FEE_CAP, 2 * base_fee(state, epoch) + premium)
    for name, v in (("gas limit", gas_limit), ("fee cap", fee_cap), ("premium", premium)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ChainError(f"message {name} {v!r} is not a non-negative integer")
    if premium > fee_cap:
        raise ChainError(f"message premium {premium} is above its fee cap {fee_cap}")
    if gas_limit > state.policy.block_gas_limit:
        raise ChainError(f"message gas limit {gas_limit} is above the block gas limit {state.policy.block_gas_limit}")
    return gas_limit, fee_cap, premium


def min_replacement_premium(premium: int) -> int:
    """Lotus' ComputeMinRBF: a replacement's premium must be at least this."""
    return premium * RBF_NUM // RBF_DENOM + 1


def charge_gas(state, sender: str, gas: int, fee: int, fee_cap: int, premium: int) -> int:
    """Take gas x price from the sender (who was checked to hold gas limit x fee cap); returns it."""
    cost = gas * price(fee, fee_cap, premium)
    debit(state, sender, min(cost, balance(state, sender)))
    return cost


def required_funds(gas_limit: int, fee_cap: int, value: int) -> int:
    """What the sender must hold for the message to be accepted and executed."""
    return gas_limit * fee_cap + value



def fil_short(atto: int) -> str:
    """Damocles' FIL.Short() (modules/config_util.go): the largest of FIL, nanoFIL, attoFIL the
    amount reaches, as a float, e.g. "1.5 FIL", "5 nanoFIL", "0"."""
    from decimal import Decimal
    for unit, precision in (("FIL", 18), ("nanoFIL", 9), ("attoFIL", 0)):
        if abs(atto) >= 10 ** precision and atto:
            text = format(Decimal(repr(atto / 10 ** precision)).normalize(), "f")
            return f"{text} {unit}"
    return "0"
