"""External processors, speaking Damocles' vc-processors protocol: the child prints
`<stage> processor ready`, then reads one JSON request a line (`{"id": N, "task": {...}}`) and
answers one JSON line each (`{"id": N, "err_msg": null, "output": {...}}`), possibly out of
order. A child that exits, hangs past `timeout`, or prints a line that is not a valid answer
fails the tasks in flight as temp errors and is restarted (`auto_restart`)."""

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

from .config import ProcessorConfig
from .failure import Temp
from . import runtime_env
from .processors import spawner

log = logging.getLogger("damocles.worker.external")


def own_command(stage: str) -> list[str]:
    """This executable as a processor: the frozen binary, or this Python running the package."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "processor", stage]
    return [sys.executable, "-m", "appliance", "processor", stage]


class ExternalProcessor:
    def __init__(self, cfg: ProcessorConfig):
        self.cfg = cfg
        self.name = f"{cfg.stage}-{cfg.index}"
        self.command = [cfg.bin, *(cfg.args or [])] if cfg.bin else own_command(cfg.stage)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(cfg.concurrent or 64)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        spawner().call(self._start)

    # ---------------------------------------------------------------------- process

    def _start(self) -> None:
        env = dict(os.environ) if self.cfg.inherit_envs else {}
        env.update(self.cfg.envs)
        cpuset, numa = self.cfg.cpuset, self.cfg.numa_preferred
        if numa is not None:
            env["VENUS_WORKER_NUMA_PREFERRED"] = str(numa)

        def prepare() -> None:   # in the child, before exec: pin, and die with the worker
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)
            if cpuset:
                os.sched_setaffinity(0, cpuset)
        try:
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                    bufsize=1, preexec_fn=prepare)
        except OSError as exc:
            raise Temp(f"processor {self.name}: cannot start {self.command[0]}: {exc}") from None
        ready = self._readline_within(proc, self.cfg.stable_wait)
        want = f"{self.cfg.stage} processor ready"
        if ready is None or ready.strip() != want:
            proc.kill()
            proc.wait()
            raise Temp(f"processor {self.name}: expected {want!r} within {self.cfg.stable_wait:g}s, got {ready!r}")
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
                answer = json.loads(line)
                rid = answer["id"]
                if not isinstance(answer, dict) or not isinstance(rid, int) or rid not in self._pending:
                    raise ValueError("unknown id")
            except (ValueError, KeyError, TypeError):
                log.warning("processor %s printed a malformed line: %.100r", self.name, line)
                runtime_env.dump_malformed(proc.pid, line)        # when the operator asked (DUMP_ERR_RESP_<pid>)
                self._fail_all(proc, f"printed a malformed line: {line[:100]!r}")
                return
            fut = self._pending.pop(rid)
            if answer.get("err_msg"):
                fut.set_exception(Temp(f"processor {self.name}: {answer['err_msg']}"))
            else:
                fut.set_result(answer.get("output"))
        self._fail_all(proc, f"exited with code {proc.wait()}")

    def _fail_all(self, proc, why: str) -> None:
        with self._lock:
            if proc is not self.proc:
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            pending, self._pending = self._pending, {}
            self.proc = None
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(Temp(f"processor {self.name} {why}"))
        if self.cfg.auto_restart:
            self.restarts += 1
            threading.Thread(target=self._restart, daemon=True).start()

    def _restart(self) -> None:
        try:
            spawner().call(self._start)
        except Temp as exc:
            log.warning("%s", exc)

    # ------------------------------------------------------------------------- calls

    def call(self, task: dict):
        with self._slots:
            with self._lock:
                proc = self.proc
                if proc is None:
                    raise Temp(f"processor {self.name} is not running (restarting)")
                rid = next(self._ids)
                fut: Future = Future()
                self._pending[rid] = fut
                try:
                    proc.stdin.write(json.dumps({"id": rid, "task": task}) + "\n")
                    proc.stdin.flush()
                except OSError as exc:
                    self._pending.pop(rid, None)
                    raise Temp(f"processor {self.name}: cannot send the task: {exc}") from None
            try:
                return fut.result(timeout=self.cfg.timeout or None)
            except FutureTimeout:
                self._fail_all(proc, f"did not answer within {self.cfg.timeout:g}s")
                raise Temp(f"processor {self.name} did not answer within {self.cfg.timeout:g}s") from None

    def close(self) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
            self.cfg = self.cfg
        if proc and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
