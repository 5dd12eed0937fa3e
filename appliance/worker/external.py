"""External processors, speaking Damocles' vc-processors protocol: the child prints
`<stage> processor ready` within `stable_wait` (Damocles' producer waits that long for the
line, then gives up), then reads one JSON request a line (`{"id": N, "task": {...}}`) and
answers one JSON line each (`{"id": N, "err_msg": null, "output": ...}`), possibly out of order.

What Damocles' producer leaves hanging fails here as a temp error naming the entry:
- a task not answered within the entry's `timeout` (default per stage, DEFAULT_TIMEOUTS): the
  child is killed and restarted, as a child that lost one task cannot be trusted with the others;
- an answer whose `output` is not what the stage returns (or has neither output nor err_msg):
  that task fails, the line is dumped (answer_dump);
- a line that is not an answer at all (not JSON, no id, an id not in flight): the line is dumped
  and every task in flight fails (whose answer it was cannot be known), the child is restarted;
- a child that exits: every task in flight fails, the child is restarted (`auto_restart`).
A child that could not be restarted is started again by the next task."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading

from ..core.extproc import ChildClient, not_ready, own_command  # own_command: imported from here too
from ..core.units import format_duration
from .answer_dump import dump_answer
from . import cgroup
from .config import ProcessorConfig
from .failure import Temp
from .processors import spawner

_PRCTL = ctypes.CDLL(None).prctl      # looked up here: a dlopen in the forked child can deadlock
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("damocles.worker.external")


class ExternalProcessor(ChildClient):
    """A `[[processors.<stage>]]` entry with `bin` (or our own `damocles processor <stage>`):
    started by the worker's spawner thread (so PR_SET_PDEATHSIG ties it to the worker), placed in
    its cgroup or pinned, restarted after a loss (`auto_restart`); failed tasks are temp errors and
    malformed answers are dumped for diagnosis."""

    after_kill = "the child was killed and is restarted"

    def __init__(self, cfg: ProcessorConfig):
        self.cfg = cfg
        self.name = f"{cfg.stage}-{cfg.index}"
        self.command = [cfg.bin, *(cfg.args or [])] if cfg.bin else own_command(cfg.stage)
        self._init_client(cfg.stage, f"ext-{self.name}")
        self._start_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.concurrent or 64)
        self.placement = cgroup.Placement("none")
        self.restarts = 0
        self._start_locked()

    @property
    def label(self) -> str:
        """The entry as an operator finds it in worker.toml."""
        return f"processor {self.cfg.where} ({self.command[0]})"

    # --------------------------------------------------------------------------- hooks

    def error(self, message: str) -> Exception:
        return Temp(message)

    def on_malformed(self, proc, line: str, exc) -> str:
        path = dump_answer(proc.pid, line, self.cfg.dump_dir)
        where = f"dumped to {path}" if path else "could not be dumped (see the log)"
        log.error("%s (pid %d) printed a malformed answer: %s; %s", self.label, proc.pid, exc, where)
        return f"; {where}"

    def on_lost(self, why: str) -> None:
        if self.cfg.auto_restart:
            self.restarts += 1
            threading.Thread(target=self._restart, daemon=True).start()

    # ---------------------------------------------------------------------- process

    def _start_locked(self) -> None:
        with self._start_lock:
            if self.proc is None and not self._closed:
                spawner().call(self._start)

    def _start(self) -> None:
        env = dict(os.environ) if self.cfg.inherit_envs else {}
        env.update(self.cfg.envs)
        if self.cfg.numa_preferred is not None:
            env["VENUS_WORKER_NUMA_PREFERRED"] = str(self.cfg.numa_preferred)
        placement = cgroup.place(self.cfg.group_name, self.cfg.stage, self.cfg.index, self.cfg.cpuset)
        join = cgroup.joiner(placement)

        def prepare() -> None:
            """In the child, before exec: die with the worker, then pin. It runs between fork and
            exec in a threaded process, so it only makes system calls prepared in the parent
            (no dlopen, no Python file objects, nothing that takes a lock another thread held)."""
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
            join()
        try:
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                    bufsize=1, preexec_fn=prepare)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Temp(f"{self.label}: cannot start {self.command[0]}: {exc}") from None
        why = not_ready(proc, self.cfg.stage, self.cfg.stable_wait, f"stable_wait = {format_duration(self.cfg.stable_wait)}")
        if why:
            cgroup.remove(placement)
            raise Temp(f"{self.label}: {why}")
        self.placement = cgroup.check(placement, proc.pid)
        self._adopt(proc)

    def _restart(self) -> None:
        try:
            self._start_locked()
        except Temp as exc:
            self.last_error = str(exc)
            log.warning("%s; it is started again by the next task", exc)

    # ------------------------------------------------------------------------- calls

    def call(self, task: dict):
        with self._slots:
            if self.proc is None and self.cfg.auto_restart and not self._start_lock.locked():
                self._start_locked()          # a restart that failed before: try again now
            proc, rid, fut = self._send(task)
            limit = self.cfg.task_timeout
            default = " (the stage's default; `timeout = 0` for none)" if self.cfg.timeout is None else ""
            return self._answer(proc, rid, fut, limit, f"timeout = {format_duration(limit)}{default}")

    def describe(self) -> dict:
        """What `damocles worker list` shows of this entry."""
        proc = self.proc
        return {"entry": self.cfg.where, "stage": self.cfg.stage, "kind": "external", "command": self.command[0],
                "pid": proc.pid if proc else None, "running": proc is not None, "restarts": self.restarts,
                "in_flight": len(self._pending), "timeout": self.cfg.task_timeout, "stable_wait": self.cfg.stable_wait,
                "pinning": self.placement.how, "pinning_detail": self.placement.text(), "last_error": self.last_error}

    def close(self) -> None:
        self._stop()
        cgroup.remove(self.placement)


def serve(stage: str) -> int:
    """`damocles processor <stage>`: the protocol around the builtin engine. Logs go to stderr;
    stdout carries only protocol lines."""
    from .tasks import SUPPORTED, TaskError, run_task
    if stage not in SUPPORTED:
        print(f"damocles processor: no builtin processor for stage {stage!r} (supported: {', '.join(SUPPORTED)})",
              file=sys.stderr)
        return 2
    out_lock = threading.Lock()

    def answer(rid, output=None, err=None) -> None:
        with out_lock:
            sys.stdout.write(json.dumps({"id": rid, "err_msg": err, "output": output}) + "\n")
            sys.stdout.flush()

    def handle(rid, task) -> None:
        try:
            answer(rid, run_task(stage, task))
        except (TaskError, ValueError, OSError) as exc:
            answer(rid, err=f"{type(exc).__name__}: {exc}")
        except Exception as exc:   # the protocol must answer every id
            answer(rid, err=f"internal error: {type(exc).__name__}: {exc}")

    print(f"{stage} processor ready", flush=True)
    workers = []
    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid, task = req["id"], req["task"]
        except (ValueError, KeyError, TypeError):
            print(f"damocles processor {stage}: ignoring a malformed request line: {line[:100]!r}", file=sys.stderr)
            continue
        t = threading.Thread(target=handle, args=(rid, task), daemon=True)
        t.start()
        workers.append(t)
    for t in workers:   # stdin closed: answer what is in flight, then exit
        t.join()
    return 0
