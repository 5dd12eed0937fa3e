"""The worker's TOML, as Damocles' worker reads it (its sample config and config docs):
`[worker]`, `[metrics]`, `[sector_manager]`, `[sealing]`, `[[sealing_thread]]` with `sealing.*`
overrides, `[[attached]]` and `scan_persist_stores`, `[processors]`. Durations are humantime
("1min", "2h 30m"), the manager's address a multiaddr or URL. Every key has Damocles' default;
bad values are refused naming the key; unknown keys are warned about (Damocles ignores them
silently, which hides typos). What Damocles knows but this worker does not run (a plan, a
processor type) is a warning for that part only, shown by `damocles worker check`; the rest of
the file loads and runs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..config import ConfigError, load_toml
from ..config.processors import AttachedStore, ProcessorConfig, parse_processor
from ..config.humantime import parse_humantime
from ..config.validate import manager_urls, positive_int, table, warn_unknown
from ..core.proof_types import sector_size
from ..core.units import parse_bytes

STAGES = ("add_pieces", "tree_d", "pc1", "pc2", "synth_proof", "c1", "c2", "snap_encode", "snap_prove", "transfer",
          "unseal", "window_post")
# processor types Damocles knows ([[processors.<stage>]]), and the ones this worker does not run
PROCESSOR_STAGES = ("add_pieces", "tree_d", "pc1", "pc2", "synth_proof", "c2", "snap_encode", "snap_prove", "transfer",
                    "unseal", "window_post", "sealing_daemons")
NOT_RUN_PROCESSORS = {
    "synth_proof": "synthetic PoRep is not done by this worker",
    "sealing_daemons": "this worker starts no custom daemons",
}
EXTERNAL_STAGES = ("pc1", "pc2", "c2", "add_pieces", "tree_d", "transfer", "unseal",    # may hand tasks to an external `bin`
                   "snap_encode", "snap_prove", "window_post")
# stages whose only processor is an external `bin`: without one the sealing thread does the work
EXTERNAL_ONLY = {"transfer": "without one, the sealing thread copies a sector to its persist store itself"}
# every plan Damocles' worker names; a plan that cannot run here stops its own thread only
PLANS = ("sealer", "snapup", "rebuild", "unseal", "wdpost", "niporep")
NOT_RUN_PLANS = {"niporep": "non-interactive PoRep (plan \"niporep\") cannot run on this worker yet"}
JOURNALED_PLANS = ("sealer", "snapup", "rebuild", "unseal")    # the plans a hot config may switch between


@dataclass(frozen=True)
class SealingConfig:
    allowed_miners: tuple[int, ...] | None = None
    allowed_sizes: tuple[str, ...] | None = None
    enable_deals: bool = False
    disable_cc: bool = False
    max_deals: int | None = None
    min_deal_space: int | None = None
    max_retries: int = 5
    seal_interval: float = 30.0
    recover_interval: float = 60.0
    rpc_polling_interval: float = 180.0
    ignore_proof_check: bool = False
    request_task_max_retries: int = 3
    verify_after_pc2: bool = False


_DURATIONS = {"seal_interval", "recover_interval", "rpc_polling_interval"}


def parse_sealing(raw: dict, where: str, base: SealingConfig, warnings: list[str]) -> SealingConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(SealingConfig)}
    values = {}
    for key, v in raw.items():
        if key not in known:
            warnings.append(f"{where}: unknown key {key!r} ignored")
            continue
        k = f"{where}.{key}"
        try:
            if key in _DURATIONS:
                values[key] = parse_humantime(v)
            elif key == "min_deal_space":
                values[key] = parse_bytes(v)
            elif key == "allowed_miners":
                if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
                    raise ValueError(f"{v!r} is not a list of actor ids")
                values[key] = tuple(v)
            elif key == "allowed_sizes":
                if not isinstance(v, list):
                    raise ValueError(f"{v!r} is not a list of sizes")
                values[key] = tuple(sector_size(x).name for x in v)
            elif key in ("enable_deals", "disable_cc", "ignore_proof_check", "verify_after_pc2"):
                if not isinstance(v, bool):
                    raise ValueError(f"{v!r} is not true or false")
                values[key] = v
            else:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{v!r} is not a non-negative integer")
                values[key] = v
        except ValueError as exc:
            raise ConfigError(f"{k}: {exc}") from None
    return replace(base, **values)


@dataclass(frozen=True)
class ThreadConfig:
    location: Path | None        # None only for plan = "wdpost"
    plan: str
    sealing: SealingConfig
    refused: str | None = None   # why this thread cannot run here (a plan not built yet); the others run


@dataclass
class WorkerConfig:
    name: str = ""
    rpc_host: str = "0.0.0.0"
    rpc_port: int = 17890
    ping_interval: float = 30.0
    metrics_enable: bool = False           # [metrics] enable: a Prometheus exporter without a token
    metrics_listen: str = "0.0.0.0:9000"   # [metrics] http_listen
    manager_urls: list[str] = field(default_factory=list)    # every manager's endpoint (a standby's too)
    manager_token: str | None = None
    sealing: SealingConfig = field(default_factory=SealingConfig)
    threads: list[ThreadConfig] = field(default_factory=list)
    attached: list[AttachedStore] = field(default_factory=list)
    concurrent: dict[str, int] = field(default_factory=dict)
    staggered: dict[str, float] = field(default_factory=dict)
    ext_locks: dict[str, int] = field(default_factory=dict)
    static_tree_d: dict[str, Path] = field(default_factory=dict)
    processors: dict[str, list[ProcessorConfig]] = field(default_factory=dict)
    local_pieces_dirs: list[Path] = field(default_factory=list)
    unseal_output_dirs: list[Path] = field(default_factory=list)     # file:// unseal destinations: only inside these
    warnings: list[str] = field(default_factory=list)

    @property
    def manager_url(self) -> str:
        """The first manager's endpoint (what messages name; the RPC client follows the active one)."""
        return self.manager_urls[0] if self.manager_urls else ""


