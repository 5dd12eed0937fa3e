"""post.toml: the prover's name and pace, the manager, the persist stores it reads sealed
sectors from, and `[[processors.window_post]]` pools pinned like the worker's. Bad values are
refused naming the key; unknown keys are warned about."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, load_toml
from ..core.units import parse_duration
from ..config.processors import AttachedStore, ProcessorConfig, parse_processor
from ..config.validate import manager_urls, table, warn_unknown


@dataclass
class PostConfig:
    name: str = ""
    poll_interval: float = 1.0          # how often to ask the manager for jobs
    heartbeat_interval: float = 3.0     # Damocles' worker-prover: every 3 s
    concurrency: int = 1                # jobs proven at once
    allowed_miners: list[int] | None = None
    allowed_proof_types: list[str] | None = None
    manager_urls: list[str] = field(default_factory=list)    # every manager's endpoint (a standby's too)
    manager_token: str | None = None
    attached: list[AttachedStore] = field(default_factory=list)
    processors: list[ProcessorConfig] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def manager_url(self) -> str:
        """The first manager's endpoint (what messages name; the RPC client follows the active one)."""
        return self.manager_urls[0] if self.manager_urls else ""


def parse_post_config(raw: dict, available_cpus: set[int] | None = None) -> PostConfig:
    cfg = PostConfig()
    w = cfg.warnings
    warn_unknown(raw, {"prover", "sector_manager", "attached", "processors"}, "post.toml", w)
    prover = table(raw.get("prover", {}), "[prover]")
    warn_unknown(prover, {"name", "poll_interval", "heartbeat_interval", "concurrency", "allowed_miners", "allowed_proof_types"},
           "[prover]", w)
    cfg.name = str(prover.get("name", "")) or f"{os.uname().nodename}-prover"
    for key in ("poll_interval", "heartbeat_interval"):
        try:
            value = parse_duration(prover.get(key, getattr(cfg, key)))
        except ValueError as exc:
            raise ConfigError(f"[prover].{key}: {exc}") from None
        if value <= 0:
            raise ConfigError(f"[prover].{key}: must be more than 0")
        setattr(cfg, key, value)
    conc = prover.get("concurrency", 1)
    if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
        raise ConfigError(f"[prover].concurrency: {conc!r} is not a positive integer")
    cfg.concurrency = conc
    miners = prover.get("allowed_miners")
    if miners is not None and (not isinstance(miners, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in miners)):
        raise ConfigError(f"[prover].allowed_miners: {miners!r} is not a list of actor ids")
    cfg.allowed_miners = miners
    types = prover.get("allowed_proof_types")
    if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
        raise ConfigError(f"[prover].allowed_proof_types: {types!r} is not a list of PoSt proof names")
    cfg.allowed_proof_types = types
    sm = table(raw.get("sector_manager", {}), "[sector_manager]")
    warn_unknown(sm, {"rpc_client", "token"}, "[sector_manager]", w)
    client = table(sm.get("rpc_client", {}), "[sector_manager.rpc_client]")
    cfg.manager_urls = manager_urls(client)
    cfg.manager_token = sm.get("token") or os.environ.get("DAMOCLES_TOKEN")
    names = set()
    for i, a in enumerate(raw.get("attached", [])):
        where = f"[[attached]][{i}]"
        a = table(a, where)
        warn_unknown(a, {"name", "location", "readonly"}, where, w)
        if not a.get("location") or not a.get("name"):
            raise ConfigError(f"{where}: name and location are required (the name the manager knows the store by)")
        if a["name"] in names:
            raise ConfigError(f"{where}.name: duplicate attached store {a['name']!r}")
        names.add(a["name"])
        cfg.attached.append(AttachedStore(a["name"], Path(a["location"]).expanduser(), True))
    if not cfg.attached:
        raise ConfigError("post.toml has no [[attached]] persist store to read sealed sectors from")
    procs = table(raw.get("processors", {}), "[processors]")
    for key in procs:
        if key != "window_post":
            raise ConfigError(f"[[processors.{key}]]: a prover only has window_post processors")
    entries = procs.get("window_post", [])
    if not isinstance(entries, list):
        raise ConfigError("[[processors.window_post]]: expected an array of tables")
    cfg.processors = [parse_processor("window_post", i, e, {}, cfg.warnings, available_cpus) for i, e in enumerate(entries)]
    return cfg


def load_post_config(path: str | Path, available_cpus: set[int] | None = None) -> PostConfig:
    return parse_post_config(load_toml(path), available_cpus)
