"""Money on the devnet (chain/money.py): balances, PreCommit deposits, initial pledge, gas, the base
fee and the failure receipts that follow. Exit codes as go-state-types exitcode: 2
SysErrSenderStateInvalid, 6 SysErrInsufficientFunds, 7 SysErrOutOfGas, 19 ErrInsufficientFunds.
The expected amounts are computed here by hand from the formulas docs/devnet.md states (builtin-
actors b0a3bdd6 actors/miner/src/monies.rs, simplified as documented)."""

from dataclasses import replace

import pytest

from appliance.chain import money
from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError, ExitCode
from tests.chain_messages import prove_commit
from tests.test_devnet import MANUAL, MINER, P2K, land, precommit_params, prove, seal

FIL = 10 ** 18
WORKER = f"f0{MINER}-worker"
ACTOR = f"f0{MINER}"


def new_chain(tmp_path, **policy):
    d = Devnet(tmp_path / "devnet.db", replace(MANUAL, **policy))
    d.create_miner(MINER, P2K.id)
    d.advance(20)
    return d


@pytest.fixture
def chain(tmp_path):
    d = new_chain(tmp_path)
    yield d
    d.close()


# -------------------------------------------------------------------------- arithmetic

def test_deposit_and_pledge_formulas_by_hand(chain):
    p = chain.policy
    size = 2048
    br20 = size * p.epoch_reward * 20 * 2880 // p.money_network_power      # BR(20 days)
    assert br20 == 127_897_692    # 2048 B x 25 FIL x 57600 / 20 EiB
    assert chain.precommit_deposit(MINER, 3) == 3 * br20
    consensus = p.circulating_supply * 3 * size // (p.money_network_power * 10)
    assert chain.initial_pledge(MINER, 1) == min(br20 + consensus, FIL // (32 << 30) * size)
    # a 32GiB sector: the pledge reaches the 1 FIL per 32GiB cap only with a much smaller network
    small = replace(p, money_network_power=64 << 30)
    tiny = Devnet.__new__(Devnet)     # the formulas need only a policy and the power query
    tiny.policy, tiny.database = small, chain.database
    assert money.initial_pledge_per_sector(tiny, 32 << 30) == FIL // (32 << 30) * (32 << 30)
    assert money.precommit_deposit_per_sector(tiny, 32 << 30) == (32 << 30) * p.epoch_reward * 57600 // (64 << 30)


def test_br_is_at_least_one_attofil(chain):
    tiny = Devnet.__new__(Devnet)
    tiny.policy, tiny.database = replace(chain.policy, epoch_reward=1), chain.database
    assert money.expected_reward(tiny, 2048, 1) == 1


def test_genesis_funds_and_faucet(chain, tmp_path):
    assert chain.balance(ACTOR) == 100 * FIL and chain.balance(WORKER) == 10_000 * FIL
    assert chain.available_balance(MINER) == 100 * FIL
    assert chain.balance("f0999") == 0
    assert chain.add_balance("f0999", 5) == 5 and chain.balance("f0999") == 5
    with pytest.raises(ChainError, match="non-negative"):
        chain.add_balance("f0999", -1)
    other = Devnet(tmp_path / "other.db", replace(MANUAL, genesis_miner_balance=0, genesis_worker_balance=7))
    other.create_miner(MINER, P2K.id)
    assert other.balance(ACTOR) == 0 and other.balance(WORKER) == 7
    other.close()


def test_gas_price_and_base_fee_arithmetic():
    assert money.price(100, 5_000, 100_000) == 5_000           # capped by the fee cap
    assert money.price(100, 10 ** 9, 100_000) == 100_100        # base fee + premium
    assert money.min_replacement_premium(100_000) == 125_001    # Lotus ComputeMinRBF
    assert money.parse_fil("1.5 FIL", "x") == 15 * 10 ** 17
    assert money.parse_fil("5 nanoFIL", "x") == 5_000_000_000
    assert money.parse_fil("7", "x") == 7 * FIL and money.parse_fil("3 attofil", "x") == 3 and money.parse_fil(4, "x") == 4
    for bad in ("1.5 pFIL", "abc", "-1", "0.5 attoFIL", "", True):
        with pytest.raises(ValueError, match="x"):
            money.parse_fil(bad, "x")
    assert money.format_fil(15 * 10 ** 17) == "1.5 FIL" and money.format_fil(1) == "0.000000000000000001 FIL"
    assert money.format_fil(0) == "0 FIL"


def test_base_fee_follows_fullness(tmp_path):
    chain = new_chain(tmp_path, block_gas_target=100_000_000, block_gas_limit=1_000_000_000)
    assert chain.base_fee() == money.MIN_BASE_FEE
    chain.set_base_fee(80_000)
    chain.advance(1)
    assert chain.base_fee() == 80_000 - 80_000 // 8              # an empty epoch: -1/8
    chain.advance(3)
    fee = 70_000
    for _ in range(3):
        fee = fee + (-fee) // 8          # Lotus chain/store/basefee.go: big.Div is Euclidean (floor here)
    assert chain.base_fee() == fee
    # a full block: gas limits above the target raise the next epoch's fee
    base = chain.base_fee()
    mid = chain.push_message(MINER, "Send", {}, gas_limit=600_000_000, fee_cap=10 ** 9)
    chain.advance(1)
    assert chain.receipt(mid).ok
    land_fee = base + (-base) // 8      # the epoch it landed at
    assert chain.base_fee() == land_fee
    chain.advance(1)
    assert chain.base_fee() == land_fee + land_fee // 8      # 600M used, 100M target: delta capped at the target
    chain.close()


def test_gas_is_charged_to_the_sender(chain):
    before = chain.balance(WORKER)
    mid = chain.push_message(MINER, "Send", {}, gas_limit=1_000_000, fee_cap=10 ** 6, premium=1_000)
    chain.advance(1)
    r = chain.receipt(mid)
    assert r.ok and r.gas_used == money.METHOD_GAS["Send"][0] + money.GAS_PER_PARAM_BYTE * 2     # "{}"
    assert chain.balance(WORKER) == before - r.gas_used * (money.MIN_BASE_FEE + 1_000)


def test_estimate_gas_and_default_limit(chain):
    est = chain.estimate_gas(MINER, "DeclareFaults", {"Faults": [{"Deadline": 1}]})
    base, per = money.METHOD_GAS["DeclareFaults"]
    assert est > base + per
    mid = chain.push_message(MINER, "DeclareFaults", {"Faults": [{"Deadline": 1}]})
    info = chain.message_info(mid)
    assert info["GasLimit"] == est * 5 // 4 and info["GasPremium"] == str(money.DEFAULT_PREMIUM)
    assert int(info["GasFeeCap"]) >= money.DEFAULT_FEE_CAP and info["State"] == "FillMsg"


# -------------------------------------------------------------- deposits and pledge

def test_precommit_locks_deposit_prove_swaps_it_for_pledge(chain, tmp_path):
    r = seal(chain, tmp_path, 1, 15)
    deposit, pledge = chain.precommit_deposit(MINER), chain.initial_pledge(MINER)
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()))
    assert rec.ok, rec
    assert chain.locked_funds(MINER) == {"PreCommitDeposits": deposit, "InitialPledge": 0}
    assert chain.available_balance(MINER) == 100 * FIL - deposit
    chain.advance(chain.policy.precommit_challenge_delay)
    proof = prove(chain, r, 1, chain.policy.seed_epoch(21))
    rec = land(chain, "ProveCommitSectors3", prove_commit({1: proof}))
    assert rec.ok, rec
    assert chain.locked_funds(MINER) == {"PreCommitDeposits": 0, "InitialPledge": pledge}
    assert chain.available_balance(MINER) == 100 * FIL - pledge
    assert chain.balance(ACTOR) == 100 * FIL        # gas is the worker's, never the actor's


