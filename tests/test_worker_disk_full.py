"""A full sealing location, for real: the location is a small tmpfs filled to the last byte, so
the journal's own write fails with the device full. The thread shows a temp failure naming
ENOSPC, tells the manager, keeps the journal as it was, and goes on once space is freed, without
redoing the step. Needs root and mount(2); skipped with the reason where either is missing. A
step failing with ENOSPC never uses up max_retries (in process, runs everywhere)."""

import base64
import errno
import shutil
import threading
import uuid

import pytest

from appliance.rpc.client import TransportError
from appliance.worker.failure import Wait
from appliance.worker.thread import SealingThread

from .smallfs import fill, mounted_tmpfs
from .test_worker_runner import SECTOR, Manager, Running, _ctx, _current, _journal, _until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_fs(tmp_path):
    with mounted_tmpfs(tmp_path / f"fs-{uuid.uuid4().hex[:8]}", "2m") as mnt:
        yield mnt


def test_a_full_sealing_location_fails_as_temp_and_resumes_when_space_returns(tmp_path, small_fs):
    ticket = {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}

    def pc1(stage, fn, *args):
        raise Wait("the test stops at PC1", delay=0.05)
    manager_up, answered = threading.Event(), []

    def assign_ticket(sid):
        if not manager_up.is_set():
            raise TransportError("connection refused")
        answered.append(sid)
        return ticket
    rpc = Manager(**{"Venus.AssignTicket": assign_ticket})
    ctx = _ctx(tmp_path, rpc, run_stage=pc1)
    ctx.location = small_fs / "loc"
    _journal(ctx, {**SECTOR, "state": "TreeDBuilt", "retry": 0, "comm_d": "00" * 32})
    t = SealingThread(0, ctx)
    with Running(t):
        _until(lambda: rpc.called("Venus.AssignTicket"), "the thread to run")       # its journal is open
        filler = fill(small_fs)                       # the disk fills while the thread runs
        manager_up.set()
        _until(lambda: t.last_error and "ENOSPC" in t.last_error, "the failure to show")
        assert t.status == "Waiting" and t.last_error.startswith("temp: journal "), t.last_error
        _until(lambda: any(c[1]["Failure"] for c in rpc.called("Venus.ReportState")), "the failure report")
        filler.unlink()                               # space returns
        _until(lambda: t.rec.state == "TicketAssigned", "the transition to be written")
        assert t.last_error is None or "ENOSPC" not in t.last_error
    assert len(answered) == 1                  # the step was not redone: its transition was kept and written
    assert _current(ctx)["state"] == "TicketAssigned"
    shutil.rmtree(ctx.location)


def test_a_journal_on_a_full_device_waits_to_open(tmp_path, small_fs):
    rpc = Manager()
    ctx = _ctx(tmp_path, rpc)
    ctx.location = small_fs / "loc"
    _journal(ctx, {**SECTOR, "state": "Aborted", "retry": 0, "abort_reason": "x"})    # a location used before
    filler = fill(small_fs)
    t = SealingThread(0, ctx)
    with Running(t):
        _until(lambda: t.last_error and "ENOSPC" in t.last_error, "the failure to show")
        assert t.status == "Waiting" and t.last_error.startswith("temp: journal ")
        filler.unlink()
        _until(lambda: rpc.called("Venus.AllocateSector"), "the thread to take work")
        assert t.last_error is None and rpc.called("Venus.ReportAborted")


def test_a_step_failing_with_enospc_never_uses_up_its_retries(tmp_path):
    def pc1(stage, fn, *args):
        raise OSError(errno.ENOSPC, "No space left on device", "sc-02-data-layer-1.dat")
    rpc = Manager()
    ctx = _ctx(tmp_path, rpc, run_stage=pc1, max_retries=2)
    _journal(ctx, {**SECTOR, "state": "TicketAssigned", "retry": 0, "comm_d": "00" * 32,
                   "ticket": {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}})
    t = SealingThread(0, ctx)
    with Running(t):
        _until(lambda: len([c for c in rpc.called("Venus.ReportState") if c[1]["Failure"]]) >= 5, "five failures")
        assert t.status != "Paused" and not t.rec.paused
        assert t.last_error.startswith("temp: ") and "ENOSPC" in t.last_error, t.last_error
    failures = [c[1]["Failure"] for c in rpc.called("Venus.ReportState") if c[1]["Failure"]]
    assert all(f["Level"] == "temp" for f in failures)