def _stage_map(raw: dict, where: str, convert) -> dict:
    out = {}
    for stage, v in table(raw, where).items():
        if stage not in STAGES:
            raise ConfigError(f"{where}: {stage!r} is not a stage (stages: {', '.join(STAGES)})")
        try:
            out[stage] = convert(v)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.{stage}: {exc}") from None
    return out


def _duration(v, where: str) -> float:
    try:
        return parse_humantime(v)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _dirs(v, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(d, str) for d in v):
        raise ConfigError(f"{where}: {v!r} is not a list of directories")
    return v


def parse_worker_config(raw: dict, available_cpus: set[int] | None = None) -> WorkerConfig:
    """`available_cpus`: refuse cpusets outside it; None leaves CPUs to `damocles worker check`."""
    cfg = WorkerConfig()
    w = cfg.warnings
    warn_unknown(raw, {"worker", "metrics", "sector_manager", "sealing", "sealing_thread", "attached", "remote_store",
                       "attached_selection", "processors"}, "worker.toml", w)
    worker = table(raw.get("worker", {}), "[worker]")
    warn_unknown(worker, {"name", "rpc_server", "ping_interval", "local_pieces_dir", "local_pieces_dirs", "scan_persist_stores",
                          "ScanPersistStores", "unseal_output_dirs"}, "[worker]", w)
    cfg.name = str(worker.get("name", "")) or os.uname().nodename
    if "local_pieces_dirs" in worker:       # Damocles: local_pieces_dirs wins over the older local_pieces_dir
        dirs = _dirs(worker["local_pieces_dirs"], "[worker].local_pieces_dirs")
    elif "local_pieces_dir" in worker:
        dirs = _dirs([worker["local_pieces_dir"]], "[worker].local_pieces_dir")
    else:
        dirs = []
    cfg.local_pieces_dirs = [Path(d).expanduser() for d in dirs]
    out_dirs = worker.get("unseal_output_dirs", [])
    if not isinstance(out_dirs, list) or not all(isinstance(d, str) and d for d in out_dirs):
        raise ConfigError(f"[worker].unseal_output_dirs: {out_dirs!r} is not a list of directories")
    cfg.unseal_output_dirs = [Path(d).expanduser() for d in out_dirs]
    for d in cfg.unseal_output_dirs:
        if not d.is_absolute():
            raise ConfigError(f"[worker].unseal_output_dirs: {str(d)!r} is not an absolute path")
    rpc = table(worker.get("rpc_server", {}), "[worker.rpc_server]")
    warn_unknown(rpc, {"host", "port"}, "[worker.rpc_server]", w)
    cfg.rpc_host = str(rpc.get("host", cfg.rpc_host))
    port = rpc.get("port", cfg.rpc_port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"[worker.rpc_server].port: {port!r} is not a TCP port")
    cfg.rpc_port = port
    cfg.ping_interval = _duration(worker.get("ping_interval", "30s"), "[worker].ping_interval")
    metrics = table(raw.get("metrics", {}), "[metrics]")
    warn_unknown(metrics, {"enable", "http_listen"}, "[metrics]", w)
    if not isinstance(metrics.get("enable", False), bool):
        raise ConfigError(f"[metrics].enable: {metrics['enable']!r} is not true or false")
    cfg.metrics_enable = metrics.get("enable", False)
    listen = metrics.get("http_listen", cfg.metrics_listen)
    m = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]*):(\d+)", listen) if isinstance(listen, str) else None
    if m is None or int(m.group(2)) > 65535:
        raise ConfigError(f"[metrics].http_listen: {listen!r} is not HOST:PORT (e.g. \"0.0.0.0:9000\")")
    cfg.metrics_listen = listen
    _sector_manager(raw, cfg)
    cfg.sealing = parse_sealing(raw.get("sealing", {}), "[sealing]", SealingConfig(), w)
    _threads(raw, cfg)
    _attached(raw, worker, cfg)
    _processors(raw, cfg, available_cpus)
    return cfg


