"""pc1 and pc2 over the vc-processors protocol in filecoin-proofs-api's types.

The task lines below are written by hand from Damocles' vc-processors
(damocles-worker/vc-processors/src/builtin/tasks.rs `PC1`, `PC2`, commit 4235a89557219de436bba441e727af3a42f903f0)
and the types it re-exports from filecoin-proofs-api (src/seal.rs `SealPreCommitPhase1Output`,
`Labels`, `SealPreCommitPhase2Output`, commit 0e64ce8d9cf87d4039075c101de833290096745b), with
rust-fil-proofs' values (commit 87348a749d80447d00c595af834a8ed73c09e4d9):
- filecoin-proofs/src/types/piece_info.rs: PieceInfo {commitment: [u8; 32], size: UnpaddedBytesAmount}
  (a newtype of u64: a number; a 2KiB piece is 2032 unpadded bytes);
- storage-proofs-porep/src/stacked/vanilla/params.rs `Labels<Tree> {labels: Vec<StoreConfig>, _h:
  PhantomData}` (PhantomData is null), create_label/mod.rs prepare_layers (id "layer-N", size =
  nodes, rows_to_discard 0), storage-proofs-core/src/cache_key.rs ("layer", "tree-d");
- filecoin-proofs/src/api/seal.rs seal_pre_commit_phase1: tree_d config StoreConfig::new(cache,
  "tree-d", 0) with size = the tree's length (2·64 − 1 = 127 nodes at 2KiB), in_path copied to out_path;
- merkletree StoreConfig {path, id, size: Option<usize>, rows_to_discard}, files sc-02-data-<id>.dat;
- filecoin-proofs/src/constants.rs: 2KiB sectors have 2 layers (LAYERS) and 64 nodes.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.commitment import commp_bytes, padded_piece_bytes
from appliance.proofs.pc1 import generate_labels, replica_id
from appliance.proofs.pc2 import read_p_aux, seal_pre_commit_phase2, t_aux_bytes
from appliance.worker import stage_seal, tasks
from appliance.worker.external import own_command
from appliance.worker.record import SectorRecord
from appliance.worker.steps import SealerSteps

from .conftest import ROOT

P2K = seal_proof("StackedDrg2KiBV1_1")
TICKET = [7] * 32
# prover_id of t01000: the ID address payload, leb128 of 1000 = 0xe8 0x07, zero padded to 32 bytes
PROVER_1000 = [232, 7] + [0] * 30


def processor(stage: str, *lines: str) -> list[dict]:
    """Run `damocles processor STAGE` as a program, feed it the lines, return its answers."""
    p = subprocess.run(own_command(stage), input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    out = p.stdout.splitlines()
    assert p.returncode == 0 and out[0] == f"{stage} processor ready", p.stderr
    return sorted((json.loads(x) for x in out[1:]), key=lambda a: a["id"])


@pytest.fixture
def sector(tmp_path):
    """A 2KiB sector holding one piece that fills it: staged file, an empty sealed file, a cache dir."""
    payload = bytes((i * 7 + 3) % 256 for i in range(2032))
    staged, sealed, cache = tmp_path / "unsealed", tmp_path / "sealed", tmp_path / "cache"
    staged.write_bytes(padded_piece_bytes(payload))
    sealed.touch()
    cache.mkdir()
    return staged, sealed, cache, commp_bytes(payload)


def test_pc1_then_pc2_from_damocles_task_lines(sector, tmp_path):
    staged, sealed, cache, piece = sector
    assert piece.size == 2048
    pc1_line = ('{"id": 1, "task": {"registered_proof": "StackedDrg2KiBV1_1", "cache_path": "%s", "in_path": "%s", '
                '"out_path": "%s", "prover_id": %s, "sector_id": 1, "ticket": %s, '
                '"piece_infos": [{"commitment": %s, "size": 2032}]}}'
                % (cache, staged, sealed, json.dumps(PROVER_1000), json.dumps(TICKET), json.dumps(list(piece.commitment))))
    [answer] = processor("pc1", pc1_line)
    assert answer["id"] == 1 and answer["err_msg"] is None and set(answer) == {"id", "err_msg", "output"}
    out = answer["output"]
    assert out == {
        "registered_proof": "StackedDrg2KiBV1_1",
        "labels": {"StackedDrg2KiBV1": {"labels": [
            {"path": str(cache), "id": "layer-1", "size": 64, "rows_to_discard": 0},
            {"path": str(cache), "id": "layer-2", "size": 64, "rows_to_discard": 0}], "_h": None}},
        "config": {"path": str(cache), "id": "tree-d", "size": 127, "rows_to_discard": 0},
        "comm_d": list(piece.commitment),     # one piece filling the sector: comm_d is its commP
    }
    # the files rust-fil-proofs leaves: the data copied to out_path, tree_d and the layers by their ids
    assert sealed.read_bytes() == staged.read_bytes()
    tree_d = (cache / "sc-02-data-tree-d.dat").read_bytes()
    assert len(tree_d) == 127 * 32 and tree_d[-32:] == piece.commitment
    want = tmp_path / "want"
    want.mkdir()
    generate_labels(P2K, replica_id(SectorID(1000, 1), bytes(TICKET), piece.commitment, P2K), want)
    for layer in (1, 2):
        assert (cache / f"sc-02-data-layer-{layer}.dat").read_bytes() == (want / f"sc-02-data-layer-{layer}.dat").read_bytes()

    # pc2: the pc1 answer as it came, the way Damocles journals and sends it
    ref = tmp_path / "ref"
    shutil.copytree(cache, ref)
    expected = seal_pre_commit_phase2(P2K, staged, ref, tmp_path / "ref-sealed")
    pc2_line = '{"id": 2, "task": {"pc1out": %s, "cache_dir": "%s", "sealed_file": "%s"}}' % (json.dumps(out), cache, sealed)
    [answer] = processor("pc2", pc2_line)
    assert answer["id"] == 2 and answer["err_msg"] is None
    assert answer["output"] == {"registered_proof": "StackedDrg2KiBV1_1", "comm_r": list(expected.comm_r),
                                "comm_d": list(piece.commitment)}
    assert read_p_aux(cache) == (expected.comm_c, expected.comm_r_last)
    assert sealed.read_bytes() == (tmp_path / "ref-sealed").read_bytes()
    assert (cache / "t_aux").read_bytes() == t_aux_bytes(P2K, cache)


def test_a_cc_pc1_and_a_pc1out_written_elsewhere(sector, tmp_path):
    """piece_infos [] is a CC sector (filecoin-proofs compute_comm_d: the zero commitment). A pc1out
    whose StoreConfig paths name another machine's cache (a Rust pc1's) is taken: pc2 works in
    cache_dir, as rust-fil-proofs' PC2 does (Labels::verify_stores replaces the path)."""
    _, sealed, cache, _ = sector
    staged = tmp_path / "cc"
    staged.write_bytes(bytes(2048))
    line = ('{"id": 5, "task": {"registered_proof": "StackedDrg2KiBV1_1", "cache_path": "%s", "in_path": "%s", '
            '"out_path": "%s", "prover_id": %s, "sector_id": 9, "ticket": %s, "piece_infos": []}}'
            % (cache, staged, sealed, json.dumps(PROVER_1000), json.dumps(TICKET)))
    [answer] = processor("pc1", line)
    out = answer["output"]
    zero = bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833")   # CommD of an empty 2KiB sector
    assert answer["err_msg"] is None and out["comm_d"] == list(zero)
    elsewhere = json.loads(json.dumps(out).replace(str(cache), "/mnt/rust/cache/s-t01000-9"))
    [answer] = processor("pc2", json.dumps({"id": 6, "task": {"pc1out": elsewhere, "cache_dir": str(cache),
                                                               "sealed_file": str(sealed)}}))
    assert answer["err_msg"] is None and answer["output"]["comm_d"] == list(zero)
    comm_c, comm_r_last = read_p_aux(cache)
    from appliance.proofs.poseidon import hash_nodes
    assert answer["output"]["comm_r"] == list(hash_nodes([comm_c, comm_r_last]))


