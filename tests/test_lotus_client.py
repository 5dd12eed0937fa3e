"""The Lotus client (appliance/chain/lotus) against the devnet's Filecoin API server on loopback:
real HTTP on real sockets, the server in this process's threads.

Shapes are checked against the examples of Lotus' OpenRPC document, build/openrpc/full.json at
Lotus commit b835fab702ebce57abd7e6d0c3326bbd1e18c008 (the first example of every param and
result, extracted to tests/fixtures/lotus_openrpc_examples.json)."""

import base64
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from appliance.chain.devnet_api import DevnetAPIServer, worker_address
from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient, NodeAuthError, NodeUnavailable
from appliance.chain.lotus.endpoint import Endpoint, EndpointError, parse_endpoint
from appliance.chain.lotus.message import SendPolicy, message_cid, parse_fil, policy_from_config
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError, MessageNotFound
from appliance.core.proof_types import seal_proof
from appliance.proofs.cid import commr_to_cid

from .chain_messages import precommit_sector

EXAMPLES = json.loads((Path(__file__).parent / "fixtures" / "lotus_openrpc_examples.json").read_text())["methods"]
P2K = seal_proof("StackedDrg2KiBV1_1")
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJBbGxvdyI6WyJyZWFkIl19.c2lnbmF0dXJl"


# ------------------------------------------------------------------------------ endpoints

@pytest.mark.parametrize("raw,url", [
    ("http://127.0.0.1:1234/rpc/v1", "http://127.0.0.1:1234/rpc/v1"),
    ("http://127.0.0.1:1234/rpc/v0", "http://127.0.0.1:1234/rpc/v0"),
    ("http://node.example:1234", "http://node.example:1234/rpc/v1"),
    ("https://node.example/", "https://node.example/rpc/v1"),
    ("ws://127.0.0.1:1234/rpc/v1", "http://127.0.0.1:1234/rpc/v1"),
    ("wss://node.example:443/rpc/v0", "https://node.example:443/rpc/v0"),
    ("/ip4/10.0.0.5/tcp/1234", "http://10.0.0.5:1234/rpc/v1"),
    ("/ip4/10.0.0.5/tcp/1234/http", "http://10.0.0.5:1234/rpc/v1"),
    ("/ip4/10.0.0.5/tcp/1234/wss", "https://10.0.0.5:1234/rpc/v1"),
    ("/ip6/::1/tcp/1234/http", "http://[::1]:1234/rpc/v1"),
    ("/dns4/lotus.example/tcp/1234/tls/ws", "https://lotus.example:1234/rpc/v1"),
])
def test_endpoint_forms_damocles_accepts(raw, url):
    assert parse_endpoint(raw, "common") == Endpoint(url, "common")


def test_token_colon_address_overrides_the_common_token():
    # Damocles dep/util.go extractAPIInfo: a JWT before the first colon is the address's own token
    assert parse_endpoint(f"{JWT}:/ip4/127.0.0.1/tcp/1234/http", "common") == Endpoint("http://127.0.0.1:1234/rpc/v1", JWT)
    assert parse_endpoint(f"{JWT}:http://127.0.0.1:1234", None).token == JWT
    assert "token=set" in repr(parse_endpoint(f"{JWT}:http://h:1")) and JWT not in repr(parse_endpoint(f"{JWT}:http://h:1"))


@pytest.mark.parametrize("raw,says", [
    ("", "expected an address"),
    ("ftp://host:1/", "expected http://"),
    ("/ip4/300.1.1.1/tcp/1", "not an IP address"),
    ("/ip4/::1/tcp/1", "not an IPv4 address"),
    ("/ip4/1.2.3.4/udp/1", "must start"),
    ("/ip4/1.2.3.4/tcp/99999", "port"),
    ("/ip4/1.2.3.4/tcp/1/quic", "unsupported component /quic"),
    ("http://user:pw@host:1/", "no user"),
    ("http://host:1/?token=x", "no user, query"),
])
def test_bad_endpoints_say_what_is_wrong(raw, says):
    with pytest.raises(EndpointError, match="Common.API"):
        parse_endpoint(raw)
    with pytest.raises(EndpointError) as exc:
        parse_endpoint(raw)
    assert says in str(exc.value)


# -------------------------------------------------------------------------------- messages

def test_message_cid_matches_lotus_openrpc_example():
    """Lotus' docgen marshals its example Message with the CID Message.Cid() computes: ours of the
    same fields must be that CID (dag-cbor tuple, blake2b-256)."""
    example = EXAMPLES["MpoolPushMessage"]["params"][0]
    fields = {k: v for k, v in example.items() if k != "CID"}
    assert message_cid(fields) == example["CID"]["/"] == "bafy2bzacebbpdegvr3i4cosewthysg5xkxpqfn2wfcz6mv2hmoktwbdxkax4s"
    assert message_cid({**fields, "Nonce": 43}) != example["CID"]["/"]


