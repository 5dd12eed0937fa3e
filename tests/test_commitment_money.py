"""The manager's commitment batching with money on the chain (manager/commitment.py), as Damocles'
commitmgr treats it (damocles 4235a895 modules/impl/commitmgr/commitmgr.go handleMessage: exit
codes SysErrOutOfGas, SysErrInsufficientFunds and ErrInsufficientFunds are "send again", never an
abort): a PreCommit the payer cannot cover waits and says so, then goes out; a failed receipt for
funds is queued again; out of gas is resent with more gas; a message stuck in the pool is replaced
with the same nonce and a higher premium, journalled first."""

import base64
from dataclasses import replace

import pytest

from appliance.chain import money
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.sealer import LANDED, PENDING, Sealer
from appliance.manager.state import ManagerState
from appliance.proofs.seal import seal_sector

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000


def make(tmp_path, send_fund=False, miner_balance=0, worker_balance=10_000 * money.FIL, replace_after=20):
    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1},
                        "Miners": [{"Actor": MINER, "Commitment": {
                            "Confidence": 1, "Pre": {"SendFund": send_fund, "Batch": {"Threshold": 1}}}}]})
    chain = Devnet(tmp_path / "d.db", ChainPolicy(block_time=0, genesis_miner_balance=miner_balance,
                                                  genesis_worker_balance=worker_balance))
    chain.create_miner(MINER, P2K.id)
    chain.advance(5)
    state = ManagerState(tmp_path / "m.db")
    sealer = Sealer(cfg, state, chain)
    return chain, state, sealer, Committer(cfg, state, chain, replace_after=replace_after)


