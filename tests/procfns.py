"""Functions processor pools run in tests (importable by spawned processes)."""

import os
import time


def who(delay: float = 0.0):
    start = time.time()
    if delay:
        time.sleep(delay)
    return os.getpid(), start, time.time()


def fail():
    raise ValueError("task failed on purpose")


def env(name: str):
    return os.environ.get(name)