def test_send_policy_from_damocles_keys():
    p = policy_from_config({"Sender": "f01001", "Senders": ["f01002", "f01001"], "GasOverEstimation": 1.5,
                            "GasOverPremium": 2, "MaxFeeCap": "0.5 nanoFIL"}, "[Miners.Commitment.Pre]")
    assert p == SendPolicy(("f01001", "f01002"), 1.5, 2.0, 500_000_000)
    assert parse_fil("5 nanoFIL", "x") == 5 * 10 ** 9 and parse_fil("1 FIL", "x") == 10 ** 18
    est = p.apply_estimate({"GasLimit": 1000, "GasPremium": "100", "GasFeeCap": "1"})
    assert est == {"GasLimit": 1500, "GasPremium": "200", "GasFeeCap": "500000000"}
    with pytest.raises(ChainError, match=r"\[Miners.Commitment.Pre\].GasFeeCap"):
        policy_from_config({"GasFeeCap": "five"}, "[Miners.Commitment.Pre]")
    with pytest.raises(ChainError, match="Sender"):
        policy_from_config({"Sender": "not-an-address"}, "[Miners.Commitment.Pre]")


# ---------------------------------------------------------------------- the devnet's API

class RecordingClient(LotusClient):
    """The real client, keeping the params of each request (to check their shapes)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent: dict[str, list] = {}

    def call(self, method, *params):
        self.sent.setdefault(method.split(".", 1)[1], list(params))
        return super().call(method, *params)


@pytest.fixture
def node(tmp_path):
    srv = DevnetAPIServer(tmp_path / "devnet", replace(ChainPolicy(), block_time=0), genesis_seed=bytes(range(32)))
    srv.devnet.create_miner(1000, P2K.id, proving_period_start=100)
    srv.start()
    srv.devnet.advance(10)
    yield srv
    srv.close()


def _chain(srv, cls=LotusClient, **kw) -> LotusChain:
    return LotusChain(cls(parse_endpoint(srv.api_info()), **kw), srv.devnet.policy)


def shape(v):
    """A JSON value's shape: objects by key, arrays by their first element, scalars by type
    (null matches anything: Go writes a nil pointer as null)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return None if v is None else ("number" if isinstance(v, int) and not isinstance(v, bool) else type(v).__name__)


def conforms(ours, example, where="") -> list[str]:
    """Where `ours` differs from Lotus' example shape (extra keys in ours are allowed)."""
    if ours is None or example is None:
        return []
    if isinstance(example, dict):
        if not isinstance(ours, dict):
            return [f"{where}: object expected, got {ours!r}"]
        return [p for k in example for p in (conforms(ours[k], example[k], f"{where}.{k}") if k in ours else [f"{where}.{k} missing"])]
    if isinstance(example, list):
        if not isinstance(ours, list):
            return [f"{where}: array expected, got {ours!r}"]
        return conforms(ours[0], example[0], f"{where}[0]") if ours and example else []
    return [] if ours == example else [f"{where}: {ours} where Lotus has {example}"]


def precommit_message(number: int, comm_r: bytes, rand_epoch: int, expiration: int) -> tuple[str, dict]:
    """A one-sector PreCommit as the manager sends it and the devnet takes it."""
    return "PreCommitSectorBatch2", {"Sectors": [precommit_sector(P2K.id, number, comm_r, None, rand_epoch, expiration)]}


def _sector_on_devnet(srv, number=1):
    """A PreCommit landed for `number` (messages straight to the devnet: the state to read)."""
    head = srv.devnet.head()
    srv.devnet.push_message(1000, *precommit_message(number, bytes([7]) * 32, head - 1, head + 200 * 2880))
    srv.devnet.advance(2)