def test_bad_tasks_are_answered_with_the_field(sector, tmp_path):
    staged, sealed, cache, piece = sector
    base = {"registered_proof": "StackedDrg2KiBV1_1", "cache_path": str(cache), "in_path": str(staged),
            "out_path": str(sealed), "prover_id": PROVER_1000, "sector_id": 1, "ticket": TICKET,
            "piece_infos": [{"commitment": list(piece.commitment), "size": 2032}]}
    padded = {**base, "piece_infos": [{"commitment": list(piece.commitment), "size": 2048}]}    # what we used to read
    wrong = {**base, "piece_infos": [{"commitment": [1] * 32, "size": 2032}]}
    old_pc1out = {"registered_proof": P2K.name, "comm_d": list(piece.commitment), "replica_id": [0] * 32,
                  "staged_file": str(staged), "layers": 2}
    pc1 = processor("pc1", json.dumps({"id": 1, "task": padded}), json.dumps({"id": 2, "task": wrong}),
                    json.dumps({"id": 3, "task": {**base, "ticket": [1, 2]}}))
    assert "task.piece_infos[0].size: 2048 is not an unpadded piece size" in pc1[0]["err_msg"]
    assert "task.piece_infos: the pieces' comm_d" in pc1[1]["err_msg"]
    assert "task.ticket" in pc1[2]["err_msg"] and all(a["output"] is None for a in pc1)
    good = stage_seal.pc1_output(P2K, cache, piece.commitment)
    bad_layer = json.loads(json.dumps(good))
    bad_layer["labels"]["StackedDrg2KiBV1"]["labels"][1]["id"] = "layer-3"
    pc2 = processor("pc2", *(json.dumps({"id": i, "task": {"pc1out": p, "cache_dir": str(cache), "sealed_file": str(sealed)}})
                             for i, p in enumerate([old_pc1out, bad_layer, {**good, "labels": {"StackedDrg8MiBV1": {}}}, good])))
    assert "task.pc1out.labels: expected an object" in pc2[0]["err_msg"]
    assert "task.pc1out.labels.StackedDrg2KiBV1.labels[1].id: 'layer-3', expected 'layer-2'" in pc2[1]["err_msg"]
    assert "task.pc1out.labels: expected the variant 'StackedDrg2KiBV1'" in pc2[2]["err_msg"]
    assert "pc2: layer file" in pc2[3]["err_msg"] and "sc-02-data-layer-1.dat is missing" in pc2[3]["err_msg"]

    # the worker's readers
    with pytest.raises(tasks.TaskError, match="pc1 output.comm_d"):
        stage_seal.read_pc1_output(stage_seal.pc1_output(P2K, cache, bytes(32)), P2K, piece.commitment)
    with pytest.raises(tasks.TaskError, match="pc1 output.registered_proof"):
        stage_seal.read_pc1_output(stage_seal.pc1_output(seal_proof("StackedDrg2KiBV1"), cache, piece.commitment), P2K,
                                   piece.commitment)
    with pytest.raises(tasks.TaskError, match="pc2 output.comm_r"):
        stage_seal.read_pc2_output({"registered_proof": P2K.name, "comm_d": list(piece.commitment), "comm_r": [1, 2]}, P2K,
                                   piece.commitment)
    with pytest.raises(tasks.TaskError, match="pc2 output.comm_d"):
        stage_seal.read_pc2_output({"registered_proof": P2K.name, "comm_d": [0] * 32, "comm_r": [0] * 32}, P2K,
                                   piece.commitment)


