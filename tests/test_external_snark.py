"""The real-SNARK path (issue 16 item 3): a c2 processor that answers a Groth16 proof (192 bytes a
partition, rust-fil-proofs filecoin-proofs/src/constants.rs SINGLE_PARTITION_PROOF_LEN at
87348a749d80447d00c595af834a8ed73c09e4d9) is not verified by the worker nor the manager; the
devnet, which cannot verify Groth16, refuses it saying so unless `[Chain] TrustExternalProofs`,
and then accepts it unverified and the sector's state records it."""

import base64
import sys
import time

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.devnet_api import DevnetAPIServer
from appliance.chain.lotus.chain import LotusChain
from appliance.chain.lotus.client import LotusClient
from appliance.chain.lotus.endpoint import parse_endpoint
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError
from appliance.core.proof_types import seal_proof
from appliance.proofs import ProofError
from appliance.proofs.c2 import C2_MAGIC
from appliance.proofs.external_snark import BUILTIN, GROTH16, claims_groth16, is_builtin_proof, proof_form
from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import manager_toml, worker_toml
from .conftest import ROOT, read_line
from .chain_messages import prove_commit
from .test_devnet import MINER, P2K, land, precommit_params, seal
from .test_worker_e2e import start

SNARK = bytes(range(192))                 # one Groth16 partition: what a 2KiB sector's C2 weighs


def test_proof_forms():
    assert is_builtin_proof("seal", C2_MAGIC + b"\x01\x00rest") and proof_form("seal", C2_MAGIC + b"..") == BUILTIN
    assert proof_form("seal", SNARK, 1) == GROTH16 and proof_form("window_post", SNARK * 3) == GROTH16
    assert claims_groth16("update", SNARK * 16) and not claims_groth16("update", b"DMU2" + bytes(188))
    assert not claims_groth16("seal", bytes(100)) and not claims_groth16("seal", b"")
    with pytest.raises(ProofError, match="a Groth16 proof of this type has 10 partition"):
        proof_form("seal", SNARK, seal_proof("StackedDrg32GiBV1_1").size.porep_partitions)
    with pytest.raises(ProofError, match="seal proof of 100 bytes is neither the builtin engine's"):
        proof_form("seal", bytes(100))


def test_the_trust_key_is_a_boolean_of_chain():
    policy, warnings = ChainPolicy.from_config({"TrustExternalProofs": True})
    assert policy.trust_external_proofs and not warnings and not ChainPolicy().trust_external_proofs
    with pytest.raises(ValueError, match=r"\[Chain\].TrustExternalProofs: 'yes' is not true or false"):
        ChainPolicy.from_config({"TrustExternalProofs": "yes"})


@pytest.mark.parametrize("trust", [False, True])
def test_the_devnet_refuses_a_groth16_prove_commit_unless_it_trusts_them(tmp_path, trust):
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=trust))
    try:
        chain.create_miner(MINER, P2K.id)
        chain.advance(20)
        r = seal(chain, tmp_path, 1, 15)
        assert land(chain, "PreCommitSectorBatch2", precommit_params(r, 1, 15, chain.head())).ok
        chain.advance(chain.policy.precommit_challenge_delay)
        rec = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK}))
        if trust:
            assert rec.ok and chain.sector(MINER, 1) is not None, rec
        else:
            assert rec.exit_code == 16 and chain.sector(MINER, 1) is None
            assert "cannot verify Groth16" in rec.error and "TrustExternalProofs = true" in rec.error, rec.error
        bad = land(chain, "ProveCommitSectors3", prove_commit({1: SNARK * 2}))
        assert not bad.ok     # trusted or not, a Groth16 proof of the wrong partition count is refused
    finally:
        chain.close()


@pytest.mark.parametrize("trust", [False, True])
def test_the_devnet_refuses_a_groth16_window_post_unless_it_trusts_them(tmp_path, trust):
    from . import test_devnet_proving as proving
    chain = proving.new_chain(tmp_path, trust_external_proofs=trust)
    try:
        proving.onboard(chain, tmp_path, [1, 2])                     # deadline 2: opens 120
        proving.advance_to(chain, 119)
        rec = proving.land(chain, "SubmitWindowedPoSt", proving.post_params(chain, 2, {0: []}, SNARK))
        if trust:
            assert rec.ok and [p.proven for p in chain.deadline_partitions(MINER, 2)] == [True], rec
        else:
            assert rec.exit_code == 16 and "a Groth16 window_post proof of 192 bytes" in rec.error, rec
            assert "cannot verify Groth16" in rec.error and [p.proven for p in chain.deadline_partitions(MINER, 2)] == [False]
    finally:
        chain.close()


