"""Long-running roles stop on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading


def wait_for_stop_signal() -> None:
    """Block until SIGTERM or SIGINT arrives."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # woken every second, not only by the signal: a SIGTERM the kernel delivers to another thread
    # runs its Python handler only when the main thread next runs bytecode, and a wait without a
    # timeout never returns to do so (a manager was seen ignoring its SIGTERM this way, under load)
    while not stop.wait(1.0):
        pass
