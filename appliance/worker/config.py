"""The worker's TOML, in Damocles' shape (damocles-worker's sample config): `[worker]`,
`[sector_manager]`, `[sealing]`, `[[sealing_thread]]` with `sealing.*` overrides, `[[attached]]`,
`[processors]`. Every key has Damocles' default; bad values are refused naming the key; unknown
keys are warned about (Damocles ignores them silently, which hides typos)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..config import ConfigError, load_toml
from ..config.processors import AttachedStore, ProcessorConfig, parse_processor
from ..config.validate import manager_url, positive_int, table, warn_unknown
from ..core.proof_types import sector_size
from ..core.units import parse_bytes, parse_duration

STAGES = ("add_pieces", "tree_d", "pc1", "pc2", "synth_proof", "c1", "c2", "snap_encode", "snap_prove", "transfer",
          "unseal", "window_post")
PROCESSOR_STAGES = ("add_pieces", "tree_d", "pc1", "pc2", "c2", "snap_encode", "snap_prove", "transfer", "unseal",
                    "window_post", "sealing_daemons")
PLANS = ("sealer", "snapup", "rebuild", "unseal", "wdpost")


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
                values[key] = parse_duration(v)
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


@dataclass
class WorkerConfig:
    name: str = ""
    rpc_host: str = "0.0.0.0"
    rpc_port: int = 17890
    ping_interval: float = 30.0
    metrics_enable: bool = False           # [metrics] enable: a Prometheus exporter without a token
    metrics_listen: str = "0.0.0.0:9000"   # [metrics] http_listen
    manager_url: str = ""
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


def parse_worker_config(raw: dict, available_cpus: set[int] | None = None) -> WorkerConfig:
    cfg = WorkerConfig()
    w = cfg.warnings
    warn_unknown(raw, {"worker", "metrics", "sector_manager", "sealing", "sealing_thread", "attached", "processors"}, "worker.toml", w)
    worker = table(raw.get("worker", {}), "[worker]")
    warn_unknown(worker, {"name", "rpc_server", "ping_interval", "local_pieces_dir", "local_pieces_dirs", "scan_persist_stores",
                          "unseal_output_dirs"}, "[worker]", w)
    cfg.name = str(worker.get("name", "")) or os.uname().nodename
    dirs = worker.get("local_pieces_dirs", [worker["local_pieces_dir"]] if "local_pieces_dir" in worker else [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"[worker].local_pieces_dirs: {dirs!r} is not a list of directories")
    cfg.local_pieces_dirs = [Path(d).expanduser() for d in dirs]
    out_dirs = worker.get("unseal_output_dirs", [])
    if not isinstance(out_dirs, list) or not all(isinstance(d, str) and d for d in out_dirs):
        raise ConfigError(f"[worker].unseal_output_dirs: {out_dirs!r} is not a list of directories")
    cfg.unseal_output_dirs = [Path(d).expanduser() for d in out_dirs]
    for d in cfg.unseal_output_dirs:
        if not d.is_absolute():
            raise ConfigError(f"[worker].unseal_output_dirs: {str(d)!r} is not an absolute path")
    rpc = table(worker.get("rpc_server", {}), "[worker.rpc_server]")
    cfg.rpc_host = str(rpc.get("host", cfg.rpc_host))
    port = rpc.get("port", cfg.rpc_port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"[worker.rpc_server].port: {port!r} is not a TCP port")
    cfg.rpc_port = port
    try:
        cfg.ping_interval = parse_duration(worker.get("ping_interval", "30s"))
    except ValueError as exc:
        raise ConfigError(f"[worker].ping_interval: {exc}") from None
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
    sm = table(raw.get("sector_manager", {}), "[sector_manager]")
    warn_unknown(sm, {"rpc_client", "piece_token", "token"}, "[sector_manager]", w)
    client = table(sm.get("rpc_client", {}), "[sector_manager.rpc_client]")
    if "addr" not in client:
        raise ConfigError("[sector_manager.rpc_client].addr is required (the manager's URL or multiaddr)")
    cfg.manager_url = manager_url(client["addr"], "[sector_manager.rpc_client].addr")
    cfg.manager_token = sm.get("token") or os.environ.get("DAMOCLES_TOKEN")
    cfg.sealing = parse_sealing(raw.get("sealing", {}), "[sealing]", SealingConfig(), w)
    seen = set()
    for i, t in enumerate(raw.get("sealing_thread", [])):
        where = f"[[sealing_thread]][{i}]"
        t = table(t, where)
        warn_unknown(t, {"location", "plan", "sealing"}, where, w)
        plan = _plan(t.get("plan", "sealer"), f"{where}.plan")
        if not t.get("location"):
            if plan != "wdpost":        # a WindowPoSt thread reads the attached stores only
                raise ConfigError(f"{where}.location is required")
            cfg.threads.append(ThreadConfig(None, plan, parse_sealing(t.get("sealing", {}), f"{where}.sealing", cfg.sealing, w)))
            continue
        loc = Path(t["location"]).expanduser().resolve()
        if loc in seen:
            raise ConfigError(f"{where}.location: {loc} is used by another sealing thread")
        seen.add(loc)
        cfg.threads.append(ThreadConfig(loc, plan, parse_sealing(t.get("sealing", {}), f"{where}.sealing", cfg.sealing, w)))
    names = set()
    for i, a in enumerate(raw.get("attached", [])):
        where = f"[[attached]][{i}]"
        a = table(a, where)
        warn_unknown(a, {"name", "location", "readonly"}, where, w)
        if not a.get("location"):
            raise ConfigError(f"{where}.location is required")
        name = a.get("name") or str(a["location"])
        if name in names:
            raise ConfigError(f"{where}.name: duplicate attached store {name!r}")
        names.add(name)
        cfg.attached.append(AttachedStore(name, Path(a["location"]).expanduser(), bool(a.get("readonly", False))))
    proc = table(raw.get("processors", {}), "[processors]")
    lim = table(proc.get("limitation", {}), "[processors.limitation]")
    cfg.concurrent = _stage_map(proc.get("limit", {}), "[processors.limit]", positive_int)
    cfg.concurrent.update(_stage_map(lim.get("concurrent", {}), "[processors.limitation.concurrent]", positive_int))
    cfg.staggered = _stage_map(lim.get("staggered", {}), "[processors.limitation.staggered]", parse_duration)
    cfg.ext_locks = {k: positive_int(v) for k, v in table(proc.get("ext_locks", {}), "[processors.ext_locks]").items()}
    for size, path in table(proc.get("static_tree_d", {}), "[processors.static_tree_d]").items():
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"[processors.static_tree_d].{size}: {p} does not exist")
        cfg.static_tree_d[sector_size(size).name] = p.resolve()
    for key, entries in proc.items():
        if key in ("limit", "limitation", "ext_locks", "static_tree_d"):
            continue
        if key not in PROCESSOR_STAGES:
            raise ConfigError(f"[[processors.{key}]]: {key!r} is not a processor stage ({', '.join(PROCESSOR_STAGES)})")
        if not isinstance(entries, list):
            raise ConfigError(f"[[processors.{key}]]: expected an array of tables ([[processors.{key}]])")
        cfg.processors[key] = [parse_processor(key, i, e, cfg.ext_locks, cfg.warnings, available_cpus) for i, e in enumerate(entries)]
    return cfg


def _plan(plan, where: str) -> str:
    if plan not in PLANS:
        raise ConfigError(f"{where}: {plan!r} is not one of {', '.join(PLANS)}")
    return plan


def parse_hot_config(raw: dict, where: str, base: ThreadConfig, warnings: list[str]) -> ThreadConfig:
    """`<location>/config.toml`, re-read before each new sector: `plan` and `[sealing]` over the
    thread's settings from worker.toml (Damocles' merge order); it cannot move the location."""
    if "location" in raw:
        raise ConfigError(f"{where}: location cannot be changed here (it is set in worker.toml)")
    warn_unknown(raw, {"plan", "sealing"}, where, warnings)
    plan = _plan(raw.get("plan", base.plan), f"{where}: plan")
    if plan != base.plan:
        raise ConfigError(f"{where}: plan {plan!r} differs from the thread's plan {base.plan!r} in worker.toml; "
                          "change it there and restart the worker to switch plans")
    return ThreadConfig(base.location, plan, parse_sealing(raw.get("sealing", {}), f"{where}: sealing", base.sealing, warnings))


def load_worker_config(path: str | Path, available_cpus: set[int] | None = None) -> WorkerConfig:
    return parse_worker_config(load_toml(path), available_cpus)
