"""The manager's RPC methods: names, permissions and parameter shapes (docs/rpc.md lists them)."""

from __future__ import annotations

import base64
import dataclasses

from ..rpc import INVALID_PARAMS, JOB_NOT_FOUND, UNAUTHORIZED, RPCError
from ..rpc.dest import worker_dest
from ..rpc.server import RPCServer
from ..rpc.wire import b64, boolean, bytes32, cid, i64, list_of, optional, sector_id, stored_u64, string, struct, u64
from .identity import check_worker_name
from .market import PieceStoreFull, UploadInProgress
from .sealer import Sealer
from .task_owner import ForeignTask


def _ticket(v, field):
    t = struct({"Ticket": b64, "Epoch": i64})(v, field)
    if len(t["Ticket"]) != 32:
        raise RPCError(INVALID_PARAMS, f"{field}.Ticket: expected 32 bytes, got {len(t['Ticket'])}")
    return {"Ticket": base64.b64encode(t["Ticket"]).decode(), "Epoch": t["Epoch"]}


def _seconds(v, field):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise RPCError(INVALID_PARAMS, f"{field}: expected a non-negative number of seconds, got {v!r}")
    return float(v)


allocate_spec = struct({"AllowedMiners": optional(list_of(u64)), "AllowedProofTypes": optional(list_of(u64))},
                       optional_keys=("AllowedMiners", "AllowedProofTypes"))
MAX_THREAD = 4096     # our worker names a thread by its location, a path (Linux's PATH_MAX)


def _thread(v, field):
    v = string(v, field)
    if len(v) > MAX_THREAD:
        raise RPCError(INVALID_PARAMS, f"{field}: a thread name of {len(v)} characters is longer than {MAX_THREAD}")
    return v


# Damocles' AllocateSectorSpec of a task plan, with our worker's optional Thread (the asking thread:
# a task it took and lost before journalling it is handed back, task_rehand); Go's manager ignores it
task_spec = struct({"AllowedMiners": optional(list_of(u64)), "AllowedProofTypes": optional(list_of(u64)),
                    "Thread": optional(_thread)}, optional_keys=("AllowedMiners", "AllowedProofTypes", "Thread"))
allocated_sector = struct({"ID": sector_id, "ProofType": u64})
deals_spec = struct({"MaxDeals": optional(u64), "MinUsedSpace": optional(u64)}, optional_keys=("MaxDeals", "MinUsedSpace"))
pre_commit_info = struct({"CommR": bytes32, "CommD": bytes32, "Ticket": _ticket})
proof_info = struct({"Proof": b64})
report_req = struct({
    "Worker": struct({"Instance": string, "Location": string}),
    "StateChange": struct({"Prev": string, "Next": string, "Event": string}),
    "Failure": optional(struct({"Level": string, "Desc": string})),
}, optional_keys=("Failure",))
# Damocles' WorkerInfo: what a worker leaves out reads as Go's zero values (Sealer.worker_ping)
_summary_keys = ("Threads", "Empty", "Paused", "Running", "Waiting", "Errors")
worker_info = struct({"Name": string, "Dest": worker_dest, "Version": string,
                      "Summary": optional(struct({k: u64 for k in _summary_keys}, optional_keys=_summary_keys))},
                     optional_keys=("Dest", "Version", "Summary"))


wdpost_spec = struct({"AllowedMiners": optional(list_of(u64)), "AllowedProofTypes": optional(list_of(string))},
                     optional_keys=("AllowedMiners", "AllowedProofTypes"))
def _b64_text(v, field):
    b64(v, field)          # refuses what is not base64
    return v


# Damocles' *stage.WindowPoStOutput (pkg/extproc/stage/ext_window_post.go): proofs as base64 (Go's
# [][]byte, the Rust worker's b64serde BytesVec), faults as sector numbers; Go takes either as null.
wdpost_output = optional(struct({"proofs": optional(list_of(_b64_text)), "faults": optional(list_of(u64))},
                                optional_keys=("proofs", "faults")))


def _task_call(fn, limits):
    """A worker's call on a task, told who calls: a task another identity holds is -32001
    (counted as foreign_task)."""
    def call(*args, caller):
        try:
            return fn(*args, caller=caller)
        except ForeignTask as exc:
            limits.count("foreign_task")
            raise RPCError(UNAUTHORIZED, str(exc)) from None
    return call