def test_every_read_matches_the_openrpc_shapes_both_ways(node):
    """Each method LotusChain calls: the params it sends and the answers the devnet's API gives
    have the shapes of Lotus' OpenRPC examples."""
    _sector_on_devnet(node)
    chain = _chain(node, RecordingClient)
    chain.head()
    chain.seal_randomness(1000, 5)
    chain.interactive_seed(1000, 5)
    chain.miner_info(1000)
    chain.deadline_partitions(1000, 0)
    chain.miner_power(1000)
    assert chain.sector(1000, 1) is None and chain.precommit(1000, 1).number == 1
    assert chain.highest_sector_number(1000) == 1
    # a message the node never had is neither on chain nor in its pool (MpoolPending): not found, not pending
    with pytest.raises(MessageNotFound):
        chain.receipt("bafy2bzacea3wsdh6y3a36tb3skempjoxqpuyompjbmfeyf34fi3uy6uue42v4")
    raw = chain.client
    checked = 0
    for method, params in raw.sent.items():
        if method not in EXAMPLES:
            continue
        example = EXAMPLES[method]
        assert len(params) == len(example["params"]), method
        assert not conforms(shape(params), shape(example["params"]), method), conforms(shape(params), shape(example["params"]), method)
        answer = raw.call(f"Filecoin.{method}", *params)
        assert not conforms(shape(answer), shape(example["result"]), method), conforms(shape(answer), shape(example["result"]), method)
        checked += 1
    assert checked >= 12, sorted(raw.sent)
    # the answers Lotus gives as null where nothing is there, and what the API adds nothing to
    for method, params in (("StateSectorGetInfo", ["f01000", 1, None]),):
        assert raw.call(f"Filecoin.{method}", *params) is None
    pc = raw.call("Filecoin.StateSectorPreCommitInfo", "f01000", 1, None)
    assert not conforms(shape(pc), shape(EXAMPLES["StateSectorPreCommitInfo"]["result"]))
    assert set(pc["Info"]) == set(EXAMPLES["StateSectorPreCommitInfo"]["result"]["Info"])      # UnsealedCid spelt as Lotus
    info = raw.call("Filecoin.StateMinerInfo", "f01000", None)
    assert set(info) == set(EXAMPLES["StateMinerInfo"]["result"]) and info["Worker"] == worker_address(1000)
    dl = raw.call("Filecoin.StateMinerProvingDeadline", "f01000", None)
    assert set(dl) == set(EXAMPLES["StateMinerProvingDeadline"]["result"])


def test_reads_equal_the_devnet_in_process(node):
    _sector_on_devnet(node, 3)
    chain, devnet = _chain(node), node.devnet
    assert chain.head() == devnet.head()
    for epoch in (0, 4, devnet.head()):
        assert chain.seal_randomness(1000, epoch) == devnet.seal_randomness(1000, epoch)
        assert chain.interactive_seed(1000, epoch) == devnet.interactive_seed(1000, epoch)
        assert chain.window_post_randomness(1000, epoch) == devnet.window_post_randomness(1000, epoch)
        assert chain.chain_commit_randomness(epoch) == devnet.chain_commit_randomness(epoch)
        assert chain.winning_post_randomness(1000, epoch) == devnet.winning_post_randomness(1000, epoch)
    assert chain.miner_info(1000) == replace(devnet.miner_info(1000), worker=worker_address(1000))
    assert chain.proving_deadline(1000) == devnet.proving_deadline(1000)
    assert chain.precommit(1000, 3) == devnet.precommit(1000, 3)
    assert chain.miner_power(1000) == devnet.miner_power(1000)
    with pytest.raises(ChainError, match="future epoch|cannot draw"):
        chain.seal_randomness(1000, devnet.head() + 5)
    with pytest.raises(ChainError, match="f01001 not found"):
        chain.miner_info(1001)


def test_pinned_reads_ask_the_node_once_per_tipset(node):
    """pinned_head (the poster's pass): the state reads inside are made at the head's tipset key
    and asked once per tipset; another head, or the same height re-made by a reorg, is read
    again; outside a pinned block every read goes to the node."""
    _sector_on_devnet(node, 3)
    chain, calls = _chain(node, RecordingClient), node.rpc.calls
    reads = ("Filecoin.ChainHead", "Filecoin.StateMinerProvingDeadline", "Filecoin.StateMinerDeadlines",
             "Filecoin.StateMinerPartitions")

    def asked(before):
        return tuple(calls[m] - before[i] for i, m in enumerate(reads))

    def pass_(expect):
        before = [calls[m] for m in reads]
        with chain.pinned_head():
            dl = chain.proving_deadline(1000)
            for _ in range(3):
                parts = [chain.deadline_partitions(1000, i) for i in (0, 1)]
            assert chain.head() == dl.current_epoch == node.devnet.head()
        assert asked(before) == expect
        return dl, parts

    first = pass_((1, 1, 1, 2))
    assert first == (node.devnet.proving_deadline(1000), [node.devnet.deadline_partitions(1000, i) for i in (0, 1)])
    tsk = chain.client.sent["StateMinerPartitions"][-1]
    assert tsk and tsk == node.api.chain_head()["Cids"]          # read at the head's key, not at `null`
    assert pass_((1, 0, 0, 0)) == first                          # the same head: one ChainHead, nothing else
    node.devnet.advance(1)
    pass_((1, 1, 1, 2))
    height = node.devnet.head()
    node.api.reorg(1, False)
    assert node.devnet.head() == height                          # the same height, on another fork
    pass_((1, 1, 1, 2))
    before = [calls[m] for m in reads]
    chain.deadline_partitions(1000, 0), chain.deadline_partitions(1000, 0)
    assert asked(before) == (0, 0, 2, 2)                         # not pinned: at the head, every time


