"""snap_encode, snap_prove, window_post and winning_post over the vc-processors protocol.

Task lines are written by hand in the shapes of Damocles' vc-processors at commit
4235a89557219de436bba441e727af3a42f903f0: damocles-worker/vc-processors/src/builtin/tasks.rs
(SnapEncode, SnapProve, WindowPoSt, WinningPoSt, PoStReplicaInfo, WindowPoStOutput,
WinningPoStOutput) and src/fil_proofs/mod.rs (SnapEncodeOutput; SnapProveOutput = Vec<u8>;
SnarkProof = b64serde::BytesVec, a base64 string), with filecoin-proofs-api 0e64ce8d types as
serde_json writes them: RegisteredUpdateProof / RegisteredPoStProof by variant name
(src/registry.rs), Commitment / ChallengeSeed ([u8; 32]) as arrays of numbers, SectorId and
ActorID as numbers, PieceInfo {commitment, size} with the UNPADDED size (rust-fil-proofs
filecoin-proofs/src/types/piece_info.rs, UnpaddedBytesAmount newtype)."""

import base64
import json
import os
import shlex
import shutil
import subprocess

import pytest

from appliance.core.proof_types import post_proof, seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.addpiece import add_pieces
from appliance.proofs.commitment import comm_d_from_pieces
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.poseidon import hash_nodes
from appliance.proofs.post import PublicSector, decode_post, verify_post
from appliance.proofs.seal import seal_sector
from appliance.proofs.snap import update_proof
from appliance.proofs.snap_encode import encode_into
from appliance.proofs.snap_bincode import decode_partition, encode_partitions
from appliance.proofs.snap_proof import encode_vanilla, prove_update_partitions, verify_update_proof
from appliance.worker import stage_snap_post as ssp
from appliance.worker.tasks import TaskError

from .conftest import ROOT, damocles_cmd
from .poststore import seal_into_store

P2K = seal_proof("StackedDrg2KiBV1_1")
U2K = update_proof("StackedDrg2KiBV1")
W2K = post_proof("StackedDrgWindow2KiBV1_2")
WIN2K = post_proof("StackedDrgWinning2KiBV1")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def processor(stage: str, lines: list[str], timeout: float = 120) -> list[dict]:
    """`damocles processor <stage>` as its own program: the ready line, then one answer per line."""
    p = subprocess.run(damocles_cmd("processor", stage), input="".join(x + "\n" for x in lines), capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=timeout)
    out = p.stdout.splitlines()
    assert p.returncode == 0 and out[0] == f"{stage} processor ready", p.stderr
    answers = sorted((json.loads(x) for x in out[1:]), key=lambda a: a["id"])
    assert len(answers) == len(lines), p.stderr
    for a in answers:
        assert set(a) == {"id", "err_msg", "output"}
    return answers


def arr(b: bytes) -> str:
    return json.dumps(list(b))


@pytest.fixture(scope="module")
def sector_key(tmp_path_factory):
    """A sealed CC sector (the sector key) and staged data of two pieces (508 and 1016 unpadded bytes)."""
    d = tmp_path_factory.mktemp("snapkey")
    r = seal_sector(P2K, SectorID(1000, 7), os.urandom(31) + b"\0", bytes([1]) * 32, d / "work")
    a, b = d / "a.bin", d / "b.bin"
    a.write_bytes(os.urandom(300))
    b.write_bytes(os.urandom(1000))
    staged = add_pieces(P2K.size, [a, b], d / "staged")
    return r, d / "staged", [s.info for s in staged]