def _jobs_call(fn):
    """WdPoSt job calls: a job that does not exist (or is no longer running) is error 11002."""
    from .wdpost_jobs import JobNotFound

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except JobNotFound as exc:
            raise RPCError(JOB_NOT_FOUND, str(exc)) from None
    return call


def _bind(server: RPCServer, limits, name: str, fn, params) -> None:
    server.register(name, _task_call(fn, limits), "write", params, with_caller=True)


def register_wdpost(server: RPCServer, jobs, limits) -> None:
    """Damocles' WorkerWdPoStAPI (core/api.go) for dedicated provers and `plan = "wdpost"` threads,
    params and answers in its shapes (core/types_wdpost.go; wdpost_jobs.py). `workerName` must be
    a name the caller holds (the first to use a name holds it); only the holder of the name a job
    runs under may heartbeat and finish it (others' heartbeats leave it alone; wdpost_jobs.py says
    what a late answer gets). Reset and remove
    are the operator's (`util worker wdpost reset|remove`); the list is read-level."""
    def allocate(spec, num, name, caller):
        check_worker_name(jobs.state, limits, name, caller, limits.max_worker_names)
        jobs.state.touch_worker(name)        # the prover is alive: its name does not expire
        return jobs.allocate(spec.get("AllowedMiners"), spec.get("AllowedProofTypes"), num, name)

    def heartbeat(job_ids, name, caller):
        check_worker_name(jobs.state, limits, name, caller, limits.max_worker_names)
        jobs.state.touch_worker(name)
        return jobs.heartbeat(job_ids, name)

    _bind(server, limits, "Venus.WdPoStAllocateJobs", _jobs_call(allocate),
          [("spec", wdpost_spec), ("num", u64), ("workerName", string)])
    _bind(server, limits, "Venus.WdPoStHeartbeatJobs", _jobs_call(heartbeat), [("jobIDs", list_of(string)), ("workerName", string)])
    _bind(server, limits, "Venus.WdPoStFinishJob", _jobs_call(jobs.finish),
          [("jobID", string), ("output", wdpost_output), ("errorReason", string)])
    server.register("Venus.WdPoStResetJob", _jobs_call(jobs.reset), "admin", [("jobID", string)])
    server.register("Venus.WdPoStRemoveJob", _jobs_call(jobs.remove), "admin", [("jobID", string)])
    server.register("Venus.WdPoStAllJobs", jobs.all, "read", [])


def register_proving(server: RPCServer, proving) -> None:
    """The proving views of `damocles util proving`."""
    server.register("Venus.ProvingInfo", proving.info, "read", [("miner", stored_u64)])
    server.register("Venus.ProvingDeadlines", proving.deadlines, "read", [("miner", stored_u64)])
    server.register("Venus.ProvingDeadline", proving.deadline, "read", [("miner", stored_u64), ("index", u64)])
    server.register("Venus.ProvingFaults", proving.faults, "read", [("miner", stored_u64)])
    server.register("Venus.ProvingCheck", proving.check, "read", [("miner", stored_u64), ("index", optional(u64))])