class _FarmNode:
    """A node whose head moves by hand and whose miners each have `sectors` active sectors."""

    def __init__(self, sectors: int):
        self.height, self.sectors, self.asked = 100, sectors, 0

    def call(self, method, *params):
        if method == "Filecoin.ChainHead":
            return {"Height": self.height, "Cids": [{"/": f"bafy-head-{self.height}"}]}
        assert method == "Filecoin.StateMinerActiveSectors", method
        self.asked += 1
        return [{"SectorNumber": n} for n in range(self.sectors)]


def test_the_pinned_memo_is_bounded_in_tipsets_and_items(monkeypatch):
    """A farm's StateMinerActiveSectors (100,000 sectors a miner) read at each head: the memo keeps
    at most MEMO_TIPSETS tipsets and MEMO_ITEMS items; an answer that does not fit is asked again."""
    from appliance.chain.lotus import chain as lotus_chain
    monkeypatch.setattr(lotus_chain, "MEMO_ITEMS", 1000)
    node = _FarmNode(300)
    chain = LotusChain(node, ChainPolicy())

    def held():
        return sum(len(a) for reads in chain._memo.values() for a in reads.values())

    for _ in range(6):
        node.height += 1
        with chain.pinned_head():
            for miner in range(1000, 1005):       # 5 x 300 items: only 3 answers fit beside one another
                chain._state("StateMinerActiveSectors", chain._addr(miner))
            asked = node.asked
            chain._state("StateMinerActiveSectors", chain._addr(1000))     # kept: not asked again
            assert node.asked == asked
            chain._state("StateMinerActiveSectors", chain._addr(1004))     # did not fit: asked again
            assert node.asked == asked + 1
        assert len(chain._memo) <= lotus_chain.MEMO_TIPSETS
        assert chain._memo_items == held() <= lotus_chain.MEMO_ITEMS
    assert list(chain._memo) == [json.dumps([{"/": f"bafy-head-{node.height}"}], sort_keys=True)]   # older tipsets made room
    node.sectors = 2000                      # one answer above the whole budget: never kept
    node.height += 1
    with chain.pinned_head():
        chain._state("StateMinerActiveSectors", chain._addr(1000))
        chain._state("StateMinerActiveSectors", chain._addr(1000))
    assert node.asked == 6 * 6 + 2 and chain._memo_items == held() <= lotus_chain.MEMO_ITEMS


def test_older_nodes_are_asked_the_randomness_with_tag_and_entropy(node):
    """A node without StateGetRandomnessDigestFrom* (before they were added): the client asks
    StateGetRandomnessFromTickets/Beacon with the DST and the miner address's CBOR, and gets the
    same randomness as the digest path."""
    digest_path = _chain(node)
    expected = (digest_path.seal_randomness(1000, 6), digest_path.interactive_seed(1000, 6))
    del node.rpc.methods["Filecoin.StateGetRandomnessDigestFromTickets"]
    del node.rpc.methods["Filecoin.StateGetRandomnessDigestFromBeacon"]
    old = _chain(node, RecordingClient)
    assert (old.seal_randomness(1000, 6), old.interactive_seed(1000, 6)) == expected
    tag, epoch, entropy, tsk = old.client.sent["StateGetRandomnessFromTickets"]
    assert (tag, epoch, base64.b64decode(entropy), tsk) == (5, 6, bytes.fromhex("4300e807"), None)
    assert old.client.sent["StateGetRandomnessFromBeacon"][0] == 6


def test_bad_token_is_refused_at_once(node):
    calls = []
    chain = LotusChain(LotusClient(Endpoint(node.url, "not-a-token"), sleep=calls.append), node.devnet.policy)
    with pytest.raises(NodeAuthError, match="refused the token"):
        chain.head()
    assert calls == []          # no retry: a refused token does not get better
    with pytest.raises(NodeAuthError):
        LotusChain(LotusClient(Endpoint(node.url, None))).head()


def test_node_down_is_a_clear_error_after_bounded_retries_then_recovers(node, tmp_path):
    host, port = node.address
    pauses = []
    chain = LotusChain(LotusClient(parse_endpoint(node.api_info()), timeout=5, attempts=3, backoff=0.01,
                                   sleep=pauses.append), node.devnet.policy)
    assert chain.head() == 10
    node.rpc.shutdown()               # the node goes away: connection refused
    with pytest.raises(NodeUnavailable, match=rf"{host}:{port}/rpc/v1 did not answer Filecoin.ChainHead after 3 tries"):
        chain.head()
    assert pauses == [0.01, 0.02]
    assert isinstance(NodeUnavailable("x"), ChainError)     # the manager's loops log it and retry next pass
    node.rpc.serve(host, port)         # back on the same address
    assert chain.head() == 10