def test_precommit_without_funds_fails_19_and_changes_nothing(tmp_path):
    chain = new_chain(tmp_path, genesis_miner_balance=0)
    r = seal(chain, tmp_path, 1, 15)
    rec = land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()))
    assert rec.exit_code == ExitCode.INSUFFICIENT_FUNDS == 19, rec
    assert "insufficient funds" in rec.error and "pre-commit deposit" in rec.error
    assert chain.precommit(MINER, 1) is None and chain.locked_funds(MINER)["PreCommitDeposits"] == 0
    assert rec.gas_used > 0          # a failed message still pays its gas
    # the same PreCommit carrying the deposit as its value (Damocles' SendFund) lands
    mid = chain.push_message(MINER, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head()),
                             value=chain.precommit_deposit(MINER))
    chain.advance(1)
    assert chain.receipt(mid).ok and chain.precommit(MINER, 1) is not None
    assert chain.available_balance(MINER) == 0
    chain.close()


def test_prove_without_pledge_funds_fails_19(tmp_path):
    chain = new_chain(tmp_path, genesis_miner_balance=0)
    r = seal(chain, tmp_path, 1, 15)
    chain.add_balance(ACTOR, chain.precommit_deposit(MINER))       # the deposit only
    assert land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head())).ok
    chain.advance(chain.policy.precommit_challenge_delay)
    params = prove_commit({1: prove(chain, r, 1, chain.policy.seed_epoch(21))})
    rec = land(chain, "ProveCommitSectors3", params)
    assert rec.exit_code == 19 and "pledge" in rec.error, rec
    assert chain.sector(MINER, 1) is None and chain.precommit(MINER, 1) is not None    # rolled back, deposit still locked
    assert chain.locked_funds(MINER)["PreCommitDeposits"] == chain.precommit_deposit(MINER)
    chain.add_balance(ACTOR, chain.initial_pledge(MINER))
    assert land(chain, "ProveCommitSectors3", params).ok and chain.sector(MINER, 1) is not None
    chain.close()


