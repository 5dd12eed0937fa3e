"""The tests' manager configurations, in one place: the devnet manager every end-to-end test
starts, built as a dict with keyword overrides and written as TOML with tomli-w (so no test
patches another's text with str.replace)."""

from __future__ import annotations

import copy

import tomli_w


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
    whole file."""
    batch = {"CheckInterval": check_interval}
    m = {"Actor": 1000,
         "Sector": {"MinNumber": 1, "MaxNumber": max_number},
         "Commitment": {"Confidence": 1,
                        "Pre": {"Batch": {"Threshold": pre_threshold, "MaxWait": pre_wait, **batch}},
                        "Prove": {"Batch": {"Threshold": prove_threshold, "MaxWait": prove_wait, **batch}}}}
    cfg = {"RPC": {"Listen": "127.0.0.1:0"},
           "Sealing": {"SealRandomnessLookback": 2, "InteractivePoRepConfidence": 1},
           "Chain": {"BlockTime": block_time},
           "Common": {"PersistStores": [{"Name": "persist-1", "Path": "persist-1"}]},
           "Miners": [_without_nones(merged(m, miner or {}))]}
    return merged(cfg, config or {})


def _without_nones(d: dict) -> dict:
    """Drop keys whose value is None, recursively (a default left unset)."""
    return {k: _without_nones(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


def manager_toml(*args, **kwargs) -> str:
    """manager_config(...) as the text of a manager.toml."""
    return tomli_w.dumps(manager_config(*args, **kwargs))
