"""The worker's own RPC, `VenusWorker.*`, on a real worker process: the six methods of Damocles'
worker (damocles-worker/src/rpc/worker/mod.rs at ipfs-force-community/damocles commit
4235a89557219de436bba441e727af3a42f903f0), each called as Damocles' CLIs call it, the answers
checked as serde deserializes them into `WorkerInfo` / `SealingThreadState` (the Rust
`damocles-worker worker list`, src/bin/damocles-worker/worker/mod.rs) and as Go decodes them into
core.WorkerThreadInfo (damocles-manager/core/worker.go). WorkerSetEnv / WorkerRemoveEnv are
checked for what they change here: the environment of the worker's processor processes from
their next task (runtime_env.py)."""

import os
import subprocess
import sys
import time

import pytest

from appliance import __version__
from appliance.config.processors import ProcessorConfig
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import INVALID_PARAMS, UNAUTHORIZED
from appliance.rpc.auth import issue_token
from appliance.worker import runtime_env
from appliance.worker.external import ExternalProcessor
from appliance.worker.failure import Temp
from appliance.worker.processors import ProcessorPool

from .. import procfns
from ..configs import NO_PROCESSORS, manager_toml, worker_toml
from ..conftest import ROOT, damocles_cmd, read_line
from .raw_http_rpc import is_u64, raw_call, result

pytestmark = pytest.mark.timeout(240)

THREAD_STATES = {"Idle", "Paused", "Running", "Waiting"}


