"""Processor pools are real: processes pinned to their cpuset with their envs and memory policy
(read back from /proc), limits reached and never exceeded, a dead process replaced and its task
failed as temp, and no processor outliving its worker."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from appliance.worker.config import ProcessorConfig
from appliance.worker.failure import Temp
from appliance.worker.processors import ProcessorPool, Processors
from appliance.worker.service import StageLimits

from . import procfns
from .conftest import ROOT, read_line


def _status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, e in intervals] + [(e, -1) for s, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_pool_processes_are_pinned_with_envs_and_memory_policy():
    cfg = ProcessorConfig("pc1", 0, cpuset=(1,), envs={"DAMOCLES_TEST_ENV": "pinned"}, numa_preferred=0, concurrent=2)
    pool = ProcessorPool(cfg)
    try:
        assert len(pool.pids) == 2
        for pid in pool.pids:
            assert _status(pid, "Cpus_allowed_list") == "1"
            if os.path.exists("/sys/devices/system/node/node0"):
                policies = {line.split()[1] for line in open(f"/proc/{pid}/numa_maps")}
                assert "prefer:0" in policies, policies
        pid, _, _ = pool.run(procfns.who)
        assert pid in pool.pids
        assert pool.run(procfns.env, "DAMOCLES_TEST_ENV") == "pinned"      # set before the first task
    finally:
        pool.close()


def test_limits_are_reached_and_never_exceeded():
    procs = Processors({"pc1": [ProcessorConfig("pc1", 0, concurrent=2)],
                        "c2": [ProcessorConfig("c2", 0, concurrent=1, locks=("gpu",)),
                               ProcessorConfig("c2", 1, concurrent=1, locks=("gpu",))]}, {"gpu": 1})
    limits = StageLimits({"pc1": 3}, {"c2": 0.3})
    results = {"pc1": [], "c2": []}

    def task(stage):
        results[stage].append(limits.run(stage, procs.run, stage, procfns.who, 0.3))
    try:
        threads = [threading.Thread(target=task, args=(s,)) for s in ["pc1"] * 6 + ["c2"] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        procs.close()
    pc1 = [(s, e) for _, s, e in results["pc1"]]
    assert _max_overlap(pc1) == 2                      # the pool's 2 processes, below the stage limit of 3
    c2 = sorted((s, e) for _, s, e in results["c2"])
    assert _max_overlap(c2) == 1                       # one gpu lock across both entries
    starts = [s for s, _ in c2]
    assert all(b - a >= 0.29 for a, b in zip(starts, starts[1:]))   # staggered 300ms apart


def test_stage_concurrency_limit_without_pool():
    limits = StageLimits({"tree_d": 2}, {})
    spans = []

    def task():
        spans.append(limits.run("tree_d", procfns.who, 0.2)[1:])
    threads = [threading.Thread(target=task) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _max_overlap(spans) == 2


def test_dead_processor_fails_its_task_as_temp_and_is_replaced(tmp_path):
    pool = ProcessorPool(ProcessorConfig("pc2", 0, concurrent=1))
    try:
        victim = pool.pids[0]
        out = {}
        started = tmp_path / "started"

        def run():
            try:
                pool.run(procfns.who_started, str(started), 30)
            except Temp as exc:
                out["err"] = str(exc)
        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 30
        while not started.exists():      # the task runs in the victim: kill it mid-task, not before
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        t.join(timeout=60)
        assert "died while running who_started" in out["err"]
        assert pool.pids != [victim] and len(pool.pids) == 1
        assert pool.run(procfns.who)[0] == pool.pids[0]
        with pytest.raises(Temp, match="task failed on purpose"):
            pool.run(procfns.fail)
    finally:
        pool.close()


def test_processors_die_with_their_worker():
    code = ("import sys, time\nfrom appliance.worker.config import ProcessorConfig\n"
            "from appliance.worker.processors import ProcessorPool\n"
            "pool = ProcessorPool(ProcessorConfig('pc1', 0, concurrent=2))\n"
            "print(' '.join(map(str, pool.pids)), flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    pids = [int(x) for x in read_line(p).split()]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{x}") for x in pids)
    p.kill()
    p.wait()
    deadline = time.monotonic() + 10
    while any(_alive(x) for x in pids) and time.monotonic() < deadline:
        time.sleep(0.1)   # the kernel delivers PDEATHSIG; bounded
    assert not any(_alive(x) for x in pids)


def _alive(pid):
    try:
        return _status(pid, "State")[0] not in "ZX"
    except (FileNotFoundError, TypeError):
        return False
