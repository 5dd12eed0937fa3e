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
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout

from ..core.extproc import MalformedAnswer, own_command, parse_answer  # own_command: imported from here too
from ..core.units import format_duration
from .answer_dump import dump_answer
from . import cgroup
from .config import ProcessorConfig
from .failure import Temp
from .processors import spawner

log = logging.getLogger("damocles.worker.external")

class ExternalProcessor:
    def __init__(self, cfg: ProcessorConfig):
        self.cfg = cfg
        self.name = f"{cfg.stage}-{cfg.index}"
        self.command = [cfg.bin, *(cfg.args or [])] if cfg.bin else own_command(cfg.stage)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.concurrent or 64)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self.proc: subprocess.Popen | None = None
        self.placement = cgroup.Placement("none")
        self.restarts = 0
        self.last_error: str | None = None
        self._closed = False
        self._start_locked()

    @property
    def label(self) -> str:
        """The entry as an operator finds it in worker.toml."""
        return f"processor {self.cfg.where} ({self.command[0]})"

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

        def prepare() -> None:   # in the child, before exec: die with the worker, then pin
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
            cgroup.join(placement)
        try:
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                    bufsize=1, preexec_fn=prepare)
        except (OSError, subprocess.SubprocessError) as exc:
            raise Temp(f"{self.label}: cannot start {self.command[0]}: {exc}") from None
        ready = self._readline_within(proc, self.cfg.stable_wait)
        want = f"{self.cfg.stage} processor ready"
        if ready is None or ready.strip() != want:
            proc.kill()
            code = proc.wait()
            if ready is None:
                why = f"printed no ready line within stable_wait = {format_duration(self.cfg.stable_wait)}"
            elif ready == "":
                why = f"exited (code {code}) before its ready line"
            else:
                why = f"printed {ready.strip()[:100]!r} as its first line"
            cgroup.remove(placement)
            raise Temp(f"{self.label}: {why}; expected {want!r}")
        self.placement = cgroup.check(placement, proc.pid)
        with self._lock:
            if self._closed:           # closed while it started (a restart racing close): not kept
                proc.kill()
                proc.wait()
                return
            self.proc = proc
        threading.Thread(target=self._read, args=(proc,), name=f"ext-{self.name}", daemon=True).start()

    @staticmethod
    def _readline_within(proc, seconds: float) -> str | None:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
        t.start()
        t.join(seconds)
        return out[0] if out else None

    def _read(self, proc) -> None:
        for line in proc.stdout:
            try:
                rid, err, output = parse_answer(self.cfg.stage, line, self._pending)
            except MalformedAnswer as exc:
                path = dump_answer(proc.pid, line, self.cfg.dump_dir)
                where = f"dumped to {path}" if path else "could not be dumped (see the log)"
                log.error("%s (pid %d) printed a malformed answer: %s; %s", self.label, proc.pid, exc, where)
                if exc.rid is not None:
                    self._fail_one(exc.rid, f"{self.label}: malformed answer to task {exc.rid}: {exc}; {where}")
                    continue
                self._fail_all(proc, f"printed a malformed line ({exc}; {where})")
                return
            fut = self._pending.pop(rid, None)
            if fut is None:
                continue
            if err is not None:
                fut.set_exception(Temp(f"processor {self.name}: {err}"))
            else:
                fut.set_result(output)
        self._fail_all(proc, f"exited with code {proc.wait()}")

    def _fail_one(self, rid: int, why: str) -> None:
        fut = self._pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(Temp(why))

    def _fail_all(self, proc, why: str) -> None:
        with self._lock:
            if proc is not self.proc:
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            pending, self._pending = self._pending, {}
            self.proc = None
            self.last_error = why
        log.warning("%s (pid %d) %s; %d task(s) in flight fail", self.label, proc.pid, why, len(pending))
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(Temp(f"{self.label} {why}"))
        if self.cfg.auto_restart and not self._closed:
            self.restarts += 1
            threading.Thread(target=self._restart, daemon=True).start()

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
            with self._lock:
                proc = self.proc
                if proc is None:
                    raise Temp(f"{self.label} is not running ({self.last_error or 'starting'})")
                rid = next(self._ids)
                fut: Future = Future()
                self._pending[rid] = fut
                try:
                    proc.stdin.write(json.dumps({"id": rid, "task": task}) + "\n")
                    proc.stdin.flush()
                except OSError as exc:
                    self._pending.pop(rid, None)
                    raise Temp(f"{self.label}: cannot send the task: {exc}") from None
            limit = self.cfg.task_timeout
            try:
                return fut.result(timeout=limit)
            except FutureTimeout:
                default = " (the stage's default; `timeout = 0` for none)" if self.cfg.timeout is None else ""
                why = f"did not answer {self.cfg.stage} task {rid} within timeout = {format_duration(limit)}{default}"
                self._fail_all(proc, why)
                raise Temp(f"{self.label} {why}; the child was killed and is restarted") from None

    def describe(self) -> dict:
        """What `damocles worker list` shows of this entry."""
        proc = self.proc
        return {"entry": self.cfg.where, "stage": self.cfg.stage, "kind": "external", "command": self.command[0],
                "pid": proc.pid if proc else None, "running": proc is not None, "restarts": self.restarts,
                "in_flight": len(self._pending), "timeout": self.cfg.task_timeout, "stable_wait": self.cfg.stable_wait,
                "pinning": self.placement.how, "pinning_detail": self.placement.text(), "last_error": self.last_error}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc, self.proc = self.proc, None
        if proc and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
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