def submit(sealer, tmp_path):
    alloc = sealer.allocate_sector({})
    sid = alloc["ID"]
    ticket = sealer.assign_ticket(sid)
    r = seal_sector(P2K, SectorID(MINER, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
    assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1      # Accepted
    return sid


def land(chain, sealer, sid):
    chain.advance(2)
    return sealer.poll_pre_commit_state(sid)


def test_precommit_waits_for_the_miners_funds_then_lands(tmp_path):
    chain, state, sealer, committer = make(tmp_path)
    sid = submit(sealer, tmp_path)
    for _ in range(3):
        assert committer.tick() == []
        chain.advance(1)
    poll = sealer.poll_pre_commit_state(sid)
    assert poll["State"] == PENDING and "waiting for funds: PreCommit deposit" in poll["Desc"]
    assert "miner f01000 has 0 FIL available" in poll["Desc"] and "add-balance" in poll["Desc"]
    listed = next(s for s in sealer.list_sectors() if s["ID"] == sid)
    assert listed["FundsWait"] == poll["Desc"] and chain.messages(MINER) == []
    chain.add_balance(f"f0{MINER}", chain.precommit_deposit(MINER))
    [msg] = committer.tick()
    assert land(chain, sealer, sid)["State"] == LANDED
    assert chain.precommit(MINER, sid["Number"]) is not None and chain.available_balance(MINER) == 0
    assert "funds_wait" not in state.sector(MINER, sid["Number"])
    state.close()
    chain.close()


def test_send_fund_waits_for_the_senders_funds_and_carries_the_deposit(tmp_path):
    chain, state, sealer, committer = make(tmp_path, send_fund=True, worker_balance=0)
    sid = submit(sealer, tmp_path)
    committer.tick()
    poll = sealer.poll_pre_commit_state(sid)
    assert poll["State"] == PENDING and f"sender f0{MINER}-worker holds 0 FIL (SendFund)" in poll["Desc"]
    chain.add_balance(f"f0{MINER}-worker", money.FIL)
    [msg] = committer.tick()
    assert land(chain, sealer, sid)["State"] == LANDED
    deposit = chain.precommit_deposit(MINER)
    assert chain.message_info(msg)["Value"] == str(deposit)
    assert chain.balance(f"f0{MINER}") == deposit and chain.available_balance(MINER) == 0
    state.close()
    chain.close()


def test_insufficient_funds_receipt_is_queued_again_not_failed(tmp_path, monkeypatch):
    chain, state, sealer, committer = make(tmp_path)
    sid = submit(sealer, tmp_path)
    monkeypatch.setattr(chain, "precommit_deposit", lambda miner, sectors=1: 0)    # the manager's view was wrong
    [first] = committer.tick()
    monkeypatch.undo()
    chain.advance(2)
    assert chain.receipt(first).exit_code == 19
    poll = sealer.poll_pre_commit_state(sid)
    assert poll["State"] == PENDING and "exit code 19" in poll["Desc"] and "sends it again" in poll["Desc"]
    assert committer.tick() == []           # queued again, and now waiting for funds
    rec = state.sector(MINER, sid["Number"])
    assert "pre_msg" not in rec and rec["funds_wait"].startswith("waiting for funds") and "exit code 19" in rec["pre_failed"]
    chain.add_balance(f"f0{MINER}", chain.precommit_deposit(MINER))
    [second] = committer.tick()
    assert second != first and land(chain, sealer, sid)["State"] == LANDED
    assert [m["nonce"] for m in chain.executed_messages(MINER)] == [1]      # nonce 0 failed, nonce 1 landed
    state.close()
    chain.close()


def test_out_of_gas_is_resent_with_more_gas(tmp_path, monkeypatch):
    chain, state, sealer, committer = make(tmp_path, miner_balance=money.FIL)
    sid = submit(sealer, tmp_path)
    real = chain.estimate_gas
    monkeypatch.setattr(chain, "estimate_gas", lambda m, method, params: real(m, method, params) // 2)
    [first] = committer.tick()
    chain.advance(2)
    r = chain.receipt(first)
    assert r.exit_code == 7 and sealer.poll_pre_commit_state(sid)["State"] == PENDING
    [second] = committer.tick()
    limit1, limit2 = chain.message_info(first)["GasLimit"], chain.message_info(second)["GasLimit"]
    assert limit2 == 2 * limit1
    assert land(chain, sealer, sid)["State"] == LANDED and chain.receipt(second).gas_used <= limit2
    assert state.sector(MINER, sid["Number"])["pre_gas_resends"] == 1
    state.close()
    chain.close()


def test_stuck_precommit_is_replaced_same_nonce_higher_premium(tmp_path):
    chain, state, sealer, committer = make(tmp_path, miner_balance=money.FIL, replace_after=3)
    sid = submit(sealer, tmp_path)
    [first] = committer.tick()
    chain.set_base_fee(10 ** 12)              # above the message's fee cap: it stays in the pool
    for _ in range(3):
        chain.advance(1)
        assert committer.tick() == []
    assert chain.receipt(first) is None and sealer.poll_pre_commit_state(sid)["State"] == PENDING
    chain.advance(1)
    [second] = committer.tick()
    a, b = chain.message_info(first), chain.message_info(second)
    assert second != first and chain.message_at_nonce(MINER, 0)["id"] == second and a["ReplacedBy"] == second
    assert a["Nonce"] == b["Nonce"] == 0 and a["State"] == "FillMsg"
    assert int(b["GasPremium"]) == int(a["GasPremium"]) * 5 // 4 + 1 and int(b["GasFeeCap"]) >= 2 * chain.base_fee()
    assert state.sector(MINER, sid["Number"])["pre_msg"] == second
    assert land(chain, sealer, sid)["State"] == LANDED
    assert [m["id"] for m in chain.executed_messages(MINER)] == [second]     # landed once
    state.close()
    chain.close()


def test_replacement_journalled_before_a_crash_is_pushed_once_after(tmp_path):
    chain, state, sealer, committer = make(tmp_path, miner_balance=money.FIL)
    sid = submit(sealer, tmp_path)
    [first] = committer.tick()
    chain.set_base_fee(10 ** 12)
    chain.advance(1)
    [row] = state.sent_since(0)
    spec = {**row["spec"], "premium": money.min_replacement_premium(row["spec"]["premium"]), "fee_cap": 10 ** 13}
    state.respec_message(MINER, 0, spec)      # what _replace_if_stuck journals before its push: then the crash
    again = Committer(committer.config, state, chain, replace_after=100)      # the restarted manager
    [second] = again.tick()
    assert second != first and again.tick() == [] and state.unsent() == []
    assert land(chain, sealer, sid)["State"] == LANDED
    assert len(chain.executed_messages(MINER)) == 1 and len(chain.messages(MINER)) == 2     # one replaced, one landed
    state.close()
    chain.close()


def test_proof_waits_for_its_pledge(tmp_path):
    chain, state, sealer, committer = make(tmp_path)
    sid = submit(sealer, tmp_path)
    m = committer.config.miner(MINER)
    m = replace(m, prove_send_fund=False)
    rec = state.sector(MINER, sid["Number"])
    pledge, deposit = chain.initial_pledge(MINER), chain.precommit_deposit(MINER)
    assert committer._funds(m, "proof", [rec]) is None
    why = state.sector(MINER, sid["Number"])["funds_wait"]
    assert why.startswith(f"waiting for funds: initial pledge {money.format_fil(pledge - deposit)} for 1 sector(s)")
    chain.add_balance(f"f0{MINER}", pledge - deposit)
    assert committer._funds(m, "proof", [state.sector(MINER, sid["Number"])]) == 0
    assert "funds_wait" not in state.sector(MINER, sid["Number"])
    # SendFund: the proof carries the pledge less the deposit it releases
    assert committer._funds(replace(m, prove_send_fund=True), "proof", [rec]) == pledge - deposit
    state.close()
    chain.close()


def test_send_fund_is_read_and_checked():
    cfg = parse_config({"Miners": [{"Actor": 1, "Commitment": {"Pre": {"SendFund": False}}}]})
    assert (cfg.miner(1).pre_send_fund, cfg.miner(1).prove_send_fund) == (False, True)
    with pytest.raises(Exception, match=r"Commitment.Prove.SendFund: 'yes' is not true or false"):
        parse_config({"Miners": [{"Actor": 1, "Commitment": {"Prove": {"SendFund": "yes"}}}]})


def test_sender_without_gas_money_journals_nothing_and_waits(tmp_path):
    chain, state, sealer, committer = make(tmp_path, miner_balance=money.FIL, worker_balance=0)
    sid = submit(sealer, tmp_path)
    assert committer.tick() == [] and committer.tick() == []
    rec = state.sector(MINER, sid["Number"])
    assert "pre_nonce" not in rec and state.unsent() == [] and state.next_nonces() == {}     # no nonce taken
    assert rec["funds_wait"].startswith("waiting for funds: PreCommitSectorBatch2 needs ") and "sender f01000-worker" in rec["funds_wait"]
    with pytest.raises(Exception, match="waiting for funds: DeclareFaults"):      # the poster's messages alike
        committer.send(MINER, "post", "DeclareFaults", {"Faults": []}, [])
    assert state.next_nonces() == {}
    chain.add_balance(f"f0{MINER}-worker", money.FIL)
    [msg] = committer.tick()
    assert land(chain, sealer, sid)["State"] == LANDED and chain.message_at_nonce(MINER, 0)["id"] == msg
    state.close()
    chain.close()


def test_status_page_shows_the_funds_wait(tmp_path):
    from appliance.web.views import WebViews
    chain, state, sealer, committer = make(tmp_path)
    sid = submit(sealer, tmp_path)
    committer.tick()
    views = WebViews(state, sealer, chain, None, committer.config)
    [row] = views.sectors()["Live"]
    assert row["Number"] == sid["Number"] and row["FundsWait"].startswith("waiting for funds: PreCommit deposit")
    state.close()
    chain.close()
