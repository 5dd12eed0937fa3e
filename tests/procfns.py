"""Functions processor pools run in tests (importable by spawned processes)."""

import os
import time


def who(delay: float = 0.0):
    start = time.time()
    if delay:
        time.sleep(delay)
    return os.getpid(), start, time.time()


def who_started(flag: str, delay: float):
    """`who` that first creates the file `flag`, so a test knows the task is running."""
    open(flag, "w").close()
    return who(delay)


def fail():
    raise ValueError("task failed on purpose")


def env(name: str):
    return os.environ.get(name)
