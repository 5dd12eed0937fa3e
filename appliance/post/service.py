"""The prover: pulls WindowPoSt jobs from the manager (WdPoStAllocateJobs), proves each in a
window_post processor pool (pinned as configured) or hands it to an external window_post
processor as Damocles' WindowPoSt task, heartbeats every job it holds while it
works, and reports the proof with the sectors it could not read as faults (WdPoStFinishJob).
A job the manager no longer wants (answered 11002) is dropped."""

from __future__ import annotations

import logging
import threading

from ..rpc import RPCError
from ..rpc.client import RPCClient, TransportError
from ..config.processors import ProcessorConfig
from ..worker.external import ExternalProcessor
from ..worker.processors import ProcessorPool
from ..worker.stage_snap_post import job_task, read_window_post_output, run_task
from .config import PostConfig

log = logging.getLogger("damocles.post")


def prove_job(job_input: dict, stores: dict[str, str]) -> dict:
    """A job's proof, in a processor process: Damocles' WindowPoStOutput {proofs: [base64],
    faults: [sector numbers]}. `job_input` is Damocles' WdPoStInput: each sector names the
    attached store that holds its sealed file and the one that holds its cache directory
    (Accesses.SealedFile / CacheDir); ProofType in the proofs API's spelling (..._V1_2) or ours.
    The job goes through the same WindowPoSt task an external processor is given."""
    task, faults = job_task(job_input, stores)
    out = run_task("window_post", task)
    return {"proofs": out["proofs"], "faults": sorted(faults + out["faults"])}


class ProverService:
    def __init__(self, config: PostConfig, pools: list[ProcessorPool] | None = None, rpc: RPCClient | None = None,
                 externals: list[ExternalProcessor] | None = None):
        """`pools` and `externals`: window_post pools and external processors owned by someone else
        (a worker's wdpost thread); by default the prover starts its own from
        `[[processors.window_post]]` (entries with `bin` are external processors). `rpc`: the
        client of the worker a wdpost thread runs in (its calls counted with the worker's)."""
        self.config = config
        for w in config.warnings:
            log.warning(w)
        for a in config.attached:
            if not a.location.is_dir():
                raise ValueError(f"[[attached]] {a.name}: {a.location} is not a directory")
        self.rpc = rpc or RPCClient(config.manager_urls, config.manager_token)
        self._own_pools = not pools and not externals
        self.pools, self.externals = list(pools or []), list(externals or [])
        if self._own_pools:
            entries = config.processors or [ProcessorConfig("window_post", 0, concurrent=config.concurrency)]
            try:
                for e in entries:
                    (self.externals if e.bin else self.pools).append(ExternalProcessor(e) if e.bin else ProcessorPool(e))
            except BaseException:
                self._close_processors()
                raise
        self.paused = False
        self.stores = {a.name: str(a.location) for a in config.attached}
        self.running: dict[str, threading.Thread] = {}
        self.proven = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target, name in ((self._poll_loop, "post-poll"), (self._heartbeat_loop, "post-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _poll_loop(self) -> None:
        spec = {"AllowedMiners": self.config.allowed_miners, "AllowedProofTypes": self.config.allowed_proof_types}
        while not self._stop.is_set():
            free = self.config.concurrency - len(self.running)
            if free > 0 and not self.paused:
                try:
                    for job in self.rpc.call("Venus.WdPoStAllocateJobs", spec, free, self.config.name) or []:
                        t = threading.Thread(target=self._prove, args=(job,), name=f"job-{job['Id']}", daemon=True)
                        with self._lock:
                            self.running[job["Id"]] = t
                        t.start()
                except (TransportError, RPCError) as exc:
                    log.warning("WdPoStAllocateJobs failed: %s", exc)
            self._stop.wait(self.config.poll_interval)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.heartbeat_interval):
            with self._lock:
                ids = list(self.running)
            if ids:
                try:
                    self.rpc.call("Venus.WdPoStHeartbeatJobs", ids, self.config.name)
                except (TransportError, RPCError) as exc:
                    log.warning("WdPoStHeartbeatJobs failed: %s", exc)

    def _prove(self, job: dict) -> None:
        job_id = job["Id"]
        try:
            proc = max(self.pools + self.externals, key=_free)
            log.info("job %s: proving %d sectors of miner %s", job_id, len(job["Input"]["Sectors"]), job["Input"]["MinerId"])
            try:
                if isinstance(proc, ExternalProcessor):     # Damocles' WindowPoSt task, its answer checked
                    task, faults = job_task(job["Input"], self.stores)
                    out = read_window_post_output(proc.call(task), task)
                    output, error = {"proofs": out["proofs"], "faults": sorted(faults + out["faults"])}, ""
                else:
                    output, error = proc.run(prove_job, job["Input"], self.stores), ""
            except Exception as exc:      # the processor failed or died, or answered wrong: the manager retries the job
                output, error = None, str(exc).splitlines()[0]
                log.error("job %s: %s", job_id, error)
            self._finish(job_id, output, error)
        finally:
            with self._lock:
                self.running.pop(job_id, None)

    def _finish(self, job_id: str, output, error: str) -> None:
        while not self._stop.is_set():
            try:
                self.rpc.call("Venus.WdPoStFinishJob", job_id, output, error)
                if output is not None:
                    self.proven += 1
                    log.info("job %s: finished (%d faults)", job_id, len(output["faults"]))
                return
            except TransportError as exc:          # the manager must learn it while the deadline is open
                log.warning("job %s: WdPoStFinishJob failed, retrying: %s", job_id, exc)
                self._stop.wait(self.config.heartbeat_interval)
            except RPCError as exc:               # 11002: given to another prover, or dropped
                log.warning("job %s: the manager did not take the result: %s", job_id, exc.message)
                return

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._own_pools:
            self._close_processors()

    def _close_processors(self) -> None:
        for p in self.pools + self.externals:
            p.close()


def _free(proc) -> int:
    """Room for another job: idle pool processes, or an external processor's slots not in use."""
    if isinstance(proc, ExternalProcessor):
        return (proc.cfg.concurrent or 64) - len(proc._pending)
    return proc.free()