def serde_worker_info(info) -> None:
    """What serde needs to deserialize one `WorkerInfo`: the required fields with their types,
    the Option fields null or missing, and the internally tagged `SealingThreadState`."""
    assert isinstance(info, dict), info
    for key, kind in (("location", str), ("plan", str), ("job_state", str)):
        assert isinstance(info.get(key), kind), (key, info)
    assert is_u64(info.get("index")), info                                 # usize
    for key in ("job_id", "job_stage", "last_error"):                      # Option<String>
        assert info.get(key) is None or isinstance(info[key], str), (key, info)
    ts = info.get("thread_state")
    assert isinstance(ts, dict) and ts.get("state") in THREAD_STATES, info
    if ts["state"] != "Idle":
        assert is_u64(ts.get("elapsed")), info                             # elapsed: u64, required
    if ts["state"] == "Running":
        assert ts.get("proc") is None or isinstance(ts["proc"], str), info


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worker-rpc")
    home = tmp / "manager"
    init_home(home, manager_toml(block_time="0s", miner={"PoSt": {"Enabled": False}}))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    url = f"http://{host}:{port}/rpc/v0"
    (tmp / "t0").mkdir()
    cfg = tmp / "worker.toml"
    cfg.write_text(worker_toml(url, issue_token(svc.secret, "write", "w1"), home / "persist-1", [{"location": tmp / "t0"}],
                               processors=NO_PROCESSORS, sealing={"allowed_miners": [9999]}))   # no sector: it waits
    proc = subprocess.Popen(damocles_cmd("worker", "run", "-c", str(cfg), "--parent-cache", str(tmp / "parents")), cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = read_line(proc)
        assert " RPC on " in line, line
        yield f"http://{line.split()[-1]}/rpc/v0", svc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        svc.stop()


def _thread0(url, token):
    [info] = result(url, "VenusWorker.WorkerList", [], token)
    serde_worker_info(info)
    return info


def _until(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.1)       # polling a live worker; bounded by the deadline


def test_worker_list_pause_resume_version_in_damocles_shapes(worker):
    url, svc = worker
    read, admin = issue_token(svc.secret, "read"), issue_token(svc.secret, "admin")
    info = _thread0(url, read)
    assert info["index"] == 0 and info["plan"] == "sealer" and info["location"].endswith("t0")
    assert info["job_state"] == "Empty" and info["job_id"] is None

    assert result(url, "VenusWorker.WorkerPause", [0], admin) is True           # bool
    paused = _until("thread 0 paused", lambda: (i := _thread0(url, read))["thread_state"]["state"] == "Paused" and i)
    assert set(paused["thread_state"]) == {"state", "elapsed"}
    later = _until("elapsed to count", lambda: (i := _thread0(url, read))["thread_state"]["elapsed"] >= 1 and i)
    assert later["thread_state"]["state"] == "Paused"            # the same stay, counted from when it began
    assert result(url, "VenusWorker.WorkerPause", [0], admin) is False          # already paused
    assert result(url, "VenusWorker.WorkerResume", [0, None], admin) is True     # set_to: Option<String>
    _until("thread 0 resumed", lambda: _thread0(url, read)["thread_state"]["state"] != "Paused")

    status, answer = raw_call(url, "VenusWorker.WorkerPause", [7], admin)
    assert answer["error"]["code"] == INVALID_PARAMS                             # like the Rust worker's "worker #7 not found"
    version = result(url, "VenusWorker.WorkerVersion", [], read)
    assert isinstance(version, str) and version == __version__


def test_set_and_remove_env_as_the_rust_cli_calls_them(worker, tmp_path):
    url, svc = worker
    admin, read = issue_token(svc.secret, "admin"), issue_token(svc.secret, "read")
    # `damocles-worker worker enable-dump --child_pid 4242 --dump_dir D` / `disable-dump`
    assert result(url, "VenusWorker.WorkerSetEnv", ["DUMP_ERR_RESP_4242", str(tmp_path)], admin) is None   # ()
    assert result(url, "VenusWorker.WorkerRemoveEnv", ["DUMP_ERR_RESP_4242"], admin) is None
    for method, params in (("VenusWorker.WorkerSetEnv", ["", "x"]), ("VenusWorker.WorkerSetEnv", ["A=B", "x"]),
                           ("VenusWorker.WorkerSetEnv", ["A", "x\u0000y"]), ("VenusWorker.WorkerRemoveEnv", ["A\u0000"])):
        status, answer = raw_call(url, method, params, admin)
        assert answer["error"]["code"] == INVALID_PARAMS and "invalid environment variable" in answer["error"]["message"], answer
    status, answer = raw_call(url, "VenusWorker.WorkerSetEnv", ["A", "x"], read)
    assert status == 403 and answer["error"]["code"] == UNAUTHORIZED               # an operator's action


def test_an_env_change_reaches_processor_processes_from_their_next_task():
    pool = ProcessorPool(ProcessorConfig("pc1", 0, concurrent=1, envs={"DAMOCLES_TEST_OWN": "config"}))
    try:
        assert pool.run(procfns.env, "DAMOCLES_TEST_SET") is None
        runtime_env.set_env("DAMOCLES_TEST_SET", "on")
        runtime_env.set_env("DAMOCLES_TEST_OWN", "operator")
        assert os.environ["DAMOCLES_TEST_SET"] == "on"                               # the worker itself, at once
        assert pool.run(procfns.env, "DAMOCLES_TEST_SET") == "on"                     # the pool's process, next task
        assert pool.run(procfns.env, "DAMOCLES_TEST_OWN") == "config"                 # the entry's own envs win
        runtime_env.remove_env("DAMOCLES_TEST_SET")
        assert pool.run(procfns.env, "DAMOCLES_TEST_SET") is None and "DAMOCLES_TEST_SET" not in os.environ
    finally:
        pool.close()
        runtime_env.remove_env("DAMOCLES_TEST_OWN")


# an external window_post processor that says it is ready, then answers every task with a malformed line
_BROKEN_PROCESSOR = ("import sys\nprint('window_post processor ready', flush=True)\n"
                     "for line in sys.stdin:\n    print('{not json', flush=True)\n")


def test_a_malformed_external_answer_is_dumped_where_the_operator_asked(tmp_path):
    ext = ExternalProcessor(ProcessorConfig("window_post", 0, bin=sys.executable, args=("-c", _BROKEN_PROCESSOR),
                                            auto_restart=False, timeout=30))
    try:
        pid = ext.proc.pid
        runtime_env.set_env(f"DUMP_ERR_RESP_{pid}", str(tmp_path / "dumps"))       # `worker enable-dump --child_pid`
        with pytest.raises(Temp, match="malformed"):
            ext.call({"task": "anything"})
    finally:
        runtime_env.remove_env(f"DUMP_ERR_RESP_{pid}")
        ext.close()
    [dump] = (tmp_path / "dumps").iterdir()
    assert dump.name.startswith(f"ext-processor-err-resp-{pid}-") and dump.name.endswith(".json")
    assert dump.read_text() == "{not json\n"
