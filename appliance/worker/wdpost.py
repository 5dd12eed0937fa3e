"""A sealing thread with `plan = "wdpost"` (Damocles' worker-prover): it runs the dedicated
prover's code, one WindowPoSt job at a time, reading sealed sectors from the worker's
`[[attached]]` stores and proving in the worker's `[[processors.window_post]]` pools or external
processors (`bin`) when it has some. Pausing stops it from taking new jobs; a job in flight is finished. Its jobs are not
journalled here: the manager retries a job whose prover went silent (heartbeats, JobMaxTry)."""

from __future__ import annotations

import threading

from ..post.config import PostConfig
from ..post.service import ProverService
from .control import ThreadControl


class WdPostThread(ThreadControl):
    plan = "wdpost"

    def __init__(self, index: int, worker_name: str, manager_urls: list[str], token: str | None, attached, sealing, pools, rpc=None,
                 externals=None):
        super().__init__(index)
        cfg = PostConfig(name=f"{worker_name}-wdpost-{index}", poll_interval=max(0.1, sealing.rpc_polling_interval),
                         concurrency=1, allowed_miners=list(sealing.allowed_miners) if sealing.allowed_miners else None,
                         manager_urls=list(manager_urls), manager_token=token, attached=list(attached))
        self.prover = ProverService(cfg, pools or None, rpc, externals or None)   # the worker's client: its calls are counted

    @property
    def status(self) -> str:
        if self.prover.paused:
            return "Paused"
        return "Running" if self.prover.running else "Waiting"

    @status.setter
    def status(self, value: str) -> None:
        """Derived from the prover; the base class's initial value is ignored."""

    def run(self, stop: threading.Event) -> None:
        self.prover.start()
        stop.wait()
        self.prover.stop()

    def _paused(self) -> bool:
        return self.prover.paused

    def pause(self) -> bool:
        """The prover takes no new job at once; a job in flight is finished."""
        if self.prover.paused:
            return False
        self.prover.paused = True
        self.last_error = "paused by the operator"
        return True

    def resume(self, state: str | None = None) -> bool:
        if not self.prover.paused:
            return False
        self.prover.paused, self.last_error = False, None
        return True

    def _summary_extra(self) -> dict:
        jobs = list(self.prover.running)
        # Damocles' wdpost planner: state Allocated and stage Generate while a job is proven
        return {"job_id": jobs[0] if jobs else None, "job_state": "Allocated" if jobs else "Empty",
                "job_stage": "Generate" if jobs else None, "proven": self.prover.proven}
