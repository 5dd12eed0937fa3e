"""WindowPoSt deadline arithmetic, as builtin-actors does it (actors/miner/src/deadline_info.rs,
deadlines.rs): a miner's proving period starts at epochs congruent to its offset (MinerInfo.
proving_period_start, in [0, WPoStProvingPeriod)) and is cut into WPoStPeriodDeadlines challenge
windows of WPoStChallengeWindow epochs. Pure functions of the policy, the offset and an epoch."""

from __future__ import annotations

from .policy import ChainPolicy
from .types import DeadlineInfo, deadline_info


def current_period_start(policy: ChainPolicy, offset: int, epoch: int) -> int:
    """The latest epoch ≤ `epoch` congruent to `offset` modulo the proving period (QuantSpec
    quantize_down; negative before the miner's first full period, like Lotus' currentPeriodStart)."""
    return epoch - (epoch - offset) % policy.wpost_proving_period


def new_deadline_info(policy: ChainPolicy, period_start: int, index: int, epoch: int) -> DeadlineInfo:
    return deadline_info(period_start, index, epoch, policy.wpost_challenge_window, policy.wpost_challenge_lookback,
                         policy.fault_declaration_cutoff)


def current_deadline(policy: ChainPolicy, offset: int, epoch: int) -> DeadlineInfo:
    """The deadline in progress at `epoch` (new_deadline_info_from_offset_and_epoch)."""
    start = current_period_start(policy, offset, epoch)
    return new_deadline_info(policy, start, (epoch - start) // policy.wpost_challenge_window, epoch)


def next_not_elapsed(policy: ChainPolicy, info: DeadlineInfo) -> DeadlineInfo:
    """The same deadline in the first proving period where it has not closed yet."""
    if not info.elapsed:
        return info
    periods = 1 + (info.current_epoch - info.close) // policy.wpost_proving_period
    return new_deadline_info(policy, info.period_start + periods * policy.wpost_proving_period, info.index,
                             info.current_epoch)


def declaration_deadline(policy: ChainPolicy, offset: int, index: int, epoch: int) -> DeadlineInfo:
    """The occurrence of deadline `index` that a fault or recovery declared at `epoch` is for
    (declaration_deadline_info): this period's if it has not closed yet, else the next period's.
    The declaration is refused when that occurrence's fault cutoff has passed."""
    start = current_period_start(policy, offset, epoch)
    return next_not_elapsed(policy, new_deadline_info(policy, start, index, epoch))


def is_mutable(policy: ChainPolicy, offset: int, index: int, epoch: int) -> bool:
    """deadline_is_mutable: at least one challenge window before the deadline's next opening, so
    never the current deadline nor the next one."""
    info = declaration_deadline(policy, offset, index, epoch)
    return epoch < info.open - policy.wpost_challenge_window


def next_close_after(policy: ChainPolicy, offset: int, index: int, epoch: int) -> int:
    """The first close epoch of deadline `index` strictly after `epoch`."""
    base = offset + (index + 1) * policy.wpost_challenge_window
    return base + ((epoch - base) // policy.wpost_proving_period + 1) * policy.wpost_proving_period


def occurrence_closing_at(policy: ChainPolicy, index: int, close: int) -> DeadlineInfo:
    """The occurrence of deadline `index` whose window closes at `close`, seen at its last epoch."""
    start = close - (index + 1) * policy.wpost_challenge_window
    return new_deadline_info(policy, start, index, close - 1)