def test_redirects_are_refused_and_the_token_never_follows(tmp_path):
    seen = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    target = HTTPServer(("127.0.0.1", 0), Target)

    class Redirect(Target):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{target.server_address[1]}/rpc/v1")
            self.end_headers()

    redirect = HTTPServer(("127.0.0.1", 0), Redirect)
    for s in (target, redirect):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        client = LotusClient(Endpoint(f"http://127.0.0.1:{redirect.server_address[1]}/rpc/v1", "secret"), attempts=1)
        with pytest.raises(NodeUnavailable, match="HTTP 307"):
            client.call("Filecoin.ChainHead")
        assert seen == []
    finally:
        for s in (target, redirect):
            s.shutdown()
            s.server_close()


def test_push_is_idempotent_by_outbox_nonce_and_lands_decoded(node):
    """A PreCommit pushed through MpoolPushMessage: CBOR params decoded by the devnet's API, applied
    by the actor rules; pushing the same outbox nonce again returns the same message (MsgUuid)."""
    chain = _chain(node, RecordingClient)
    head = chain.head()
    method, params = precommit_message(9, bytes([3]) * 32, head - 2, head + 200 * 2880)
    cid = chain.push_message(1000, method, params, nonce=0)
    assert cid.startswith("bafy2bzace")
    assert chain.push_message(1000, method, params, nonce=0) == cid
    assert len(node.devnet.messages(1000)) == 1
    msg, spec = chain.client.sent["MpoolPushMessage"]
    example_msg = {k: v for k, v in EXAMPLES["MpoolPushMessage"]["params"][0].items() if k != "CID"}   # CID: output only
    assert not conforms(shape(msg), shape(example_msg)) and set(msg) == set(example_msg)
    assert not conforms(shape(chain.client.sent["GasEstimateMessageGas"]), shape([example_msg, *EXAMPLES["GasEstimateMessageGas"]["params"][1:]]))
    assert msg["From"] == worker_address(1000) and msg["To"] == "f01000" and msg["Method"] == 28   # PreCommitSectorBatch2
    assert spec["MsgUuid"] and spec["GasOverEstimation"] == 1.2
    again = chain.client.call("Filecoin.MpoolPushMessage", msg, spec)       # the same MsgUuid: the same answer
    assert again["CID"]["/"] == cid and not conforms(shape(again), shape(EXAMPLES["MpoolPushMessage"]["result"]))
    assert message_cid(again["Message"]) == cid                              # the CID is the message's own
    estimate = chain.client.call("Filecoin.GasEstimateMessageGas", msg, spec, None)
    assert not conforms(shape(estimate), shape(example_msg)) and estimate["GasLimit"] > 0
    assert chain.receipt(cid) is None
    node.devnet.advance(1)
    r = chain.receipt(cid)
    assert r.ok and r.epoch == head + 1
    assert chain.precommit(1000, 9).sealed_cid == commr_to_cid(bytes([3]) * 32)
    # a different message under the same outbox nonce is refused, not swapped in silently
    with pytest.raises(ChainError, match="names another message|nonce"):
        chain.push_message(1000, *precommit_message(10, bytes([3]) * 32, head - 2, head + 200 * 2880), nonce=0)
    assert not conforms(shape(chain.client.call("Filecoin.StateSearchMsg", None, {"/": cid}, -1, True)),
                        shape(EXAMPLES["StateSearchMsg"]["result"]))
    assert chain.wait_message(cid, 0).epoch == head + 1


def test_a_message_from_another_sender_is_refused(node):
    from appliance.chain import actor_params
    chain = _chain(node)
    data = base64.b64encode(actor_params.encode_params("DeclareFaults", {"Faults": []})).decode()
    msg = {"Version": 0, "To": "f01000", "From": "f099", "Nonce": 0, "Value": "0", "GasLimit": 0, "GasFeeCap": "0",
           "GasPremium": "0", "Method": 10, "Params": data}
    with pytest.raises(ChainError, match="f099 is not the worker of f01000"):
        chain.call("MpoolPushMessage", msg, {"MaxFee": "0", "MsgUuid": "07070707-0707-0707-0707-070707070707"})
    with pytest.raises(ChainError, match="msg.Params"):
        chain.call("MpoolPushMessage", {**msg, "From": worker_address(1000), "Params": "AAAA"}, None)
    assert node.devnet.messages(1000) == []


# ------------------------------------------------------------------ a sector end to end