def test_expired_precommit_burns_its_deposit(tmp_path):
    chain = new_chain(tmp_path, max_prove_commit_duration=30, expired_precommit_cleanup_delay=5)
    r = seal(chain, tmp_path, 1, 15)
    deposit = chain.precommit_deposit(MINER)
    assert land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head())).ok
    chain.advance(40)
    assert chain.precommit(MINER, 1) is None
    assert chain.locked_funds(MINER)["PreCommitDeposits"] == 0
    assert chain.balance(ACTOR) == 100 * FIL - deposit and chain.available_balance(MINER) == 100 * FIL - deposit
    chain.close()


def test_withdraw_balance_from_the_owner_only(chain):
    mid = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(30 * FIL)})
    chain.advance(1)
    assert chain.receipt(mid).ok
    assert chain.balance(ACTOR) == 70 * FIL
    chain.add_balance("f0555", FIL)
    mid = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": "1"}, sender="f0555")
    chain.advance(1)
    assert chain.receipt(mid).exit_code == ExitCode.FORBIDDEN
    before = chain.balance(WORKER)
    mid = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(1000 * FIL)})    # more than available
    chain.advance(1)
    r = chain.receipt(mid)
    assert r.ok and chain.balance(ACTOR) == 0
    assert chain.balance(WORKER) == before + 70 * FIL - r.gas_used * (chain.base_fee() + money.DEFAULT_PREMIUM)


# ------------------------------------------------------------------- failure receipts

