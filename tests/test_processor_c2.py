"""`damocles processor c2` in Damocles' shapes, and our worker driving it as a separate program.

Task and answer shapes, from Damocles 4235a89557219de436bba441e727af3a42f903f0:
damocles-worker/vc-processors/src/builtin/tasks.rs `C2 {c1out: SealCommitPhase1Output, prover_id:
ProverId, sector_id: SectorId, miner_id: ActorID}`, `type Output = SealCommitPhase2Output`
(filecoin-proofs-api 0e64ce8d src/seal.rs: `{proof: Vec<u8>}`, an array of numbers);
src/core/ext/mod.rs `Request {id, task}`, `Response {id, err_msg, output}`; src/fil_proofs/mod.rs
`to_prover_id`: the ID address payload (uvarint of the actor id) in a zeroed [u8; 32]."""

import base64
import copy
import json
import os
import subprocess
import time
from dataclasses import replace

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import c1_json
from appliance.proofs.c2 import verify_seal
from appliance.proofs.cid import commr_to_cid
from appliance.proofs.porep import encode_c1
from appliance.worker.failure import Perm
from appliance.worker.record import SectorRecord

from .configs import NO_PROCESSORS, manager_toml, worker_toml
from .conftest import ROOT, damocles_cmd, read_line
from .test_c1_json import COMM_D, COMM_R, FIXTURE, SEED, TICKET
from .test_worker_e2e import start
from .test_worker_steps import _ctx, _sector_through_pc1, _step

P2K = seal_proof("StackedDrg2KiBV1_1")
# t01000 as to_prover_id writes it: uvarint(1000) = e8 07, then zeros
PROVER_ID_1000 = "[232,7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]"