class _Ctx:
    """What SealerSteps needs for PC1/PC2 with external processors; tasks go through the builtin
    engine behind the protocol, as JSON (the protocol itself is exercised above and below)."""

    def __init__(self, location):
        self.location, self.parent_cache, self.pc2_procs = location, None, 1
        self.sealing = type("S", (), {"verify_after_pc2": True})()
        self.tasks = []

    def external(self, stage):
        return stage in ("pc1", "pc2")

    def run_task(self, stage, task):
        self.tasks.append((stage, task))
        return json.loads(json.dumps(tasks.run_task(stage, json.loads(json.dumps(task)))))


def test_a_sector_journaled_with_the_old_pc1out_and_a_pc2_run_twice(sector, tmp_path):
    """A worker upgraded while a sector waits in PC1Done with the pc1out of the former shape goes
    on; a PC2 that ran (or half ran) before starts again from a fresh copy of the data, so sealing
    the replica a second time cannot happen."""
    import base64
    from appliance.proofs.addpiece import build_tree_d
    from appliance.proofs.cid import commd_to_cid
    staged0, _, _, piece = sector
    ctx = _Ctx(tmp_path / "store")
    rec = SectorRecord(state="PC1Done", name="s-t01000-1", miner=1000, number=1, proof=P2K.id, comm_d=piece.commitment.hex(),
                       ticket={"Ticket": base64.b64encode(bytes(TICKET)).decode(), "Epoch": 10},
                       deals=[{"id": 1, "piece_cid": commd_to_cid(piece.commitment), "piece_size": 2048, "payload_size": 2032, "offset": 0}],
                       pc1out={"registered_proof": P2K.name, "comm_d": list(piece.commitment), "replica_id": [0] * 32,
                               "staged_file": "/old/staged", "layers": 2})
    steps = SealerSteps(ctx)
    p = steps.paths(rec)
    p.make()
    shutil.copyfile(staged0, p.staged)
    build_tree_d(P2K.size, p.staged, p.cache)
    generate_labels(P2K, replica_id(SectorID(1000, 1), bytes(TICKET), piece.commitment, P2K), p.cache)
    ref = tmp_path / "ref"
    shutil.copytree(p.cache, ref)
    want = seal_pre_commit_phase2(P2K, p.staged, ref, tmp_path / "ref-sealed")

    ev = steps.on_PC1Done(rec)            # in-process PC1 had left no sealed file: the data is copied first
    assert ev.name == "PC2" and ev.outputs["comm_r"] == want.comm_r.hex()
    stage, task = ctx.tasks[-1]
    assert stage == "pc2" and task["pc1out"] == stage_seal.pc1_output(P2K, p.cache, piece.commitment)
    assert not (p.cache / ".pc2_running").exists()
    replica = p.sealed.read_bytes()
    assert replica == (tmp_path / "ref-sealed").read_bytes()

    assert steps.on_PC1Done(rec).outputs["comm_r"] == want.comm_r.hex()     # finished, then a crash before the journal
    (p.cache / "p_aux").unlink()                                             # half ran: the marker, a changed replica
    (p.cache / ".pc2_running").touch()
    assert steps.on_PC1Done(rec).outputs["comm_r"] == want.comm_r.hex()
    assert p.sealed.read_bytes() == replica

    # PC1 over the processor journals SealPreCommitPhase1Output, which PC2 then sends as it is
    ev = steps.on_TicketAssigned(SectorRecord(**{**rec.to_json(), "state": "TicketAssigned", "pc1out": None}))
    assert ev.outputs["pc1out"] == stage_seal.pc1_output(P2K, p.cache, piece.commitment)
    stage, task = ctx.tasks[-1]
    assert stage == "pc1" and task["piece_infos"] == [{"commitment": list(piece.commitment), "size": 2032}]
    assert set(task) == {"registered_proof", "cache_path", "in_path", "out_path", "prover_id", "sector_id", "ticket",
                         "piece_infos"}


