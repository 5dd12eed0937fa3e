"""Money over the Lotus API: the devnet's Filecoin API answers balances, deposits, pledge, gas and
the base fee as Lotus does, and LotusChain's money methods read them (real sockets on loopback).

Shapes are checked against the examples of Lotus' OpenRPC document (build/openrpc/full.json at
filecoin-project/lotus b835fab702ebce57abd7e6d0c3326bbd1e18c008, extracted to
tests/fixtures/lotus_openrpc_examples.json); gas filling follows node/impl/full/gas.go
(GasEstimateMessageGas) and chain/messagepool/messagepool.go (CapGasFee), the funds check
node/impl/full/mpool.go (MpoolPushMessage: "mpool push: not enough funds"), at that commit."""


import pytest

from appliance.chain import money
from appliance.chain.devnet_api import DevnetAPIServer, worker_address
from appliance.chain.devnet_api_money import DEFAULT_MAX_FEE
from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError

from .test_lotus_client import EXAMPLES, P2K, RecordingClient, conforms, node, precommit_message, shape  # noqa: F401  (the node fixture)

pytestmark = pytest.mark.timeout(120)
FIL = 10 ** 18


class LastClient(LotusClient):
    """The real client, keeping the params of each method's latest request."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent: dict[str, list] = {}

    def call(self, method, *params):
        self.sent[method.split(".", 1)[1]] = list(params)
        return super().call(method, *params)


def _no_cid(example_params: list) -> list:
    """A Message's CID is output only: the params of a request have none."""
    return [{k: v for k, v in p.items() if k != "CID"} if isinstance(p, dict) and "GasLimit" in p else p
            for p in example_params]


def _chain(srv, cls=LotusClient) -> LotusChain:
    return LotusChain(cls(parse_endpoint(srv.api_info())), srv.devnet.policy)


def _worker(srv) -> str:
    return srv.devnet.miner_info(1000).worker       # the devnet's own account behind worker_address(1000)


def test_money_reads_match_the_openrpc_shapes_and_the_devnet(node):
    chain = _chain(node, RecordingClient)
    devnet = node.devnet
    assert chain.balance("f01000") == devnet.balance("f01000") > 0
    assert chain.balance(worker_address(1000)) == devnet.balance(_worker(node)) > 0      # the worker's account
    assert chain.balance("f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za") == 0              # never seen: 0, as Lotus
    assert chain.available_balance(1000) == devnet.available_balance(1000)
    assert chain.precommit_deposit(1000, 3) == devnet.precommit_deposit(1000, 3) > 0
    assert chain.initial_pledge(1000, 2) == devnet.initial_pledge(1000, 2) > 0
    assert chain.locked_funds(1000) == devnet.locked_funds(1000)        # StateReadState's money fields
    assert chain.base_fee() == devnet.base_fee() >= money.MIN_BASE_FEE
    method, params = precommit_message(5, bytes([4]) * 32, devnet.head() - 1, devnet.head() + 200 * 2880)
    assert chain.estimate_gas(1000, method, params) == devnet.estimate_gas(1000, method, params) > 0
    raw, checked = chain.client, 0
    for name in ("WalletBalance", "StateMinerAvailableBalance", "StateMinerPreCommitDepositForPower",
                 "StateMinerInitialPledgeCollateral", "GasEstimateGasLimit", "ChainHead"):
        params_sent, example = raw.sent[name], EXAMPLES[name]
        assert len(params_sent) == len(example["params"]), name
        wanted = shape(_no_cid(example["params"]))
        assert not conforms(shape(params_sent), wanted, name), conforms(shape(params_sent), wanted, name)
        answer = raw.call(f"Filecoin.{name}", *params_sent)
        assert not conforms(shape(answer), shape(example["result"]), name), conforms(shape(answer), shape(example["result"]))
        checked += 1
    head = raw.call("Filecoin.ChainHead")
    assert set(head["Blocks"][0]) == set(EXAMPLES["ChainHead"]["result"]["Blocks"][0])
    assert head["Blocks"][0]["ParentBaseFee"] == str(devnet.base_fee()) and head["Blocks"][0]["Height"] == head["Height"]
    assert checked == 6