def _until(what, fn, devnet, attempts=200):
    """Poll `fn`, moving the devnet one epoch between tries (bounded)."""
    for _ in range(attempts):
        out = fn()
        if out:
            return out
        devnet.advance(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(240)
def test_a_2kib_sector_seals_and_proves_through_lotuschain(node, tmp_path):
    """The manager's sealer and commitment batching over LotusChain -> the devnet's API (real
    HTTP): ticket, PreCommit (CBOR, PreCommitSectorBatch2), seed, ProveCommitSectors3, landed."""
    import shutil

    from appliance.core.sector import SectorID
    from appliance.manager.commitment import Committer
    from appliance.manager.config import parse_config
    from appliance.manager.sealer import Sealer
    from appliance.manager.state import ManagerState
    from appliance.proofs.c2 import seal_commit_phase2
    from appliance.proofs.pc2 import read_p_aux
    from appliance.proofs.porep import seal_commit_phase1
    from appliance.proofs.seal import seal_sector

    store = tmp_path / "persist-1"
    store.mkdir()
    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1},
                        "Common": {"API": {"Chain": node.api_info()},
                                   "PersistStores": [{"Name": "persist-1", "Path": str(store)}]},
                        "Miners": [{"Actor": 1000, "SealProof": "StackedDrg2KiBV1_1", "Commitment": {
                            "Confidence": 1, "Pre": {"Batch": {"Threshold": 1}}, "Prove": {"Batch": {"Threshold": 1}}}}]})
    assert cfg.chain_api is not None
    client = RecordingClient(cfg.chain_api.chain_endpoint())
    chain = LotusChain(client, node.devnet.policy, cfg.chain_api.send_policies, cfg.chain_api.seal_proofs)
    devnet = node.devnet
    state = ManagerState(tmp_path / "m.db")
    try:
        sealer, committer = Sealer(cfg, state, chain), Committer(cfg, state, chain)
        alloc = sealer.allocate_sector({})
        sid = alloc["ID"]
        ticket = sealer.assign_ticket(sid)
        r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
        assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1
        assert len(committer.tick()) == 1
        _until("PreCommit landed", lambda: sealer.poll_pre_commit_state(sid)["State"] == 3, devnet)
        name = f"s-t0{sid['Miner']}-{sid['Number']}"
        assert sealer.store_reserve_space(sid, 4096, [])["Name"] == "persist-1"
        (store / "sealed").mkdir(exist_ok=True)
        shutil.copy(r.sector_dir / "sealed", store / "sealed" / name)
        shutil.copytree(r.sector_dir / "cache", store / "cache" / name, dirs_exist_ok=True)
        assert sealer.submit_persisted(sid, "persist-1") is True
        seed = _until("seed", lambda: sealer.wait_seed(sid, P2K.id)["Seed"], devnet)
        comm_c, comm_r_last = read_p_aux(r.sector_dir / "cache")
        c1 = seal_commit_phase1(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]),
                                base64.b64decode(seed["Seed"]), r.comm_d, comm_c, comm_r_last, r.sector_dir / "cache",
                                r.sector_dir / "sealed")
        assert sealer.submit_proof(sid, {"Proof": seal_commit_phase2(c1)}, False)["Res"] == 1
        assert len(committer.tick()) == 1
        _until("proof landed", lambda: sealer.poll_proof_state(sid)["State"] == 3, devnet)
    finally:
        state.close()
    on_chain = chain.sector(1000, sid["Number"])
    assert on_chain is not None and on_chain.sealed_cid == commr_to_cid(r.comm_r)
    (pre, prove) = devnet.messages(1000)          # the devnet's names: the manager's, or the actor's
    assert pre["method"].startswith("PreCommitSectorBatch") and prove["method"].startswith("ProveCommitSector")
    assert pre["exit_code"] == prove["exit_code"] == 0
    methods = set(client.sent)
    assert {"ChainHead", "StateGetRandomnessDigestFromTickets", "StateGetRandomnessDigestFromBeacon", "MpoolPushMessage",
            "StateSearchMsg", "StateSectorPreCommitInfo", "StateSectorGetInfo"} <= methods
    # the manager's money through the node: the gas it journals is estimated there, the funds read there
    assert {"GasEstimateGasLimit", "WalletBalance", "StateMinerPreCommitDepositForPower",
            "StateMinerInitialPledgeCollateral"} <= methods
    first = client.sent["MpoolPushMessage"][0]
    assert first["Method"] == 28 and first["GasLimit"] > 0 and int(first["GasPremium"]) > 0    # PreCommitSectorBatch2
    # with power, the devnet's elections through Devnet.WinningElection are its own
    devnet.advance(60)
    epochs = range(on_chain.activation + 1, devnet.head())
    elected = [chain.winning_election(1000, e) for e in epochs]
    assert elected == [devnet.winning_election(1000, e) for e in epochs] and any(elected)


