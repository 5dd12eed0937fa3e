"""Who holds a task a worker took (an unseal, rebuild or snap-up sector): the caller identity
that allocated it (rpc.server.Caller.identity). Only that identity may report on it; the
operator (admin) and the manager itself are not bound (identity.bound). A task allocated before
holders were identities (it names a worker thread) becomes the first caller's that acts on it."""

from __future__ import annotations

from .identity import bound

IDENTITY_KINDS = ("name:", "token:", "addr:")


class ForeignTask(PermissionError):
    """A call on a task another identity holds (the API answers -32001 and counts it)."""


def holder(caller) -> str:
    """The identity a task allocated to `caller` is held by ("" when the manager allocates)."""
    return caller.identity if caller is not None else ""


def check_holder(held_by: str | None, caller, what: str) -> str | None:
    """Refuse `caller` on a task held by `held_by`. Returns the identity to record as the new
    holder when the task had none yet (a legacy holder, claimed now), else None."""
    if not bound(caller) or held_by == caller.identity:
        return None
    if not held_by or not held_by.startswith(IDENTITY_KINDS):
        return caller.identity
    raise ForeignTask(f"{what} is allocated to another worker's credential; this one may not report on it")