def test_snap_encode_and_snap_prove_damocles_lines(sector_key, tmp_path):
    r, staged, pieces = sector_key
    assert [p.size for p in pieces] == [512, 1024]
    new_replica, new_cache = tmp_path / "update", tmp_path / "update-cache"
    new_cache.mkdir()
    line = ('{"id": 1, "task": {"registered_proof": "StackedDrg2KiBV1", '
            f'"new_replica_path": "{new_replica}", "new_cache_path": "{new_cache}", '
            f'"sector_path": "{r.sector_dir / "sealed"}", "sector_cache_path": "{r.sector_dir / "cache"}", '
            f'"staged_data_path": "{staged}", '
            f'"piece_infos": [{{"commitment": {arr(pieces[0].commitment)}, "size": 508}}, '
            f'{{"commitment": {arr(pieces[1].commitment)}, "size": 1016}}]}}}}')
    padded = line.replace('"size": 508', '"size": 512').replace('"id": 1', '"id": 2')   # a padded size is refused
    ok, bad = processor("snap_encode", [line, padded])
    assert ok["id"] == 1 and ok["err_msg"] is None and set(ok["output"]) == {"comm_r_new", "comm_r_last_new", "comm_d_new"}
    assert "task.piece_infos[0].size: 512 is not an unpadded piece size" in bad["err_msg"] and bad["output"] is None
    out = {k: bytes(v) for k, v in ok["output"].items()}
    comm_c, comm_r_last_old = read_p_aux(r.sector_dir / "cache")
    assert out["comm_d_new"] == comm_d_from_pieces(pieces, 2048)
    assert read_p_aux(new_cache) == (comm_c, out["comm_r_last_new"])
    assert out["comm_r_new"] == hash_nodes([comm_c, out["comm_r_last_new"]])
    ref = encode_into(U2K, tmp_path / "ref", tmp_path / "ref-cache", r.sector_dir / "sealed", r.sector_dir / "cache",
                      staged, pieces)
    assert (ref.comm_r_new, ref.comm_r_last_new, ref.comm_d_new) == (out["comm_r_new"], out["comm_r_last_new"], out["comm_d_new"])
    assert new_replica.read_bytes() == (tmp_path / "ref").read_bytes()

    # snap_prove: the vanilla proofs as our worker makes them, the rest of the line by hand. Damocles'
    # worker (damocles-worker/src/sealing/sealing_thread/planner/common/sealing.rs snap_prove) sends
    # what filecoin-proofs-api's generate_partition_proofs returns, one bincode PartitionProof a
    # partition (2KiB: one), each a Vec<u8>: a JSON array of numbers
    comm_r_old = hash_nodes([comm_c, comm_r_last_old])
    vanilla = prove_update_partitions(U2K, comm_r_old, out["comm_r_new"], out["comm_d_new"], r.sector_dir / "sealed",
                                      r.sector_dir / "cache", new_replica, new_cache)
    [element] = encode_partitions(vanilla)
    assert element[:32] == vanilla.partitions[0].comm_c and element[32:40] == (8).to_bytes(8, "little")
    line = ('{"id": 3, "task": {"registered_proof": "StackedDrg2KiBV1", '
            f'"vannilla_proofs": [{arr(element)}], "comm_r_old": {arr(comm_r_old)}, '
            f'"comm_r_new": {arr(out["comm_r_new"])}, "comm_d_new": {arr(out["comm_d_new"])}}}}}')
    wrong = line.replace('"id": 3', '"id": 4').replace(f'"comm_r_new": {arr(out["comm_r_new"])}', f'"comm_r_new": {arr(comm_r_old)}')
    two = line.replace('"id": 3', '"id": 5').replace(f'[{arr(element)}]', f'[{arr(element)}, {arr(element)}]')
    old_form = line.replace('"id": 3', '"id": 6').replace(f'[{arr(element)}]', f'[{arr(encode_vanilla(vanilla))}]')
    cut = line.replace('"id": 3', '"id": 7').replace(f'[{arr(element)}]', f'[{arr(element[:-8])}]')
    ok, bad, bad2, bad3, bad4 = processor("snap_prove", [line, wrong, two, old_form, cut])
    assert ok["id"] == 3 and ok["err_msg"] is None and isinstance(ok["output"], list)   # SnapProveOutput: Vec<u8>
    assert all(type(x) is int and 0 <= x <= 255 for x in ok["output"])
    verify_update_proof(U2K, comm_r_old, out["comm_r_new"], out["comm_d_new"], bytes(ok["output"]))
    assert ssp.read_snap_prove_output(ok["output"], U2K, comm_r_old, out["comm_r_new"], out["comm_d_new"]) == bytes(ok["output"])
    assert "do not prove the task's comm_r_old/comm_r_new/comm_d_new" in bad["err_msg"] and bad["output"] is None
    assert "task.vannilla_proofs: 2 partition proofs, StackedDrg2KiBV1 has 1 partition" in bad2["err_msg"]
    assert 'task.vannilla_proofs: holds the "DMU1" container' in bad3["err_msg"] and bad3["output"] is None
    assert ("task.vannilla_proofs[0] (bincode PartitionProof): truncated at byte 15056 reading "
            "challenge_proofs[9].proof_r_new.data.Single.path.path[1].index") in bad4["err_msg"]
    # the task our worker builds is that line
    assert ssp.snap_prove_task(vanilla) == json.loads(line)["task"]