def test_messager_path_pushes_with_our_id_and_reads_the_receipt_by_it(node):
    """[Common.API] Messager: Message.HasMessageByUid, PushMessageWithId and GetMessageByUid
    (sophon-messager 8254efe8 api/messager_impl.go; shapes venus-shared types/messager), served by
    the devnet's API: the outbox nonce names the message, a resend is the same message."""
    from appliance.chain.lotus.messager import Messager
    endpoint = parse_endpoint(node.api_info())
    messager_client = RecordingClient(endpoint)
    chain = LotusChain(LotusClient(endpoint), node.devnet.policy, messager=Messager(messager_client))
    head = chain.head()
    method, params = precommit_message(4, bytes([5]) * 32, head - 1, head + 200 * 2880)
    msg_id = chain.push_message(1000, method, params, nonce=7)
    assert chain.push_message(1000, method, params, nonce=7) == msg_id
    assert len(node.devnet.messages(1000)) == 1
    sent_id, msg, spec = messager_client.sent["PushMessageWithId"]
    assert sent_id == msg_id and msg["Method"] == 28 and msg["GasLimit"] == 0      # the messager estimates
    assert spec == {"expireEpoch": 0, "gasOverEstimation": 1.2, "maxFee": "0", "gasOverPremium": 0.0}
    assert chain.receipt(msg_id) is None
    node.devnet.advance(1)
    r = chain.receipt(msg_id)
    assert r.ok and r.epoch == head + 1 and r.message == msg_id
    assert chain.wait_message(msg_id, 0).epoch == head + 1
    m = messager_client.call("Message.GetMessageByUid", msg_id)
    assert {"ID", "UnsignedCid", "SignedCid", "Version", "To", "From", "Nonce", "Method", "Params", "Height",
            "Confidence", "Receipt", "State", "ErrorMsg"} <= set(m) and m["State"] == 3
    with pytest.raises(ChainError, match="names another message"):
        chain.push_message(1000, "DeclareFaults", {"Faults": []}, nonce=7)


def test_node_down_while_sending_keeps_the_message_journalled_and_sends_it_once(node, tmp_path):
    """The commitment pass fails (logged by its loop) with the node down or refusing: the PreCommit
    waits, then stays in the outbox unsent; with the node back the next pass sends it, once, even
    after a push whose answer was lost (the same outbox nonce: the same MsgUuid)."""
    from appliance.core.sector import SectorID
    from appliance.manager.commitment import Committer
    from appliance.manager.config import parse_config
    from appliance.manager.sealer import Sealer
    from appliance.manager.state import ManagerState
    from appliance.proofs.seal import seal_sector

    cfg = parse_config({"Sealing": {"SealRandomnessLookback": 1},
                        "Miners": [{"Actor": 1000, "SealProof": "StackedDrg2KiBV1_1", "Commitment": {
                            "Confidence": 1, "Pre": {"Batch": {"Threshold": 1}}}}]})
    chain = LotusChain(LotusClient(parse_endpoint(node.api_info()), attempts=2, sleep=lambda s: None), node.devnet.policy)
    state = ManagerState(tmp_path / "m.db")
    try:
        sealer, committer = Sealer(cfg, state, chain), Committer(cfg, state, chain)
        alloc = sealer.allocate_sector({})
        sid = alloc["ID"]
        ticket = sealer.assign_ticket(sid)
        r = seal_sector(P2K, SectorID(1000, sid["Number"]), base64.b64decode(ticket["Ticket"]), bytes([9]) * 32, tmp_path / "w")
        assert sealer.submit_pre_commit(alloc, {"CommR": r.comm_r, "CommD": r.comm_d, "Ticket": ticket}, False)["Res"] == 1
        host, port = node.address
        node.rpc.shutdown()
        with pytest.raises(NodeUnavailable):
            committer.tick()                          # at ChainHead, before anything is journalled
        assert state.unsent() == [] and "pre_nonce" not in state.sectors(1000)[0]     # still waiting, not dropped
        node.rpc.serve(host, port)
        push = node.rpc.methods.pop("Filecoin.MpoolPushMessage")      # the node refuses to send
        with pytest.raises(ChainError, match="MpoolPushMessage"):
            committer.tick()                          # after the journal: the message waits in the outbox
        (row,) = state.unsent()
        assert row["method"].startswith("PreCommitSectorBatch") and node.devnet.messages(1000) == []
        node.rpc.methods["Filecoin.MpoolPushMessage"] = push
        spec = {k: v for k, v in row["spec"].items() if v}
        lost = chain.push_message(1000, row["method"], row["params"], row["nonce"], **spec)     # pushed, answer lost
        assert committer.tick() == [lost]            # the outbox's resend: the same message
        assert state.unsent() == [] and len(node.devnet.messages(1000)) == 1
        node.devnet.advance(2)
        assert sealer.poll_pre_commit_state(sid)["State"] == 3
    finally:
        state.close()


