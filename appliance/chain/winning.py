"""WinningPoSt on the devnet: block elections and the proofs that claim them.

A miner with power p (bytes of active sectors) is elected at epoch E when
uniform(draw(ElectionProofProduction, beacon at E, E, miner)) < p / (p + NetworkPower), the power
being the miner's after everything executed at E (`proving.record_power`). Lotus draws a VRF
ticket and a Poisson win count against the whole network's power; the devnet has one simulated
network of NetworkPower bytes and at most one block per miner per epoch. An elected miner has
until the end of epoch E (head == E) to submit a WinningPoSt for the challenged sector; an elected
epoch that passes without one is recorded as a missed block.

Simplification: the sector set is the miner's active sectors at head (Filecoin reads it from the
state ChainFinality epochs back)."""

from __future__ import annotations

from ..core.proof_types import seal_proof
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment
from ..proofs.post import PublicSector, decode_post, verify_post, winning_sector_indices
from .external_proofs import accept_unverified
from .types import ChainError, SectorOnChain

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (miner INTEGER NOT NULL, epoch INTEGER NOT NULL, won INTEGER NOT NULL,
    PRIMARY KEY (miner, epoch));
"""


def active_at(state, miner: int, epoch: int) -> int:
    row = state.db.execute("SELECT active FROM power_history WHERE miner = ? AND epoch <= ? ORDER BY epoch DESC LIMIT 1",
                           (miner, epoch)).fetchone()
    return row[0] if row else 0


def wins(ticket: bytes, power: int, network_power: int) -> bool:
    """uniform(ticket) < power / (power + network_power), in exact integers."""
    return power > 0 and int.from_bytes(ticket, "big") * (power + network_power) < power << 256


def elected(state, miner: int, epoch: int) -> bool:
    info = state.miner_info(miner)
    return wins(state.draw_election(miner, epoch), active_at(state, miner, epoch) * info.sector_size,
                state.policy.network_power)


def sector_set(state, miner: int) -> list[SectorOnChain]:
    """The miner's active (non-faulty) sectors, ascending."""
    numbers = [n for (n,) in state.db.execute("SELECT number FROM sector_deadlines WHERE miner = ? AND faulty = 0 "
                                              "ORDER BY number", (miner,))]
    return [state.get_sector(miner, n) for n in numbers]


def challenged(state, miner: int, epoch: int) -> list[SectorOnChain]:
    """The sector(s) a WinningPoSt at `epoch` must prove (winning_sector_indices over the set)."""
    sectors = sector_set(state, miner)
    if not sectors:
        return []
    prover_id = SectorID(miner, 0).prover_id
    return [sectors[i] for i in winning_sector_indices(prover_id, state.draw_winning_post(miner, epoch), len(sectors))]


def submit(state, miner: int, epoch: int, proof: bytes) -> None:
    head = state.epoch
    if epoch != head:
        raise ChainError(f"WinningPoSt for epoch {epoch} refused: a block must be produced within its epoch, head is {head}")
    if state.db.execute("SELECT 1 FROM blocks WHERE miner = ? AND epoch = ? AND won != 0", (miner, epoch)).fetchone():
        return                                          # the same block again: already recorded
    if not elected(state, miner, epoch):
        raise ChainError(f"WinningPoSt for epoch {epoch} refused: f0{miner} is not elected at epoch {epoch}")
    sectors = challenged(state, miner, epoch)
    if not sectors:
        raise ChainError(f"WinningPoSt for epoch {epoch} refused: f0{miner} has no active sectors")
    ptype = seal_proof(state.miner_info(miner).seal_proof).winning_post
    try:
        trusted = accept_unverified(state.policy, "winning_post", proof, f"WinningPoSt for epoch {epoch}", 1)
    except ProofError as exc:      # a Groth16 proof the devnet cannot verify: refused, saying so
        raise ChainError(str(exc)) from None
    try:
        public = [PublicSector(s.number, cid_to_commitment(s.sealed_cid)[1]) for s in sectors]
        if not trusted:
            verify_post(ptype, state.draw_winning_post(miner, epoch), public, decode_post(proof, expected=ptype))
    except ProofError as exc:
        raise ChainError(f"invalid WinningPoSt for epoch {epoch} (challenged sector {sectors[0].number}): {exc}") from None
    state.db.execute("INSERT INTO blocks (miner, epoch, won) VALUES (?, ?, 1)", (miner, epoch))


def record_missed(state, first: int, last: int) -> None:
    """Cron: every elected epoch in [first, last] without an accepted WinningPoSt is a missed block.
    Only epochs where the miner has power are drawn, so long clock jumps stay cheap."""
    if last < first:
        return
    for info in state.miners():
        m = info.actor
        changes = state.db.execute("SELECT epoch, active FROM power_history WHERE miner = ? AND epoch > ? AND epoch <= ? "
                                   "ORDER BY epoch", (m, first, last)).fetchall()
        points = [(first, active_at(state, m, first))] + changes + [(last + 1, 0)]
        won = {e for (e,) in state.db.execute("SELECT epoch FROM blocks WHERE miner = ? AND epoch BETWEEN ? AND ?",
                                              (m, first, last))}
        for (start, active), (end, _) in zip(points, points[1:]):
            power = active * info.sector_size
            if power == 0:
                continue
            for e in range(start, end):
                if e not in won and wins(state.draw_election(m, e), power, state.policy.network_power):
                    state.db.execute("INSERT INTO blocks (miner, epoch, won) VALUES (?, ?, 0)", (m, e))
