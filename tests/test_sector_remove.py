"""Removing a sector's files (manager/sector_removal.py) only once the chain says it is gone, and
FinalizeSector / resend-pre / resend-prove (manager/sector_resend.py): refused and accepted."""

import pytest

from appliance.core.sector import sector_name
from appliance.manager.sector_removal import (WINNING_POST_SECTOR_SET_LOOKBACK, RemovalRefused, remove_sector_files,
                                              resume_removals)
from appliance.manager.sector_resend import ResendRefused, finalize, resend

from .term_fixtures import MINER, P2K, ZERO_COMM_D, onboard, open_farm, tree

SID = lambda n: {"Miner": MINER, "Number": n}      # noqa: E731


@pytest.fixture
def farm(tmp_path):
    f = open_farm(tmp_path)
    yield f
    f.close()


def remove(farm, n):
    return remove_sector_files(farm.config, farm.state, farm.chain, MINER, n)


def test_remove_is_refused_while_live_and_deletes_only_its_files_once_terminated(farm):
    chain = farm.chain
    a, b, c = onboard(farm, 3)
    store = farm.config.persist_stores[0].path
    before = tree(store)
    with pytest.raises(RemovalRefused, match=r"is live on chain until epoch \d+: terminate it first"):
        remove(farm, a)
    farm.state.update(MINER, a, persisted="p1", finalized=True)
    farm.terminator.submit(SID(a))
    farm.terminator.submit(SID(b))
    [msg] = farm.terminator.tick()
    with pytest.raises(RemovalRefused, match=f"its termination is in flight \\(message {msg}\\)"):
        remove(farm, a)
    chain.advance(chain.policy.message_delay)
    # landed, but the manager has not followed it yet: the chain decides, not the record
    assert farm.state.sector(MINER, a)["terminate"]["terminated_at"] is None
    assert chain.sector_expiration(MINER, a) is None
    remove(farm, b)          # no terminated_at known here yet: nothing to wait for
    chain.advance(2)
    farm.terminator.tick()
    ended = farm.state.sector(MINER, a)["terminate"]["terminated_at"]
    if chain.head() < ended + WINNING_POST_SECTOR_SET_LOOKBACK:
        with pytest.raises(RemovalRefused, match="wait for expiration"):
            remove(farm, a)
        chain.advance(ended + WINNING_POST_SECTOR_SET_LOOKBACK - chain.head())
    out = remove(farm, a)
    name = sector_name(MINER, a)
    assert sorted(out["Removed"]) == sorted(str(store / d / name) for d in ("sealed", "cache", "unsealed"))
    after = tree(store)
    gone = {k for k in before if sector_name(MINER, a) in k or sector_name(MINER, b) in k}
    assert set(after) == set(before) - gone and all(after[k] == before[k] for k in after)    # c untouched, byte for byte
    assert any(sector_name(MINER, c) in k for k in after)
    assert farm.state.sector(MINER, a)["removed"] is True
    assert remove(farm, a) == {"Removed": [], "AlreadyRemoved": True}


def test_remove_refuses_a_sector_still_sealing_or_precommitted_and_one_with_no_store(farm):
    [n] = onboard(farm, 1, files=False)
    farm.state.update(MINER, n, finalized=None)
    with pytest.raises(RemovalRefused, match="still being sealed"):
        remove(farm, n)
    m = farm.state.allocate(MINER, P2K.id, 0, None)
    farm.state.update(MINER, m, ticket={"Epoch": farm.chain.head() - 5}, pre_queued_at=0,
                      pre={"CommR": (bytes(31) + bytes([m])).hex(), "CommD": ZERO_COMM_D})
    [pre] = farm.committer.tick()       # the committer sends the PreCommits of open sectors only
    farm.state.update(MINER, m, finalized=True)
    farm.chain.advance(1)
    assert farm.chain.receipt(pre).ok
    with pytest.raises(RemovalRefused, match="pre-committed on chain and may still be proven"):
        remove(farm, m)
    farm.state.update(MINER, m, abort_reason="by hand", persisted=None)
    with pytest.raises(RemovalRefused, match="object not found in any persist store"):
        remove(farm, m)
    with pytest.raises(KeyError):
        remove(farm, 99)


def test_a_journalled_removal_is_finished_by_resume_and_touches_nothing_else(farm):
    a, b = onboard(farm, 2)
    store = farm.config.persist_stores[0].path
    before = tree(store)
    farm.state.update(MINER, a, abort_reason="gone", finalized=None)
    paths = [[str(store / d / sector_name(MINER, a)), d == "cache"] for d in ("sealed", "cache", "unsealed")]
    farm.state.update(MINER, a, removal={"started_at": 1.0, "paths": paths})
    (store / "sealed" / sector_name(MINER, a)).unlink()       # the first went before the stop
    assert resume_removals(farm.state) == [(MINER, a)]
    assert farm.state.sector(MINER, a)["removed"] is True
    assert set(tree(store)) == {k for k in before if sector_name(MINER, a) not in k}
    assert resume_removals(farm.state) == []


