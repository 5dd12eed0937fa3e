"""The builtin engine behind `damocles processor <stage>`: every vc-processors stage this worker
runs, dispatched to the module that holds its task shape, builtin runner and output reader
(stage_seal: pc1, pc2; c2_stage: c2; stage_data: add_pieces, tree_d, transfer, unseal;
stage_snap_post: snap_encode, snap_prove, window_post, winning_post). Tasks and outputs are
Damocles' (vc-processors builtin/tasks.rs) with filecoin-proofs-api's types as serde writes them
(task_fields.py; docs/processors.md)."""

from __future__ import annotations

from .task_fields import TaskError, obj

SUPPORTED = ("pc1", "pc2", "c2", "add_pieces", "tree_d", "transfer", "unseal", "snap_encode", "snap_prove",
             "window_post", "winning_post")

__all__ = ["SUPPORTED", "TaskError", "run_task"]


def run_task(stage: str, task: dict):
    """Run one task of `stage` with the builtin engine; its output as the stage's Rust type."""
    # imported on use: a processor child loads only its own stage's module
    if stage in ("snap_encode", "snap_prove", "window_post", "winning_post"):
        from .stage_snap_post import run_task as run_snap_post
        return run_snap_post(stage, task)
    task = obj(task, "task")
    if stage in ("add_pieces", "tree_d", "transfer", "unseal"):
        from .stage_data import run as run_data_stage
        return run_data_stage(stage, task)
    if stage in ("pc1", "pc2"):
        from . import stage_seal
        return stage_seal.run_pc1(task) if stage == "pc1" else stage_seal.run_pc2(task)
    if stage == "c2":
        from .c2_stage import run_c2
        return run_c2(task)
    raise TaskError(f"stage {stage!r} has no builtin processor (supported: {', '.join(SUPPORTED)})")
