import os
import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The executable under test: the frozen one when DAMOCLES_BIN names it (CI sets it to the built
# dist/damocles), otherwise this source tree run as `python -m appliance`.
DAMOCLES_BIN = os.environ.get("DAMOCLES_BIN") or None


def damocles_cmd(*args: str) -> list[str]:
    """The command line that runs `damocles ARGS` as a real process."""
    return [DAMOCLES_BIN, *args] if DAMOCLES_BIN else [sys.executable, "-m", "appliance", *args]


def signal_all(proc, sig) -> None:
    """Send `sig` to a process started with `damocles_cmd` and to all its descendants. The frozen
    executable runs the program in a child of its bootloader, which passes on SIGTERM and SIGINT
    but cannot pass on SIGSTOP or SIGKILL: a test that freezes or kills "the prover" means both."""
    import psutil
    try:
        top = psutil.Process(proc.pid)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def read_line(proc, timeout: float = 60, what: str = "its first line") -> str:
    """The next line of a child's stdout, waited for at most `timeout` seconds. A child that says
    nothing in time is killed and the test fails with its stderr, instead of blocking on
    `readline()` forever."""
    import threading
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        signal_all(proc, 9)
        proc.wait(timeout=30)
        reader.join(10)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"{' '.join(map(str, proc.args))}: no {what} within {timeout:g} s\n{err}")
    return got[0]


def pytest_configure(config):
    if not DAMOCLES_BIN:
        return
    import json
    try:
        out = subprocess.run([DAMOCLES_BIN, "--version", "--json"], capture_output=True, text=True, timeout=60)
        frozen = json.loads(out.stdout).get("frozen")
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise pytest.UsageError(f"DAMOCLES_BIN={DAMOCLES_BIN} does not run: {exc}") from None
    if frozen is not True:
        raise pytest.UsageError(f"DAMOCLES_BIN={DAMOCLES_BIN} is not the frozen executable (--version --json: {out.stdout!r})")


@pytest.fixture(autouse=True, scope="session")
def _isolated_parent_cache(tmp_path_factory):
    """Tests never write to the host's /var/tmp/filecoin-parents."""
    d = tmp_path_factory.mktemp("parents")
    old = os.environ.get("FIL_PROOFS_PARENT_CACHE")
    os.environ["FIL_PROOFS_PARENT_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("FIL_PROOFS_PARENT_CACHE", None)
    else:
        os.environ["FIL_PROOFS_PARENT_CACHE"] = old


@pytest.fixture(autouse=True)
def _manager_test_db():
    """DAMOCLES_TEST_DB=postgres: each test's managers keep their state in a fresh PostgreSQL
    database (tests/pg_cluster.py); nothing otherwise."""
    from .pg_cluster import manager_test_database
    with manager_test_database():
        yield


def run_cli(*args: str, check: bool = False, cwd=None) -> subprocess.CompletedProcess:
    """Run `damocles` as a real process (python -m appliance, or $DAMOCLES_BIN)."""
    p = subprocess.run(damocles_cmd(*args), capture_output=True, text=True, cwd=cwd or ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check and p.returncode != 0:
        raise AssertionError(f"damocles {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _own_handlers(root: logging.Logger) -> list[logging.Handler]:
    """The root logger's handlers but pytest's own (its log capture adds and removes them per phase)."""
    return [h for h in root.handlers if type(h).__module__ != "_pytest.logging"]


@pytest.fixture(autouse=True)
def _root_logging_as_it_was():
    """A test that sets a role's logging up (`manager run` in process, core.logs.setup) leaves the
    root logger as it found it: otherwise a later test's captured stderr gets that role's records
    (the terminate CLI test, which checks its stderr is empty, saw a manager's INFO line)."""
    root = logging.getLogger()
    handlers, level = _own_handlers(root), root.level
    yield
    for h in _own_handlers(root):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
