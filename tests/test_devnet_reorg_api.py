"""Devnet.Reorg on the devnet's Filecoin API (admin): a PreCommit pushed through LotusChain
(MpoolPushMessage with the MsgUuid of its miner and nonce), landed, reorged out and dropped, is
not found any more, and a push with the same MsgUuid takes the same nonce again and lands once."""


import pytest

from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.chain.types import ChainError, MessageNotFound
from appliance.core.proof_types import seal_proof

from .chain_messages import precommit_sector
from .test_lotus_client import node  # noqa: F401  (the node fixture)

P2K = seal_proof("StackedDrg2KiBV1_1")


def test_reorg_over_the_api_drops_and_the_same_nonce_is_sent_again(node):
    client = LotusClient(parse_endpoint(node.api_info()), attempts=1)
    chain = LotusChain(client, node.devnet.policy)
    head = chain.head()
    params = {"Sectors": [precommit_sector(P2K.id, 1, bytes([7]) * 32, None, head - 1, head + 200 * 2880)]}
    cid = chain.push_message(1000, "PreCommitSectorBatch2", params, 0)
    node.devnet.advance(2)
    assert chain.receipt(cid).ok and chain.precommit(1000, 1) is not None
    out = client.call("Devnet.Reorg", 2, True)
    assert out["Dropped"] == [{"/": cid}] and out["ForkPoint"] == head
    with pytest.raises(MessageNotFound, match="neither on chain nor in the node's pool"):     # not pending: lost
        chain.receipt(cid)
    assert chain.precommit(1000, 1) is None and client.call("Filecoin.MpoolPending", None) == []
    again = chain.push_message(1000, "PreCommitSectorBatch2", params, 0)
    node.devnet.advance(2)
    assert chain.receipt(again).ok and chain.precommit(1000, 1) is not None
    assert [m["exit_code"] for m in node.devnet.messages(1000)] == [0]          # on chain once
    assert node.devnet.next_nonce(1000) == 1


def test_a_receipt_a_reorg_took_back_reads_as_pending_and_a_drop_on_the_devnet_itself_as_lost(node):
    """Without drop the message is back in the pool (MpoolPending): pending, never lost. A reorg
    made on the Devnet object (its administration, not through the API) drops it all the same."""
    client = LotusClient(parse_endpoint(node.api_info()), attempts=1)
    chain = LotusChain(client, node.devnet.policy)
    head = chain.head()
    params = {"Sectors": [precommit_sector(P2K.id, 1, bytes([7]) * 32, None, head - 1, head + 200 * 2880)]}
    cid = chain.push_message(1000, "PreCommitSectorBatch2", params, 0)
    assert chain.receipt(cid) is None and [m["CID"] for m in client.call("Filecoin.MpoolPending", None)] == [{"/": cid}]
    node.devnet.advance(2)
    assert chain.receipt(cid).ok and client.call("Filecoin.MpoolPending", None) == []
    assert client.call("Devnet.Reorg", 2, False)["Reorged"] == [{"/": cid}]
    assert chain.receipt(cid) is None and chain.precommit(1000, 1) is None      # in the pool again
    node.devnet.advance(2)
    assert chain.receipt(cid).ok
    node.devnet.reorg(2, drop=True)
    with pytest.raises(MessageNotFound):
        chain.receipt(cid)
    again = chain.push_message(1000, "PreCommitSectorBatch2", params, 0)        # the same MsgUuid: pooled again
    assert chain.receipt(again) is None
    node.devnet.advance(2)
    assert chain.receipt(again).ok and [m["exit_code"] for m in node.devnet.messages(1000)] == [0]


def test_reorg_over_the_api_refuses_bad_input_naming_it(node):
    client = LotusClient(parse_endpoint(node.api_info()), attempts=1)
    with pytest.raises(ChainError, match="depth"):
        client.call("Devnet.Reorg", -1, False)
    with pytest.raises(ChainError, match="drop"):
        client.call("Devnet.Reorg", 1, "yes")
    with pytest.raises(ChainError, match="beyond finality"):
        client.call("Devnet.Reorg", 901, False)
