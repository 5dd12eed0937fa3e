"""A task handed back to the thread that took it (issue 14's "tasks taken and lost"): our worker
names the asking thread in its allocate call (the optional `Thread` of the spec: the thread's
location, which holds its journal). A thread asks only when its journal holds no task, so a
task still allocated to the same identity and thread was lost before it was journalled (the
worker died between the answer and the journal write): that task is the answer again, before
any new one is taken. Damocles' Rust worker sends no Thread: its lost tasks stay allocated, as
in Damocles."""

from __future__ import annotations

from .task_owner import holder


def asking_thread(spec: dict, caller) -> tuple[str, str] | None:
    """(holder identity, thread) a lost task would be held by, or None when the call names no
    thread or the caller holds nothing (the manager's own calls)."""
    thread, who = spec.get("Thread"), holder(caller)
    return (who, thread) if thread and who else None


def allowed(miner: int, proof: int | None, spec: dict) -> bool:
    """Whether Damocles' AllocateSectorSpec filters let a task of this miner and proof through."""
    miners, proofs = spec.get("AllowedMiners"), spec.get("AllowedProofTypes")
    return not (miners and miner not in miners) and not (proofs and proof not in proofs)
