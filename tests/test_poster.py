"""The manager's poster against the devnet, in process and on a hand-moved clock, with no
dedicated prover (the manager proves itself): two proving periods proven with power whole; a
lost sealed file declared faulty before the cutoff, its partition-mate still proven, and power
back after a declared recovery and the next proof; a file broken too late to declare is skipped
and penalised; WinningPoSt wins in proportion to power, each proven in its epoch."""

import concurrent.futures
import shutil

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.manager.service import ManagerService, init_home

from .configs import manager_toml
from .test_devnet_proving import P2K, SEED, onboard

def poster_manager(winning: bool = False, chain: dict | None = None, post: dict | None = None) -> str:
    """A hand-moved devnet whose 4 sealed 2KiB sectors hold a fifth of the network's power."""
    return manager_toml(block_time="0s",
                        miner={"PoSt": {"ChallengeConfidence": 2, "SubmitConfidence": 1, **(post or {})}, "Proof": {"Enabled": winning}},
                        config={"Chain": {"NetworkPower": "32KiB", **(chain or {})}})


def _service(tmp_path, winning=False, config=None, ext_cfg: str | None = None, in_process_chain: bool = True):
    """A manager on a seeded devnet with 4 sealed 2KiB sectors; with `ext_cfg`, that is its
    ext-prover.cfg and it runs with --ext-prover."""
    home = tmp_path / "manager"
    home.mkdir()
    Devnet(home / "devnet.db", ChainPolicy(block_time=0), genesis_seed=SEED).close()   # a seeded devnet: a repeatable run
    init_home(home, config or poster_manager(winning))
    if ext_cfg is not None:
        (home / "ext-prover.cfg").write_text(ext_cfg)
    # not started: the test runs the poster's passes itself, epoch by epoch over whole proving
    # periods. By default on the devnet object directly: every epoch is a new head, so each pass
    # reads its deadlines again (memoized per head only), about six API calls an epoch over
    # thousands of epochs: minutes through the API. The poster over the API path is what
    # test_post_e2e, test_poster_reorg (in_process_chain=False) and the ext-prover tests run.
    svc = ManagerService(home, ext_prover=ext_cfg is not None, _in_process_chain=in_process_chain)
    svc.devnet.advance(20)
    rs = onboard(svc.devnet, tmp_path, [1, 2, 3, 4])
    store = home / "persist-1"
    for n, r in rs.items():
        name = f"s-t01000-{n}"
        (store / "sealed").mkdir(exist_ok=True)
        shutil.copyfile(r.sector_dir / "sealed", store / "sealed" / name)
        shutil.copytree(r.sector_dir / "cache", store / "cache" / name,
                        ignore=shutil.ignore_patterns("sc-02-data-layer-*", "sc-02-data-tree-c*", "sc-02-data-tree-d*"))
        assert svc.state.allocate(1000, P2K.id, 1, None) == n
        svc.state.update(1000, n, persisted="persist-1")     # as SubmitPersistedEx records it
    return svc, store


def settle(svc):
    """One poster pass, then wait for its local proving and pass again until nothing is in flight."""
    for _ in range(10):
        svc.poster.tick()
        pending = list(svc.poster._local.values())
        if not pending:
            return
        concurrent.futures.wait(pending, timeout=60)


def run_to(svc, epoch, step=10):
    while svc.devnet.head() < epoch:
        svc.devnet.advance(min(step, epoch - svc.devnet.head()))
        settle(svc)


def next_open(svc, index):
    """The open epoch of deadline `index`'s next occurrence that has not started."""
    dl = svc.devnet.proving_deadline(1000)
    open_ = dl.period_start + index * 60
    return open_ if open_ > dl.current_epoch + 30 else open_ + 2880


@pytest.fixture
def post_svc(tmp_path):
    svc, store = _service(tmp_path)
    yield svc, store
    svc.poster.close()
    svc.close()