def test_snap_outputs_are_checked_against_the_task(sector_key, tmp_path):
    r, staged, pieces = sector_key
    task = ssp.snap_encode_task(U2K, tmp_path / "u", tmp_path / "uc", r.sector_dir / "sealed", r.sector_dir / "cache",
                                staged, pieces)
    assert task["piece_infos"] == [{"commitment": list(pieces[0].commitment), "size": 508},
                                   {"commitment": list(pieces[1].commitment), "size": 1016}]
    good = ssp.run_task("snap_encode", task)
    assert ssp.read_snap_encode_output(good, task, U2K, pieces).comm_r_new == bytes(good["comm_r_new"])
    for field in ("comm_r_new", "comm_r_last_new", "comm_d_new"):
        with pytest.raises(TaskError, match=f"snap_encode output.{field}"):
            ssp.read_snap_encode_output({**good, field: [0] * 32}, task, U2K, pieces)
    with pytest.raises(TaskError, match="snap_encode output.comm_r_new: expected an array of 32"):
        ssp.read_snap_encode_output({**good, "comm_r_new": "AAAA"}, task, U2K, pieces)
    comm_c, last = read_p_aux(r.sector_dir / "cache")
    args = (U2K, hash_nodes([comm_c, last]), bytes(good["comm_r_new"]), bytes(good["comm_d_new"]))
    with pytest.raises(TaskError, match="snap_prove output: 5 bytes, neither"):
        ssp.read_snap_prove_output([1, 2, 3, 4, 5], *args)
    with pytest.raises(TaskError, match="snap_prove output: expected an array of integers"):
        ssp.read_snap_prove_output({"proof": []}, *args)
    snark = [7] * U2K.snark_proof_bytes                 # what a Groth16 processor answers: passed on as it is
    assert ssp.read_snap_prove_output(snark, *args) == bytes(snark)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("poststore")
    comm_rs = {n: seal_into_store(d / "persist-1", 1000, n, d / "work", d / "parents") for n in (1, 2)}
    return d / "persist-1", comm_rs


def _replica(store, n, comm_r):
    return (f'{{"sector_id": {n}, "comm_r": {arr(comm_r)}, "cache_dir": "{store / "cache" / f"s-t01000-{n}"}", '
            f'"sealed_file": "{store / "sealed" / f"s-t01000-{n}"}"}}')


