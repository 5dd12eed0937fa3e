"""Long-running roles stop on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading


def stop_on_signal() -> threading.Event:
    """An event SIGTERM or SIGINT sets."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_for_stop_signal(stop: threading.Event | None = None) -> None:
    """Block until SIGTERM or SIGINT arrives (or `stop`, from stop_on_signal, is set otherwise)."""
    stop = stop or stop_on_signal()
    # woken every second, not only by the signal: a SIGTERM the kernel delivers to another thread
    # runs its Python handler only when the main thread next runs bytecode, and a wait without a
    # timeout never returns to do so (a manager was seen ignoring its SIGTERM this way, under load)
    while not stop.wait(1.0):
        pass