def test_two_periods_proven_then_faults_recoveries_and_skips(post_svc):
    svc, store = post_svc
    chain = svc.devnet
    parts = {d: chain.deadline_partitions(1000, d) for d in range(48)}
    used = sorted(d for d, p in parts.items() if p)
    assert sum(len(p.sectors) for d in used for p in parts[d]) == 4 and all(len(p.sectors) == 2 for d in used for p in parts[d])
    start = chain.head()
    run_to(svc, start + 2 * 2880 + 60)
    records = chain.deadline_records(1000)
    assert len(records) >= 2 * len(used)
    assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records
    assert chain.penalties(1000) == [] and chain.miner_power(1000).active_sectors == 4
    rounds = svc.poster.rounds(1000)
    assert sum(r.get("state") == "landed" for r in rounds) == len(records)

    # a lost sealed file: declared faulty before its deadline's cutoff; its partition-mate is proven
    d = used[0]
    lost, mate = parts[d][0].sectors
    shutil.move(store / "sealed" / f"s-t01000-{lost}", store / f"lost-{lost}")
    open_ = next_open(svc, d)
    run_to(svc, open_ + 60)
    faulty = chain.deadline_partitions(1000, d)[0]
    assert faulty.faulty == (lost,) and faulty.proven
    assert chain.miner_power(1000).active_sectors == 3
    r = [x for x in svc.poster.rounds(1000) if x["Deadline"] == d][-1]
    assert r["state"] == "landed" and r["declared_faults"] == [lost] and r["sectors"] == [mate]
    assert {p["reason"] for p in chain.penalties(1000)} == {"fault-fee"}

    # the file is back: a declared recovery, and power returns with the next proof
    shutil.move(store / f"lost-{lost}", store / "sealed" / f"s-t01000-{lost}")
    open_ = next_open(svc, d)
    run_to(svc, open_ - 40)
    assert chain.deadline_partitions(1000, d)[0].recovering == (lost,)
    assert chain.miner_power(1000).active_sectors == 3          # not before the proof
    run_to(svc, open_ + 60)
    assert chain.deadline_partitions(1000, d)[0].faulty == () and chain.miner_power(1000).active_sectors == 4

    # broken after the cutoff: too late to declare; the poster skips it and the chain penalises it
    open_ = next_open(svc, d)
    run_to(svc, open_ - 40)
    (store / "sealed" / f"s-t01000-{mate}").write_bytes(b"")
    run_to(svc, open_ + 60)
    r = [x for x in svc.poster.rounds(1000) if x["Deadline"] == d][-1]
    assert r["state"] == "landed" and str(mate) in r["skipped"]
    assert chain.deadline_partitions(1000, d)[0].faulty == (mate,)
    assert any(p["reason"] == "skipped" and mate in p["sectors"] for p in chain.penalties(1000))
    assert all(r["partitions_proven"] == r["partitions"] for r in chain.deadline_records(1000))


def test_winning_post_wins_match_power_share(tmp_path):
    svc, _ = _service(tmp_path, winning=True)
    try:
        chain = svc.devnet
        first = chain.head() + 1
        n = 300
        for _ in range(n):
            chain.advance(1)
            svc.poster.tick()
        blocks = [b for b in chain.blocks(1000) if b["epoch"] >= first]
        assert blocks and all(b["won"] for b in blocks), [b for b in blocks if not b["won"]][:5]
        p = 4 * 2048 / (4 * 2048 + chain.policy.network_power)
        assert abs(len(blocks) - n * p) < 4 * (n * p * (1 - p)) ** 0.5, (len(blocks), n * p)
    finally:
        svc.poster.close()
        svc.close()


def test_partitions_beyond_one_message_are_proven_in_several(tmp_path):
    # three deadlines a period: the only mutable one takes all 4 sectors, 2 partitions; one partition per message
    config = poster_manager(chain={"WPoStProvingPeriod": 180, "WPoStPeriodDeadlines": 3},
                            post={"MaxPartitionsPerPoStMessage": 1})
    svc, _ = _service(tmp_path, config=config)
    try:
        chain = svc.devnet
        used = [d for d in range(3) if chain.deadline_partitions(1000, d)]
        assert len(used) == 1 and len(chain.deadline_partitions(1000, used[0])) == 2
        run_to(svc, chain.head() + 2 * 180 + 60)
        records = chain.deadline_records(1000)
        assert len(records) >= 2 and all(r["partitions_proven"] == 2 == r["partitions"] for r in records), records
        rounds = [r for r in svc.poster.rounds(1000) if r.get("state") == "landed"]
        assert {(r["Group"], tuple(r["partitions"])) for r in rounds} == {(0, (0,)), (1, (1,))}
        assert len({r["message"] for r in rounds}) == len(rounds) >= 4
        assert chain.penalties(1000) == []
    finally:
        svc.poster.close()
        svc.close()