def test_devnet_extensions_for_blocks_and_deals_and_their_absence_on_a_node(node):
    """Devnet.* (block production, the embedded market) through LotusChain equal the devnet's own;
    a node without them (method not found): never elected, deals and blocks refused, saying why."""
    from appliance.proofs.cid import commd_to_cid
    chain, devnet = _chain(node), node.devnet
    head = devnet.head()
    assert [chain.winning_election(1000, e) for e in range(head)] == [devnet.winning_election(1000, e) for e in range(head)]
    assert chain.winning_post_sectors(1000, head) == devnet.winning_post_sectors(1000, head)
    piece = commd_to_cid(bytes([1]) * 32)
    deal_id = chain.publish_deal(1000, piece, 2048, head + 100, head + 200 * 2880)
    assert chain.deal(deal_id) == devnet.deal(deal_id) and devnet.deal(deal_id)["miner"] == 1000
    with pytest.raises(ChainError, match="not elected|refused|no block|elect"):
        chain.submit_winning_post(1000, head, b"not a proof")
    snark = bytes(192)                    # an external processor's Groth16 proof, which the devnet cannot verify
    assert chain.external_proof_refusal("seal", snark, "sector 1", 1) == devnet.external_proof_refusal("seal", snark, "sector 1", 1)
    assert "cannot verify Groth16" in chain.external_proof_refusal("seal", snark, "sector 1", 1)
    assert chain.takes_builtin_aggregate() is devnet.takes_builtin_aggregate() is True
    for name in [n for n in node.rpc.methods if n.startswith("Devnet.")]:
        del node.rpc.methods[name]
    plain = _chain(node)
    assert not any(plain.winning_election(1000, e) for e in range(head))
    with pytest.raises(ChainError, match=r"deals come from the market \(\[Common.API\] Market\)"):
        plain.publish_deal(1000, piece, 2048, head + 100, head + 200 * 2880)
    with pytest.raises(ChainError, match="block producer"):
        plain.submit_winning_post(1000, head, b"proof")
    assert plain.deal(deal_id) is None
    assert plain.external_proof_refusal("seal", snark, "sector 1", 1) is None      # a node verifies Groth16 itself
    assert plain.takes_builtin_aggregate() is False          # a node needs SnarkPack: proofs go side by side


def test_a_bad_or_dead_chain_address_refuses_the_manager_start_naming_it(tmp_path):
    """Damocles' documented example (placeholders) loads, but the start is refused naming the key;
    a node that does not answer refuses the start with the address, and the home stays usable."""
    from appliance.chain.lotus.settings import ChainAPIConfig
    from appliance.core.db import DatabaseError
    from appliance.manager.guard import open_stores
    with pytest.raises(DatabaseError, match=r"\[Common.API\].Chain: /ip4/\{api_host\} is not an IP address"):
        open_stores(tmp_path, ChainPolicy(), [1000], chain_api=ChainAPIConfig("/ip4/{api_host}/tcp/{api_port}"))
    import socket
    with socket.socket() as s:           # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NodeUnavailable, match=rf"127.0.0.1:{port}/rpc/v1 did not answer"):
        open_stores(tmp_path, ChainPolicy(), [1000], chain_api=ChainAPIConfig(f"http://127.0.0.1:{port}"))
    assert not (tmp_path / "devnet.db").exists()       # no embedded chain was made behind the operator's back


def test_devnet_serve_refuses_a_bad_miner_spec(tmp_path, capsys):
    from appliance.cli import main
    assert main(["devnet", "serve", "--home", str(tmp_path / "d"), "--miner", "1000"]) == 2
    assert "--miner '1000': expected ACTOR:SEALPROOF" in capsys.readouterr().err
    assert main(["devnet", "serve", "--home", str(tmp_path / "d"), "--listen", "nowhere"]) == 2
    assert "--listen 'nowhere': expected HOST:PORT" in capsys.readouterr().err


def test_a_deadlines_sectors_are_read_in_one_call(node):
    """sectors_info (the poster's targets): one StateMinerSectors with the sectors' bitfield, the
    same answers as the devnet's own; a number the chain lacks is absent."""
    from appliance.chain.types import SectorOnChain
    from appliance.proofs.cid import commd_to_cid, commr_to_cid
    devnet = node.devnet
    with devnet._tx():
        devnet._catch_up()
        for n in (1, 2, 5, 9):
            devnet.put_sector(SectorOnChain(1000, n, 5, commr_to_cid(bytes(31) + bytes([n])), commd_to_cid(bytes(32)), 10, 900_000))
    chain, calls = _chain(node, RecordingClient), node.rpc.calls
    before = calls["Filecoin.StateMinerSectors"]
    got = chain.sectors_info(1000, [5, 1, 7, 9])
    assert calls["Filecoin.StateMinerSectors"] - before == 1
    assert got == devnet.sectors_info(1000, [1, 5, 7, 9]) == {n: devnet.sector(1000, n) for n in (1, 5, 9)}
    assert chain.client.sent["StateMinerSectors"][1] == [1, 1, 3, 1, 1, 1, 1, 1]     # RLE+ runs of {1, 5, 7, 9}
    assert chain.sectors_info(1000, []) == {}
