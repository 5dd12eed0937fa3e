"""Waits in the worker that must end or must not spread: one stage's stagger never delays another
stage, and a processor process that dies before it is ready is started again a bounded number of
times, then the stage's error names it."""

import threading
import time

import pytest

from appliance.core.crash import ENV
from appliance.worker.config import ProcessorConfig
from appliance.worker.processors import START_ATTEMPTS, ProcessorPool, ProcessorStartError
from appliance.worker.service import StageLimits

pytestmark = pytest.mark.timeout(120)


def test_one_stages_stagger_does_not_delay_another_stage():
    limits = StageLimits({}, {"pc1": 3.0, "c2": 3.0})
    limits.run("pc1", lambda: None)                 # the next pc1 start must wait 3 s
    waiting = threading.Thread(target=limits.run, args=("pc1", lambda: None))
    waiting.start()
    deadline = time.monotonic() + 10
    while limits.snapshot()[0].get("pc1") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)       # until the second pc1 task is inside the limiter (bounded)
    t0 = time.monotonic()
    limits.run("c2", lambda: None)                  # c2's first start: nothing to wait for
    c2_delay = time.monotonic() - t0
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert c2_delay < 1.0, f"c2 waited {c2_delay:.2f}s behind pc1's stagger"


def test_a_stages_starts_stay_staggered():
    limits = StageLimits({}, {"pc1": 0.3})
    starts = []
    threads = [threading.Thread(target=limits.run, args=("pc1", lambda: starts.append(time.monotonic())))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    starts.sort()
    assert len(starts) == 4 and all(b - a >= 0.29 for a, b in zip(starts, starts[1:]))


def test_a_processor_dying_before_ready_is_retried_then_named(monkeypatch):
    monkeypatch.setenv(ENV, "processor.before_ready")     # every process of the pool dies before it is ready
    with pytest.raises(ProcessorStartError) as err:
        ProcessorPool(ProcessorConfig("pc1", 0, concurrent=1))
    msg = str(err.value)
    assert "stage pc1" in msg and f"{START_ATTEMPTS} attempts" in msg and "exited before it was ready (exit code 86)" in msg


def test_a_processor_that_cannot_prepare_says_why():
    with pytest.raises(ProcessorStartError, match=r"stage pc2 .*failed before it was ready: OSError"):
        ProcessorPool(ProcessorConfig("pc2", 0, cpuset=(100_000,), concurrent=1))


def test_a_worker_whose_processor_never_gets_ready_stops_naming_the_stage(tmp_path):
    from appliance.rpc.auth import issue_token, load_or_create_secret

    from .configs import worker_toml
    from .test_worker_e2e import MANAGER, start
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    try:
        url = manager.stdout.readline().split()[-1]
        secret = load_or_create_secret(home / "secret")
        cfg = tmp_path / "worker.toml"
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", [{"location": tmp_path / "t0"}]))
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")],
                       {ENV: "processor.before_ready"})
        assert worker.wait(timeout=120) == 2
        err = worker.stderr.read()
        assert "damocles: error: processor pc1-0 for stage pc1 did not start: 3 attempts failed" in err, err
        assert "Traceback" not in err and "EOFError" not in err
    finally:
        manager.terminate()
        manager.wait(timeout=30)