def _sector_manager(raw: dict, cfg: WorkerConfig) -> None:
    sm = table(raw.get("sector_manager", {}), "[sector_manager]")
    warn_unknown(sm, {"rpc_client", "piece_token", "token"}, "[sector_manager]", cfg.warnings)
    client = table(sm.get("rpc_client", {}), "[sector_manager.rpc_client]")
    warn_unknown(client, {"addr", "addrs", "headers"}, "[sector_manager.rpc_client]", cfg.warnings)
    cfg.manager_urls = manager_urls(client)
    headers = table(client.get("headers", {}), "[sector_manager.rpc_client].headers")
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"[sector_manager.rpc_client].headers: {headers!r} is not a table of strings")
    bearer = None
    for key, value in headers.items():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            bearer = value[len("bearer "):].strip()       # the manager's token, as a header
        else:
            cfg.warnings.append(f"[sector_manager.rpc_client].headers: {key!r} is not sent (only an "
                                "`Authorization = \"Bearer <token>\"` header is used: as the manager's token)")
    cfg.manager_token = sm.get("token") or bearer or os.environ.get("DAMOCLES_TOKEN")


def _threads(raw: dict, cfg: WorkerConfig) -> None:
    seen = set()
    threads = raw.get("sealing_thread", [])
    if not isinstance(threads, list):
        raise ConfigError("[[sealing_thread]]: expected an array of tables ([[sealing_thread]])")
    for i, t in enumerate(threads):
        where = f"[[sealing_thread]][{i}]"
        t = table(t, where)
        warn_unknown(t, {"location", "plan", "sealing"}, where, cfg.warnings)
        plan = _plan(t.get("plan", "sealer"), f"{where}.plan")
        sealing = parse_sealing(t.get("sealing", {}), f"{where}.sealing", cfg.sealing, cfg.warnings)
        refused = NOT_RUN_PLANS.get(plan)
        if refused:
            cfg.warnings.append(f"{where}.plan: {refused}: this thread does not start; the other threads do")
        if not t.get("location"):
            if plan != "wdpost":        # a WindowPoSt thread reads the attached stores only
                raise ConfigError(f"{where}.location is required")
            cfg.threads.append(ThreadConfig(None, plan, sealing))
            continue
        if not isinstance(t["location"], str):
            raise ConfigError(f"{where}.location: {t['location']!r} is not a path")
        loc = Path(t["location"]).expanduser().resolve()
        if loc in seen:
            raise ConfigError(f"{where}.location: {loc} is used by another sealing thread")
        seen.add(loc)
        cfg.threads.append(ThreadConfig(loc, plan, sealing, refused))