def test_bad_money_params_are_refused_naming_them(node):
    chain = _chain(node)
    with pytest.raises(ChainError, match="address"):
        chain.call("WalletBalance", "not-an-address")
    with pytest.raises(ChainError, match="pci"):
        chain.call("StateMinerPreCommitDepositForPower", "f01000", {"SectorNumber": 1}, None)
    with pytest.raises(ChainError, match="pci.SealProof: 8 is not for the 2048-byte sectors"):
        chain.call("StateMinerInitialPledgeCollateral", "f01000", {"SealProof": 8}, None)    # 32GiB
    with pytest.raises(ChainError, match="miner: 'f09223372036854775808' is not an ID address") as e:
        chain.call("StateMinerInfo", "f09223372036854775808", None)        # 2^63: invalid params, not an internal error
    assert e.value.code == -32602
    with pytest.raises(ChainError, match="f01001"):
        chain.call("StateMinerAvailableBalance", "f01001", None)


def test_gas_estimate_fills_only_the_zero_fields_and_caps_the_fee(node):
    chain, devnet = _chain(node), node.devnet
    method, params = precommit_message(5, bytes([4]) * 32, devnet.head() - 1, devnet.head() + 200 * 2880)
    from appliance.chain import actor_params
    from appliance.chain.lotus.message import message_json
    msg = message_json("f01000", worker_address(1000), 28, actor_params.encode_params(method, params))
    spec = {"MaxFee": "0", "MsgUuid": "00000000-0000-0000-0000-000000000000", "MaximizeFeeCap": False}
    out = chain.call("GasEstimateMessageGas", msg, spec, None)
    used = devnet.estimate_gas(1000, method, params)
    assert out["GasLimit"] == used * 5 // 4                                # Lotus' GasLimitOverestimation 1.25
    assert int(out["GasPremium"]) == money.DEFAULT_PREMIUM
    fee_cap = max(money.DEFAULT_FEE_CAP, 2 * devnet.base_fee() + money.DEFAULT_PREMIUM)
    assert int(out["GasFeeCap"]) == min(fee_cap, DEFAULT_MAX_FEE // out["GasLimit"])     # CapGasFee, 0.07 FIL
    assert not conforms(shape(out), shape({k: v for k, v in EXAMPLES["GasEstimateMessageGas"]["result"].items() if k != "CID"}))
    kept = chain.call("GasEstimateMessageGas", {**msg, "GasLimit": 777, "GasPremium": "5", "GasFeeCap": "9"}, spec, None)
    assert (kept["GasLimit"], kept["GasPremium"], kept["GasFeeCap"]) == (777, "5", "9")      # what the sender set stays
    capped = chain.call("GasEstimateMessageGas", {**msg, "GasFeeCap": str(10 ** 18)}, spec, None)
    assert int(capped["GasFeeCap"]) == DEFAULT_MAX_FEE // capped["GasLimit"]      # CapGasFee: 0.07 FIL at most in all
    tight = chain.call("GasEstimateMessageGas", msg, {**spec, "MaxFee": str(out["GasLimit"] * 50)}, None)
    assert (tight["GasFeeCap"], tight["GasPremium"]) == ("50", "50")                # the premium capped at the fee cap


def test_push_carries_value_and_gas_and_the_mpool_refuses_a_sender_short_of_them(node):
    chain, devnet = _chain(node, RecordingClient), node.devnet
    head = devnet.head()
    method, params = precommit_message(5, bytes([4]) * 32, head - 1, head + 200 * 2880)
    cid = chain.push_message(1000, method, params, 0, value=123, gas_limit=50_000_000, fee_cap=1000, premium=200)
    msg = chain.client.sent["MpoolPushMessage"][0]
    assert (msg["Value"], msg["GasLimit"], msg["GasFeeCap"], msg["GasPremium"]) == ("123", 50_000_000, "1000", "200")
    assert "GasEstimateMessageGas" not in chain.client.sent          # every field given: nothing to estimate
    (row,) = devnet.messages(1000)
    info = devnet.message_info(row["id"])
    assert (info["Value"], info["GasLimit"], info["GasFeeCap"], info["GasPremium"]) == ("123", 50_000_000, "1000", "200")
    devnet.advance(2)
    receipt = chain.receipt(cid)
    assert receipt.ok and receipt.gas_used == devnet.receipt(row["id"]).gas_used > 0        # GasUsed from the devnet
    lookup = chain.call("StateSearchMsg", None, {"/": cid}, -1, True)
    assert not conforms(shape(lookup), shape(EXAMPLES["StateSearchMsg"]["result"])) and lookup["Receipt"]["GasUsed"] > 0
    # a sender that cannot hold gas limit x fee cap + value: refused before it takes a nonce
    have = devnet.balance(_worker(node))
    with pytest.raises(ChainError, match=rf"mpool push: not enough funds: {have} < {have + 1}"):
        chain.push_message(1000, "DeclareFaults", {"Faults": []}, 1, value=have + 1 - 10 ** 6, gas_limit=10 ** 6, fee_cap=1,
                           premium=1)
    assert len(devnet.messages(1000)) == 1
    cid2 = chain.push_message(1000, "DeclareFaults", {"Faults": []}, 1)          # the node estimates it all
    assert cid2 != cid and len(devnet.messages(1000)) == 2


def test_add_balance_is_a_plain_send_from_any_funded_address(node):
    chain, devnet = _chain(node, RecordingClient), node.devnet
    before = devnet.balance("f01000")
    devnet.add_balance("f0100", 5 * FIL)            # the faucet funds an account the manager does not know
    cid = chain.push_message(1000, "Send", {}, None, value=2 * FIL, sender="f0100")
    msg = chain.client.sent["MpoolPushMessage"][0]
    assert (msg["Method"], msg["Params"], msg["From"], msg["Value"]) == (0, "", "f0100", str(2 * FIL))
    devnet.advance(2)
    assert chain.receipt(cid).ok and chain.balance("f01000") == before + 2 * FIL
    assert chain.balance("f0100") < 3 * FIL                           # the value and its gas left the sender
    with pytest.raises(ChainError, match=r"not enough funds in f0100 for a message to f01000 \(Send\): .*mpool push: "):
        chain.push_message(1000, "Send", {}, None, value=10 * FIL, sender="f0100")       # the sender named, then the node's words
    with pytest.raises(ChainError, match="a Send \\(method 0\\) takes no params"):
        chain.call("MpoolPushMessage", {**msg, "Params": "AAAA"}, None)


def test_a_stuck_message_is_replaced_through_wallet_sign_and_mpool_push(node):
    """The outbox's nonce again with a premium 1.25x higher: the node's first message is re-signed
    with the new gas and pushed (lotus mpool replace); the receipt of the old CID is the new one's."""
    chain, devnet = _chain(node, LastClient), node.devnet
    head = devnet.head()
    method, params = precommit_message(6, bytes([5]) * 32, head - 1, head + 200 * 2880)
    gas = {"gas_limit": 60_000_000, "fee_cap": 10 ** 6, "premium": 1000}
    old = chain.push_message(1000, method, params, 4, **gas)
    assert chain.push_message(1000, method, params, 4, **gas) == old            # the same: no replacement
    with pytest.raises(ChainError, match="premium 1100 is below 1251"):
        chain.push_message(1000, method, params, 4, **{**gas, "premium": 1100})
    new = chain.push_message(1000, method, params, 4, **{**gas, "premium": 1251, "fee_cap": 2 * 10 ** 6})
    assert new != old and "WalletSignMessage" in chain.client.sent and "MpoolPush" in chain.client.sent
    for name in ("WalletSignMessage", "MpoolPush"):
        sent, example = chain.client.sent[name], EXAMPLES[name]
        assert not conforms(shape(sent), shape(_no_cid(example["params"]) if name == "WalletSignMessage" else example["params"]), name)
        assert not conforms(shape(chain.client.call(f"Filecoin.{name}", *sent)), shape(example["result"]), name)
    assert chain.push_message(1000, method, params, 4, **{**gas, "premium": 1251, "fee_cap": 2 * 10 ** 6}) == new   # again: idempotent
    rows = devnet.messages(1000)
    assert len(rows) == 2 and devnet.message_info(rows[0]["id"])["ReplacedBy"] == rows[1]["id"]
    devnet.advance(2)
    assert chain.receipt(old).message == new == chain.receipt(new).message                  # allowReplaced
    assert chain.message_known(old) and chain.message_known(new)                            # ChainGetMessage finds both
    assert chain.call("ChainGetMessage", {"/": new})["GasPremium"] == "1251"
    assert not chain.message_known("bafy2bzacedunknown")
    assert chain.precommit(1000, 6) is not None
    # once on chain, a later "replacement" answers the executed message, not a second one
    assert chain.push_message(1000, method, params, 4, **{**gas, "premium": 5000, "fee_cap": 4 * 10 ** 6}) == old
    with pytest.raises(ChainError, match="already on chain"):
        chain.call("MpoolPush", {**chain.client.sent["MpoolPush"][0], "Message": {
            **chain.client.sent["MpoolPush"][0]["Message"], "GasPremium": "9000"}})
    with pytest.raises(ChainError, match="no message of f01000 at nonce 99"):
        chain.call("MpoolPush", {**chain.client.sent["MpoolPush"][0], "Message": {
            **chain.client.sent["MpoolPush"][0]["Message"], "Nonce": 99}})


def test_the_committer_replaces_a_stuck_precommit_through_the_node(tmp_path):
    """The manager's replace-when-stuck path on LotusChain: the base fee rises above the
    PreCommit's fee cap, it stays in the pool; after `replace_after` epochs the outbox sends the
    same nonce with a higher premium (WalletSignMessage + MpoolPush), which lands, once."""
    import base64

    from appliance.core.sector import SectorID
    from appliance.manager.commitment import Committer
    from appliance.manager.config import parse_config
    from appliance.manager.sealer import LANDED, Sealer
    from appliance.manager.state import ManagerState
    from appliance.proofs.seal import seal_sector

    srv = DevnetAPIServer(tmp_path / "devnet", ChainPolicy(block_time=0, genesis_miner_balance=FIL), genesis_seed=bytes(32))
    srv.devnet.create_miner(1000, P2K.id)
    srv.start()
    srv.devnet.advance(5)
    state = ManagerState(tmp_path / "m.db")
    try:
        cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1}, "Miners": [{"Actor": 1000, "Commitment": {
            "Confidence": 1, "Pre": {"SendFund": False, "Batch": {"Threshold": 1}}}}]})
        chain, devnet = _chain(srv, LastClient), srv.devnet
        sealer, committer = Sealer(cfg, state, chain), Committer(cfg, state, chain, replace_after=3)
        alloc = sealer.allocate_sector({})
        sid = alloc["ID"]
        ticket = sealer.assign_ticket(sid)
        r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
        assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1
        [first] = committer.tick()
        devnet.set_base_fee(10 ** 12)             # above the message's fee cap: it stays in the pool
        for _ in range(3):
            devnet.advance(1)
            assert committer.tick() == []
        assert chain.receipt(first) is None
        devnet.advance(1)
        [second] = committer.tick()
        assert second != first and "MpoolPush" in chain.client.sent
        pushed = chain.client.sent["MpoolPush"][0]["Message"]
        assert int(pushed["GasFeeCap"]) >= 2 * devnet.base_fee() and state.sector(1000, sid["Number"])["pre_msg"] == second
        devnet.advance(2)
        assert sealer.poll_pre_commit_state(sid)["State"] == LANDED
        assert chain.receipt(first).message == second
        assert len(devnet.executed_messages(1000)) == 1 and len(devnet.messages(1000)) == 2     # replaced, landed once
    finally:
        state.close()
        srv.close()


def test_withdraw_balance_goes_to_the_owner_through_the_node(node):
    """`util sealer actor withdraw` sends WithdrawBalance (no Damocles section: the default policy)."""
    chain, devnet = _chain(node), node.devnet
    available, worker_before = chain.available_balance(1000), devnet.balance(_worker(node))
    cid = chain.push_message(1000, "WithdrawBalance", {"AmountRequested": str(FIL // 2)}, 3)
    devnet.advance(2)
    receipt = chain.receipt(cid)
    assert receipt.ok and chain.available_balance(1000) == available - FIL // 2
    assert worker_before < devnet.balance(_worker(node)) < worker_before + FIL // 2       # less the gas it paid
    with pytest.raises(ChainError, match="no sending policy section for method Frobnicate"):
        chain.push_message(1000, "Frobnicate", {}, 4)
