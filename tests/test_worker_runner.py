"""The planner runner in process, against a scripted manager: terminal states left in a journal
finish their clean-up at start-up, the last clean-up honours the stop event, a step's outputs
reach the record only with its transition, a journal that cannot be written is a temp failure
that resumes without redoing the step, and a simulated crash at each clean-up point (and in the
task plans) resumes without repeating a completed step."""

import base64
import errno
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from appliance.core.proof_types import seal_proof
from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import commp_bytes
from appliance.rpc.client import TransportError
from appliance.worker import rebuild as rebuild_mod
from appliance.worker import thread as thread_mod
from appliance.worker import unseal as unseal_mod
from appliance.worker.config import AttachedStore, SealingConfig
from appliance.worker.failure import Wait
from appliance.worker.journal import Journal
from appliance.worker.rebuild import RebuildThread
from appliance.worker.steps import Paths
from appliance.worker.thread import SealingThread
from appliance.worker.unseal import UnsealThread

pytestmark = pytest.mark.timeout(120)
P2K = seal_proof("StackedDrg2KiBV1_1")
SECTOR = {"miner": 1000, "number": 1, "proof": P2K.id, "name": "s-t01000-1"}


class Manager:
    """A scripted manager: `answers[method]` is a value, an exception to raise, or a function of
    the params; every call is recorded."""

    def __init__(self, **answers):
        self.answers = {"Venus.AllocateSector": None, "Venus.ReportState": {}, **answers}
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def call(self, method, *params):
        with self._lock:
            self.calls.append((method, *params))
        answer = self.answers.get(method)
        if isinstance(answer, BaseException):
            raise answer
        return answer(*params) if callable(answer) else answer

    def called(self, method) -> list[tuple]:
        with self._lock:
            return [c[1:] for c in self.calls if c[0] == method]


def _ctx(tmp_path, rpc, run_stage=None, **sealing):
    cfg = replace(SealingConfig(), recover_interval=0.05, seal_interval=0.0, rpc_polling_interval=0.05, **sealing)
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return SimpleNamespace(rpc=rpc, sealing=cfg, location=tmp_path / "loc", attached=[AttachedStore("store", store)],
                           parent_cache=tmp_path / "parents", worker_name="w1", pc2_procs=1, local_pieces_dirs=[], unseal_output_dirs=[tmp_path / "out"],
                           external=lambda stage: False, run_stage=run_stage or (lambda stage, fn, *a: fn(*a)))


def _journal(ctx, record, prev="-", event="-"):
    j = Journal(ctx.location)
    j.transition(record, prev, event)
    j.close()


def _until(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)      # polling a live thread; bounded