@pytest.mark.parametrize("trust", [False, True])
def test_through_the_devnet_api_the_manager_hears_the_devnets_refusal(tmp_path, trust):
    """The manager's LotusChain asks the embedded devnet (Devnet.ExternalProofRefusal) before it
    pays for a message, as it asked the in-process Devnet: a node's receipt would carry only
    the exit code, not why."""
    srv = DevnetAPIServer(tmp_path / "devnet", ChainPolicy(block_time=0, trust_external_proofs=trust))
    try:
        srv.start()
        client = LotusClient(parse_endpoint(srv.api_info()), attempts=1)
        chain = LotusChain(client, srv.devnet.policy)
        why = chain.external_proof_refusal("seal", SNARK, "sector 1", 1)
        if trust:
            assert why is None
        else:
            assert why == srv.devnet.external_proof_refusal("seal", SNARK, "sector 1", 1)
            assert "sector 1: a Groth16 seal proof of 192 bytes (1 partition) from an external processor" in why
            assert "cannot verify Groth16" in why and "TrustExternalProofs = true" in why, why
        assert "has 1 partition(s)" in chain.external_proof_refusal("seal", SNARK * 2, "sector 1", 1)
        assert chain.external_proof_refusal("seal", C2_MAGIC + b"\x01\x00rest", "sector 1", 1) is None   # builtin
        with pytest.raises(ChainError, match="kind: expected one of seal, window_post"):
            client.call("Devnet.ExternalProofRefusal", "porep", base64.b64encode(SNARK).decode(), "sector 1", 1)
        with pytest.raises(ChainError, match="partitions: expected a partition count"):
            client.call("Devnet.ExternalProofRefusal", "seal", base64.b64encode(SNARK).decode(), "sector 1", 0)
    finally:
        srv.close()


# --------------------------------------------------------------------------- end to end

@pytest.fixture
def cluster(tmp_path, request):
    """A manager (one 2KiB CC sector to seal; TrustExternalProofs as the test's param) and a
    worker whose c2 is tests/fake_processor.py answering a 192-byte proof."""
    home = tmp_path / "manager"
    home.mkdir()
    (home / "persist-1").mkdir()
    (home / "manager.toml").write_text(manager_toml(1, config={"Chain": {"TrustExternalProofs": request.param}}))
    manager = start(["manager", "run", "--home", str(home)])
    procs = [manager]
    try:
        line = read_line(manager)
        assert line.startswith("listening on "), manager.stderr.read()
        url = line.split()[-1]
        secret = load_or_create_secret(home / "secret")
        c2 = {"bin": sys.executable, "args": [str(ROOT / "tests" / "fake_processor.py"), "c2"], "stable_wait": "60s",
              "envs": {"FAKE_MODE": "none", "FAKE_MARKER": str(tmp_path / "marker"), "FAKE_SERVE": "snark",
                       "PYTHONPATH": str(ROOT)}}
        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", [{"location": tmp_path / "t0"}],
                                   processors={"c2": [c2]}))
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
        procs.append(worker)
        yield RPCClient(url, issue_token(secret, "admin")), worker, manager
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


def until(what: str, check, worker, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        assert worker.poll() is None, worker.stderr.read()
        time.sleep(0.5)       # polling a live system; bounded by the deadline
    raise AssertionError(f"{what}: not within {seconds}s")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("cluster", [False], indirect=True)
def test_by_default_the_devnet_refuses_the_external_snark_saying_why(cluster):
    admin, worker, manager = cluster
    [sector] = until("the sector aborted", lambda: [s for s in admin.call("Venus.ListSectors", "", 0) if s["AbortReason"]],
                     worker)
    reason = sector["AbortReason"]
    assert "a Groth16 seal proof of 192 bytes (1 partition) from an external processor" in reason, reason
    assert "cannot verify Groth16" in reason and "TrustExternalProofs = true" in reason, reason
    assert admin.call("Venus.DevnetSectors", MINER) == []
    assert "is not verified here" in worker.stderr.read()      # the worker did not try the builtin verifier


@pytest.mark.timeout(400)
@pytest.mark.parametrize("cluster", [True], indirect=True)
def test_a_trusting_devnet_accepts_the_external_snark_and_the_sector_records_it(cluster):
    admin, worker, manager = cluster
    until("the sector on chain and finalized",
          lambda: admin.call("Venus.DevnetSectors", MINER) and all(s["Finalized"] for s in admin.call("Venus.ListSectors", "", 0)),
          worker)
    [sector] = admin.call("Venus.ListSectors", "", 0)
    assert sector["State"] == "Finished" and sector["AbortReason"] == ""
    assert base64.b64decode(sector["Proof"]["Proof"]) != b"" and len(base64.b64decode(sector["Proof"]["Proof"])) == 192
    assert sector["ProofCheck"] == ("a Groth16 seal proof of 192 bytes (1 partition) from an external processor, not "
                                    "verified by the manager: the devnet accepts it unverified (TrustExternalProofs)")
    manager.terminate()
    manager.wait(timeout=30)
    assert "accepted UNVERIFIED (TrustExternalProofs)" in manager.stderr.read()
