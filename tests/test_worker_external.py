"""External processors over the vc-processors protocol: the builtin `damocles processor`
answers Damocles-shaped tasks; a child that exits, hangs past its limit or prints garbage is a
temp error and is restarted, and the task succeeds once it behaves."""

import json
import os
import subprocess
import sys
import time

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.c2 import verify_seal
from appliance.proofs.seal import seal_sector
from appliance.worker import c2_stage, tasks
from appliance.worker.config import ProcessorConfig
from appliance.worker.external import ExternalProcessor, own_command
from appliance.worker.failure import Temp

from .conftest import ROOT

P2K = seal_proof("StackedDrg2KiBV1_1")


@pytest.fixture(scope="module")
def c1_task(tmp_path_factory):
    from appliance.proofs.c2 import decode_c2
    d = tmp_path_factory.mktemp("seal")
    r = seal_sector(P2K, SectorID(1000, 1), bytes(32), bytes([1]) * 32, d)
    c1 = decode_c2((r.sector_dir / "proof.bin").read_bytes())
    return r, c2_stage.c2_task(c1)


def test_builtin_processor_protocol(c1_task):
    r, task = c1_task
    p = subprocess.run(own_command("c2"), input=json.dumps({"id": 7, "task": task}) + "\n" + "not json\n", capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = p.stdout.splitlines()
    assert lines[0] == "c2 processor ready"
    answer = json.loads(lines[1])
    assert answer["id"] == 7 and answer["err_msg"] is None
    verify_seal(P2K, SectorID(1000, 1), r.comm_d, r.comm_r, bytes(32), bytes([1]) * 32, bytes(answer["output"]["proof"]))
    assert "malformed request line" in p.stderr
    p = subprocess.run(own_command("pc9"), capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and "no builtin processor for stage 'pc9'" in p.stderr


@pytest.mark.parametrize("mode", ["exit", "hang", "garbage"])
def test_misbehaving_processor_is_temp_and_restarted(mode, c1_task, tmp_path, monkeypatch):
    r, task = c1_task
    monkeypatch.setenv("FAKE_MODE", mode)
    monkeypatch.setenv("FAKE_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    cfg = ProcessorConfig("c2", 0, bin=sys.executable, args=(str(ROOT / "tests" / "fake_processor.py"), "c2"), timeout=3.0,
                          stable_wait=30.0, dump_dir=tmp_path / "dumps")
    ext = ExternalProcessor(cfg)
    try:
        with pytest.raises(Temp):
            ext.call(task)
        deadline = time.monotonic() + 60
        while ext.proc is None and time.monotonic() < deadline:
            time.sleep(0.1)   # the restart happens in the background; bounded
        out = ext.call(task)
        assert ext.restarts == 1
        verify_seal(P2K, SectorID(1000, 1), r.comm_d, r.comm_r, bytes(32), bytes([1]) * 32, c2_stage.read_c2_output(out))
    finally:
        ext.close()


def test_processor_errors_and_bad_outputs(c1_task, monkeypatch):
    cfg = ProcessorConfig("c2", 0, bin=own_command("c2")[0], args=tuple(own_command("c2")[1:]), stable_wait=30.0)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    ext = ExternalProcessor(cfg)
    try:
        with pytest.raises(Temp, match="task.c1out"):
            ext.call({"c1out": "AAAA", "prover_id": list(SectorID(1000, 1).prover_id), "sector_id": 1, "miner_id": 1000})
    finally:
        ext.close()
    with pytest.raises(tasks.TaskError, match="c2 output.proof"):
        c2_stage.read_c2_output({"proof": 5})