def test_window_and_winning_post_damocles_lines(store):
    store, comm_rs = store
    seed = bytes(range(31)) + b"\x11"
    missing = (f'{{"sector_id": 9, "comm_r": {arr(comm_rs[1])}, "cache_dir": "{store / "cache" / "s-t01000-9"}", '
               f'"sealed_file": "{store / "sealed" / "s-t01000-9"}"}}')
    window = ('{"id": 1, "task": {"miner_id": 1000, "proof_type": "StackedDrgWindow2KiBV1_2", '
              f'"replicas": [{_replica(store, 1, comm_rs[1])}, {missing}, {_replica(store, 2, comm_rs[2])}], '
              f'"seed": {arr(seed)}}}}}')
    as_winning = window.replace('"id": 1', '"id": 2').replace("StackedDrgWindow2KiBV1_2", "StackedDrgWinning2KiBV1")
    ok, bad = processor("window_post", [window, as_winning])
    assert ok["err_msg"] is None and set(ok["output"]) == {"proofs", "faults"}
    assert ok["output"]["faults"] == [9] and len(ok["output"]["proofs"]) == 1 and isinstance(ok["output"]["proofs"][0], str)
    verify_post(W2K, seed, [PublicSector(n, comm_rs[n]) for n in (1, 2)],
                decode_post(base64.b64decode(ok["output"]["proofs"][0], validate=True), W2K))
    assert "task.proof_type: StackedDrgWinning2KiBV1 is not a WindowPoSt proof type" in bad["err_msg"]

    winning = ('{"id": 3, "task": {"miner_id": 1000, "proof_type": "StackedDrgWinning2KiBV1", '
               f'"replicas": [{_replica(store, 2, comm_rs[2])}], "seed": {arr(seed)}}}}}')
    two = winning.replace('"id": 3', '"id": 4').replace('"replicas": [', f'"replicas": [{_replica(store, 1, comm_rs[1])}, ')
    faulty = winning.replace('"id": 3', '"id": 5').replace(_replica(store, 2, comm_rs[2]), missing)
    ok, bad, bad2 = processor("winning_post", [winning, two, faulty])
    assert ok["err_msg"] is None and set(ok["output"]) == {"proofs"} and len(ok["output"]["proofs"]) == 1
    verify_post(WIN2K, seed, [PublicSector(2, comm_rs[2])], decode_post(base64.b64decode(ok["output"]["proofs"][0]), WIN2K))
    assert "task.replicas: 2 sectors, StackedDrgWinning2KiBV1 proves 1" in bad["err_msg"]
    assert "sector 9 is faulty" in bad2["err_msg"]


def test_post_outputs_are_checked_against_the_task(store):
    store, comm_rs = store
    seed = bytes(31) + b"\x02"
    task, faults = ssp.job_task({"Sectors": [{"SectorId": n, "CommR": list(c), "Upgrade": False,
                                              "Accesses": {"SealedFile": "persist-1", "CacheDir": "persist-1"}}
                                             for n, c in comm_rs.items()]
                                 + [{"SectorId": 5, "CommR": [0] * 32, "Upgrade": True,
                                     "Accesses": {"SealedFile": "elsewhere", "CacheDir": "persist-1"}}],
                                 "MinerId": 1000, "ProofType": "StackedDrgWindow2KiBV1_1", "Seed": list(seed)},
                                {"persist-1": str(store)})
    assert faults == [5] and task["proof_type"] == "StackedDrgWindow2KiBV1_2"
    assert task["replicas"][0] == {"sector_id": 1, "comm_r": list(comm_rs[1]), "cache_dir": str(store / "cache" / "s-t01000-1"),
                                   "sealed_file": str(store / "sealed" / "s-t01000-1")}
    good = ssp.run_task("window_post", task)
    assert ssp.read_window_post_output(good, task) == good
    other = ssp.run_task("window_post", {**task, "seed": list(bytes(31) + b"\x03")})
    for out, msg in [({**good, "faults": [7]}, "window_post output.faults\\[0\\]: sector 7 is not in the task"),
                     ({**good, "faults": [1]}, "window_post output.proofs\\[0\\] does not verify"),
                     (other, "window_post output.proofs\\[0\\] does not verify"),
                     ({**good, "proofs": ["%%%"]}, "window_post output.proofs\\[0\\]: not base64"),
                     ({"proofs": [], "faults": []}, "no proof and no faulty sector"),
                     ({"faults": []}, "window_post output.proofs: expected an array")]:
        with pytest.raises(TaskError, match=msg):
            ssp.read_window_post_output(out, task)
    # what a rust-fil-proofs processor answers for a faulty sector: no proof, the fault (FaultySectors)
    assert ssp.read_window_post_output({"proofs": [], "faults": [2]}, task) == {"proofs": [], "faults": [2]}
    snark = base64.b64encode(bytes(192)).decode()      # a Groth16 proof is passed on for the chain to judge
    assert ssp.read_window_post_output({"proofs": [snark], "faults": []}, task)["proofs"] == [snark]
    wtask = ssp.post_task(1000, WIN2K, [ssp.PrivateSector(1, comm_rs[1], store / "cache" / "s-t01000-1",
                                                          store / "sealed" / "s-t01000-1")], seed)
    assert ssp.read_winning_post_output(ssp.run_task("winning_post", wtask), wtask)
    with pytest.raises(TaskError, match="winning_post output.proofs: empty"):
        ssp.read_winning_post_output({"proofs": []}, wtask)