def test_a_restarted_poster_resumes_its_rounds(post_svc):
    from appliance.manager.poster import Poster
    svc, _ = post_svc
    chain = svc.devnet
    d = min(i for i in range(48) if chain.deadline_partitions(1000, i))
    open_ = next_open(svc, d)
    chain.advance(open_ - 18 - chain.head())              # challenge + ChallengeConfidence
    svc.poster.tick()                                     # the round starts: proving here, in the background
    period = chain.proving_deadline(1000).period_start + (2880 if d < chain.proving_deadline(1000).index else 0)
    assert svc.poster.round(1000, period, d)["state"] == "proving"
    svc.poster.close()                                    # the manager stops mid-proof; a new one starts
    svc.poster = Poster(svc.config, svc.state, svc.chain, svc.jobs, svc.committer, svc.sealer)
    run_to(svc, open_ + 60)
    assert svc.poster.round(1000, period, d)["state"] == "landed"
    assert all(r["partitions_proven"] == r["partitions"] for r in chain.deadline_records(1000))


def test_a_deadline_proven_on_chain_before_a_restore_is_not_proven_again(post_svc):
    """The manager's rounds restored from a backup older than its last proof: the round it no
    longer knows finds its partitions proven on chain and sends nothing (a second proof is refused:
    partition already proven)."""
    svc, _ = post_svc
    chain = svc.devnet
    d = min(i for i in range(48) if chain.deadline_partitions(1000, i))
    open_ = next_open(svc, d)
    run_to(svc, open_ + 30, step=1)
    period = chain.proving_deadline(1000).period_start
    assert svc.poster.round(1000, period, d)["state"] == "landed"
    with svc.state.tx() as db:           # the restored state: the rounds of this period are not in it
        db.execute("DELETE FROM post_rounds WHERE period_start = ?", (period,))
    sent = len(chain.messages(1000))
    run_to(svc, open_ + 61, step=1)
    assert [m for m in chain.messages(1000)[sent:] if m["method"] == "SubmitWindowedPoSt" and m["params"]["Deadline"] == d] == []
    r = svc.poster.round(1000, period, d)
    assert r["state"] == "landed" and r["proven_on_chain"] is True
    assert [(x["method"], x["error"]) for x in chain.messages(1000) if x["exit_code"] not in (0, None)] == []   # None: pending
    assert all(rec["partitions_proven"] == rec["partitions"] for rec in chain.deadline_records(1000))


def test_a_windowpost_journalled_before_a_crash_is_adopted_not_sent_again(post_svc, monkeypatch):
    """The manager killed after the outbox journalled (and pushed) the SubmitWindowedPoSt but
    before the round was saved as submitted: the next pass adopts that message instead of
    sending a second one with a new nonce (which the chain refuses: partition already proven)."""
    svc, _ = post_svc
    chain = svc.devnet
    d = min(i for i in range(48) if chain.deadline_partitions(1000, i))
    open_ = next_open(svc, d)
    real_save, crashed = svc.poster._save, []

    def crash_before_saving_submitted(key, info):
        if info.get("state") == "submitted" and not crashed:
            crashed.append(key)
            raise RuntimeError("killed")        # the round stays "proved"; the message is in the outbox
        real_save(key, info)
    monkeypatch.setattr(svc.poster, "_save", crash_before_saving_submitted)
    with pytest.raises(RuntimeError, match="killed"):
        run_to(svc, open_ + 60, step=1)
    run_to(svc, open_ + 61, step=1)
    posts = [m for m in chain.messages(1000) if m["method"] == "SubmitWindowedPoSt" and m["params"]["Deadline"] == d
             and open_ <= m["params"]["ChainCommitEpoch"] < open_ + 60]
    assert len(posts) == 1, posts
    assert posts[0]["exit_code"] == 0
    r = [x for x in svc.poster.rounds(1000) if x["Deadline"] == d][-1]
    # the round names the message by the CID the devnet's API gave it; the devnet's records by its own id
    assert r["state"] == "landed" and r["message"] == posts[0]["id"]     # in process: the devnet's own id
