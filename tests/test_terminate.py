"""Terminating sectors (manager/terminate.py): TerminateSector queues, the batch goes out as
Damocles' terminate processor sends it (Threshold, MaxWait; declarations by deadline and
partition; immutable deadlines wait), through the committer's outbox; the receipt is followed to
TerminatedAt; power and pledge go and WindowPoSt no longer challenges the sector. RPC shapes as
Damocles' core/types.go (commit 4235a895) SubmitTerminateResp and TerminateInfo."""

import pytest

from appliance.chain.types import ExitCode
from appliance.core.protocol import SubmitResult
from appliance.manager.terminate import TerminateRefused, terminate_info, termination, termination_row

from .term_fixtures import MINER, P2K, onboard, open_farm, to_mutable

SID = lambda n: {"Miner": MINER, "Number": n}      # noqa: E731


@pytest.fixture
def farm(tmp_path):
    f = open_farm(tmp_path)
    yield f
    f.close()


def test_terminate_batches_by_partition_lands_and_power_pledge_and_post_follow(farm):
    chain = farm.chain
    numbers = onboard(farm, 3)
    to_mutable(farm, numbers)
    power = chain.miner_power(MINER)
    assert power.active_sectors == 3
    locked = chain.available_balance(MINER)
    assert farm.terminator.submit(SID(numbers[0])) == {"Res": SubmitResult.ACCEPTED, "Desc": None}
    assert farm.terminator.tick() == []                 # one waiting, Threshold 2: not due
    again = farm.terminator.submit(SID(numbers[0]))
    assert again == {"Res": SubmitResult.DUPLICATE_SUBMIT, "Desc": "duplicate submit"}
    assert farm.terminator.submit(SID(numbers[1]))["Res"] == SubmitResult.ACCEPTED
    info = farm.terminator.poll(SID(numbers[0]))
    assert info == {"TerminateCid": None, "TerminatedAt": 0, "AddedHeight": chain.head()}
    [msg] = farm.terminator.tick()
    sent = next(m for m in chain.messages(MINER) if m["id"] == msg)
    loc = chain.sector_location(MINER, numbers[0])
    assert sent["method"] == "TerminateSectors"
    assert [(t["Deadline"], t["Partition"]) for t in sent["params"]["Terminations"]] == [(loc.deadline, loc.partition)]
    rec = farm.state.sector(MINER, numbers[0])
    assert termination(rec)["msg"] == msg and rec["terminate"]["msg"] == msg and rec["terminate"]["nonce"] == rec["terminate_nonce"]
    assert farm.terminator.poll(SID(numbers[0]))["TerminateCid"] == {"/": msg}
    chain.advance(chain.policy.message_delay)
    receipt = chain.receipt(msg)
    assert receipt.ok and receipt.returned == {"Done": True}
    farm.terminator.tick()
    assert farm.terminator.poll(SID(numbers[0]))["TerminatedAt"] == 0     # not yet Confidence (2) epochs deep
    chain.advance(2)
    farm.terminator.tick()
    for n in numbers[:2]:
        assert farm.terminator.poll(SID(n)) == {"TerminateCid": {"/": msg}, "TerminatedAt": receipt.epoch,
                                                 "AddedHeight": info["AddedHeight"]}
        assert chain.sector_expiration(MINER, n) is None
    assert chain.miner_power(MINER).active_sectors == 1
    assert [s.number for s in chain.active_sectors(MINER)] == [numbers[2]]
    assert [s.number for s in chain.winning_post_sectors(MINER, chain.head())] == [numbers[2]]
    def partition(n):
        where = chain.sector_location(MINER, n)
        (p,) = [p for p in chain.deadline_partitions(MINER, where.deadline) if p.index == where.partition]
        return p
    # the next WindowPoSt challenges only the live sectors: the terminated ones left their partition's live set
    assert all(n in partition(n).terminated and n not in partition(n).sectors for n in numbers[:2])
    assert numbers[2] in partition(numbers[2]).active
    assert chain.available_balance(MINER) != locked          # the pledge is released, less the fee
    assert farm.terminator.tick() == []                       # nothing left to send


