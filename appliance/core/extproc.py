"""The vc-processors protocol as both roles speak it (the worker's processors, the manager's
ext-prover): a child prints `<stage> processor ready`, then reads one JSON request a line
(`{"id": N, "task": {...}}`) and answers one JSON line each (`{"id": N, "err_msg": null,
"output": ...}`), possibly out of order. This module holds what is not particular to either role:
answer parsing, this executable's own command, and a plain child client (`ProtocolChild`)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout

from .proof_types import api_post_name

log = logging.getLogger("damocles.extproc")

# what each stage's output is in Damocles' vc-processors (builtin/tasks.rs, `type Output`)
OUTPUT_TYPES = {"add_pieces": list, "tree_d": bool, "pc1": dict, "pc2": dict, "c2": dict, "snap_encode": dict,
                "snap_prove": list, "transfer": bool, "unseal": int, "window_post": dict, "winning_post": dict,
                "synth_proof": bool}
_JSON_NAMES = {dict: "object", list: "array", bool: "boolean", int: "number"}


class MalformedAnswer(ValueError):
    def __init__(self, reason: str, rid: int | None = None):
        super().__init__(reason)
        self.rid = rid


class ProcessorError(RuntimeError):
    """A task the child did not complete: not started, no answer, an err_msg, a malformed answer."""


def own_command(stage: str) -> list[str]:
    """This executable as a processor: the frozen binary, or this Python running the package."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "processor", stage]
    return [sys.executable, "-m", "appliance", "processor", stage]


def parse_answer(stage: str, line: str, pending) -> tuple[int, str | None, object]:
    """(id, err_msg, output) of an answer line; MalformedAnswer with the reason (and the id when
    the line names one in flight) otherwise."""
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise MalformedAnswer(f"not JSON ({exc})") from None
    if not isinstance(answer, dict):
        raise MalformedAnswer(f"a JSON {type(answer).__name__}, not an object {{id, err_msg, output}}")
    rid = answer.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int):
        raise MalformedAnswer(f"id {rid!r} is not a request id")
    if rid not in pending:
        raise MalformedAnswer(f"id {rid} is not a task in flight")
    err = answer.get("err_msg")
    if err is not None:
        if not isinstance(err, str):
            raise MalformedAnswer(f"err_msg {err!r} is not a string or null", rid)
        return rid, err, None
    output = answer.get("output")
    if output is None:
        raise MalformedAnswer("neither err_msg nor output", rid)
    want = OUTPUT_TYPES.get(stage)
    if want is not None and (not isinstance(output, want) or (want is int and isinstance(output, bool))):
        raise MalformedAnswer(f"output is a JSON {type(output).__name__}, a {stage} output is a JSON "
                              f"{_JSON_NAMES[want]}", rid)
    return rid, None, output


def not_ready(proc: subprocess.Popen, stage: str, seconds: float, limit_text: str) -> str | None:
    """None when the child's first line is `<stage> processor ready` within `seconds`; otherwise
    the child is killed and the answer says what it did instead (`limit_text` names the limit)."""
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(seconds)
    want = f"{stage} processor ready"
    ready = out[0] if out else None
    if ready is not None and ready.strip() == want:
        return None
    proc.kill()
    code = proc.wait()
    if ready is None:
        why = f"printed no ready line within {limit_text}"
    elif ready == "":
        why = f"exited (code {code}) before its ready line"
    else:
        why = f"printed {ready.strip()[:100]!r} as its first line"
    return f"{why}; expected {want!r}"