def test_finalize_needs_the_sector_on_chain(farm):
    [n] = onboard(farm, 1)
    farm.state.update(MINER, n, finalized=None, state="ProofSubmitted")
    finalize(farm.chain, farm.state, MINER, n)
    rec = farm.state.sector(MINER, n)
    assert rec["finalized"] is True and rec["state"] == "Finished"
    m = farm.state.allocate(MINER, P2K.id, 0, None)
    with pytest.raises(ResendRefused, match="not found on chain"):
        finalize(farm.chain, farm.state, MINER, m)


def test_resend_pre_and_prove_refused_while_queued_pending_or_landed_and_accepted_after_a_failure(farm):
    chain, state = farm.chain, farm.state
    n = state.allocate(MINER, P2K.id, 0, None)
    with pytest.raises(ResendRefused, match="no pre commit on chain info available"):
        resend(chain, state, MINER, n, "pre")
    # a PreCommit whose ticket is too old: the chain refuses it (a failure that is not retried by itself)
    state.update(MINER, n, ticket={"Epoch": 0}, pre_queued_at=0,
                 pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": ZERO_COMM_D})
    with pytest.raises(ResendRefused, match="already queued, waiting for its batch"):
        resend(chain, state, MINER, n, "pre")
    chain.advance(chain.policy.max_precommit_randomness_lookback)
    [pre] = farm.committer.tick()
    with pytest.raises(ResendRefused, match=f"message {pre} is pending in the message pool"):
        resend(chain, state, MINER, n, "pre")
    chain.advance(1)
    assert not chain.receipt(pre).ok
    out = resend(chain, state, MINER, n, "pre")
    assert out == {"Sector": sector_name(MINER, n), "Queued": "PreCommit", "Previous": pre}
    rec = state.sector(MINER, n)
    assert "pre_nonce" not in rec and "pre_msg" not in rec and "sent again by hand" in rec["pre_failed"]
    state.update(MINER, n, ticket={"Epoch": chain.head() - 5})
    [again] = farm.committer.tick()
    chain.advance(1)
    assert chain.receipt(again).ok
    with pytest.raises(ResendRefused, match="pre-committed on chain: its PreCommit landed"):
        resend(chain, state, MINER, n, "pre")
    with pytest.raises(ResendRefused, match="no prove commit on chain info available"):
        resend(chain, state, MINER, n, "proof")
    chain.advance(chain.policy.precommit_challenge_delay)
    state.update(MINER, n, commit_proof="AAAA", proof_queued_at=0)          # a proof the chain refuses
    [bad] = farm.committer.tick()
    chain.advance(1)
    assert not chain.receipt(bad).ok
    with pytest.raises(ResendRefused, match="reached later stages"):
        resend(chain, state, MINER, n, "pre")
    from .term_fixtures import SNARK
    state.update(MINER, n, commit_proof=SNARK)
    assert resend(chain, state, MINER, n, "proof")["Previous"] == bad
    [proof] = farm.committer.tick()
    chain.advance(1)
    assert chain.receipt(proof).ok
    with pytest.raises(ResendRefused, match="proven on chain"):
        resend(chain, state, MINER, n, "proof")


def test_resend_of_a_message_gone_from_the_chain_is_left_to_the_committer_until_it_stops_watching(farm):
    """A reorg dropped the PreCommit: the committer sends it again at its own nonce while it
    watches it (refused here, so that it is not sent twice); after its watch window, resend."""
    from appliance.manager.commitment import WATCH_WINDOW
    chain, state = farm.chain, farm.state
    n = state.allocate(MINER, P2K.id, 0, None)
    state.update(MINER, n, ticket={"Epoch": chain.head() - 5}, pre_queued_at=0,
                 pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": ZERO_COMM_D})
    [pre] = farm.committer.tick()
    chain.advance(1)
    assert chain.reorg(2, drop=True)["dropped"]
    with pytest.raises(ResendRefused, match="left the chain \\(a reorg\\): the committer sends it again at nonce 0"):
        resend(chain, state, MINER, n, "pre")
    later = state.one("SELECT created FROM outbox WHERE miner = ? AND nonce = 0", (MINER,))[0] + WATCH_WINDOW + 1
    assert resend(chain, state, MINER, n, "pre", now=lambda: later) == {
        "Sector": sector_name(MINER, n), "Queued": "PreCommit", "Previous": pre, "Nonce": 0}
    assert [(r["nonce"], r["kind"]) for r in state.unsent()] == [(0, "pre")]      # its own nonce: nothing can skip it
    farm.committer.tick()
    chain.advance(1)
    assert chain.precommit(MINER, n) is not None
    assert [m["method"] for m in chain.messages(MINER)] == ["PreCommitSectorBatch2"]