def recording(stage: str, log) -> dict:
    """A [[processors.<stage>]] entry running `damocles processor <stage>` as its own program, its
    request lines copied to `log` on their way in (tee), so a test sees what the worker sent."""
    return {"bin": "/bin/sh", "args": ["-c", f"tee -a {shlex.quote(str(log))} | exec {shlex.join(damocles_cmd('processor', stage))}"],
            "stable_wait": "60s", "timeout": "5min"}


def requests(log) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_dedicated_prover_hands_window_post_jobs_to_an_external_processor(tmp_path):
    from appliance.manager.service import ManagerService, init_home
    from appliance.rpc.auth import issue_token
    from .configs import post_toml
    from .conftest import read_line
    from .test_post_prover import MANAGER, _job_input, _wait_finished

    home = tmp_path / "manager"
    init_home(home, MANAGER)
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    prover = None
    try:
        url = f"http://{host}:{port}/rpc/v0"
        store = home / "persist-1"
        comm_rs = {n: seal_into_store(store, 1000, n, tmp_path / "work", tmp_path / "parents") for n in (1, 2)}
        shutil.rmtree(store / "cache" / "s-t01000-2")                    # a lost cache: a fault
        seed = bytes(31) + b"\x09"
        log = tmp_path / "requests.jsonl"
        cfg = tmp_path / "post.toml"
        cfg.write_text(post_toml(url, issue_token(svc.secret, "write"), store,
                                 processors={"window_post": [recording("window_post", log)]}))
        prover = subprocess.Popen(damocles_cmd("post", "run", "-c", str(cfg)), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert read_line(prover).startswith("prover prover-a polling")
        job_id = svc.jobs.create(1000, 7, 0, [0], _job_input(comm_rs, seed))
        job = _wait_finished(svc, job_id)
        assert not job["Failed"] and job["Output"]["faults"] == [2]
        verify_post(W2K, seed, [PublicSector(1, comm_rs[1])], decode_post(base64.b64decode(job["Output"]["proofs"][0]), W2K))
        [req] = requests(log)
        assert set(req) == {"id", "task"} and set(req["task"]) == {"miner_id", "proof_type", "replicas", "seed"}
        assert req["task"]["proof_type"] == "StackedDrgWindow2KiBV1_2" and req["task"]["seed"] == list(seed)
        assert [x["sector_id"] for x in req["task"]["replicas"]] == [1, 2]
    finally:
        if prover is not None:
            prover.terminate()
            assert prover.wait(timeout=30) == 0, prover.stderr.read()
        svc.stop()


def test_snapup_and_rebuild_threads_hand_snap_stages_to_external_processors(tmp_path):
    """A CC sector upgraded by a snapup thread whose snap_encode and snap_prove are
    `damocles processor <stage>` programs; the update lands on the devnet chain, and a rebuild
    thread encodes it again through the same snap_encode processor."""
    from appliance.proofs.cid import cid_to_commitment, commd_to_cid
    from appliance.proofs.commitment import commp_file
    from .conftest import run_cli
    from .test_snapup import snap_cluster

    logs = {s: tmp_path / f"{s}.jsonl" for s in ("snap_encode", "snap_prove")}
    with snap_cluster(tmp_path, processors={s: [recording(s, log)] for s, log in logs.items()}) as c:
        admin, home = c.admin, c.home
        old = admin.call("Venus.DevnetSectors", 1000)[0]
        piece = tmp_path / "deal.bin"
        piece.write_bytes(b"external snap payload " * 20)
        cand = c.upgrade(piece, timeout=180)[1]
        assert cand["State"] == "landed", cand
        new = admin.call("Venus.DevnetSectors", 1000)[0]
        assert new["sector_key_cid"] == old["sealed_cid"] and new["sealed_cid"] != old["sealed_cid"]
        assert new["unsealed_cid"] == commd_to_cid(comm_d_from_pieces([commp_file(piece)[0]], 2048))

        [enc] = requests(logs["snap_encode"])          # the processors got Damocles' tasks
        assert set(enc["task"]) == {"registered_proof", "new_replica_path", "new_cache_path", "sector_path",
                                    "sector_cache_path", "staged_data_path", "piece_infos"}
        assert enc["task"]["registered_proof"] == "StackedDrg2KiBV1"
        assert [p["size"] for p in enc["task"]["piece_infos"]] == [commp_file(piece)[0].size // 128 * 127]
        [prove] = requests(logs["snap_prove"])
        assert set(prove["task"]) == {"registered_proof", "vannilla_proofs", "comm_r_old", "comm_r_new", "comm_d_new"}
        [element] = prove["task"]["vannilla_proofs"]     # 2KiB: one partition, one bincode PartitionProof
        assert decode_partition(bytes(element), U2K).comm_d_new == bytes(prove["task"]["comm_d_new"])
        assert bytes(prove["task"]["comm_r_old"]) == cid_to_commitment(old["sealed_cid"])[1]
        assert bytes(prove["task"]["comm_r_new"]) == cid_to_commitment(new["sealed_cid"])[1]
        assert (home / "persist-1" / "update" / "s-t01000-1").is_file()
        assert run_cli("util", "proving", "check", *c.cli).returncode == 0

        # both replicas lost: the rebuild thread reseals the sector key and hands the update to snap_encode again
        c.rebuild_both_replicas()
        assert len(requests(logs["snap_encode"])) == 2


def test_worker_wdpost_thread_hands_jobs_to_an_external_processor(tmp_path):
    from appliance.manager.service import ManagerService, init_home
    from appliance.rpc.auth import issue_token
    from .configs import NO_PROCESSORS, worker_toml
    from .conftest import read_line
    from .test_post_prover import MANAGER, _job_input, _wait_finished

    home = tmp_path / "manager"
    init_home(home, MANAGER)
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    worker = None
    try:
        store = home / "persist-1"
        comm_rs = {n: seal_into_store(store, 1000, n, tmp_path / "work", tmp_path / "parents") for n in (1, 2)}
        log, cfg = tmp_path / "requests.jsonl", tmp_path / "worker.toml"
        cfg.write_text(worker_toml(f"http://{host}:{port}/rpc/v0", issue_token(svc.secret, "write"), store,
                                   [{"plan": "wdpost"}], name="w-post", worker={"ping_interval": None},
                                   sealing={"verify_after_pc2": None, "recover_interval": None, "seal_interval": None,
                                            "rpc_polling_interval": "100ms"},
                                   processors={**NO_PROCESSORS, "window_post": [recording("window_post", log)]}))
        worker = subprocess.Popen(damocles_cmd("worker", "run", "-c", str(cfg)), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert read_line(worker).startswith("worker w-post running 1 sealing threads")
        seed = bytes(31) + b"\x07"
        job = _wait_finished(svc, svc.jobs.create(1000, 9, 0, [0], _job_input(comm_rs, seed)))
        assert job["WorkerName"] == "w-post-wdpost-0" and job["Output"]["faults"] == []
        verify_post(W2K, seed, [PublicSector(n, c) for n, c in sorted(comm_rs.items())],
                    decode_post(base64.b64decode(job["Output"]["proofs"][0]), W2K))
        [req] = requests(log)
        assert [x["sector_id"] for x in req["task"]["replicas"]] == [1, 2]
    finally:
        if worker is not None:
            worker.terminate()
            assert worker.wait(timeout=30) == 0, worker.stderr.read()
        svc.stop()