def test_terminate_refusals_name_why(farm):
    [n] = onboard(farm, 1)
    with pytest.raises(TerminateRefused, match="not on chain"):
        farm.terminator.submit(SID(n + 5))
    assert farm.state.allocate(MINER, P2K.id, 0, None) == n + 1
    farm.state.update(MINER, n + 1, ticket={"Epoch": farm.chain.head() - 5}, pre_queued_at=0,
                      pre={"CommR": (bytes(31) + bytes([9])).hex(), "CommD": farm.state.sector(MINER, n)["pre"]["CommD"]})
    [pre] = farm.committer.tick()
    farm.chain.advance(1)
    assert farm.chain.receipt(pre).ok
    with pytest.raises(TerminateRefused, match="precommitted but not proven, remove instead"):
        farm.terminator.submit(SID(n + 1))
    assert farm.terminator.submit({"Miner": 1234, "Number": n}) == {
        "Res": SubmitResult.REJECTED, "Desc": "miner 1234 is not one of this manager's miners"}


def test_max_wait_sends_one_and_an_immutable_deadline_waits(tmp_path):
    clock = [1000.0]
    farm = open_farm(tmp_path, threshold=5, max_wait="10s", now=lambda: clock[0])
    try:
        chain = farm.chain
        [n] = onboard(farm, 1)
        loc = chain.sector_location(MINER, n)
        # move to the deadline just before the sector's: its deadline is the next one, immutable
        while chain.proving_deadline(MINER).index != (loc.deadline - 1) % 48:
            chain.advance(1)
        farm.terminator.submit(SID(n))
        clock[0] += 11
        assert farm.terminator.tick() == []                   # due (MaxWait), but its deadline is immutable
        assert termination(farm.state.sector(MINER, n))["msg"] is None
        while chain.proving_deadline(MINER).index in {(loc.deadline + d) % 48 for d in (-1, 0, 1)}:
            chain.advance(1)
        [msg] = farm.terminator.tick()
        chain.advance(chain.policy.message_delay + 2)
        farm.terminator.tick()
        assert termination(farm.state.sector(MINER, n))["terminated_at"] == chain.receipt(msg).epoch
    finally:
        farm.close()


def test_a_failed_termination_is_queued_again_or_fails_with_the_actors_error(farm):
    """Sent while the deadline is mutable, landing when it is not: the actor refuses (immutable
    deadline), so it is queued again and goes out later. A sector no longer live fails for good."""
    chain = farm.chain
    numbers = onboard(farm, 2)
    loc = chain.sector_location(MINER, numbers[0])
    while chain.proving_deadline(MINER).index != (loc.deadline - 2) % 48:
        chain.advance(1)
    current = chain.proving_deadline(MINER)
    chain.advance(current.close - 1 - current.current_epoch)    # the last epoch of the deadline two before
    for n in numbers:
        farm.terminator.submit(SID(n))
    [msg] = farm.terminator.tick()                              # mutable now; immutable when it executes
    chain.advance(chain.policy.message_delay)
    receipt = chain.receipt(msg)
    assert receipt.exit_code == ExitCode.ILLEGAL_ARGUMENT and "immutable deadline" in receipt.error
    farm.terminator.tick()
    rec = farm.state.sector(MINER, numbers[0])
    assert "terminate_nonce" not in rec and termination(rec)["error"] is None and msg in rec["terminate"]["last_failure"]
    assert terminate_info(rec)["TerminateCid"] is None
    # the partition's deadline passes; it goes out again and lands
    while chain.proving_deadline(MINER).index in {(loc.deadline + d) % 48 for d in (-1, 0, 1)}:
        chain.advance(1)
    [again] = farm.terminator.tick()
    assert again != msg
    chain.advance(chain.policy.message_delay + 2)
    farm.terminator.tick()
    assert all(farm.terminator.poll(SID(n))["TerminatedAt"] > 0 for n in numbers)


def test_rpc_shapes_match_damocles_types():
    """core/types.go (4235a895): SubmitTerminateResp{Res SubmitResult; Desc *string},
    TerminateInfo{TerminateCid *cid.Cid; TerminatedAt, AddedHeight abi.ChainEpoch}."""
    assert terminate_info(None) == {"TerminateCid": None, "TerminatedAt": 0, "AddedHeight": 0}
    rec = {"terminate": {"queued_at": 1.0, "msg": None, "nonce": None, "added_height": 40, "terminated_at": None,
                         "error": None}, "terminate_nonce": 3, "terminate_msg": "bafy2bzacea"}
    assert terminate_info(rec) == {"TerminateCid": {"/": "bafy2bzacea"}, "TerminatedAt": 0, "AddedHeight": 40}
    assert termination(rec)["nonce"] == 3
    assert [int(r) for r in (SubmitResult.ACCEPTED, SubmitResult.DUPLICATE_SUBMIT, SubmitResult.REJECTED)] == [1, 2, 4]


