"""The devnet's clock: which epoch is the head, from the wall clock, so that it never decreases.

The clock is anchored at (clock_epoch, clock_time, clock_block_time) in the devnet's meta table.
The head is the anchor's epoch plus the whole block times elapsed since, and never below the
epoch already processed. On open, and whenever the block time changes, the head reached under
the old block time becomes the new anchor, so a restart with another block time changes only
the pace. A wall clock that steps back is absorbed by re-anchoring at the head: the chain pauses,
it never rewinds. Every function runs inside one of the devnet's transactions."""

from __future__ import annotations


def head(devnet) -> int:
    epoch = int(devnet._meta("clock_epoch"))
    processed = int(devnet._meta("processed_epoch"))
    now, anchored_at = devnet._now(), float(devnet._meta("clock_time"))
    block_time = _anchored_block_time(devnet)
    if block_time > 0 and now >= anchored_at:
        epoch += int((now - anchored_at) // block_time)
    if now < anchored_at or epoch < processed:
        epoch = max(epoch, processed)
        set_anchor(devnet, epoch, now)
    return epoch


def _anchored_block_time(devnet) -> float:
    stored = devnet._meta("clock_block_time")      # absent in a database from before it was stored
    return float(stored) if stored is not None else devnet.policy.block_time


def set_anchor(devnet, epoch: int, at: float) -> None:
    """Anchor the clock at `epoch` now, with this run's block time."""
    devnet._set_meta("clock_epoch", str(epoch))
    devnet._set_meta("clock_time", repr(at))
    devnet._set_meta("clock_block_time", repr(float(devnet.policy.block_time)))


def anchor_on_open(devnet) -> None:
    """The head under the block time the clock ran with, then this run's block time from there."""
    set_anchor(devnet, head(devnet), devnet._now())
