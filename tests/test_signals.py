"""A role's main thread stops on SIGTERM even when the kernel hands the signal to another of its
threads (as it may for a signal sent to the process): the Python handler runs only when the main
thread runs again, so its wait must wake up by itself."""

import subprocess
import sys

_TERM_ON_ANOTHER_THREAD = """
import signal, threading, time
from appliance.core.signals import wait_for_stop_signal
def other():
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)    # delivered to this thread, not the main one
threading.Thread(target=other, daemon=True).start()
wait_for_stop_signal()
print("stopped")
"""


def test_a_sigterm_taken_by_another_thread_still_stops_the_main_thread():
    p = subprocess.run([sys.executable, "-c", _TERM_ON_ANOTHER_THREAD], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == "stopped", p.stderr
