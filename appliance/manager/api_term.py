"""RPC of a sector's end: Damocles' TerminateSector, PollTerminateSectorState, RemoveSector,
FinalizeSector (core/api.go, commit 4235a895; shapes SubmitTerminateResp and TerminateInfo of
core/types.go), and ours for resend-pre / resend-prove (Damocles' commands call SubmitPreCommit /
SubmitProof with reset instead, which here are a worker's calls)."""

from __future__ import annotations

from ..rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, RPCError
from ..rpc.wire import sector_id
from .sector_removal import RemovalRefused, remove_sector_files, resume_removals
from .sector_resend import ResendRefused, finalize, resend
from .terminate import TerminateRefused, Terminator


def _answers(fn):
    """Refusals as invalid params naming why; an unknown sector as Damocles' not-found."""
    def call(sid, *args):
        try:
            return fn(sid, *args)
        except (TerminateRefused, RemovalRefused, ResendRefused) as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        except KeyError:
            raise RPCError(SECTOR_NOT_FOUND, f"sector {sid['Miner']}-{sid['Number']} not found") from None
    return call


def register_term(server, service) -> Terminator:
    """Registers the methods; returns the Terminator, whose `run` the service starts. Removals a
    stopped manager left half done are finished first."""
    state, chain, config = service.state, service.chain, service.config
    resume_removals(state)
    term = Terminator(config, state, chain, service.committer)
    a, r = "admin", "read"
    sid = [("sid", sector_id)]
    server.register("Venus.TerminateSector", _answers(term.submit), a, sid)
    server.register("Venus.PollTerminateSectorState", _answers(term.poll), r, sid)

    def remove(s):
        remove_sector_files(config, state, chain, s["Miner"], s["Number"])      # Damocles answers null
    server.register("Venus.RemoveSector", _answers(remove), a, sid)
    server.register("Venus.FinalizeSector", _answers(lambda s: finalize(chain, state, s["Miner"], s["Number"])), a, sid)
    server.register("Venus.ResendPreCommit", _answers(lambda s: resend(chain, state, s["Miner"], s["Number"], "pre")), a, sid)
    server.register("Venus.ResendProof", _answers(lambda s: resend(chain, state, s["Miner"], s["Number"], "proof")), a, sid)
    return term