def test_worker_seals_a_deal_sector_through_pc1_and_pc2_processor_programs(tmp_path):
    """(a) the worker hands PC1 and PC2 (and C2) to `damocles processor <stage>` children over the
    protocol: the pc1 task carries the deal's piece with its unpadded size, the sector is sealed,
    proven and finished on the devnet."""
    from appliance.rpc.auth import issue_token, load_or_create_secret
    from appliance.rpc.client import RPCClient
    from .configs import worker_toml
    from .conftest import damocles_cmd, read_line, run_cli
    from .test_deals import deals_manager
    from .test_worker_e2e import start

    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(deals_manager(1))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        piece = tmp_path / "piece.bin"
        piece.write_bytes(bytes(range(256)) * 3)        # 768 bytes: a 1024-byte piece (1016 unpadded)
        deal = json.loads(run_cli("util", "piece", "import", str(piece), "--miner", "1000", "--api", url, "--home", str(home),
                                  "--json", check=True).stdout)
        assert deal["PieceSize"] == 1024
        ext = {stage: [{"bin": damocles_cmd("processor", stage)[0], "args": damocles_cmd("processor", stage)[1:],
                        "stable_wait": "30s", "timeout": "300s"}] for stage in ("pc1", "pc2", "c2")}
        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(url, issue_token(load_or_create_secret(home / "secret"), "write"), home / "persist-1",
                                   [{"location": tmp_path / "t0"}], sealing={"enable_deals": True},
                                   processors={"limitation": None, **ext}))
        worker = start(["worker", "run", "-c", str(cfg)])
        admin = RPCClient(url, issue_token(load_or_create_secret(home / "secret"), "admin"))
        deadline = time.monotonic() + 240
        while True:
            listed = admin.call("Venus.ListSectors", "", 0)
            if listed and all(s["Finalized"] for s in listed):
                break
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, (listed, worker.stderr.read())
            time.sleep(0.3)   # polling a live system; bounded by the deadline
        assert listed[0]["State"] == "Finished" and listed[0]["AbortReason"] == "", listed
        cache = home / "persist-1" / "cache" / "s-t01000-1"
        assert (cache / "p_aux").is_file() and not (cache / ".pc2_running").exists()
    finally:
        for proc in (worker, manager):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
