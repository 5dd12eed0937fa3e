"""manager.toml, in Damocles' manager shape: `[Common]` with `[[Common.PersistStores]]`,
`[[Miners]]` with `Sector` and `Commitment`, plus `[Chain]` (devnet policy and clock) and `[RPC]`.
Unknown keys are reported; bad values are refused naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..chain.policy import ChainPolicy
from ..config import ConfigError, load_toml
from ..core.proof_types import seal_proof
from ..core.units import parse_bytes, parse_duration


@dataclass(frozen=True)
class BatchConfig:
    threshold: int
    max_wait: float       # seconds
    check_interval: float


@dataclass(frozen=True)
class PoStConfig:
    """`[Miners.PoSt]`, Damocles' keys and defaults (epochs)."""
    enabled: bool = True
    challenge_confidence: int = 10   # start proving this many epochs after the challenge epoch
    submit_confidence: int = 4       # submit no earlier than this many epochs after the deadline opens
    confidence: int = 10             # epochs a landed proof waits before it counts as final
    max_partitions_per_message: int = 0   # 0: as many as the proof type allows in one message


@dataclass(frozen=True)
class WorkerProverConfig:
    """`[Common.Proving.WorkerProver]`: WindowPoSt jobs for dedicated provers."""
    job_max_try: int = 2
    heartbeat_timeout: float = 15.0
    job_lifetime: float = 25 * 3600.0


@dataclass(frozen=True)
class MinerConfig:
    actor: int
    seal_proof: int
    min_number: int = 0
    max_number: int | None = None
    enabled: bool = True
    lifetime_days: int = 540
    confidence: int = 10
    pre_batch: BatchConfig = BatchConfig(2, 3600.0, 60.0)
    prove_batch: BatchConfig = BatchConfig(4, 3600.0, 60.0)
    post: PoStConfig = PoStConfig()
    enable_deals: bool = False        # `[Miners.Sector].EnableDeals`: hand out deals to workers
    sealing_epochs: int = 2880        # ours: epochs from AcquireDeals to ProveCommit; deals starting sooner are skipped
    winning_post: bool = False        # `[Miners.Proof].Enabled`: take part in block production


@dataclass(frozen=True)
class PersistStore:
    name: str
    path: Path
    weight: int = 1
    read_only: bool = False
    allow_miners: tuple[int, ...] = ()
    deny_miners: tuple[int, ...] = ()


@dataclass
class ManagerConfig:
    listen: str = "127.0.0.1:1789"
    allow_networks: list[str] = field(default_factory=list)
    max_body: int = 8 << 20
    web_session_lifetime: float = 12 * 3600.0     # a status page login lasts this long
    seal_randomness_lookback: int = 900
    interactive_porep_confidence: int = 6
    release_after: float = 7 * 86400.0      # allocations of sectors silent this long are released
    unreported_release_after: float = 600.0   # an allocation no worker has reported by then is released
    max_in_flight_per_worker: int = 512     # sectors not finalized one worker's credential may hold
    max_text_length: int = 4096             # failure descriptions and reasons are cut there (names at 256)
    worker_expiry: float = 24 * 3600.0      # a worker silent this long leaves the list and frees its name
    max_worker_names: int = 256             # worker names one credential may hold at once
    deal_hold_timeout: float = 12 * 3600.0  # deals of a sector that has not moved this long go back to pending
    piece_store_quota: int = 1 << 40        # `[Market] PieceStoreQuota`: bytes of pieces the piece stores may hold
    unused_piece_expiry: float = 24 * 3600.0   # a piece no deal uses is removed this long after its upload
    persist_stores: list[PersistStore] = field(default_factory=list)
    piece_stores: list[PersistStore] = field(default_factory=list)
    worker_prover: WorkerProverConfig = WorkerProverConfig()
    miners: list[MinerConfig] = field(default_factory=list)
    chain: ChainPolicy = field(default_factory=ChainPolicy)
    warnings: list[str] = field(default_factory=list)

    def miner(self, actor: int) -> MinerConfig | None:
        return next((m for m in self.miners if m.actor == actor), None)


