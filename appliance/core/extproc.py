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


def wait_ready(proc: subprocess.Popen, stage: str, seconds: float, label: str) -> None:
    """The child's first line must be `<stage> processor ready` within `seconds`; otherwise it is
    killed and ProcessorError says what it did instead."""
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(seconds)
    want = f"{stage} processor ready"
    ready = out[0] if out else None
    if ready is not None and ready.strip() == want:
        return
    proc.kill()
    code = proc.wait()
    if ready is None:
        why = f"printed no ready line within {seconds:g} s"
    elif ready == "":
        why = f"exited (code {code}) before its ready line"
    else:
        why = f"printed {ready.strip()[:100]!r} as its first line"
    raise ProcessorError(f"{label}: {why}; expected {want!r}")


class ProtocolChild:
    """One processor child for a role that needs neither cgroups nor restarts in place (the
    manager's ext-prover): started at once, `call` sends a task and waits for its answer. A child
    that exits or prints a line that is no answer fails what is in flight; the next call starts
    it again."""

    def __init__(self, stage: str, command: list[str], env: dict[str, str], concurrent: int, ready_timeout: float,
                 label: str):
        self.stage, self.command, self.env, self.label = stage, command, env, label
        self.ready_timeout = ready_timeout
        self.slots = threading.BoundedSemaphore(max(concurrent, 1))
        self.concurrent = max(concurrent, 1)
        self.in_flight = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self.proc: subprocess.Popen | None = None
        self._closed = False
        self.start()

    def start(self) -> None:
        with self._lock:
            if self.proc is not None or self._closed:
                return
            try:
                proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env,
                                        text=True, bufsize=1)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ProcessorError(f"{self.label}: cannot start {self.command[0]}: {exc}") from None
            wait_ready(proc, self.stage, self.ready_timeout, self.label)
            self.proc = proc
        threading.Thread(target=self._read, args=(proc,), name=f"extproc-{self.label}", daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                rid, err, output = parse_answer(self.stage, line, self._pending)
            except MalformedAnswer as exc:
                log.error("%s (pid %d) printed a malformed answer: %s: %r", self.label, proc.pid, exc, line[:300])
                if exc.rid is not None:
                    fut = self._pending.pop(exc.rid, None)
                    if fut is not None:
                        fut.set_exception(ProcessorError(f"{self.label}: malformed answer: {exc}"))
                    continue
                self._fail_all(proc, f"printed a malformed line ({exc})")
                return
            fut = self._pending.pop(rid, None)
            if fut is None:
                continue
            if err is not None:
                fut.set_exception(ProcessorError(f"{self.label}: {err}"))
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
        if not self._closed:
            log.warning("%s (pid %d) %s; %d task(s) in flight fail", self.label, proc.pid, why, len(pending))
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ProcessorError(f"{self.label} {why}"))

    def call(self, task: dict, timeout: float | None):
        """The output of one task; ProcessorError when there is none within `timeout` seconds
        (the child is then killed: a child that lost a task cannot be trusted with the others)."""
        with self.slots:
            self.in_flight += 1
            try:
                return self._call(task, timeout)
            finally:
                self.in_flight -= 1

    def _call(self, task: dict, timeout: float | None):
        if self.proc is None:
            self.start()
        with self._lock:
            proc = self.proc
            if proc is None:
                raise ProcessorError(f"{self.label} is not running")
            rid = next(self._ids)
            fut: Future = Future()
            self._pending[rid] = fut
            try:
                proc.stdin.write(json.dumps({"id": rid, "task": task}) + "\n")
                proc.stdin.flush()
            except OSError as exc:
                self._pending.pop(rid, None)
                raise ProcessorError(f"{self.label}: cannot send the task: {exc}") from None
        try:
            return fut.result(timeout=timeout)
        except FutureTimeout:
            self._fail_all(proc, f"did not answer {self.stage} task {rid} within {timeout:g} s")
            raise ProcessorError(f"{self.label} did not answer {self.stage} task {rid} within {timeout:g} s") from None

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
