import os
import subprocess
import sys

import pytest

from appliance.worker.journal import Journal, JournalError, LocationLock
from appliance.worker.plan import PlanError, plan


def test_sealer_plan_table():
    state, path = "Empty", []
    for event in ("Allocate", "AcquireDeals", "AddPiece", "BuildTreeD", "AssignTicket", "PC1", "PC2", "SubmitPC", "CheckPC",
                  "Persist", "SubmitPersistance", "AssignSeed", "C1", "C2", "SubmitProof", "Finish"):
        state = plan(state, event)
        path.append(state)
    assert path[-1] == "Finished" and path[7] == "PCSubmitted"
    assert plan("PCSubmitted", "ReSubmitPC") == "PC2Done"
    assert plan("C1Done", "SetState:PC2Done") == "PC2Done"
    assert plan("PC1Done", "Abort") == "Aborted"
    with pytest.raises(PlanError, match="event PC2 is not allowed in state Empty"):
        plan("Empty", "PC2")
    with pytest.raises(PlanError, match="not a sealer state"):
        plan("Empty", "SetState:Baking")


def test_journal_survives_reopen_and_logs(tmp_path):
    j = Journal(tmp_path)
    assert j.current() is None
    rec = {"name": "s-t01000-1", "state": "Allocated"}
    j.transition(rec, "Empty", "Allocate")
    rec = dict(rec, state="DealsAcquired", retry=0)
    j.transition(rec, "Allocated", "AcquireDeals")
    j.failure(rec, "temp", "rpc: connection refused")
    j.close()
    j = Journal(tmp_path)
    assert j.current()["state"] == "DealsAcquired"
    log = j.log("s-t01000-1")
    assert [(x["prev"], x["next"], x["event"]) for x in log[:2]] == [("Empty", "Allocated", "Allocate"),
                                                                   ("Allocated", "DealsAcquired", "AcquireDeals")]
    assert log[2]["level"] == "temp"
    j.clear(rec, "Finish")
    assert j.current() is None and len(j.log()) == 4


def test_unreadable_journal_is_a_crit_error_and_is_kept(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "journal.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=r"journal .*journal.db cannot be read"):
        Journal(tmp_path)
    assert (meta / "journal.db").read_bytes().startswith(b"this is not sqlite")   # never replaced


def test_location_lock_excludes_another_process(tmp_path):
    lock = LocationLock(tmp_path / "loc")
    code = ("import sys; from appliance.worker.journal import LocationLock, JournalError\n"
            "try:\n LocationLock(sys.argv[1])\nexcept JournalError as e:\n print(e); sys.exit(3)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "loc")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.returncode == 3 and f"in use by worker process {os.getpid()}" in p.stdout
    lock.release()
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "loc")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.returncode == 0
    with pytest.raises(JournalError, match="cannot be used"):
        LocationLock("/proc/not-writable/loc")
