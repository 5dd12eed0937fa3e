"""Reorgs of the devnet (appliance/chain/reorg.py): the undo log puts every table back as it was
at the fork point, the lost messages go back to the pool (or are dropped with their nonce), the
re-made epochs draw other randomness, and a reorg deeper than finality is refused. Proofs are
192-byte Groth16 stand-ins accepted unverified (TrustExternalProofs), so no sector is sealed."""

import pytest

from appliance.chain import reorg
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError
from appliance.core.proof_types import seal_proof
from appliance.proofs.commitment import comm_d_from_pieces

from .chain_messages import precommit_sector, prove_commit

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = bytes(range(192))
CLOCK_KEYS = {"clock_epoch", "clock_time", "clock_block_time"}     # the wall clock is not chain state


@pytest.fixture
def chain(tmp_path):
    # a short proving period (48 deadlines of 4 epochs), so that crons and penalties run within finality
    d = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True, wpost_challenge_window=4,
                                                   wpost_proving_period=192), genesis_seed=bytes(range(32)))
    d.create_miner(MINER, P2K.id, proving_period_start=0)
    d.advance(20)
    yield d
    d.close()


def precommit(chain, numbers, nonce=None):
    sectors = [precommit_sector(P2K.id, n, bytes(31) + bytes([n]), comm_d_from_pieces([], 2048), 15, chain.head() + 540 * 2880)
               for n in numbers]
    mid = chain.push_message(MINER, "PreCommitSectorBatch2", {"Sectors": sectors}, nonce=nonce)
    chain.advance(chain.policy.message_delay)
    assert chain.receipt(mid).ok, chain.receipt(mid)
    return mid


def snapshot(chain) -> dict[str, list]:
    """Every table's rows (the undo log's own tables and the clock's anchor left out)."""
    db = chain.db
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {}
    for t in tables:
        if t in ("undo_log", "undo_context", "forks", "sqlite_sequence"):
            continue
        rows = db.execute(f'SELECT rowid, * FROM "{t}" ORDER BY rowid').fetchall()
        if t == "meta":
            rows = [r for r in rows if r[1] not in CLOCK_KEYS]
        out[t] = rows
    return out


def sealed_sector_with_a_proof_landed(chain):
    """PreCommit 1 and 2 at epoch ~21, then their ProveCommit landed; returns (T, state at T, proof id)."""
    precommit(chain, [1, 2])
    chain.advance(chain.policy.precommit_challenge_delay)
    t = chain.head()
    before = snapshot(chain)
    mid = chain.push_message(MINER, "ProveCommitSectors3", prove_commit({1: SNARK, 2: SNARK}))
    chain.advance(chain.policy.message_delay)
    assert chain.receipt(mid).ok
    return t, before, mid


def test_undo_puts_every_table_back_as_it_was_at_the_fork_point(chain):
    t, before, mid = sealed_sector_with_a_proof_landed(chain)
    # more epochs: crons of the new sectors' deadlines, a WindowPoSt period, penalties, power, gas
    chain.advance(2 * chain.policy.wpost_proving_period + 7)
    after = snapshot(chain)
    assert after["sectors"] and after["sector_deadlines"] and after["deadline_records"] and after["power_history"]
    assert after != before
    with chain.database.tx():
        reorged = reorg.undo(chain.db, t)
        undone = snapshot(chain)
    assert mid in reorged
    for table in before:
        if table == "messages":        # the pool keeps what was pushed after T; its rows at T are as they were
            assert [r for r in undone[table] if r[0] <= len(before[table])] == before[table]
            continue
        assert undone[table] == before[table], table
    assert set(undone) == set(before)


def test_reorged_message_goes_back_to_the_pool_and_lands_again(chain):
    t, before, mid = sealed_sector_with_a_proof_landed(chain)
    head = chain.head()
    locked_before = chain.db.execute("SELECT * FROM locked_funds ORDER BY miner, number, kind").fetchall()
    out = chain.reorg(head - t)
    assert out["fork_point"] == t and mid in out["reorged"] and chain.head() == head
    assert chain.receipt(mid) is None                       # pending again: no receipt
    assert chain.sectors(MINER) == [] and chain.precommit(MINER, 1) is not None
    assert [m["executed_epoch"] for m in chain.messages() if m["id"] == mid] == [None]
    chain.advance(chain.policy.message_delay - 1)
    assert chain.receipt(mid) is None                       # lands message_delay after the head of the reorg
    chain.advance(1)
    rec = chain.receipt(mid)
    assert rec.ok and rec.epoch == head + chain.policy.message_delay
    assert [s.number for s in chain.sectors(MINER)] == [1, 2]            # landed once
    assert chain.db.execute("SELECT * FROM locked_funds ORDER BY miner, number, kind").fetchall() == locked_before


