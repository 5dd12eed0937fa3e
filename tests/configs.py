"""The tests' configurations, in one place: the devnet manager every end-to-end test starts, the
worker and the dedicated prover that talk to it, each built as a dict with keyword overrides and
written as TOML with tomli-w (so no test patches another's text with str.replace)."""

from __future__ import annotations

import copy
from pathlib import Path, PurePath

import tomli_w

from .conftest import damocles_cmd
from .pg_cluster import manager_db_config


def merged(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base`, tables recursively; a value of None removes the key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def manager_config(max_number: int | None = 6, pre_threshold: int = 2, prove_threshold: int = 4,
                   prove_wait: str | None = "2s", *, pre_wait: str | None = "1s", block_time: str = "100ms",
                   check_interval: str = "100ms", miner: dict | None = None, config: dict | None = None) -> dict:
    """A devnet manager for miner 1000 with persist store `persist-1`: short confidences and
    batches (a batch is sent at `*_threshold` sectors or after `*_wait`). `block_time = "0s"`
    moves the clock only by hand. `miner` is merged into the miner's table, `config` into the
    whole file. With DAMOCLES_TEST_DB=postgres its state is on PostgreSQL (tests/pg_cluster.py)."""
    batch = {"CheckInterval": check_interval}
    m = {"Actor": 1000, "SealProof": "StackedDrg2KiBV1_1",
         "Sector": {"MaxNumber": max_number},          # the first sector is 1 (Damocles' numbering)
         "Commitment": {"Confidence": 1,
                        "Pre": {"Batch": {"Threshold": pre_threshold, "MaxWait": pre_wait, **batch}},
                        "Prove": {"Batch": {"Threshold": prove_threshold, "MaxWait": prove_wait, **batch}}}}
    cfg = {"RPC": {"Listen": "127.0.0.1:0"},
           "Sealing": {"SealRandomnessLookback": 2, "InteractivePoRepConfidence": 1},
           "Chain": {"BlockTime": block_time},
           "Common": {"PersistStores": [{"Name": "persist-1", "Path": "persist-1"}], **manager_db_config()},
           "Miners": [_without_nones(merged(m, miner or {}))]}
    return merged(cfg, config or {})


def _without_nones(d: dict) -> dict:
    """Drop keys whose value is None, recursively (a default left unset)."""
    return {k: _without_nones(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def manager_toml(*args, **kwargs) -> str:
    """manager_config(...) as TOML text: a manager.toml (earlier versions' name) or a
    sector-manager.cfg, which read it alike (no MinNumber, whose meaning differs between them)."""
    return tomli_w.dumps(manager_config(*args, **kwargs))


def write_manager_config(home, *args, legacy: bool = False, **kwargs):
    """manager_config(...) written into the manager home `home` as sector-manager.cfg (or, with
    `legacy`, as manager.toml); returns the file."""
    path = Path(home) / ("manager.toml" if legacy else "sector-manager.cfg")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manager_toml(*args, **kwargs))
    return path


# the external c2 processor is this package (or $DAMOCLES_BIN) over the vc-processors protocol
_C2_BIN, *_C2_ARGS = damocles_cmd("processor", "c2")


# every default processor table dropped: `processors={**NO_PROCESSORS, "pc1": [...]}` runs only a
# test's own pools (a stage with none runs in the sealing thread itself)
NO_PROCESSORS = {"limitation": None, "pc1": None, "pc2": None, "c2": None}


def worker_config(url: str, token: str, store, threads: list[dict], *, name: str = "w1", worker: dict | None = None,
                  sealing: dict | None = None, processors: dict | None = None, metrics: dict | None = None,
                  config: dict | None = None) -> dict:
    """A worker of the manager at `url`, with persist store `persist-1` at `store` and one
    [[sealing_thread]] per dict of `threads` (`{"location": ..., "plan": ...}`). By default: RPC on
    127.0.0.1, any free port (tests on one machine must not share 17890); short intervals; PC2
    verified; pc1 (two on cpus 0-1) and pc2 pools and the external c2 processor. `worker`,
    `sealing`, `processors` and `metrics` are merged into their tables, `config` into the whole
    file; a value of None drops a default. Paths may be given as Path."""
    cfg = {"worker": {"name": name, "ping_interval": "1s", "rpc_server": {"host": "127.0.0.1", "port": 0}},
           "sector_manager": {"rpc_client": {"addr": url}, "token": token},
           "sealing": {"verify_after_pc2": True, "recover_interval": "200ms", "rpc_polling_interval": "200ms",
                       "seal_interval": "100ms"},
           "sealing_thread": threads,
           "attached": [{"name": "persist-1", "location": store}],
           "processors": {"limitation": {"concurrent": {"pc1": 2}},
                          "pc1": [{"cgroup": {"cpuset": "0-1"}, "concurrent": 2}],
                          "pc2": [{"concurrent": 1}],
                          "c2": [{"bin": _C2_BIN, "args": _C2_ARGS, "stable_wait": "30s"}]}}
    tables = {"worker": worker, "sealing": sealing, "processors": processors, "metrics": metrics}
    cfg = merged(cfg, {k: v for k, v in tables.items() if v is not None})
    return _toml_ready(merged(cfg, config or {}))


def worker_toml(*args, **kwargs) -> str:
    """worker_config(...) as the text of a worker.toml."""
    return tomli_w.dumps(worker_config(*args, **kwargs))


def post_config(url: str, token: str, store, *, name: str = "prover-a", prover: dict | None = None,
                processors: dict | None = None, config: dict | None = None) -> dict:
    """A dedicated prover (`damocles post run`) of the manager at `url`, reading persist store
    `persist-1` at `store`, polling every 100 ms and heartbeating every 200 ms; no processor pool
    unless `processors` names one. `prover` is merged into [prover], `config` into the whole
    file; a value of None drops a default."""
    cfg = {"prover": {"name": name, "poll_interval": "100ms", "heartbeat_interval": "200ms"},
           "sector_manager": {"rpc_client": {"addr": url}, "token": token},
           "attached": [{"name": "persist-1", "location": store}]}
    tables = {"prover": prover, "processors": processors}
    cfg = merged(cfg, {k: v for k, v in tables.items() if v is not None})
    return _toml_ready(merged(cfg, config or {}))


def post_toml(*args, **kwargs) -> str:
    """post_config(...) as the text of a post.toml."""
    return tomli_w.dumps(post_config(*args, **kwargs))


def _toml_ready(v):
    """`v` without None values (a default left unset) and with every path as a string, in tables
    and arrays alike (tomli-w writes neither None nor Path)."""
    if isinstance(v, dict):
        return {k: _toml_ready(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_toml_ready(x) for x in v]
    return str(v) if isinstance(v, PurePath) else v
