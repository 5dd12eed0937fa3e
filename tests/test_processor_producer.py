"""The producer side of external processors (issue 16 item 4): a default task timeout per stage,
malformed answers dumped and failed as temp, `stable_wait` as Damocles' producer uses it (the wait
for the ready line), and `cgroup.cpuset` through a cgroup v2 group or sched_setaffinity.
The processors are tests/fake_processor.py answering by echo: the protocol alone."""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.config import ConfigError
from appliance.config.processors import DEFAULT_TIMEOUTS, ProcessorConfig
from appliance.worker import answer_dump, cgroup
from appliance.worker.config import PROCESSOR_STAGES, NOT_RUN_PROCESSORS, parse_worker_config
from appliance.worker.external import ExternalProcessor
from appliance.worker.failure import Temp

from .conftest import ROOT

BASE = {"sector_manager": {"rpc_client": {"addr": "/ip4/127.0.0.1/tcp/1789"}}}
TASK = {"sector_id": 7, "anything": [1, 2, 3]}
FIRST_CPU = min(os.sched_getaffinity(0))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """ProcessorConfig factory for the fake c2 processor in FAKE_MODE `mode`."""
    monkeypatch.setenv("FAKE_MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("FAKE_SERVE", "echo")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(cgroup.ROOT_ENV, str(tmp_path / "no-cgroupfs"))

    def make(mode: str, **kw) -> ProcessorConfig:
        monkeypatch.setenv("FAKE_MODE", mode)
        kw.setdefault("stable_wait", 60.0)
        kw.setdefault("dump_dir", tmp_path / "dumps")
        return ProcessorConfig("c2", 0, bin=sys.executable, args=(str(ROOT / "tests" / "fake_processor.py"), "c2"), **kw)
    return make


def call_bounded(ext: ExternalProcessor, task=TASK, seconds: float = 90):
    """ext.call, failing the test (not hanging it) when no result or error comes in time."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(ext.call, task).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)     # a call still hanging is left behind, not waited for


def wait_running(ext: ExternalProcessor, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while ext.proc is None and time.monotonic() < deadline:
        time.sleep(0.05)        # the restart runs in the background; polled with a deadline
    assert ext.proc is not None, f"not restarted within {seconds}s: {ext.last_error}"


# ------------------------------------------------------------------------ timeouts

def test_every_processor_stage_has_a_default_timeout_and_zero_means_none():
    assert set(PROCESSOR_STAGES) - set(NOT_RUN_PROCESSORS) <= set(DEFAULT_TIMEOUTS)
    assert DEFAULT_TIMEOUTS["pc1"] >= 24 * 3600 and DEFAULT_TIMEOUTS["c2"] >= 3600     # the largest sector, a slow host
    cfg = parse_worker_config({**BASE, "processors": {"pc1": [{"bin": "p"}, {"bin": "p", "timeout": "0"},
                                                              {"bin": "p", "timeout": 0}, {"bin": "p", "timeout": "90s"}]}})
    default, zero_text, zero, set_ = cfg.processors["pc1"]
    assert default.timeout is None and default.task_timeout == DEFAULT_TIMEOUTS["pc1"]
    assert zero_text.task_timeout is None and zero.task_timeout is None     # explicitly none: waits forever
    assert set_.task_timeout == 90
    with pytest.raises(ConfigError, match=r"\[\[processors.pc1\]\]\[0\].timeout"):
        parse_worker_config({**BASE, "processors": {"pc1": [{"bin": "p", "timeout": "soon"}]}})


def test_the_default_timeout_fails_a_task_the_processor_never_answers(fake, monkeypatch):
    """Before: `timeout` defaulted to 0 and this call waited forever (the bounded call fails)."""
    monkeypatch.setitem(DEFAULT_TIMEOUTS, "c2", 2)       # the stage default, shortened for the test
    ext = ExternalProcessor(fake("hang"))                 # reads its first task, never answers
    try:
        first_pid = ext.proc.pid
        with pytest.raises(Temp) as err:
            call_bounded(ext)
        msg = str(err.value)
        assert "[[processors.c2]][0]" in msg and "c2 task 1" in msg and "timeout = 2s" in msg, msg
        assert "the stage's default" in msg and "restarted" in msg, msg
        wait_running(ext)
        out = call_bounded(ext)
        assert out["echo"] == TASK and out["pid"] != first_pid and ext.restarts == 1
    finally:
        ext.close()


# ---------------------------------------------------------------- malformed answers

def test_an_output_of_the_wrong_shape_is_dumped_and_fails_only_that_task(fake, tmp_path):
    ext = ExternalProcessor(fake("badoutput"))      # first answer: "output": "not an object"
    try:
        pid = ext.proc.pid
        with pytest.raises(Temp) as err:
            call_bounded(ext)
        msg = str(err.value)
        assert "[[processors.c2]][0]" in msg and "malformed answer to task 1" in msg, msg
        assert "output is a JSON str, a c2 output is a JSON object" in msg, msg
        [dump] = (tmp_path / "dumps").iterdir()
        assert f"dumped to {dump}" in msg and dump.name.startswith(f"ext-processor-err-resp-{pid}-")
        assert dump.read_text() == '{"id": 1, "err_msg": null, "output": "not an object"}\n'
        out = call_bounded(ext)                     # the same child goes on serving
        assert out == {"echo": TASK, "pid": pid} and ext.restarts == 0
    finally:
        ext.close()


@pytest.mark.parametrize("mode,line,reason", [("garbage", "this is not JSON\n", "not JSON"),
                                              ("wrongid", '{"id": 1001, "err_msg": null, "output": {}}\n',
                                               "id 1001 is not a task in flight")])
def test_a_line_that_is_no_answer_is_dumped_and_the_child_restarted(fake, tmp_path, mode, line, reason):
    ext = ExternalProcessor(fake(mode))
    try:
        pid = ext.proc.pid
        with pytest.raises(Temp) as err:
            call_bounded(ext)
        [dump] = (tmp_path / "dumps").iterdir()
        assert dump.read_text() == line
        assert reason in str(err.value) and f"dumped to {dump}" in str(err.value), err.value
        wait_running(ext)
        assert call_bounded(ext)["pid"] != pid and ext.restarts == 1
    finally:
        ext.close()


def test_dumps_are_bounded_and_the_operators_directory_wins(tmp_path, monkeypatch):
    paths = [answer_dump.dump_answer(42, f"line {i}\n", tmp_path / "d") for i in range(answer_dump.KEEP + 5)]
    kept = sorted((tmp_path / "d").iterdir())
    assert len(kept) == answer_dump.KEEP and set(kept) == set(paths[5:])       # the newest are kept
    (tmp_path / "d" / "operator-notes.txt").write_text("not ours")
    answer_dump.dump_answer(42, "again\n", tmp_path / "d")
    assert (tmp_path / "d" / "operator-notes.txt").exists()                    # only dumps are pruned
    monkeypatch.setenv("DUMP_ERR_RESP_42", str(tmp_path / "asked"))           # `worker enable-dump`
    path = answer_dump.dump_answer(42, "x\n", tmp_path / "d")
    assert path.parent == tmp_path / "asked"


# ---------------------------------------------------------------------- stable_wait

def test_stable_wait_is_the_wait_for_the_ready_line(fake, monkeypatch):
    monkeypatch.setenv("FAKE_READY_DELAY", "3")
    with pytest.raises(Temp, match=r"\[\[processors.c2\]\]\[0\].*printed no ready line within stable_wait = 1s"):
        ExternalProcessor(fake("none", stable_wait=1.0))
    ext = ExternalProcessor(fake("none", stable_wait=60.0))     # the same slow start, waited for
    try:
        assert call_bounded(ext)["echo"] == TASK
    finally:
        ext.close()


def test_a_wrong_ready_line_is_refused_naming_it(fake):
    with pytest.raises(Temp, match=r"printed 'c2 processor starting' as its first line; expected 'c2 processor ready'"):
        ExternalProcessor(fake("wrongready"))
    with pytest.raises(ConfigError, match=r"\[\[processors.c2\]\]\[0\].stable_wait"):
        parse_worker_config({**BASE, "processors": {"c2": [{"bin": "p", "stable_wait": "0s"}]}})


# --------------------------------------------------------------------------- cgroup

def test_without_a_delegated_cgroup_v2_the_child_is_pinned_by_affinity(fake, tmp_path):
    ext = ExternalProcessor(fake("none", cpuset=(FIRST_CPU,), cpuset_text=str(FIRST_CPU)))
    try:
        assert ext.placement.how == "sched_setaffinity"
        assert f"no cgroup v2 hierarchy at {tmp_path / 'no-cgroupfs'}" in ext.placement.note
        assert os.sched_getaffinity(ext.proc.pid) == {FIRST_CPU}
        row = ext.describe()
        assert row["pinning"] == "sched_setaffinity" and row["pinning_detail"].startswith(f"sched_setaffinity {FIRST_CPU} (")
        assert row["timeout"] == DEFAULT_TIMEOUTS["c2"] and row["entry"] == "[[processors.c2]][0]"
    finally:
        ext.close()


def fake_cgroupfs(root: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    """The top of a cgroup v2 hierarchy as the kernel shows it (only the files used here)."""
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("\n")
    return root


def test_with_a_delegated_cgroup_v2_the_child_runs_in_its_own_group(fake, tmp_path, monkeypatch):
    root = fake_cgroupfs(tmp_path / "cgroupfs")
    monkeypatch.setenv(cgroup.ROOT_ENV, str(root))
    ext = ExternalProcessor(fake("none", cpuset=(FIRST_CPU,), group_name="vc-test"))
    try:
        leaf = root / "vc-test" / f"sub-c2-{os.getpid()}-0"          # Damocles' name: <group>/sub-<stage>-<pid>-<index>
        assert ext.placement.how == "cgroup" and ext.placement.group == leaf
        assert (root / "cgroup.subtree_control").read_text() == "+cpuset"
        assert (root / "vc-test" / "cgroup.subtree_control").read_text() == "+cpuset"
        assert (leaf / "cpuset.cpus").read_text() == str(FIRST_CPU)
        assert (leaf / "cgroup.procs").read_text() == str(ext.proc.pid)    # joined before its program ran
        assert ext.describe()["pinning_detail"] == f"cgroup {leaf} (cpuset.cpus {FIRST_CPU})"
        assert call_bounded(ext)["echo"] == TASK
    finally:
        ext.close()


def test_a_cgroup_v2_without_the_cpuset_controller_falls_back(fake, tmp_path, monkeypatch):
    root = fake_cgroupfs(tmp_path / "cgroupfs", controllers="cpu io memory pids")
    monkeypatch.setenv(cgroup.ROOT_ENV, str(root))
    ext = ExternalProcessor(fake("none", cpuset=(FIRST_CPU,)))
    try:
        assert ext.placement.how == "sched_setaffinity" and "cpuset controller is not available" in ext.placement.note
        assert os.sched_getaffinity(ext.proc.pid) == {FIRST_CPU} and not (root / "vc-worker").exists()
    finally:
        ext.close()


def test_a_group_that_cannot_be_made_falls_back_naming_why(tmp_path, monkeypatch):
    root = fake_cgroupfs(tmp_path / "cgroupfs")
    (root / "vc-worker").write_text("a file where the group would go")
    monkeypatch.setenv(cgroup.ROOT_ENV, str(root))
    placed = cgroup.place("vc-worker", "pc1", 3, (FIRST_CPU,))
    assert placed.how == "sched_setaffinity" and "is not delegated to this user" in placed.note
    assert replace(placed, note="").text() == f"sched_setaffinity {FIRST_CPU}"


def test_worker_list_shows_how_each_processor_is_pinned(fake, tmp_path, monkeypatch, capsys):
    """`damocles worker list` prints the rows of VenusWorker.ProcessorList under the threads."""
    from appliance import cli
    from appliance.worker.processors import Processors
    monkeypatch.setenv(cgroup.ROOT_ENV, str(fake_cgroupfs(tmp_path / "cgroupfs")))
    procs = Processors({"c2": [fake("none", cpuset=(FIRST_CPU,))], "pc1": [ProcessorConfig("pc1", 0, cpuset=(FIRST_CPU,))]}, {})
    try:
        rows = procs.describe()
        answers = {"VenusWorker.WorkerList": [], "VenusWorker.ProcessorList": rows}

        class Client:       # the worker's RPC answers, as the CLI's client returns them
            def __init__(self, url, token):
                pass

            def call(self, method, *params):
                return answers[method]
        cli.build_parser()     # every command module loaded first: none may bind the fake client for later tests
        monkeypatch.setattr("appliance.rpc.client.RPCClient", Client)
        assert cli.main(["worker", "list", "-H", "127.0.0.1:1", "--token", "t"]) == 0
        out = capsys.readouterr().out
        leaf = tmp_path / "cgroupfs" / "vc-worker" / f"sub-c2-{os.getpid()}-0"
        ext = procs.externals["c2"][0]
        lines = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()[2:]}
        assert lines["[[processors.c2]][0]"].split() == ["external", "pid", str(ext.proc.pid), "cgroup", str(leaf),
                                                         "(cpuset.cpus", f"{FIRST_CPU})", "timeout", "12h"]
        pool_pid = procs.pools["pc1"][0].pids[0]
        assert lines["[[processors.pc1]][0]"].split() == ["builtin", "pid", str(pool_pid), "sched_setaffinity", str(FIRST_CPU)]
    finally:
        procs.close()