def test_dropped_message_frees_its_nonce_and_is_resent_once(chain):
    mid = precommit(chain, [1], nonce=0)
    out = chain.reorg(chain.policy.message_delay, drop=True)
    assert out["dropped"] == [mid]
    with pytest.raises(ChainError, match="not found"):
        chain.receipt(mid)
    assert chain.message_at_nonce(MINER, 0) is None and chain.next_nonce(MINER) == 0
    assert chain.precommit(MINER, 1) is None and not chain.is_allocated(MINER, 1)
    again = precommit(chain, [1], nonce=0)
    assert chain.message_at_nonce(MINER, 0)["id"] == again
    assert chain.precommit(MINER, 1) is not None
    assert [m["method"] for m in chain.messages(MINER)] == ["PreCommitSectorBatch2"]


def test_re_made_epochs_draw_other_randomness(chain):
    chain.advance(10)
    head = chain.head()
    kept, remade = head - 4, head - 3
    old = {e: (chain.seal_randomness(MINER, e), chain.interactive_seed(MINER, e)) for e in (kept, remade, head)}
    chain.reorg(4)
    new = {e: (chain.seal_randomness(MINER, e), chain.interactive_seed(MINER, e)) for e in (kept, remade, head)}
    assert new[kept] == old[kept]                            # at the fork point and below: the same chain
    assert new[remade][0] != old[remade][0] and new[remade][1] != old[remade][1]
    assert new[head] != old[head]
    chain.reorg(1)                                           # another fork of the last epoch only
    assert chain.interactive_seed(MINER, head) not in (old[head][1], new[head][1])
    assert chain.interactive_seed(MINER, remade) == new[remade][1]


def test_reorg_depth_is_bounded(chain):
    for bad in (0, -1, True, "3"):
        with pytest.raises(ChainError, match="not a positive number"):
            chain.reorg(bad)
    with pytest.raises(ChainError, match="below 0"):
        chain.reorg(chain.head() + 1)
    with pytest.raises(ChainError, match="beyond finality"):
        chain.reorg(reorg.FINALITY + 1)
    chain.advance(reorg.FINALITY + 50)
    head = chain.head()
    assert chain.db.execute("SELECT COUNT(*) FROM undo_log WHERE epoch <= ?", (head - reorg.FINALITY,)).fetchone()[0] == 0
    assert chain.reorg(reorg.FINALITY)["fork_point"] == head - reorg.FINALITY


def test_reorg_after_a_restart(tmp_path):
    policy = ChainPolicy(block_time=0, trust_external_proofs=True)
    d = Devnet(tmp_path / "devnet.db", policy)
    d.create_miner(MINER, P2K.id)
    d.advance(20)
    mid = precommit(d, [1])
    d.close()
    d = Devnet(tmp_path / "devnet.db", policy, create=False)
    try:
        d.reorg(d.policy.message_delay)
        assert d.receipt(mid) is None and d.precommit(MINER, 1) is None
        d.advance(d.policy.message_delay)
        assert d.receipt(mid).ok and d.precommit(MINER, 1) is not None
    finally:
        d.close()


def test_a_devnet_from_before_the_undo_log_reorgs_only_epochs_after_its_upgrade(tmp_path):
    import sqlite3
    policy = ChainPolicy(block_time=0, trust_external_proofs=True)
    d = Devnet(tmp_path / "devnet.db", policy)
    d.create_miner(MINER, P2K.id)
    d.advance(30)
    d.close()
    db = sqlite3.connect(tmp_path / "devnet.db")        # back to version 2: no triggers, no undo tables
    for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{trigger}"')
    for table in ("undo_log", "undo_context", "forks"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DELETE FROM meta WHERE key = 'undo_floor'")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    d = Devnet(tmp_path / "devnet.db", policy, create=False)
    try:
        with pytest.raises(ChainError, match="below 30"):
            d.reorg(1)                                   # epoch 30 executed without a log
        mid = precommit(d, [1])
        assert d.reorg(1)["reorged"] == [mid] and d.receipt(mid) is None
    finally:
        d.close()
