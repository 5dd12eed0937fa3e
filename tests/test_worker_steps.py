"""Sealer steps in process: verify_after_pc2 catches a replica that does not match its
commitments before any PreCommit; persisting copies exactly the files PoSt needs."""

import base64
from dataclasses import replace
from types import SimpleNamespace

import pytest

from appliance.core.proof_types import seal_proof
from appliance.proofs.commitment import ZERO_COMMS
from appliance.worker.config import SealingConfig
from appliance.worker.failure import Perm
from appliance.worker.plan import as_event
from appliance.worker.record import SectorRecord
from appliance.worker.steps import Paths, SealerSteps, persist

P2K = seal_proof("StackedDrg2KiBV1_1")


def _ctx(tmp_path, corrupt: bool, verify: bool):
    def run_stage(stage, fn, *args):
        out = fn(*args)
        if stage == "pc2" and corrupt:
            sealed = args[3]
            data = bytearray(sealed.read_bytes())
            data[700] ^= 1
            sealed.write_bytes(bytes(data))
        return out
    return SimpleNamespace(location=tmp_path, run_stage=run_stage, external=lambda stage: False,
                           parent_cache=tmp_path / "parents", pc2_procs=1,
                           sealing=replace(SealingConfig(), verify_after_pc2=verify), attached=[])


def _step(steps, rec: SectorRecord) -> tuple[str, SectorRecord]:
    """Exec a step as the runner does: the step returns its outputs, a new record takes them after."""
    event = as_event(steps.exec(rec))
    return event.name, rec.with_outputs(event.outputs)


def _sector_through_pc1(steps, tmp_path):
    rec = SectorRecord(miner=1000, number=1, proof=P2K.id, name="s-t01000-1",
                       ticket={"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1})
    for state in ("DealsAcquired", "PieceAdded", "TicketAssigned"):
        _, rec = _step(steps, replace(rec, state=state))
    return replace(rec, state="PC1Done")


def test_verify_after_pc2_catches_a_bad_replica(tmp_path):
    steps = SealerSteps(_ctx(tmp_path, corrupt=True, verify=True))
    rec = _sector_through_pc1(steps, tmp_path)
    with pytest.raises(Perm, match="verify_after_pc2"):
        _step(steps, rec)


def test_without_verify_after_pc2_the_commitments_still_come_out(tmp_path):
    steps = SealerSteps(_ctx(tmp_path, corrupt=False, verify=False))
    rec = _sector_through_pc1(steps, tmp_path)
    event, rec = _step(steps, rec)
    assert event == "PC2"
    assert rec.comm_d == ZERO_COMMS[6].hex()
    assert rec.comm_r == "c647b998c78282296cfd1160714228d43f3b054dfbbb77172b68115ba3c3b762"   # lotus-bench's CommR


def test_persist_copies_sealed_and_post_files(tmp_path):
    steps = SealerSteps(_ctx(tmp_path, corrupt=False, verify=True))
    rec = _sector_through_pc1(steps, tmp_path)
    _step(steps, rec)
    store = tmp_path / "store"
    persist(Paths(tmp_path, rec.name), store, rec.name)
    assert (store / "sealed" / "s-t01000-1").stat().st_size == 2048
    assert sorted(p.name for p in (store / "cache" / "s-t01000-1").iterdir()) == ["p_aux", "sc-02-data-tree-r-last.dat", "t_aux"]
    assert not list(store.rglob("*.tmp"))