class ChildClient:
    """What both roles' clients share: tasks in flight by id, one reader thread per child, and
    every task in flight failed when the child is lost. A subclass starts the child (and hands it
    to `_adopt`) and may say which exception a failed task raises (`error`), what becomes of a
    malformed line (`on_malformed`) and what follows the loss of a child (`on_lost`)."""

    stage: str
    label: str
    after_kill = "the child was killed"      # what a task that timed out says became of the child

    def _init_client(self, stage: str, reader_name: str) -> None:
        self.stage, self._reader_name = stage, reader_name
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self.proc: subprocess.Popen | None = None
        self.last_error: str | None = None
        self._closed = False

    # --------------------------------------------------------------------------- hooks

    def error(self, message: str) -> Exception:
        return ProcessorError(message)

    def on_malformed(self, proc: subprocess.Popen, line: str, exc: MalformedAnswer) -> str:
        """Called for a line that is no valid answer; returns what the failure adds to `exc`."""
        log.error("%s (pid %d) printed a malformed answer: %s: %r", self.label, proc.pid, exc, line[:300])
        return ""

    def on_lost(self, why: str) -> None:
        """Called once a child was lost and its tasks failed (outside the lock)."""

    # ------------------------------------------------------------------------- the child

    def _adopt(self, proc: subprocess.Popen) -> bool:
        """Make a started child (past its ready line) the one tasks go to; false when the client
        was closed meanwhile (the child is killed)."""
        with self._lock:
            if self._closed:           # closed while it started (a restart racing close): not kept
                proc.kill()
                proc.wait()
                return False
            self.proc = proc
        threading.Thread(target=self._read, args=(proc,), name=self._reader_name, daemon=True).start()
        return True

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                rid, err, output = parse_answer(self.stage, line, self._pending)
            except MalformedAnswer as exc:
                more = self.on_malformed(proc, line, exc)
                if exc.rid is not None:            # an answer to a known task: only that task fails
                    fut = self._pending.pop(exc.rid, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(self.error(f"{self.label}: malformed answer to task {exc.rid}: {exc}{more}"))
                    continue
                self._fail_all(proc, f"printed a malformed line ({exc}{more})")   # whose answer: unknown
                return
            fut = self._pending.pop(rid, None)
            if fut is None:
                continue
            if err is not None:
                fut.set_exception(self.error(f"{self.label}: {err}"))
            else:
                fut.set_result(output)
        self._fail_all(proc, f"exited with code {proc.wait()}")

    def _fail_all(self, proc: subprocess.Popen, why: str) -> None:
        with self._lock:
            if proc is not self.proc:
                return
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            pending, self._pending, self.proc = self._pending, {}, None
            self.last_error = why
        if not self._closed:
            log.warning("%s (pid %d) %s; %d task(s) in flight fail", self.label, proc.pid, why, len(pending))
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self.error(f"{self.label} {why}"))
        if not self._closed:
            self.on_lost(why)

    # --------------------------------------------------------------------------- tasks

    def _send(self, task: dict) -> tuple[subprocess.Popen, int, Future]:
        with self._lock:
            proc = self.proc
            if proc is None:
                raise self.error(f"{self.label} is not running ({self.last_error or 'starting'})")
            rid = next(self._ids)
            fut: Future = Future()
            self._pending[rid] = fut
            try:
                proc.stdin.write(json.dumps({"id": rid, "task": task}) + "\n")
                proc.stdin.flush()
            except OSError as exc:
                self._pending.pop(rid, None)
                raise self.error(f"{self.label}: cannot send the task: {exc}") from None
        return proc, rid, fut

    def _answer(self, proc: subprocess.Popen, rid: int, fut: Future, timeout: float | None, limit_text: str):
        """The task's output; on no answer within `timeout` the child is killed (a child that lost
        a task cannot be trusted with the others) and the task fails naming `limit_text`."""
        try:
            return fut.result(timeout=timeout)
        except FutureTimeout:
            why = f"did not answer {self.stage} task {rid} within {limit_text}"
            self._fail_all(proc, why)
            raise self.error(f"{self.label} {why}; {self.after_kill}") from None

    def _stop(self) -> None:
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


class ProtocolChild(ChildClient):
    """One processor child for a role that needs neither cgroups nor restarts in place (the
    manager's ext-prover): started at once, `call` sends a task and waits for its answer. A child
    that exits or prints a line that is no answer fails what is in flight; the next call starts
    it again."""

    def __init__(self, stage: str, command: list[str], env: dict[str, str], concurrent: int, ready_timeout: float,
                 label: str):
        self._init_client(stage, f"extproc-{label}")
        self.command, self.env, self.label = command, env, label
        self.ready_timeout = ready_timeout
        self.slots = threading.BoundedSemaphore(max(concurrent, 1))
        self.concurrent = max(concurrent, 1)
        self.in_flight = 0
        self._start_lock = threading.Lock()
        self.start()

    def start(self) -> None:
        with self._start_lock:
            if self.proc is not None or self._closed:
                return
            try:
                proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env,
                                        text=True, bufsize=1)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ProcessorError(f"{self.label}: cannot start {self.command[0]}: {exc}") from None
            why = not_ready(proc, self.stage, self.ready_timeout, f"{self.ready_timeout:g} s")
            if why:
                raise ProcessorError(f"{self.label}: {why}")
            self._adopt(proc)

    def call(self, task: dict, timeout: float | None):
        """The output of one task; ProcessorError when there is none (within `timeout` seconds)."""
        with self.slots:
            self.in_flight += 1
            try:
                if self.proc is None:
                    self.start()
                proc, rid, fut = self._send(task)
                return self._answer(proc, rid, fut, timeout, f"{timeout:g} s" if timeout else "no limit")
            finally:
                self.in_flight -= 1

    def close(self) -> None:
        self._stop()


def post_task(miner: int, proof_type, sectors, seed: bytes) -> dict:
    """vc-processors' WindowPoSt / WinningPoSt task (builtin/tasks.rs; the same fields) from
    PrivateSectors (number, comm_r, cache_dir, sealed)."""
    return {"miner_id": miner, "proof_type": api_post_name(proof_type),
            "replicas": [{"sector_id": s.number, "comm_r": list(s.comm_r), "cache_dir": str(s.cache_dir),
                          "sealed_file": str(s.sealed)} for s in sectors],
            "seed": list(seed)}


def child_env(envs: dict[str, str]) -> dict[str, str]:
    """The parent's environment with the entry's variables on top (as Damocles' exec of a processor)."""
    env = dict(os.environ)
    env.update(envs)
    return env