def _table(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    return raw


def _take(raw: dict, key: str, kind, where: str, default):
    if key not in raw:
        return default
    v = raw[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise ConfigError(f"{where}.{key}: {v!r} is not a non-negative integer")
    if kind is bool and not isinstance(v, bool):
        raise ConfigError(f"{where}.{key}: {v!r} is not true or false")
    if kind is str and not isinstance(v, str):
        raise ConfigError(f"{where}.{key}: {v!r} is not a string")
    if kind in ("duration", "bytes"):
        try:
            return parse_duration(v) if kind == "duration" else parse_bytes(v)
        except ValueError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    return v


def _unknown(raw: dict, known: set[str], where: str, warnings: list[str]) -> None:
    for k in raw:
        if k not in known:
            warnings.append(f"{where}: unknown key {k!r} ignored")


def _batch(raw: dict, where: str, default: BatchConfig, warnings: list[str]) -> BatchConfig:
    b = _table(raw.get("Batch", {}), f"{where}.Batch")
    _unknown(raw, {"Batch", "Senders", "SendFund", "GasOverEstimation", "GasOverPremium", "GasFeeCap", "MaxFeeCap"}, where, warnings)
    _unknown(b, {"Threshold", "MaxWait", "CheckInterval"}, f"{where}.Batch", warnings)
    out = BatchConfig(_take(b, "Threshold", int, f"{where}.Batch", default.threshold),
                      _take(b, "MaxWait", "duration", f"{where}.Batch", default.max_wait),
                      _take(b, "CheckInterval", "duration", f"{where}.Batch", default.check_interval))
    if out.threshold < 1:
        raise ConfigError(f"{where}.Batch.Threshold must be at least 1")
    return out


def parse_config(raw: dict, base: Path | None = None) -> ManagerConfig:
    cfg = ManagerConfig()
    w = cfg.warnings
    _unknown(raw, {"Common", "Miners", "Chain", "RPC", "Sealing", "Market"}, "manager.toml", w)
    rpc = _table(raw.get("RPC", {}), "[RPC]")
    _unknown(rpc, {"Listen", "AllowNetworks", "MaxBodyBytes", "WebSessionLifetime"}, "[RPC]", w)
    cfg.listen = _take(rpc, "Listen", str, "[RPC]", cfg.listen)
    cfg.max_body = _take(rpc, "MaxBodyBytes", int, "[RPC]", cfg.max_body)
    cfg.web_session_lifetime = _take(rpc, "WebSessionLifetime", "duration", "[RPC]", cfg.web_session_lifetime)
    if not 60 <= cfg.web_session_lifetime <= 7 * 86400:
        raise ConfigError(f"[RPC].WebSessionLifetime: {cfg.web_session_lifetime:g}s is outside 1m..168h")
    nets = rpc.get("AllowNetworks", [])
    if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
        raise ConfigError("[RPC].AllowNetworks: expected a list of networks such as \"10.0.0.0/8\"")
    cfg.allow_networks = nets
    sealing = _table(raw.get("Sealing", {}), "[Sealing]")
    _unknown(sealing, {"SealRandomnessLookback", "InteractivePoRepConfidence", "ReleaseAfter", "UnreportedReleaseAfter",
                       "MaxInFlightPerWorker", "MaxTextLength", "WorkerExpiry", "MaxWorkerNamesPerCredential",
                       "DealHoldTimeout"}, "[Sealing]", w)
    cfg.seal_randomness_lookback = _take(sealing, "SealRandomnessLookback", int, "[Sealing]", cfg.seal_randomness_lookback)
    cfg.interactive_porep_confidence = _take(sealing, "InteractivePoRepConfidence", int, "[Sealing]", cfg.interactive_porep_confidence)
    cfg.release_after = _take(sealing, "ReleaseAfter", "duration", "[Sealing]", cfg.release_after)
    cfg.unreported_release_after = _take(sealing, "UnreportedReleaseAfter", "duration", "[Sealing]",
                                         cfg.unreported_release_after)
    cfg.max_in_flight_per_worker = _take(sealing, "MaxInFlightPerWorker", int, "[Sealing]", cfg.max_in_flight_per_worker)
    cfg.max_text_length = _take(sealing, "MaxTextLength", int, "[Sealing]", cfg.max_text_length)
    cfg.worker_expiry = _take(sealing, "WorkerExpiry", "duration", "[Sealing]", cfg.worker_expiry)
    cfg.max_worker_names = _take(sealing, "MaxWorkerNamesPerCredential", int, "[Sealing]", cfg.max_worker_names)
    cfg.deal_hold_timeout = _take(sealing, "DealHoldTimeout", "duration", "[Sealing]", cfg.deal_hold_timeout)
    market = _table(raw.get("Market", {}), "[Market]")
    _unknown(market, {"PieceStoreQuota", "UnusedPieceExpiry"}, "[Market]", w)
    cfg.piece_store_quota = _take(market, "PieceStoreQuota", "bytes", "[Market]", cfg.piece_store_quota)
    cfg.unused_piece_expiry = _take(market, "UnusedPieceExpiry", "duration", "[Market]", cfg.unused_piece_expiry)
    # a bound below these would refuse or expire what a working farm does between two pings or reports
    for key, value, least in (("[Sealing].MaxInFlightPerWorker", cfg.max_in_flight_per_worker, 1),
                              ("[Sealing].MaxTextLength", cfg.max_text_length, 64),
                              ("[Sealing].MaxWorkerNamesPerCredential", cfg.max_worker_names, 1),
                              ("[Sealing].WorkerExpiry", cfg.worker_expiry, 60),
                              ("[Sealing].DealHoldTimeout", cfg.deal_hold_timeout, 60),
                              ("[Market].UnusedPieceExpiry", cfg.unused_piece_expiry, 60)):
        if value < least:
            raise ConfigError(f"{key}: {value:g} is below the least useful value, {least}"
                              f"{' seconds' if 'Expiry' in key or 'Timeout' in key else ''}")
    try:
        cfg.chain, chain_warnings = ChainPolicy.from_config(_table(raw.get("Chain", {}), "[Chain]"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    w.extend(chain_warnings)
    common = _table(raw.get("Common", {}), "[Common]")
    _unknown(common, {"PersistStores", "API", "DB", "Plugins", "PieceStores", "ScanPersistStores", "Proving"}, "[Common]", w)
    proving = _table(common.get("Proving", {}), "[Common.Proving]")
    _unknown(proving, {"WorkerProver", "Parallel"}, "[Common.Proving]", w)
    wp = _table(proving.get("WorkerProver", {}), "[Common.Proving.WorkerProver]")
    _unknown(wp, {"JobMaxTry", "HeartbeatTimeout", "JobLifetime"}, "[Common.Proving.WorkerProver]", w)
    cfg.worker_prover = WorkerProverConfig(max(1, _take(wp, "JobMaxTry", int, "[Common.Proving.WorkerProver]", 2)),
                                           _take(wp, "HeartbeatTimeout", "duration", "[Common.Proving.WorkerProver]", 15.0),
                                           _take(wp, "JobLifetime", "duration", "[Common.Proving.WorkerProver]", 25 * 3600.0))
    names = set()
    for i, s in enumerate(common.get("PersistStores", [])):
        where = f"[[Common.PersistStores]][{i}]"
        s = _table(s, where)
        _unknown(s, {"Name", "Path", "Weight", "ReadOnly", "AllowMiners", "DenyMiners", "Strict", "Meta", "Plugin", "PluginName"}, where, w)
        path = _take(s, "Path", str, where, None)
        if not path:
            raise ConfigError(f"{where}.Path is required")
        p = Path(path) if base is None or Path(path).is_absolute() else base / path
        name = _take(s, "Name", str, where, str(p))
        if name in names:
            raise ConfigError(f"{where}.Name: duplicate store name {name!r}")
        names.add(name)
        cfg.persist_stores.append(PersistStore(name, p, max(1, _take(s, "Weight", int, where, 1)),
                                               _take(s, "ReadOnly", bool, where, False),
                                               tuple(s.get("AllowMiners", [])), tuple(s.get("DenyMiners", []))))
    for i, s in enumerate(common.get("PieceStores", [])):
        where = f"[[Common.PieceStores]][{i}]"
        s = _table(s, where)
        _unknown(s, {"Name", "Path", "Meta", "Plugin", "PluginName"}, where, w)
        path = _take(s, "Path", str, where, None)
        if not path:
            raise ConfigError(f"{where}.Path is required")
        p = Path(path) if base is None or Path(path).is_absolute() else base / path
        cfg.piece_stores.append(PersistStore(_take(s, "Name", str, where, str(p)), p))
    for i, m in enumerate(raw.get("Miners", [])):
        where = f"[[Miners]][{i}]"
        m = _table(m, where)
        _unknown(m, {"Actor", "SealProof", "Sector", "Commitment", "PoSt", "SnapUp", "Proof", "Sealing"}, where, w)
        actor = _take(m, "Actor", int, where, None)
        if actor is None:
            raise ConfigError(f"{where}.Actor is required")
        try:
            proof = seal_proof(m.get("SealProof", "StackedDrg2KiBV1_1")).id
        except ValueError as exc:
            raise ConfigError(f"{where}.SealProof: {exc}") from None
        sec = _table(m.get("Sector", {}), f"{where}.Sector")
        _unknown(sec, {"MinNumber", "MaxNumber", "Enabled", "EnableDeals", "LifetimeDays", "Verbose", "InitNumber",
                       "SealingEpochs"}, f"{where}.Sector", w)
        com = _table(m.get("Commitment", {}), f"{where}.Commitment")
        _unknown(com, {"Confidence", "Pre", "Prove", "Terminate"}, f"{where}.Commitment", w)
        mc = MinerConfig(actor, proof, _take(sec, "MinNumber", int, f"{where}.Sector", 0),
                         _take(sec, "MaxNumber", int, f"{where}.Sector", None),
                         _take(sec, "Enabled", bool, f"{where}.Sector", True),
                         _take(sec, "LifetimeDays", int, f"{where}.Sector", 540),
                         _take(com, "Confidence", int, f"{where}.Commitment", 10),
                         _batch(_table(com.get("Pre", {}), f"{where}.Commitment.Pre"), f"{where}.Commitment.Pre", BatchConfig(2, 3600.0, 60.0), w),
                         _batch(_table(com.get("Prove", {}), f"{where}.Commitment.Prove"), f"{where}.Commitment.Prove", BatchConfig(4, 3600.0, 60.0), w))
        post = _table(m.get("PoSt", {}), f"{where}.PoSt")
        pw = f"{where}.PoSt"
        _unknown(post, {"Enabled", "ChallengeConfidence", "SubmitConfidence", "Confidence", "MaxPartitionsPerPoStMessage",
                        "MaxPartitionsPerRecoveryMessage", "MaxRecoverSectorLimit", "StrictCheck", "Parallel", "Senders",
                        "Sender", "GasOverEstimation", "GasOverPremium", "GasFeeCap", "MaxFeeCap"}, pw, w)
        proof_tbl = _table(m.get("Proof", {}), f"{where}.Proof")
        _unknown(proof_tbl, {"Enabled"}, f"{where}.Proof", w)
        mc = replace(mc, post=PoStConfig(_take(post, "Enabled", bool, pw, True),
                                         _take(post, "ChallengeConfidence", int, pw, 10) or 10,
                                         _take(post, "SubmitConfidence", int, pw, 4) or 4,
                                         _take(post, "Confidence", int, pw, 10),
                                         _take(post, "MaxPartitionsPerPoStMessage", int, pw, 0)),
                     winning_post=_take(proof_tbl, "Enabled", bool, f"{where}.Proof", False),
                     enable_deals=_take(sec, "EnableDeals", bool, f"{where}.Sector", False),
                     sealing_epochs=_take(sec, "SealingEpochs", int, f"{where}.Sector", 2880))
        if mc.max_number is not None and mc.max_number < mc.min_number:
            raise ConfigError(f"{where}.Sector: MaxNumber {mc.max_number} is below MinNumber {mc.min_number}")
        if cfg.miner(actor):
            raise ConfigError(f"{where}.Actor: miner {actor} configured twice")
        cfg.miners.append(mc)
    return cfg


def load_config(path: str | Path) -> ManagerConfig:
    return parse_config(load_toml(path), Path(path).parent)
