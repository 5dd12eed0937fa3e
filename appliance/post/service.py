"""The prover: pulls WindowPoSt jobs from the manager (WdPoStAllocateJobs), proves each in a
window_post processor pool (pinned as configured), heartbeats every job it holds while it
works, and reports the proof with the sectors it could not read as faults (WdPoStFinishJob).
A job the manager no longer wants (answered 11002) is dropped."""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

from ..core.proof_types import default_seal_proof, post_proof
from ..core.sector import sector_name
from ..proofs.post import PrivateSector, encode_post, generate_window_post
from ..rpc import RPCError
from ..rpc.client import RPCClient, TransportError
from ..config.processors import ProcessorConfig
from ..worker.processors import ProcessorPool
from .config import PostConfig

log = logging.getLogger("damocles.post")


def prove_job(job_input: dict, stores: dict[str, str]) -> dict:
    """A job's proof, in a processor process: Damocles' WindowPoStOutput {proofs: [base64],
    faults: [sector numbers]}. `job_input` is Damocles' WdPoStInput: each sector names the
    attached store that holds its sealed file and the one that holds its cache directory
    (Accesses.SealedFile / CacheDir); ProofType in the proofs API's spelling (..._V1_2) or ours."""
    proof_type = post_proof(job_input["ProofType"])
    sp = default_seal_proof(proof_type.size)      # only the tree shape of the size matters here
    sectors, faults = [], []
    for s in job_input["Sectors"] or ():
        sealed_store, cache_store = stores.get(s["Accesses"]["SealedFile"]), stores.get(s["Accesses"]["CacheDir"])
        if sealed_store is None or cache_store is None:     # not attached here: cannot be read, so it is a fault
            faults.append(s["SectorId"])
            continue
        name = sector_name(job_input["MinerId"], s["SectorId"])
        sealed, cache = ("update", "update-cache") if s.get("Upgrade") else ("sealed", "cache")   # snap-upgraded
        sectors.append(PrivateSector(s["SectorId"], bytes(s["CommR"]), Path(cache_store) / cache / name,
                                     Path(sealed_store) / sealed / name))
    result = generate_window_post(proof_type, sp, sectors, bytes(job_input["Seed"]))
    return {"proofs": [base64.b64encode(encode_post(result)).decode()], "faults": sorted(faults + list(result.faults))}


class ProverService:
    def __init__(self, config: PostConfig, pools: list[ProcessorPool] | None = None, rpc: RPCClient | None = None):
        """`pools`: window_post pools owned by someone else (a worker's wdpost thread); by
        default the prover starts its own from `[[processors.window_post]]`. `rpc`: the client
        of the worker a wdpost thread runs in (its calls counted with the worker's)."""
        self.config = config
        for w in config.warnings:
            log.warning(w)
        for a in config.attached:
            if not a.location.is_dir():
                raise ValueError(f"[[attached]] {a.name}: {a.location} is not a directory")
        self.rpc = rpc or RPCClient(config.manager_url, config.manager_token)
        entries = config.processors or [ProcessorConfig("window_post", 0, concurrent=config.concurrency)]
        self._own_pools = not pools
        self.pools = pools or [ProcessorPool(e) for e in entries]
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
            pool = max(self.pools, key=lambda p: p.free())
            log.info("job %s: proving %d sectors of miner %s", job_id, len(job["Input"]["Sectors"]), job["Input"]["MinerId"])
            try:
                output, error = pool.run(prove_job, job["Input"], self.stores), ""
            except Exception as exc:      # the processor failed or died: the manager retries the job
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
            for p in self.pools:
                p.close()
