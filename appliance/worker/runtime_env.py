"""Environment variables an operator sets or removes on a running worker (`VenusWorker.WorkerSetEnv`
/ `WorkerRemoveEnv`, as Damocles' worker has them). A change takes effect:

- in the worker process at once (os.environ): what the worker reads when it needs it, such as
  `DUMP_ERR_RESP_<pid>` (Damocles' `worker enable-dump`: a directory where a malformed answer of
  the external processor with that pid is written, see answer_dump), and every process the
  worker starts from then on (an external processor that restarts);
- in every builtin processor process before its next task, except a variable that the processor
  entry's own `envs` sets: the config wins, as a processor's `envs` win over what it inherits.

Changes are not kept: a restarted worker starts with its own environment again."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("damocles.worker.env")

_lock = threading.Lock()
_changes: dict[str, str | None] = {}     # name -> value, None: removed


class EnvError(ValueError):
    pass


def _check_name(name: str) -> None:
    if not name or "=" in name or "\0" in name:
        raise EnvError(f"name: {name!r} is not a valid environment variable name (empty, or holds '=' or NUL)")


def set_env(name: str, value: str) -> None:
    _check_name(name)
    if "\0" in value:
        raise EnvError(f"value: holds a NUL byte, which an environment variable cannot hold (variable {name})")
    with _lock:
        os.environ[name] = value
        _changes[name] = value
    log.info("environment: %s set by the operator", name)


def remove_env(name: str) -> None:
    _check_name(name)
    with _lock:
        os.environ.pop(name, None)
        _changes[name] = None
    log.info("environment: %s removed by the operator", name)


def changes() -> dict[str, str | None]:
    """Every change made so far (a builtin processor applies them all before each task)."""
    with _lock:
        return dict(_changes)


def apply(changed: dict[str, str | None], own: dict[str, str]) -> None:
    """In a processor process: the operator's changes, except the names its entry's `envs` set."""
    for name, value in changed.items():
        if name in own:
            continue
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
