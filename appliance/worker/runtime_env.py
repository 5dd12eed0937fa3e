"""Environment variables an operator sets or removes on a running worker (`VenusWorker.WorkerSetEnv`
/ `WorkerRemoveEnv`, as Damocles' worker has them). A change takes effect:

- in the worker process at once (os.environ): what the worker reads when it needs it, such as
  `DUMP_ERR_RESP_<pid>` (Damocles' `worker enable-dump`: a directory where a malformed answer of
  the external processor with that pid is written, see dump_malformed), and every process the
  worker starts from then on (an external processor that restarts);
- in every builtin processor process before its next task, except a variable that the processor
  entry's own `envs` sets: the config wins, as a processor's `envs` win over what it inherits.

Changes are not kept: a restarted worker starts with its own environment again."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path

log = logging.getLogger("damocles.worker.env")
DUMP_ENV_PREFIX = "DUMP_ERR_RESP_"

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


def dump_malformed(pid: int, line: str) -> Path | None:
    """A malformed answer of external processor `pid`, written to the directory that
    `DUMP_ERR_RESP_<pid>` names (the file `ext-processor-err-resp-<pid>-<uuid>.json`, as
    Damocles' vc-processors writes it); None when the variable is not set or the file cannot be
    written (then the log says why)."""
    where = os.environ.get(f"{DUMP_ENV_PREFIX}{pid}")
    if not where:
        return None
    try:
        folder = Path(where)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ext-processor-err-resp-{pid}-{uuid.uuid4().hex}.json"
        path.write_text(line)
    except OSError as exc:
        log.error("processor pid %d: the malformed answer could not be dumped to %s: %s", pid, where, exc)
        return None
    log.error("processor pid %d printed a malformed answer; dumped to %s", pid, path)
    return path
