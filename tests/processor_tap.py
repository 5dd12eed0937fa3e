"""`damocles processor <stage>` behind a tap: starts the real processor as its child, relays the
protocol both ways unchanged and appends every line to $TAP_LOG_DIR/<stage>.log ("> " a request,
"< " an answer), so that a test sees the tasks a worker sent and what came back."""

import ctypes
import os
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.conftest import damocles_cmd  # noqa: E402

stage = sys.argv[1]
log_lock = threading.Lock()
log = open(os.path.join(os.environ["TAP_LOG_DIR"], f"{stage}.log"), "a", buffering=1)


def record(prefix: str, line: str) -> None:
    with log_lock:
        log.write(prefix + line if line.endswith("\n") else prefix + line + "\n")


def die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


child = subprocess.Popen(damocles_cmd("processor", stage), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         bufsize=1, preexec_fn=die_with_parent)


def relay_answers() -> None:
    for line in child.stdout:
        if not line.endswith("processor ready\n"):
            record("< ", line)
        sys.stdout.write(line)
        sys.stdout.flush()


out = threading.Thread(target=relay_answers)
out.start()
for line in sys.stdin:
    record("> ", line)
    child.stdin.write(line)
    child.stdin.flush()
child.stdin.close()
out.join()
sys.exit(child.wait())