def _attached(raw: dict, worker: dict, cfg: WorkerConfig) -> None:
    """`[[attached]]` (also a single `[attached]` table, as Damocles' docs show it), the deprecated
    `[remote_store]`, and the stores `scan_persist_stores` finds; names are unique."""
    entries = raw.get("attached", [])
    entries = [entries] if isinstance(entries, dict) else entries
    if not isinstance(entries, list):
        raise ConfigError("[[attached]]: expected an array of tables ([[attached]])")
    tagged = [(f"[[attached]][{i}]", a) for i, a in enumerate(entries)]
    if "remote_store" in raw:
        cfg.warnings.append("[remote_store] is deprecated: read as one [[attached]] store (write it as [[attached]])")
        tagged.append(("[remote_store]", raw["remote_store"]))
    if "attached_selection" in raw:
        cfg.warnings.append("[attached_selection]: ignored (the manager chooses the persist store of each sector)")
    names: dict[str, str] = {}

    def add(where: str, name: str, location: Path, readonly: bool) -> None:
        if name in names:
            raise ConfigError(f"{where}: duplicate persist store name {name!r} (also {names[name]})")
        names[name] = where
        cfg.attached.append(AttachedStore(name, location, readonly))

    for where, a in tagged:
        a = table(a, where)
        warn_unknown(a, {"name", "location", "readonly"}, where, cfg.warnings)
        if not a.get("location"):
            raise ConfigError(f"{where}.location is required")
        if not isinstance(a["location"], str):
            raise ConfigError(f"{where}.location: {a['location']!r} is not a path")
        if not isinstance(a.get("readonly", False), bool):
            raise ConfigError(f"{where}.readonly: {a['readonly']!r} is not true or false")
        add(where, str(a.get("name") or a["location"]), Path(a["location"]).expanduser(), a.get("readonly", False))
    key = "scan_persist_stores" if "scan_persist_stores" in worker else "ScanPersistStores"
    patterns = worker.get(key, [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(f"[worker].{key}: {patterns!r} is not a list of glob patterns")
    from .stores import scan_persist_stores
    try:
        found = scan_persist_stores(patterns, f"[worker].{key}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for name, location, readonly in found:
        add(f"[worker].{key}: {location}", name, location, readonly)


def _processors(raw: dict, cfg: WorkerConfig, available_cpus: set[int] | None) -> None:
    proc = table(raw.get("processors", {}), "[processors]")
    lim = table(proc.get("limitation", {}), "[processors.limitation]")
    warn_unknown(lim, {"concurrent", "staggered"}, "[processors.limitation]", cfg.warnings)
    # [processors.limitation.concurrent] replaces the older [processors.limit] when both are there
    if "concurrent" in lim:
        cfg.concurrent = _stage_map(lim["concurrent"], "[processors.limitation.concurrent]", positive_int)
        if "limit" in proc:
            cfg.warnings.append("[processors.limit]: ignored, [processors.limitation.concurrent] replaces it")
    else:
        cfg.concurrent = _stage_map(proc.get("limit", {}), "[processors.limit]", positive_int)
    cfg.staggered = _stage_map(lim.get("staggered", {}), "[processors.limitation.staggered]", parse_humantime)
    cfg.ext_locks = {}
    for k, v in table(proc.get("ext_locks", {}), "[processors.ext_locks]").items():
        try:
            cfg.ext_locks[k] = positive_int(v)
        except ValueError as exc:
            raise ConfigError(f"[processors.ext_locks].{k}: {exc}") from None
    for size, path in table(proc.get("static_tree_d", {}), "[processors.static_tree_d]").items():
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"[processors.static_tree_d].{size}: {p} does not exist")
        cfg.static_tree_d[sector_size(size).name] = p.resolve()
    dump_dir = proc.get("dump_dir")      # ours: where malformed answers of external processors go
    if dump_dir is not None and (not isinstance(dump_dir, str) or not dump_dir):
        raise ConfigError(f"[processors].dump_dir: {dump_dir!r} is not a directory")
    for key, entries in proc.items():
        if key in ("limit", "limitation", "ext_locks", "static_tree_d", "dump_dir"):
            continue
        if key not in PROCESSOR_STAGES:
            raise ConfigError(f"[[processors.{key}]]: {key!r} is not a processor stage ({', '.join(PROCESSOR_STAGES)})")
        if not isinstance(entries, list):
            raise ConfigError(f"[[processors.{key}]]: expected an array of tables ([[processors.{key}]])")
        parsed = [parse_processor(key, i, e, cfg.ext_locks, cfg.warnings, available_cpus) for i, e in enumerate(entries)]
        if dump_dir:
            parsed = [replace(p, dump_dir=Path(dump_dir).expanduser()) for p in parsed]
        if key in NOT_RUN_PROCESSORS:
            if parsed:
                cfg.warnings.append(f"[[processors.{key}]]: not started: {NOT_RUN_PROCESSORS[key]}")
            continue
        run = []
        for p in parsed:
            if not p.bin and key in EXTERNAL_ONLY:
                cfg.warnings.append(f"[[processors.{key}]]: not started: entry {p.index} has no `bin`, and {EXTERNAL_ONLY[key]}")
            elif p.bin and key not in EXTERNAL_STAGES:
                cfg.warnings.append(f"[[processors.{key}]][{p.index}]: not started: an external `bin` is used for "
                                    f"{', '.join(EXTERNAL_STAGES)} only ({key} runs in a builtin pool or the thread)")
            else:
                run.append(p)
        if run:
            cfg.processors[key] = run


def _plan(plan, where: str) -> str:
    if plan not in PLANS:
        raise ConfigError(f"{where}: {plan!r} is not one of {', '.join(PLANS)}")
    return plan


def parse_hot_config(raw: dict, where: str, base: ThreadConfig, warnings: list[str]) -> ThreadConfig:
    """`<location>/config.toml`, re-read before each new sector: `plan` and `[sealing]` over the
    thread's settings from worker.toml (Damocles' merge order); it cannot move the location. A
    plan switch takes effect between sectors (the thread's runner does it)."""
    if "location" in raw:
        raise ConfigError(f"{where}: location cannot be changed here (it is set in worker.toml)")
    warn_unknown(raw, {"plan", "sealing"}, where, warnings)
    plan = _plan(raw.get("plan", base.plan), f"{where}: plan")
    if plan in NOT_RUN_PLANS:
        raise ConfigError(f"{where}: plan: {NOT_RUN_PLANS[plan]}")
    if plan != base.plan and plan not in JOURNALED_PLANS:
        raise ConfigError(f"{where}: plan {plan!r}: a thread switches to {plan} only in worker.toml (with a restart); "
                          f"here it may switch between {', '.join(JOURNALED_PLANS)}")
    return ThreadConfig(base.location, plan, parse_sealing(raw.get("sealing", {}), f"{where}: sealing", base.sealing, warnings))


def load_worker_config(path: str | Path, available_cpus: set[int] | None = None) -> WorkerConfig:
    return parse_worker_config(load_toml(path), available_cpus)