def _serve(lines: list[str]) -> list[str]:
    p = subprocess.run(damocles_cmd("processor", "c2"), input="".join(line + "\n" for line in lines), capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_hand_written_damocles_c2_task_line():
    c1out = FIXTURE.read_text().strip()           # a C1 output in the Rust shape (tests/test_c1_json.py)
    good = '{"id":1,"task":{"c1out":' + c1out + ',"prover_id":' + PROVER_ID_1000 + ',"sector_id":1,"miner_id":1000}}'
    other_miner = good.replace('"miner_id":1000', '"miner_id":1001')
    tampered = json.loads(good)
    tampered["id"] = 3
    tampered["task"]["c1out"]["vanilla_proofs"]["StackedDrg2KiBV1"][0][1]["encoding_proof"]["layer_index"] = 1
    old_shape = {"id": 4, "task": {"c1out": "RE1DMQ==", "prover_id": json.loads(PROVER_ID_1000), "sector_id": 1,
                                   "miner_id": 1000}}
    lines = _serve([good, other_miner.replace('"id":1', '"id":2'), json.dumps(tampered), json.dumps(old_shape)])
    assert lines[0] == "c2 processor ready"
    answers = {a["id"]: a for a in map(json.loads, lines[1:])}
    assert sorted(answers) == [1, 2, 3, 4]
    ok = answers[1]
    assert list(ok) == ["id", "err_msg", "output"] and ok["err_msg"] is None
    assert list(ok["output"]) == ["proof"]
    proof = ok["output"]["proof"]
    assert isinstance(proof, list) and all(type(b) is int and 0 <= b <= 255 for b in proof)
    assert bytes(proof[:6]) == b"DMC2\x01\x00"       # the builtin stand-in for the SNARK (docs/formats.md)
    # the proof verifies against lotus-bench's public inputs for this sector
    verify_seal(P2K, SectorID(1000, 1), COMM_D, COMM_R, TICKET, SEED, bytes(proof))
    for i, field in ((2, "task.prover_id"), (3, "encoding_proof.layer_index"), (4, "task.c1out")):
        assert answers[i]["output"] is None and field in answers[i]["err_msg"], answers[i]


def test_steps_write_json_c1_and_finish_an_old_binary_one(tmp_path):
    """on_SeedAssigned writes the Rust-shaped c1.out; on_C1Done turns it (or the binary c1.out of
    an older build, left by a sector that was at C1Done when the worker was upgraded) into a
    proof that verifies."""
    from appliance.worker.steps import SealerSteps
    steps = SealerSteps(_ctx(tmp_path, corrupt=False, verify=False))
    rec = _sector_through_pc1(steps, tmp_path)
    _, rec = _step(steps, rec)
    rec = replace(rec, state="SeedAssigned", seed={"Seed": base64.b64encode(SEED).decode(), "Epoch": 5})
    event, rec = _step(steps, rec)
    assert event == "C1"
    c1_file = steps.paths(rec).cache / "c1.out"
    c1 = c1_json.loads(c1_file.read_bytes(), SectorID(1000, 1), P2K)
    assert c1_file.read_bytes() == FIXTURE.read_bytes().strip()   # the same sector, ticket and seed as the fixture
    rec = replace(rec, state="C1Done")
    for content in (c1_file.read_bytes(), encode_c1(c1)):
        c1_file.write_bytes(content)
        event, _ = _step(steps, rec)
        assert event == "C2"
        verify_seal(P2K, SectorID(1000, 1), COMM_D, COMM_R, TICKET, SEED, (steps.paths(rec).cache / "proof.out").read_bytes())
    c1_file.write_bytes(b"{}")
    with pytest.raises(Perm, match="c1.out: C1 output: registered_proof: missing"):
        _step(steps, rec)


@pytest.fixture
def one_sector_cluster(tmp_path):
    """A manager allocating one 2KiB sector and a worker whose c2 processor is `damocles
    processor c2` behind two `tee`s that record the request and answer lines."""
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(manager_toml(max_number=1, pre_threshold=1, prove_threshold=1))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    line = read_line(manager)
    assert line.startswith("listening on "), manager.stderr.read()
    url = line.split()[-1]
    from appliance.rpc.auth import issue_token, load_or_create_secret
    from appliance.rpc.client import RPCClient
    secret = load_or_create_secret(home / "secret")
    requests, answers = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    shim = {"bin": "/bin/sh", "args": ["-c", f'tee "{requests}" | "$@" | tee "{answers}"', "sh",
                                       *damocles_cmd("processor", "c2")], "stable_wait": "30s", "timeout": "120s"}
    cfg = tmp_path / "worker.toml"
    cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", [{"location": tmp_path / "t0"}],
                               processors={**NO_PROCESSORS, "c2": [shim]}))
    worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")])
    yield RPCClient(url, issue_token(secret, "admin")), worker, requests, answers
    for p in (worker, manager):
        p.terminate()
        p.wait(timeout=30)


def test_worker_drives_processor_c2_to_a_landed_sector(one_sector_cluster):
    admin, worker, requests, answers = one_sector_cluster
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        listed = admin.call("Venus.ListSectors", "", 0)
        if listed and listed[0]["State"] == "Finished":
            break
        assert worker.poll() is None, worker.stderr.read()
        time.sleep(0.5)   # polling a live system; bounded by the deadline
    else:
        raise AssertionError(f"the sector did not finish: {listed}")
    (onchain,) = admin.call("Venus.DevnetSectors", 1000)
    request = json.loads(requests.read_text().splitlines()[0])
    assert list(request) == ["id", "task"]
    task = request["task"]
    assert list(task) == ["c1out", "prover_id", "sector_id", "miner_id"]
    assert task["prover_id"] == json.loads(PROVER_ID_1000) and task["sector_id"] == 1 and task["miner_id"] == 1000
    c1 = c1_json.from_json(copy.deepcopy(task["c1out"]), SectorID(1000, 1), P2K)
    assert commr_to_cid(bytes(task["c1out"]["comm_r"])) == onchain["sealed_cid"]
    answer = json.loads(answers.read_text().splitlines()[1])      # after the ready line
    assert answer["id"] == request["id"] and answer["err_msg"] is None
    verify_seal(P2K, SectorID(1000, 1), c1.comm_d, c1.comm_r, c1.ticket, c1.seed, bytes(answer["output"]["proof"]))