class Running:
    """A thread's run() in the background; stopped and joined (bounded) on exit."""

    def __init__(self, thread):
        self.thread, self.stop = thread, threading.Event()
        self.runner = threading.Thread(target=thread.run, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.runner.start()
        return self.thread

    def __exit__(self, *exc):
        self.stop.set()
        self.runner.join(timeout=10)
        assert not self.runner.is_alive(), "the thread did not honour the stop event"
        if self.thread.journal is not None:
            self.thread.journal.close()


def _current(ctx):
    j = Journal(ctx.location)
    try:
        return j.current()
    finally:
        j.close()


# ---------------------------------------------------------------- terminal states

def test_a_journal_left_in_finished_finishes_its_cleanup_at_start(tmp_path):
    rpc = Manager()
    ctx = _ctx(tmp_path, rpc)
    _journal(ctx, {**SECTOR, "state": "Finished", "retry": 0}, "ProofSubmitted", "Finish")
    p = Paths(ctx.location, SECTOR["name"])
    p.make()
    p.sealed.write_bytes(b"sealed")
    with Running(SealingThread(0, ctx)) as t:
        _until(lambda: rpc.called("Venus.AllocateSector"), "the thread to take new work")
        assert t.last_error is None
    assert rpc.called("Venus.ReportFinalized") == [({"Miner": 1000, "Number": 1},)]
    assert not p.sealed.exists() and _current(ctx) is None


def test_a_journal_left_in_aborted_reports_and_clears_at_start(tmp_path):
    rpc = Manager()
    ctx = _ctx(tmp_path, rpc)
    _journal(ctx, {**SECTOR, "state": "Aborted", "retry": 0, "abort_reason": "PreCommit rejected: x"}, "PC2Done", "Abort")
    with Running(SealingThread(0, ctx)):
        _until(lambda: rpc.called("Venus.AllocateSector"), "the thread to take new work")
    assert rpc.called("Venus.ReportAborted") == [({"Miner": 1000, "Number": 1}, "PreCommit rejected: x")]
    assert _current(ctx) is None


def test_finishing_honours_the_stop_event_while_the_manager_is_down(tmp_path):
    rpc = Manager(**{"Venus.ReportFinalized": TransportError("connection refused")})
    ctx = _ctx(tmp_path, rpc, ignore_proof_check=True)
    ctx.sealing = replace(ctx.sealing, recover_interval=60.0)
    _journal(ctx, {**SECTOR, "state": "ProofSubmitted", "retry": 0})
    run = Running(SealingThread(0, ctx))
    with run:
        _until(lambda: rpc.called("Venus.ReportFinalized"), "ReportFinalized")
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5           # __exit__ joined it: stopped without waiting out 60 s
    assert _current(ctx)["state"] == "Finished"       # the next start finishes it


# ------------------------------------------------------------ outputs and the record

def test_a_resubmission_flag_is_kept_until_the_resubmission_is_accepted(tmp_path):
    answers = iter([TransportError("down"), TransportError("down"), {"Res": 1, "Desc": None}])

    def submit(*params):
        a = next(answers)
        if isinstance(a, BaseException):
            raise a
        return a
    rpc = Manager(**{"Venus.SubmitPreCommit": submit, "Venus.PollPreCommitState": {"State": 1, "Desc": "pending"}})
    ctx = _ctx(tmp_path, rpc)
    rec = {**SECTOR, "state": "PC2Done", "retry": 0, "resubmit_pc": True, "comm_r": "11" * 32, "comm_d": "22" * 32,
           "ticket": {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}}
    _journal(ctx, rec)
    with Running(SealingThread(0, ctx)):
        _until(lambda: len(rpc.called("Venus.SubmitPreCommit")) == 3, "three submissions")
        _until(lambda: rpc.called("Venus.PollPreCommitState"), "the poll after the accepted resubmission")
    assert [c[2] for c in rpc.called("Venus.SubmitPreCommit")] == [True, True, True]
    after = _current(ctx)
    assert after["state"] == "PCSubmitted" and "resubmit_pc" not in after


# --------------------------------------------------------------------- full disk

class _FullDisk:
    """The journal's connection, failing writes of the record with ENOSPC while `full`."""

    def __init__(self, db):
        self._db, self.full = db, True

    def execute(self, sql, *args):
        if self.full and sql.startswith("INSERT INTO sector"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_full_journal_is_a_temp_failure_reported_and_resumed_without_redoing_the_step(tmp_path):
    ticket = {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}

    def pc1(stage, fn, *args):
        raise Wait("the test stops at PC1", delay=0.05)
    rpc = Manager(**{"Venus.AssignTicket": ticket})
    ctx = _ctx(tmp_path, rpc, run_stage=pc1)
    _journal(ctx, {**SECTOR, "state": "TreeDBuilt", "retry": 0, "comm_d": "00" * 32})
    t = SealingThread(0, ctx)
    original = Journal.__init__

    def full_journal(self, location):
        original(self, location)
        if not hasattr(t, "disk"):          # the thread's own journal, not the test's readers
            self._db = t.disk = _FullDisk(self._db)
    Journal.__init__ = full_journal
    try:
        with Running(t):
            _until(lambda: t.status == "Waiting" and t.last_error, "the failure to show")
            assert "ENOSPC" in t.last_error and t.last_error.startswith("temp:"), t.last_error
            _until(lambda: any(c[1]["Failure"] for c in rpc.called("Venus.ReportState")), "the failure report")
            failure = next(c[1]["Failure"] for c in rpc.called("Venus.ReportState") if c[1]["Failure"])
            assert failure["Level"] == "temp" and "ENOSPC" in failure["Desc"]
            assert _current(ctx)["state"] == "TreeDBuilt"           # nothing half-written
            t.disk.full = False                                    # space returns
            _until(lambda: t.rec.state == "TicketAssigned", "the transition to be written")
    finally:
        Journal.__init__ = original
    assert len(rpc.called("Venus.AssignTicket")) == 1           # the step was not redone
    assert _current(ctx)["ticket"] == ticket


# --------------------------------------------------------- simulated crash points

class Crashed(BaseException):
    """Stands in for os._exit at a crash point: nothing after it runs."""


def _crash_at(monkeypatch, module, point):
    def crash_point(name):
        if name == point:
            raise Crashed(name)
    monkeypatch.setattr(module, "crash_point", crash_point)


def _crash_then_restart(monkeypatch, module, point, make_thread, done):
    _crash_at(monkeypatch, module, point)
    t = make_thread()
    with pytest.raises(Crashed):
        t.run(threading.Event())
    t.journal.close()
    monkeypatch.setattr(module, "crash_point", lambda name: None)
    with Running(make_thread()) as t:
        _until(lambda: done(t), f"the restart after a crash at {point} to finish")


@pytest.mark.parametrize("point", ["worker.finish.before_clear", "worker.abort.before_clear"])
def test_a_crash_in_the_sealers_cleanup_is_finished_at_restart(tmp_path, monkeypatch, point):
    finishing = point == "worker.finish.before_clear"
    rpc = Manager(**{"Venus.PollProofState": {"State": 3 if finishing else 7, "Desc": "landed" if finishing else "gone"}})
    ctx = _ctx(tmp_path, rpc)
    _journal(ctx, {**SECTOR, "state": "ProofSubmitted", "retry": 0})
    _crash_then_restart(monkeypatch, thread_mod, point, lambda: SealingThread(0, ctx),
                        lambda t: rpc.called("Venus.AllocateSector"))
    assert _current(ctx) is None
    assert len(rpc.called("Venus.PollProofState")) == 1              # the step before the crash is not redone
    method = "Venus.ReportFinalized" if finishing else "Venus.ReportAborted"
    assert len(rpc.called(method)) == 1 + (not finishing)             # an abort was reported before its crash point
    log = Journal(ctx.location).log()
    assert [r["next"] for r in log if r["next"]].count("Finished" if finishing else "Aborted") == 2 - 1


def _unseal_task(tmp_path):
    payload = bytes(range(256)) * 4
    cid = commd_to_cid(commp_bytes(payload).commitment)
    # Damocles' SectorUnsealInfo: Offset and Size in unpadded bytes; the destination comes from AcquireUnsealDest
    return payload, {"Sector": {"ID": {"Miner": 1000, "Number": 1}, "ProofType": P2K.id}, "PieceCid": {"/": cid},
                     "Offset": 0, "Size": len(payload), "PrivateInfo": {"AccessInstance": "store"},
                     "Ticket": {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}, "CommD": list(bytes(32)),
                     "Dest": ["ignored: the worker asks AcquireUnsealDest"], "State": "unsealing", "ErrorInfo": ""}


def _unseal_manager(tmp_path, task):
    handed = iter([task])
    return Manager(**{"Venus.AllocateUnsealSector": lambda spec: next(handed, None),
                      "Venus.AcquireUnsealDest": lambda sid, cid: [f"file://{tmp_path / 'out' / 'piece'}"]})


@pytest.mark.parametrize("point", ["worker.unseal.written", "worker.finish.before_clear"])
def test_an_unseal_task_is_journalled_and_resumed(tmp_path, monkeypatch, point):
    payload, task = _unseal_task(tmp_path)
    (tmp_path / "out").mkdir()
    rpc = _unseal_manager(tmp_path, task)
    unsealed = []

    def run_stage(stage, fn, *args):
        unsealed.append(stage)
        return payload + bytes(2032 - len(payload))
    ctx = _ctx(tmp_path, rpc, run_stage=run_stage)
    module = unseal_mod if point == "worker.unseal.written" else thread_mod
    _crash_then_restart(monkeypatch, module, point, lambda: UnsealThread(0, ctx),
                        lambda t: rpc.called("Venus.AchieveUnsealSector") and t.rec.state == "Empty")
    assert (tmp_path / "out" / "piece").read_bytes() == payload
    assert rpc.called("Venus.AchieveUnsealSector") == [({"Miner": 1000, "Number": 1}, task["PieceCid"], "")]
    assert len(rpc.called("Venus.AllocateUnsealSector")) >= 2 and unsealed.count("unseal") == (
        2 if point == "worker.unseal.written" else 1)     # redone only when the crash came before its transition
    assert _current(ctx) is None


def test_an_unseal_journalled_by_an_older_worker_resumes_with_its_padded_range(tmp_path):
    payload, task = _unseal_task(tmp_path)
    (tmp_path / "out").mkdir()
    older = {**task, "Offset": 0, "Size": 2048, "PayloadSize": len(payload)}      # padded, with the payload's length
    rpc = _unseal_manager(tmp_path, None)
    ranges = []

    def run_stage(stage, fn, *args):
        ranges.append(args[-4:-2])
        return payload + bytes(1143 - len(payload))
    ctx = _ctx(tmp_path, rpc, run_stage=run_stage)
    _journal(ctx, {**SECTOR, "state": "Unsealing", "retry": 0, "task": older})
    with Running(UnsealThread(0, ctx)) as t:
        _until(lambda: rpc.called("Venus.AchieveUnsealSector") and t.rec.state == "Empty", "the report")
    assert ranges == [(0, 1143)] and (tmp_path / "out" / "piece").read_bytes() == payload


def test_a_failed_unseal_is_reported_with_its_reason(tmp_path):
    payload, task = _unseal_task(tmp_path)
    (tmp_path / "out").mkdir()
    rpc = _unseal_manager(tmp_path, task)
    ctx = _ctx(tmp_path, rpc, run_stage=lambda stage, fn, *a: bytes(2032))      # the wrong bytes
    with Running(UnsealThread(0, ctx)) as t:
        _until(lambda: rpc.called("Venus.AchieveUnsealSector") and t.rec.state == "Empty", "the report")
        assert "piece CID" in t.last_error
    (sid, cid, error), = rpc.called("Venus.AchieveUnsealSector")
    assert "the unsealed bytes have piece CID" in error and not (tmp_path / "out" / "piece").exists()


def test_a_rebuild_resumes_after_its_persist_without_sealing_again(tmp_path, monkeypatch):
    # Damocles' SectorRebuildInfo of a CC sector
    task = {"Sector": {"ID": {"Miner": 1000, "Number": 1}, "ProofType": P2K.id},
            "Ticket": {"Ticket": base64.b64encode(bytes(32)).decode(), "Epoch": 1}, "Pieces": None, "PiecesV2": None,
            "IsSnapUp": False, "UpgradePublic": None}
    handed = iter([task])
    rpc = Manager(**{"Venus.AllocateRebuildSector": lambda spec: next(handed, None),
                     "Venus.StoreReserveSpace": {"Name": "store"}, "Venus.SubmitPersistedEx": True})
    stages = []

    def run_stage(stage, fn, *args):
        stages.append(stage)
        return fn(*args)
    ctx = _ctx(tmp_path, rpc, run_stage=run_stage)
    _crash_then_restart(monkeypatch, rebuild_mod, "worker.rebuild.persisted", lambda: RebuildThread(0, ctx),
                        lambda t: rpc.called("Venus.ReportFinalized") and t.rec.state == "Empty")
    assert stages.count("pc1") == 1 and stages.count("pc2") == 1          # sealed once; only persisting is redone
    assert len(rpc.called("Venus.StoreReserveSpace")) == 2
    assert rpc.called("Venus.ReportFinalized") == [({"Miner": 1000, "Number": 1},)]      # as Damocles' worker ends a rebuild
    assert (tmp_path / "store" / "sealed" / "s-t01000-1").stat().st_size == 2048


def test_a_sector_the_manager_aborted_while_waiting_for_its_seed_frees_the_thread(tmp_path):
    reason = "PreCommit expired at epoch 95"

    def report_state(sid, req):
        return {"Finalized": True, "AbortReason": reason} if req["Failure"] else {}
    rpc = Manager(**{"Venus.WaitSeed": {"ShouldWait": False, "Delay": 0, "Seed": None}, "Venus.ReportState": report_state})
    ctx = _ctx(tmp_path, rpc)
    _journal(ctx, {**SECTOR, "state": "PersistanceSubmitted", "retry": 0})
    with Running(SealingThread(0, ctx)):
        _until(lambda: rpc.called("Venus.AllocateSector"), "the thread to take new work")
    assert _current(ctx) is None and not rpc.called("Venus.ReportAborted")     # the manager aborted it itself
    aborted = [r for r in Journal(ctx.location).log() if r["next"] == "Aborted"]
    assert len(aborted) == 1 and aborted[0]["prev"] == "PersistanceSubmitted"


# ------------------------------------------------------------------- typed records

def test_the_record_is_typed_and_immutable_and_round_trips_through_json():
    from dataclasses import FrozenInstanceError

    from appliance.worker.record import RecordError, SectorRecord
    rec = SectorRecord.from_json({**SECTOR, "state": "PCSubmitted", "retry": 0, "resubmit_pc": True}, "j")
    with pytest.raises(FrozenInstanceError):
        rec.state = "PCLanded"
    assert rec.to_json() == {**SECTOR, "state": "PCSubmitted", "resubmit_pc": True}     # defaults left out
    cleared = rec.with_outputs({"resubmit_pc": None, "comm_r": "ab"}, state="PC2Done")
    assert (cleared.resubmit_pc, cleared.comm_r, cleared.state, rec.resubmit_pc) == (False, "ab", "PC2Done", True)
    with pytest.raises(RecordError, match=r"j: the sector record has fields this version does not know: \['bogus'\]"):
        SectorRecord.from_json({"state": "Empty", "bogus": 1}, "j")
    with pytest.raises(RecordError, match="does not have"):
        rec.with_outputs({"typo": 1})


def test_a_journal_record_this_version_cannot_read_is_crit_and_kept(tmp_path):
    rpc = Manager()
    ctx = _ctx(tmp_path, rpc)
    _journal(ctx, {**SECTOR, "state": "PC1Done", "retry": 0, "from_the_future": 1})
    with Running(SealingThread(0, ctx)) as t:
        _until(lambda: t.status == "Paused", "the thread to stop")
        assert t.last_error.startswith("crit: journal ") and "from_the_future" in t.last_error
    assert _current(ctx)["from_the_future"] == 1 and not rpc.calls


def test_a_rebuild_journalled_by_an_older_worker_keeps_its_commr_check():
    from appliance.worker.rebuild import _resealed_comm_r, _update_deals
    piece = {"/": "baga6ea4seaqa"}
    older = {"Sector": {}, "Ticket": {}, "Pieces": None, "IsSnapUp": True, "CommR": [6] * 32,
             "UpgradePublic": {"Pieces": [{"ID": 3, "PieceCID": piece, "PieceSize": 2048}], "CommR": [5] * 32}}
    assert _resealed_comm_r(older) == bytes([6] * 32)          # the sector key's, as the older task named it
    assert _update_deals(older) == [{"id": 3, "piece_cid": piece["/"], "piece_size": 2048}]
    damocles = {"Sector": {}, "Ticket": {}, "Pieces": None, "IsSnapUp": True,
                "PiecesV2": [{"Piece": {"Size": 2048, "PieceCID": piece}, "DealInfo": {"DealID": 3}}],
                "UpgradePublic": {"CommR": [6] * 32, "SealedCID": {"/": "bagboea4b5abc"}, "Activation": 1, "Expiration": 9}}
    assert _resealed_comm_r(damocles) == bytes([6] * 32) and _update_deals(damocles) == _update_deals(older)
    assert _resealed_comm_r({**damocles, "IsSnapUp": False, "UpgradePublic": None}) is None   # the manager checks it