def register_market(server: RPCServer, market, largest_sector: int) -> None:
    """The embedded market: the piece store over plain HTTP, and deals over JSON-RPC."""
    import json
    import shutil

    from .market import CID_RE

    def get_piece(req, cid):
        path = market.piece_path(cid) if CID_RE.match(cid) else None
        if path is None:
            req._send(404, f"piece {cid} not found\n".encode(), "text/plain")
            return
        req.send_response(200)
        req.send_header("Content-Type", "application/octet-stream")
        req.send_header("Content-Length", str(path.stat().st_size))
        req.end_headers()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, req.wfile, 1 << 20)

    def put_piece(req, cid):
        try:
            length = int(req.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        limit = largest_sector // 128 * 127       # unpadded bytes of the largest sector
        status = 400 if 0 <= length <= limit else 413
        problem = ("Content-Length required" if length < 0 else
                   f"a piece of {length} bytes is larger than any sector of this manager ({limit} bytes fit)" if length > limit else None)
        if problem is None:
            try:
                req._send(200, json.dumps(market.store_piece(cid, req.rfile, length)).encode())
                return
            except (ValueError, OSError) as exc:
                problem = str(exc)
                status = 409 if isinstance(exc, UploadInProgress) else 507 if isinstance(exc, PieceStoreFull) else status
        req._send(status, f"{problem}\n".encode(), "text/plain")
        req.close_connection = True      # the body may not have been read

    server.route("GET", "/piecestore/", "write", get_piece)
    server.route("PUT", "/piecestore/", "write", put_piece)      # the CommP is checked; unseal threads upload too
    server.register("Venus.MarketImportDeal", market.import_deal, "admin",
                    [("miner", stored_u64), ("pieceCid", string), ("startEpoch", optional(i64)), ("duration", optional(u64))])
    server.register("Venus.MarketDeals", market.deals, "read", [("miner", optional(stored_u64))])


# ReportFinalized / ReportAborted / ReportState of a task's sector: the task that claims it first, in this order
# (a rebuild or an unseal of a sector that was snap-upgraded earlier by the same worker is theirs, not the snap-up's)
_TASK_ORDER = {"rebuild": 0, "unseal": 1, "snapup": 2}


def _route_task_reports(server: RPCServer, kind: str, task, limits) -> None:
    """Damocles' worker ends every plan as it ends sealing: ReportFinalized when done,
    ReportAborted(reason) when it gives up, and it reports its state changes (ReportState). On
    a sector whose snap-up, rebuild or unseal the caller holds, those reports are the task's
    (`task.held`, `.finalized`, `.aborted`); any other goes to the method registered before
    (register() must have run first)."""
    routes = server.__dict__.setdefault("_task_routes", {})      # method -> [(order, held, own)]

    def routed(name, own):
        prev = server.methods.get(name)
        if prev is None:
            return
        if name not in routes:
            routes[name] = []
            table, fallback = routes[name], prev.func

            def route(sid, *args, caller):
                for _, held, fn in table:
                    if held(sid, caller):
                        return fn(sid, *args, caller=caller)
                return fallback(sid, *args, caller=caller)
            server.methods[name] = dataclasses.replace(prev, func=route)
        routes[name].append((_TASK_ORDER[kind], task.held, _task_call(own, limits)))
        routes[name].sort(key=lambda r: r[0])

    routed("Venus.ReportFinalized", task.finalized)
    routed("Venus.ReportAborted", task.aborted)
    # a task thread's state changes are its own: answered as Go's SectorStateResp, not recorded on the sector
    routed("Venus.ReportState", lambda sid, req, caller: {"Id": sid, "Finalized": False, "AbortReason": ""})


def register_unseal(server: RPCServer, unsealer, limits) -> None:
    server.register("Venus.UnsealTasks", unsealer.tasks, "read", [])
    _bind(server, limits, "Venus.AllocateUnsealSector", unsealer.allocate, [("spec", task_spec)])
    _bind(server, limits, "Venus.AchieveUnsealSector", unsealer.achieve,
          [("sid", sector_id), ("pieceCid", cid), ("errInfo", string)])
    _bind(server, limits, "Venus.AcquireUnsealDest", unsealer.acquire_dest, [("sid", sector_id), ("pieceCid", cid)])
    _route_task_reports(server, "unseal", unsealer, limits)


def register_rebuild(server: RPCServer, rebuilder, limits) -> None:
    server.register("Venus.RebuildTasks", rebuilder.tasks, "read", [])
    _bind(server, limits, "Venus.AllocateRebuildSector", rebuilder.allocate, [("spec", task_spec)])
    _bind(server, limits, "Venus.RebuildDone", rebuilder.done, [("sid", sector_id), ("errInfo", string)])    # ours
    _route_task_reports(server, "rebuild", rebuilder, limits)


class _SnapReports:
    """The snap-up's side of _route_task_reports."""
    def __init__(self, snap):
        self.snap = snap

    def held(self, sid, caller):
        return self.snap.held_state(sid, caller) is not None

    def finalized(self, sid, caller=None):
        return self.snap.finalized(sid, caller)

    def aborted(self, sid, reason, caller=None):
        return self.snap.aborted(sid, reason, caller)


# Damocles' AllocateSnapUpSpec (with our worker's optional Thread, as task_spec) and SnapUpOnChainInfo
snapup_spec = struct({"Sector": optional(allocate_spec), "Deals": optional(deals_spec), "Thread": optional(_thread)},
                     optional_keys=("Sector", "Deals", "Thread"))
snap_submit = struct({"CommR": bytes32, "CommD": bytes32, "AccessInstance": string, "Pieces": optional(list_of(cid)),
                      "Proof": _b64_text})


def register_snapup(server: RPCServer, snap, limits) -> None:
    server.register("Venus.SnapUpFetch", snap.fetch, "admin", [("miner", stored_u64), ("deadline", optional(u64))])
    _bind(server, limits, "Venus.AllocateSanpUpSector", snap.allocate, [("spec", snapup_spec)])
    _bind(server, limits, "Venus.SubmitSnapUpProof", snap.submit, [("sid", sector_id), ("info", snap_submit)])
    _bind(server, limits, "Venus.SnapUpState", snap.poll, [("sid", sector_id)])           # ours: the CLI's view
    _bind(server, limits, "Venus.SnapUpAborted", snap.aborted, [("sid", sector_id), ("reason", string)])    # ours
    _route_task_reports(server, "snapup", _SnapReports(snap), limits)


def register(server: RPCServer, sealer: Sealer, devnet=None, reorg=None) -> None:
    """`reorg`: the devnet's reorg as its API answers it (messages named by the CIDs the manager
    knows them by), where the manager embeds the devnet's API; `devnet.reorg` otherwise."""
    w = "write"

    def bound(name, func, params):     # a worker's call: told who calls, held to its own sectors and name
        server.register(name, func, w, params, with_caller=True)

    bound("Venus.AllocateSector", sealer.allocate_sector, [("spec", allocate_spec)])
    bound("Venus.AcquireDeals", sealer.acquire_deals, [("sid", sector_id), ("spec", deals_spec)])
    bound("Venus.AssignTicket", sealer.assign_ticket, [("sid", sector_id)])
    bound("Venus.SubmitPreCommit", sealer.submit_pre_commit,
          [("sector", allocated_sector), ("info", pre_commit_info), ("reset", boolean)])
    server.register("Venus.PollPreCommitState", sealer.poll_pre_commit_state, w, [("sid", sector_id)])
    server.register("Venus.WaitSeed", sealer.wait_seed, w, [("sid", sector_id), ("proofType", u64)])
    bound("Venus.SubmitProof", sealer.submit_proof, [("sid", sector_id), ("info", proof_info), ("reset", boolean)])
    server.register("Venus.PollProofState", sealer.poll_proof_state, w, [("sid", sector_id)])
    # candidates: a Go []string, so null is the empty list (any of the manager's stores)
    bound("Venus.StoreReserveSpace", sealer.store_reserve_space,
          [("sid", sector_id), ("size", u64), ("candidates", lambda v, field: optional(list_of(string))(v, field) or [])])
    server.register("Venus.StoreBasicInfo", sealer.store_basic_info, w, [("instance", string)])
    # SubmitPersisted: Damocles keeps the 2-param form for old workers (isUpgrade false)
    bound("Venus.SubmitPersisted", lambda sid, instance, caller: sealer.submit_persisted(sid, instance, False, caller=caller),
          [("sid", sector_id), ("instance", string)])
    # isUpgrade: a snap-up's files, from the identity the snap-up is allocated to (-32001 otherwise)
    bound("Venus.SubmitPersistedEx", _task_call(sealer.submit_persisted, sealer.limits),
          [("sid", sector_id), ("instance", string), ("isUpgrade", boolean)])
    bound("Venus.ReportState", sealer.report_state, [("sid", sector_id), ("req", report_req)])
    bound("Venus.ReportFinalized", sealer.report_finalized, [("sid", sector_id)])
    bound("Venus.ReportAborted", sealer.worker_aborted, [("sid", sector_id), ("reason", string)])
    bound("Venus.WorkerPing", sealer.worker_ping, [("info", worker_info)])
    server.register("Venus.AbortSector", sealer.abort, "admin", [("sid", sector_id), ("reason", string)])
    server.register("Venus.MinerInfo", sealer.miner_info, "read", [("miner", stored_u64)])
    if devnet is not None:
        server.register("Venus.DevnetHead", lambda: {"Epoch": devnet.head(), "BlockTime": devnet.policy.block_time}, "read", [])
        server.register("Venus.DevnetAdvance", lambda n: {"Epoch": devnet.advance(n)}, "admin", [("epochs", u64)])
        server.register("Venus.DevnetReorg", reorg or devnet.reorg, "admin", [("depth", u64), ("drop", boolean)])
        server.register("Venus.DevnetSectors", lambda miner: [s.__dict__ for s in devnet.sectors(miner)], "read",
                        [("miner", optional(stored_u64))])
        server.register("Venus.DevnetDeals", lambda miner: devnet.deals(miner), "read", [("miner", optional(stored_u64))])
        server.register("Venus.DevnetSetBlockTime", lambda secs: devnet.set_block_time(secs), "admin", [("seconds", _seconds)])