def test_out_of_gas_is_7_and_charges_the_whole_limit(chain):
    before = chain.balance(WORKER)
    mid = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, gas_limit=1_000, fee_cap=10 ** 6)
    chain.advance(1)
    r = chain.receipt(mid)
    assert r.exit_code == ExitCode.OUT_OF_GAS == 7 and r.gas_used == 1_000, r
    assert chain.balance(ACTOR) == 100 * FIL                                     # nothing withdrawn
    assert chain.balance(WORKER) == before - 1_000 * (money.MIN_BASE_FEE + money.DEFAULT_PREMIUM)


def test_value_the_sender_no_longer_has_is_6(chain):
    chain.add_balance("f0555", 10 * FIL)
    a = chain.push_message(MINER, "Send", {}, value=6 * FIL, sender="f0555", gas_limit=1_000_000, fee_cap=1_000_000)
    b = chain.push_message(MINER, "Send", {}, value=3 * FIL, sender="f0555", gas_limit=1_000_000, fee_cap=1_000_000)
    c = chain.push_message(MINER, "Send", {}, value=3 * FIL, sender="f0555", gas_limit=1_000_000, fee_cap=1_000_000)
    chain.advance(1)
    assert chain.receipt(a).ok and chain.receipt(b).ok
    rc = chain.receipt(c)
    assert rc.exit_code == ExitCode.SYS_INSUFFICIENT_FUNDS == 6 and "insufficient balance" in rc.error
    assert chain.balance(ACTOR) == 109 * FIL


def test_gas_the_sender_no_longer_has_is_2(chain):
    chain.add_balance("f0555", FIL)
    a = chain.push_message(MINER, "Send", {}, value=FIL - 10 ** 12, sender="f0555", gas_limit=1_000_000, fee_cap=1_000_000)
    b = chain.push_message(MINER, "Send", {}, sender="f0555", gas_limit=1_000_000, fee_cap=1_000_000)
    chain.advance(1)
    assert chain.receipt(a).ok
    assert chain.receipt(b).exit_code == ExitCode.SENDER_STATE_INVALID


def test_push_refused_without_funds_for_gas(chain):
    with pytest.raises(ChainError, match="not enough funds in f0777"):
        chain.push_message(MINER, "Send", {}, sender="f0777")
    with pytest.raises(ChainError, match="premium .* above its fee cap"):
        chain.push_message(MINER, "Send", {}, fee_cap=10, premium=20)
    with pytest.raises(ChainError, match="above the block gas limit"):
        chain.push_message(MINER, "Send", {}, gas_limit=10 ** 11)


# -------------------------------------------------------------- stuck and replaced

def test_fee_cap_below_base_fee_waits_then_replacement_lands(chain):
    mid = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, nonce=0, fee_cap=10 ** 9,
                             premium=100_000)
    chain.set_base_fee(10 ** 12)
    chain.advance(5)
    assert chain.receipt(mid) is None                     # stuck: fee cap 1e9 < base fee
    assert chain.message_info(mid)["State"] == "FillMsg"
    same = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, nonce=0, fee_cap=10 ** 9,
                              premium=100_000)
    assert same == mid                                    # the same message: the same id
    with pytest.raises(ChainError, match="replace-by-fee .* below 125001"):
        chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, nonce=0, fee_cap=10 ** 13,
                           premium=125_000)
    with pytest.raises(ChainError, match="already used by another message"):
        chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": "5"}, nonce=0, fee_cap=10 ** 13, premium=10 ** 6)
    new = chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, nonce=0, fee_cap=10 ** 13,
                             premium=125_001)
    assert new != mid and chain.message_at_nonce(MINER, 0)["id"] == new
    chain.advance(1)
    assert chain.receipt(new).ok and chain.receipt(mid) == chain.receipt(new)     # the replaced one answers with it
    assert chain.balance(ACTOR) == 99 * FIL                                       # once
    assert [m["id"] for m in chain.executed_messages(MINER)] == [new]
    # a replacement of a message already executed returns the executed one
    assert chain.push_message(MINER, "WithdrawBalance", {"AmountRequested": str(FIL)}, nonce=0, fee_cap=10 ** 14,
                              premium=10 ** 7) == new