def test_a_queued_sector_the_chain_no_longer_has_live_fails_naming_why(farm):
    numbers = onboard(farm, 2)
    for n in numbers:
        farm.terminator.submit(SID(n))
    [msg] = farm.terminator.tick()
    farm.chain.advance(farm.chain.policy.message_delay + 2)
    farm.terminator.tick()
    # a record that asks again for a sector already gone (e.g. a state imported from another manager)
    rec = farm.state.sector(MINER, numbers[0])
    farm.state.update(MINER, numbers[0], terminate_nonce=None, terminate_msg=None,
                      terminate={**rec["terminate"], "msg": None, "nonce": None, "terminated_at": None})
    farm.state.update(MINER, numbers[1], terminate_nonce=None, terminate_msg=None,
                      terminate={**rec["terminate"], "msg": None, "nonce": None, "terminated_at": None})
    assert farm.terminator.tick() == []
    for n in numbers:
        assert "not live on chain any more" in termination(farm.state.sector(MINER, n))["error"]
    with pytest.raises(TerminateRefused, match="already terminated or expired"):
        farm.terminator.submit(SID(numbers[0]))


def test_a_terminated_sector_stays_ended_when_the_devnet_reopens(tmp_path):
    """devnet.py _migrate assigned every sector without a deadline row to a deadline at open,
    which brought ended (terminated, expired) sectors back to life at each manager restart."""
    farm = open_farm(tmp_path)
    numbers = onboard(farm, 2)
    for n in numbers:
        farm.terminator.submit(SID(n))
    farm.terminator.tick()
    farm.chain.advance(farm.chain.policy.message_delay)
    power = farm.chain.miner_power(MINER)
    farm.close()
    farm = open_farm(tmp_path)
    try:
        assert [farm.chain.sector_expiration(MINER, n) for n in numbers] == [None, None]
        assert farm.chain.miner_power(MINER) == power and power.active_sectors == 0
    finally:
        farm.close()


def test_status_page_rows_say_queued_sent_landed_or_failed():
    base = {"queued_at": 5.0, "msg": None, "nonce": None, "added_height": 40, "terminated_at": None, "error": None}
    row = lambda t, **rec: termination_row(MINER, 7, {"terminate": t, **rec})      # noqa: E731
    assert row(base)["State"] == "queued" and row(base)["AddedHeight"] == 40
    assert row(base, terminate_nonce=1, terminate_msg="bafyA")["State"] == "sent"
    landed = row({**base, "msg": "bafyA", "terminated_at": 44}, removed=True)
    assert (landed["State"], landed["TerminatedAt"], landed["Removed"]) == ("landed", 44, True)
    failed = row({**base, "error": "bafyA exit code 16: can only terminate live sectors"})
    assert (failed["State"], failed["Error"]) == ("failed", "bafyA exit code 16: can only terminate live sectors")


def test_terminate_batch_config_is_read_with_damocles_defaults():
    from appliance.manager.config import BatchConfig, ConfigError, parse_config
    assert parse_config({"Miners": [{"Actor": MINER}]}).miners[0].terminate_batch == BatchConfig(2, 3600.0, 60.0)
    cfg = parse_config({"Miners": [{"Actor": MINER, "Commitment": {"Terminate": {
        "Batch": {"Threshold": 5, "MaxWait": "10m0s", "CheckInterval": "30s"}}}}]})
    assert cfg.miners[0].terminate_batch == BatchConfig(5, 600.0, 30.0)
    with pytest.raises(ConfigError, match=r"\[\[Miners\]\]\[0\]\.Commitment\.Terminate\.Batch\.Threshold must be at least 1"):
        parse_config({"Miners": [{"Actor": MINER, "Commitment": {"Terminate": {"Batch": {"Threshold": 0}}}}]})
