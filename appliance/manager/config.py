"""The manager's config, `sector-manager.cfg` in Damocles' layout (`damocles-manager daemon
init`): `[Common]` with `[[Common.PersistStores]]`, `[[Miners]]` with `Sector`, `Commitment`,
`PoSt`..., plus this project's `[RPC]`, `[Sealing]`, `[Market]` and `[Chain]` (devnet policy and
clock). Keys match without regard to case, as Go's TOML decoding matches them to struct fields.
Unknown keys are reported; bad values are refused naming the key.

`manager.toml`, the layout of earlier versions, is the same file under another name, but its
`MinNumber` was the first number handed out; in Damocles' (and sector-manager.cfg) it is the
last number never handed out. load_config reads a `.toml` file with the old meaning."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..chain.policy import ChainPolicy
from ..chain.types import ChainError
from ..chain.lotus.settings import ChainAPIConfig, chain_api_config
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
    seal_proof: int | None          # None: read from the chain (resolve_seal_proofs)
    min_number: int = 0             # numbers handed out are above this (Damocles' MinNumber, else InitNumber)
    max_number: int | None = None   # ... and at most this
    enabled: bool = True
    lifetime_days: int = 540
    confidence: int = 10
    pre_batch: BatchConfig = BatchConfig(2, 3600.0, 60.0)
    prove_batch: BatchConfig = BatchConfig(4, 3600.0, 60.0)
    post: PoStConfig = PoStConfig()
    enable_deals: bool = False        # `[Miners.Sector].EnableDeals`: hand out deals to workers
    sealing_epochs: int = 2880        # ours: epochs from AcquireDeals to ProveCommit; deals starting sooner are skipped
    winning_post: bool = False        # `[Miners.Proof].Enabled`: take part in block production
    pre_send_fund: bool = True        # `[Miners.Commitment.Pre].SendFund`: the PreCommit carries its deposit
    prove_send_fund: bool = True      # `[Miners.Commitment.Prove].SendFund`: the proof carries its pledge
    terminate_batch: BatchConfig = BatchConfig(2, 3600.0, 60.0)   # `[Miners.Commitment.Terminate.Batch]`


@dataclass(frozen=True)
class PersistStore:
    name: str
    path: Path
    weight: int = 1
    read_only: bool = False
    allow_miners: tuple[int, ...] = ()
    deny_miners: tuple[int, ...] = ()


@dataclass(frozen=True)
class DBConfig:
    """`[Common.DB]`: where the manager keeps its state. "sqlite": manager.db in the home;
    "postgres": the database `dsn` names (a libpq connection string or URI)."""
    driver: str = "sqlite"
    dsn: str | None = None
    lease_seconds: float = 10.0       # `LeaseSeconds`: how long the active manager's lease lasts unrenewed (manager.lease)
    path: Path | None = None          # sqlite `Path`: the state's file when not the home's manager.db (a standby's home)

    def __repr__(self) -> str:        # the DSN may carry a password: never in a log line
        return f"DBConfig(driver={self.driver!r}, dsn={'set' if self.dsn else None}, lease_seconds={self.lease_seconds:g})"


DB_DRIVERS = ("sqlite", "postgres")
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 1.0, 600.0


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
    chain_api: "ChainAPIConfig | None" = None     # [Common.API] Chain set: a Lotus/Venus node instead of the devnet
    db: DBConfig = DBConfig()
    warnings: list[str] = field(default_factory=list)

    def miner(self, actor: int) -> MinerConfig | None:
        return next((m for m in self.miners if m.actor == actor), None)


CONFIG_NAME = "sector-manager.cfg"      # Damocles' name (confmgr: `<key>.cfg`, key "sector-manager")
LEGACY_NAME = "manager.toml"

_FEE = {"GasOverEstimation": None, "GasOverPremium": None, "GasFeeCap": None, "MaxFeeCap": None}
_POLICY = {"Sender": None, "Senders": None, "SendFund": None, **_FEE,
           "Batch": {"Threshold": None, "MaxWait": None, "CheckInterval": None, **_FEE}}
_STORE = {"Name": None, "Path": None, "Meta": None, "ReadOnly": None, "Plugin": None, "PluginName": None}
# Every table and key of Damocles' manager config (damocles-manager/modules/config.go), and ours;
# a value None is a leaf (or a table of free keys, such as Meta) whose keys are left as written.
SCHEMA = {
    "Common": {"API": {"Chain": None, "Messager": None, "Market": None, "Gateway": None, "Token": None,
                       "ChainEventInterval": None},
               "Plugins": {"Dir": None},
               "PieceStores": [_STORE],
               "PersistStores": [{**_STORE, "Strict": None, "Weight": None, "AllowMiners": None, "DenyMiners": None}],
               "ScanPersistStores": None,
               "MongoKVStore": {"Enable": None, "DSN": None, "DatabaseName": None},
               "DB": {"Driver": None, "Badger": {"BaseDir": None}, "Mongo": {"Enable": None, "DSN": None, "DatabaseName": None},
                      "Plugin": {"PluginName": None, "Meta": None}, "Postgres": {"DSN": None, "DSNFile": None},
                      "LeaseSeconds": None, "Path": None},
               "Proving": {"ParallelCheckLimit": None, "SingleCheckTimeout": None, "PartitionCheckTimeout": None,
                           "Parallel": None,
                           "WorkerProver": {"JobMaxTry": None, "HeartbeatTimeout": None, "JobLifetime": None}}},
    "Miners": [{"Actor": None, "SealProof": None,
                "Sector": {"InitNumber": None, "MinNumber": None, "MaxNumber": None, "Enabled": None, "EnableDeals": None,
                           "LifetimeDays": None, "Verbose": None, "SealingEpochs": None},
                "SnapUp": {"Enabled": None, "Sender": None, "Senders": None, "SendFund": None, **_FEE, "CleanupCCData": None,
                           "MessageConfidential": None, "ReleaseCondidential": None, "MessageConfidence": None,
                           "ReleaseConfidence": None,
                           "Retry": {"MaxAttempts": None, "PollInterval": None, "APIFailureWait": None,
                                     "LocalFailureWait": None}},
                "Commitment": {"Confidence": None, "Pre": _POLICY, "Prove": _POLICY, "Terminate": _POLICY},
                "PoSt": {"Sender": None, "Senders": None, "Enabled": None, "StrictCheck": None, "Parallel": None, **_FEE,
                         "Confidence": None, "SubmitConfidence": None, "ChallengeConfidence": None,
                         "MaxRecoverSectorLimit": None, "MaxPartitionsPerPoStMessage": None,
                         "MaxPartitionsPerRecoveryMessage": None},
                "Proof": {"Enabled": None},
                "Sealing": {"SealingEpochDuration": None, "RequireActivationSuccess": None,
                            "RequireActivationSuccessUpdate": None, "RequireNotificationSuccess": None,
                            "RequireNotificationSuccessUpdate": None, "UseSyntheticPoRep": None,
                            "SealingSectorDeadlineDelayNi": None},
                "Deal": {"Enabled": None}}],
    "RPC": {"Listen": None, "AllowNetworks": None, "MaxBodyBytes": None, "WebSessionLifetime": None},
    "Sealing": {"SealRandomnessLookback": None, "InteractivePoRepConfidence": None, "ReleaseAfter": None,
                "UnreportedReleaseAfter": None, "MaxInFlightPerWorker": None, "MaxTextLength": None, "WorkerExpiry": None,
                "MaxWorkerNamesPerCredential": None, "DealHoldTimeout": None},
    "Market": {"PieceStoreQuota": None, "UnusedPieceExpiry": None},
    "Chain": None,       # ChainPolicy.from_config matches its keys without case itself
}


def canonical_keys(raw, schema, where: str = ""):
    """`raw` with every key spelled as in `schema` when it matches one without regard to case,
    recursively: Go's TOML decoder (BurntSushi/toml) takes an exact field name first, else one
    that is equal under case folding, so `[Miners.Post]` is `[Miners.PoSt]`. Two keys of one
    table that fold to the same name are refused; unknown keys are kept as written (and
    reported by the parser)."""
    if isinstance(schema, list):
        if not isinstance(raw, list):
            return raw                      # the parser refuses it, naming the key
        return [canonical_keys(item, schema[0], f"{where}[{i}]") for i, item in enumerate(raw)]
    if not isinstance(schema, dict) or not isinstance(raw, dict):
        return raw
    folded = {k.lower(): k for k in schema}
    out: dict = {}
    for key, value in raw.items():
        name = key if key in schema else folded.get(key.lower(), key)
        if name in out:
            raise ConfigError(f"{where or 'config'}: keys {name!r} and {key!r} are the same key (keys match without case)")
        sub = schema.get(name) if name in schema else None
        out[name] = canonical_keys(value, sub, f"{where}.{name}" if where else name)
    return out


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
    _unknown(raw, set(_POLICY), where, warnings)
    _unknown(b, set(_POLICY["Batch"]), f"{where}.Batch", warnings)
    out = BatchConfig(_take(b, "Threshold", int, f"{where}.Batch", default.threshold),
                      _take(b, "MaxWait", "duration", f"{where}.Batch", default.max_wait),
                      _take(b, "CheckInterval", "duration", f"{where}.Batch", default.check_interval))
    if out.threshold < 1:
        raise ConfigError(f"{where}.Batch.Threshold must be at least 1")
    return out


def parse_config(raw: dict, base: Path | None = None, *, legacy: bool = False, name: str = CONFIG_NAME) -> ManagerConfig:
    """`raw` (a decoded sector-manager.cfg) as a ManagerConfig; relative paths are under `base`.
    `legacy`: a manager.toml, whose `MinNumber` is the first number handed out."""
    cfg = ManagerConfig()
    w = cfg.warnings
    raw = canonical_keys(_table(raw, name), SCHEMA)
    _unknown(raw, {"Common", "Miners", "Chain", "RPC", "Sealing", "Market"}, name, w)
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
    _unknown(common, set(SCHEMA["Common"]), "[Common]", w)
    proving = _table(common.get("Proving", {}), "[Common.Proving]")
    _unknown(proving, set(SCHEMA["Common"]["Proving"]), "[Common.Proving]", w)
    wp = _table(proving.get("WorkerProver", {}), "[Common.Proving.WorkerProver]")
    _unknown(wp, {"JobMaxTry", "HeartbeatTimeout", "JobLifetime"}, "[Common.Proving.WorkerProver]", w)
    cfg.worker_prover = WorkerProverConfig(max(1, _take(wp, "JobMaxTry", int, "[Common.Proving.WorkerProver]", 2)),
                                           _take(wp, "HeartbeatTimeout", "duration", "[Common.Proving.WorkerProver]", 15.0),
                                           _take(wp, "JobLifetime", "duration", "[Common.Proving.WorkerProver]", 25 * 3600.0))
    cfg.db = _db(_table(common.get("DB", {}), "[Common.DB]"), base, w)
    names = set()
    stores = [(f"[[Common.PersistStores]][{i}]", s) for i, s in enumerate(_array(common, "PersistStores", "[Common]"))]
    for i, s in enumerate(_array(common, "PersistStores", "[Common]") + _scan_stores(common, base)):
        where = stores[i][0] if i < len(stores) else s.pop("_where")
        s = _table(s, where)
        _unknown(s, set(SCHEMA["Common"]["PersistStores"][0]), where, w)
        p = _store_path(s, where, base, w)
        store = _take(s, "Name", str, where, "") or str(p)      # Damocles: an unnamed store is named by its path
        if store in names:
            raise ConfigError(f"{where}.Name: duplicate store name {store!r}")
        names.add(store)
        cfg.persist_stores.append(PersistStore(store, p, max(1, _take(s, "Weight", int, where, 1)),
                                               _take(s, "ReadOnly", bool, where, False),
                                               _miner_list(s, "AllowMiners", where), _miner_list(s, "DenyMiners", where)))
    for i, s in enumerate(_array(common, "PieceStores", "[Common]")):
        where = f"[[Common.PieceStores]][{i}]"
        s = _table(s, where)
        _unknown(s, set(SCHEMA["Common"]["PieceStores"][0]), where, w)
        p = _store_path(s, where, base, w)
        cfg.piece_stores.append(PersistStore(_take(s, "Name", str, where, "") or str(p), p))
    for i, m in enumerate(_array(raw, "Miners", name)):
        mc = _miner(_table(m, f"[[Miners]][{i}]"), f"[[Miners]][{i}]", legacy, w)
        if mc is None:
            continue
        if cfg.miner(mc.actor):
            raise ConfigError(f"[[Miners]][{i}].Actor: miner {mc.actor} configured twice")
        cfg.miners.append(mc)
    try:        # [Common.API] Chain: a Lotus/Venus node (chain/lotus/settings.py)
        cfg.chain_api = chain_api_config(_table(common.get("API", {}), "[Common.API]"), raw.get("Miners", []),
                                         {m.actor: m.seal_proof for m in cfg.miners if m.seal_proof is not None})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def _db(raw: dict, base: Path | None, warnings: list[str]) -> DBConfig:
    """`[Common.DB]`. Damocles' "badger" (its default, an embedded store in the home) is this
    manager's embedded store, SQLite; its "mongo" and "plugin" are refused. A postgres DSN is
    `[Common.DB.Postgres] DSN`, or the first line of the file `DSNFile` names (relative to the
    config's directory); a password may also come from libpq's PGPASSWORD or passfile."""
    where = "[Common.DB]"
    _unknown(raw, set(SCHEMA["Common"]["DB"]), where, warnings)
    driver = _take(raw, "Driver", str, where, "sqlite").strip().lower() or "sqlite"
    if driver == "badger":
        base_dir = _take(_table(raw.get("Badger", {}), "[Common.DB.Badger]"), "BaseDir", str, "[Common.DB.Badger]", "")
        if base_dir:
            warnings.append("[Common.DB.Badger].BaseDir is ignored: the manager keeps its state in manager.db in its home "
                            "(Driver \"badger\" is taken as the embedded store, sqlite)")
        driver = "sqlite"
    if driver not in DB_DRIVERS:
        raise ConfigError(f"{where}.Driver: {raw['Driver']!r} is not supported: use \"sqlite\" (the default, manager.db "
                          f"in the home) or \"postgres\" (with [Common.DB.Postgres] DSN)")
    lease = raw.get("LeaseSeconds", DBConfig.lease_seconds)
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
        raise ConfigError(f"{where}.LeaseSeconds: {lease!r} is not a number of seconds from {MIN_LEASE_SECONDS:g} to "
                          f"{MAX_LEASE_SECONDS:g} (how long the active manager's lease lasts unrenewed)")
    pw = "[Common.DB.Postgres]"
    pg = _table(raw.get("Postgres", {}), pw)
    _unknown(pg, set(SCHEMA["Common"]["DB"]["Postgres"]), pw, warnings)
    path = _take(raw, "Path", str, where, "")
    if driver == "sqlite":
        # another home's manager.db, shared on one host by a standby manager (relative: to the config's directory)
        file = None if not path else Path(path) if base is None or Path(path).is_absolute() else base / path
        return DBConfig(lease_seconds=float(lease), path=file)
    if path:
        raise ConfigError(f"{where}.Path is the SQLite file's path: with Driver = \"postgres\" the database is the DSN's")
    dsn, dsn_file = _take(pg, "DSN", str, pw, ""), _take(pg, "DSNFile", str, pw, "")
    if bool(dsn) == bool(dsn_file):
        raise ConfigError(f"{pw}: Driver is \"postgres\": set exactly one of DSN (e.g. \"postgresql://damocles@db-host/damocles\") "
                          f"and DSNFile (a file holding it)")
    if dsn_file:
        path = Path(dsn_file) if base is None or Path(dsn_file).is_absolute() else base / dsn_file
        try:
            lines = path.read_text().strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{pw}.DSNFile: {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        dsn = lines[0].strip() if lines else ""
        if not dsn:
            raise ConfigError(f"{pw}.DSNFile: {path} is empty: it should hold the DSN on its first line")
    elif re.search(r"(?i)(://[^/@:]*:[^/@]+@|\bpassword\s*=)", dsn):
        warnings.append(f"{pw}.DSN carries a password in the config: prefer DSNFile (a file only the manager's user "
                        f"reads) or libpq's PGPASSWORD / passfile")
    return DBConfig("postgres", dsn, float(lease))


def _scan_stores(common: dict, base: Path | None) -> list[dict]:
    """`[Common].ScanPersistStores`, as Damocles' manager reads it (modules.ScanPersistStores):
    each glob's matches that hold a `sectorstore.json` are persist stores, the file holding the
    keys of a [[Common.PersistStores]] (matched without case, as Go's encoding/json does) with
    `ID` standing for an empty `Name`, and the match as the Path. Relative patterns start from
    the config's directory. A file that cannot be read is an error naming it."""
    patterns = common.get("ScanPersistStores", [])
    if not isinstance(patterns, list) or not all(isinstance(x, str) for x in patterns):
        raise ConfigError("[Common].ScanPersistStores: expected a list of glob patterns")
    out = []
    for pattern in patterns:
        full = pattern if base is None or Path(pattern).is_absolute() else str(base / pattern)
        for match in sorted(glob.glob(full)):
            meta = Path(match) / "sectorstore.json"
            if not meta.is_file():
                continue
            where = f"[Common].ScanPersistStores {pattern!r}: {meta}"
            try:
                info = json.loads(meta.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{where} cannot be read: {exc}") from None
            info = canonical_keys(_table(info, where), {**SCHEMA["Common"]["PersistStores"][0], "ID": None,
                                                        **{k: None for k in LOTUS_STORE_KEYS}}, where)
            info = _from_lotus(info)
            info["Name"] = info.get("Name") or info.get("ID") or ""
            info.pop("ID", None)
            out.append({**info, "Path": str(Path(match).resolve()), "_where": where})
    return out


# a lotus-miner storage path's sectorstore.json (storiface.LocalStorageMeta) has these too: read and
# ignored (sealing and moving files between paths are the worker's and the manager's config here)
LOTUS_STORE_KEYS = ("CanSeal", "CanStore", "MaxStorage", "Groups", "AllowTo", "AllowTypes", "DenyTypes")


def _from_lotus(info: dict) -> dict:
    """A lotus sectorstore.json as a persist store: its extra keys dropped, null lists empty,
    miners written as addresses (lotus: "f01000") read as actor ids."""
    out = {k: v for k, v in info.items() if k not in LOTUS_STORE_KEYS}
    for key in ("AllowMiners", "DenyMiners"):
        v = out.get(key)
        if v is None:
            out.pop(key, None)
        elif isinstance(v, list):
            ids = []
            for x in v:
                m = re.fullmatch(r"[ft]0(\d+)", x) if isinstance(x, str) else None
                ids.append(int(m.group(1)) if m else x)        # anything else: refused by _miner_list, named
            out[key] = ids
    return out


def _array(raw: dict, key: str, where: str) -> list:
    v = raw.get(key, [])
    if not isinstance(v, list):
        raise ConfigError(f"{where}.{key}: expected an array of tables ([[{key}]])")
    return v


def _miner_list(raw: dict, key: str, where: str) -> tuple[int, ...]:
    v = raw.get(key, [])
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
        raise ConfigError(f"{where}.{key}: {v!r} is not a list of miner actor ids")
    return tuple(v)


def _store_path(s: dict, where: str, base: Path | None, warnings: list[str]) -> Path:
    """The store's directory. An empty or absent Path (as `daemon init` leaves it, every key
    commented out) is what Go makes of it, filepath.Abs(""): the directory relative paths start
    from (Damocles': the manager's working directory; here, the config file's directory)."""
    path = _take(s, "Path", str, where, "")
    if not path:
        warnings.append(f"{where}.Path is empty: the store is {base or Path('.')}, the directory relative paths "
                        f"start from, as Damocles opens the current directory")
    p = Path(path)
    return p if base is None or p.is_absolute() else base / p


def _has_values(t) -> bool:
    """Does a table hold any value (not only empty sub-tables)?"""
    return any(_has_values(v) if isinstance(v, dict) else True for v in t.values()) if isinstance(t, dict) else True


def _miner(m: dict, where: str, legacy: bool, w: list[str]) -> MinerConfig | None:
    _unknown(m, set(SCHEMA["Miners"][0]), where, w)
    actor = _take(m, "Actor", int, where, None)
    if actor is None:
        if _has_values(m):
            raise ConfigError(f"{where}.Actor is required")
        # `daemon init` writes the example miner's tables with every key commented out; Go
        # decodes it as actor 0, which no chain has, and allocates nothing for it
        w.append(f"{where}: no Actor and no values (the commented-out example of `daemon init`): ignored")
        return None
    proof = None
    if "SealProof" in m:
        try:
            proof = seal_proof(m["SealProof"]).id
        except ValueError as exc:
            raise ConfigError(f"{where}.SealProof: {exc}") from None
    sw = f"{where}.Sector"
    sec = _table(m.get("Sector", {}), sw)
    _unknown(sec, set(SCHEMA["Miners"][0]["Sector"]), sw, w)
    init_number = _take(sec, "InitNumber", int, sw, 0)
    min_number = _take(sec, "MinNumber", int, sw, None)
    if legacy and min_number is not None:
        min_number = max(min_number - 1, 0)      # manager.toml: MinNumber was the first number handed out
    floor = min_number if min_number is not None else init_number   # Damocles: MinNumber when set, else InitNumber
    max_number = _take(sec, "MaxNumber", int, sw, None)
    if max_number is not None and max_number <= floor:
        key = "MinNumber" if min_number is not None else "InitNumber"
        raise ConfigError(f"{sw}: MaxNumber {max_number} is below {key} {floor} + 1, the first number it allows: "
                          f"no sector could be allocated")
    cw = f"{where}.Commitment"
    com = _table(m.get("Commitment", {}), cw)
    _unknown(com, set(SCHEMA["Miners"][0]["Commitment"]), cw, w)
    for t in ("SnapUp", "Sealing", "Deal"):
        _unknown(_table(m.get(t, {}), f"{where}.{t}"), set(SCHEMA["Miners"][0][t]), f"{where}.{t}", w)
    pw = f"{where}.PoSt"
    post = _table(m.get("PoSt", {}), pw)
    _unknown(post, set(SCHEMA["Miners"][0]["PoSt"]), pw, w)
    proof_tbl = _table(m.get("Proof", {}), f"{where}.Proof")
    _unknown(proof_tbl, {"Enabled"}, f"{where}.Proof", w)
    sealing = _table(m.get("Sealing", {}), f"{where}.Sealing")
    # Damocles' SealingEpochDuration (0: not set) is what our Sector.SealingEpochs says
    epochs = _take(sealing, "SealingEpochDuration", int, f"{where}.Sealing", 0) or 2880
    return MinerConfig(
        actor, proof, floor, max_number,
        _take(sec, "Enabled", bool, sw, True),
        _take(sec, "LifetimeDays", int, sw, 540),
        _take(com, "Confidence", int, cw, 10),
        _batch(_table(com.get("Pre", {}), f"{cw}.Pre"), f"{cw}.Pre", BatchConfig(2, 3600.0, 60.0), w),
        _batch(_table(com.get("Prove", {}), f"{cw}.Prove"), f"{cw}.Prove", BatchConfig(4, 3600.0, 60.0), w),
        PoStConfig(_take(post, "Enabled", bool, pw, True),
                   _take(post, "ChallengeConfidence", int, pw, 10) or 10,
                   _take(post, "SubmitConfidence", int, pw, 4) or 4,
                   _take(post, "Confidence", int, pw, 10),
                   _take(post, "MaxPartitionsPerPoStMessage", int, pw, 0)),
        enable_deals=_take(sec, "EnableDeals", bool, sw, False),
        sealing_epochs=_take(sec, "SealingEpochs", int, sw, epochs),
        winning_post=_take(proof_tbl, "Enabled", bool, f"{where}.Proof", False),
        pre_send_fund=_take(_table(com.get("Pre", {}), f"{cw}.Pre"), "SendFund", bool, f"{cw}.Pre", True),
        prove_send_fund=_take(_table(com.get("Prove", {}), f"{cw}.Prove"), "SendFund", bool, f"{cw}.Prove", True),
        terminate_batch=_batch(_table(com.get("Terminate", {}), f"{cw}.Terminate"), f"{cw}.Terminate",
                               BatchConfig(2, 3600.0, 60.0), w))


def resolve_seal_proofs(cfg: ManagerConfig, chain) -> None:
    """Each miner's seal proof type: the chain's, as Damocles reads it (MinerAPI.GetInfo); a
    `SealProof` in the config must agree with it, and is required for a miner the chain does not
    have yet (the devnet creates it with that proof). Refused naming the miner."""
    for i, m in enumerate(cfg.miners):
        try:
            on_chain = chain.miner_info(m.actor).seal_proof
        except ChainError:
            on_chain = None
        if on_chain is None and m.seal_proof is None:
            raise ConfigError(f"[[Miners]] Actor = {m.actor}: SealProof is not set and the chain has no miner "
                              f"f0{m.actor} to read it from: set SealProof, e.g. \"StackedDrg2KiBV1_1\"")
        if on_chain is not None and m.seal_proof is not None and on_chain != m.seal_proof:
            raise ConfigError(f"[[Miners]] Actor = {m.actor}: SealProof {seal_proof(m.seal_proof).name} differs from "
                              f"the chain's {seal_proof(on_chain).name} for f0{m.actor}: remove SealProof or correct it")
        if m.seal_proof is None:
            cfg.miners[i] = replace(m, seal_proof=on_chain)


def config_path(home: Path) -> Path:
    """The manager home's config: sector-manager.cfg, else manager.toml (earlier versions);
    a home with both is refused (which one would count?)."""
    new, old = Path(home) / CONFIG_NAME, Path(home) / LEGACY_NAME
    if new.exists() and old.exists():
        raise ConfigError(f"{home} has both {CONFIG_NAME} and {LEGACY_NAME}: keep one (damocles manager init --upgrade "
                          f"moves {LEGACY_NAME} aside once it has written {CONFIG_NAME})")
    return old if old.exists() else new


def load_config(path: str | Path) -> ManagerConfig:
    """A sector-manager.cfg; a `.toml` file is read as an earlier version's manager.toml."""
    path = Path(path)
    return parse_config(load_toml(path), path.parent, legacy=path.suffix == ".toml", name=path.name)