def test_stuck_message_lands_by_itself_once_the_base_fee_falls(chain):
    mid = chain.push_message(MINER, "Send", {}, fee_cap=10 ** 9, premium=100_000, gas_limit=1_000_000)
    chain.set_base_fee(2 * 10 ** 9)
    chain.advance(3)
    assert chain.receipt(mid) is None
    chain.advance(20)
    r = chain.receipt(mid)
    assert r.ok and r.epoch == 26, r      # 2e9 x (7/8)^k falls below the 1e9 fee cap at k = 6 (epoch 20 + 6)


def test_old_messages_without_gas_still_execute(tmp_path):
    chain = new_chain(tmp_path)
    mid = chain.push_message(MINER, "Send", {})
    chain.db.execute("UPDATE messages SET gas_limit = NULL, fee_cap = NULL, premium = NULL, sender = NULL, value = NULL")
    chain.advance(1)
    assert chain.receipt(mid).ok and chain.receipt(mid).gas_used == 0
    chain.close()


def test_policy_money_keys_from_config():
    policy, warnings = ChainPolicy.from_config({"GenesisMinerBalance": "0", "GenesisWorkerBalance": "2.5 FIL",
                                                "EpochReward": "5 nanoFIL", "MoneyNetworkPower": "1 PiB"})
    assert warnings == [] and policy.genesis_miner_balance == 0 and policy.genesis_worker_balance == 25 * 10 ** 17
    assert policy.epoch_reward == 5 * 10 ** 9 and policy.money_network_power == 1 << 50
    with pytest.raises(ValueError, match=r"\[Chain\].GenesisMinerBalance"):
        ChainPolicy.from_config({"GenesisMinerBalance": "lots"})
    with pytest.raises(ValueError, match="BlockGasTarget"):
        ChainPolicy.from_config({"BlockGasTarget": 10, "BlockGasLimit": 5})


def test_money_survives_a_restart(tmp_path):
    chain = new_chain(tmp_path)
    chain.add_balance("f0555", 3 * FIL + 1)
    chain.set_base_fee(10 ** 6)
    chain.close()
    again = Devnet(tmp_path / "devnet.db", MANUAL)
    assert again.balance("f0555") == 3 * FIL + 1 and again.balance(ACTOR) == 100 * FIL    # no second genesis grant
    assert again.base_fee() == 10 ** 6
    again.close()


def test_a_devnet_from_before_money_gets_genesis_funds_and_runs_its_pool_free(tmp_path):
    import sqlite3
    from appliance.chain.devnet import DEVNET_SCHEMA
    from appliance.core.db import Database
    chain = new_chain(tmp_path)
    mid = chain.push_message(MINER, "Send", {})
    chain.close()
    # back to version 1: no money tables, no gas columns (as a devnet.db written before this version)
    db = sqlite3.connect(tmp_path / "devnet.db")
    for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{trigger}"')          # version 3's undo log (reorg.py)
    for table in ("undo_log", "undo_context", "forks"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DROP TABLE terminated_sectors")       # version 4's ended sectors (lifecycle_actor.py)
    db.execute("DROP TABLE accounts")
    db.execute("DROP TABLE locked_funds")
    for column in ("return_value", "sender", "value", "gas_limit", "fee_cap", "premium", "gas_used", "replaced_by"):
        db.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    Database(tmp_path / "devnet.db", replace(DEVNET_SCHEMA, migrations=DEVNET_SCHEMA.migrations[:1])).close()   # a valid v1 file
    again = Devnet(tmp_path / "devnet.db", MANUAL)
    assert again.balance(ACTOR) == 100 * FIL and again.balance(WORKER) == 10_000 * FIL
    again.advance(1)
    r = again.receipt(mid)
    assert r.ok and r.gas_used == 0 and again.balance(WORKER) == 10_000 * FIL      # the old message ran free
    again.close()
