"""`[Common.API]` and each miner's sending policy, read from a decoded sector-manager.cfg
(keys already spelt as Damocles' schema, manager/config.canonical_keys): whether the manager
talks to a node (Chain set) and how it sends each kind of message."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import ChainError
from .endpoint import Endpoint, parse_endpoint
from .message import SECTIONS, SendPolicy, policy_from_config


@dataclass(frozen=True)
class ChainAPIConfig:
    """The addresses are kept as written and parsed when the chain is opened (chain_endpoint):
    a config with placeholders (Damocles' documented examples) still loads; the manager refuses
    to start on it, naming the key."""
    chain: str
    token: str | None = None
    messager: str | None = None
    send_policies: dict[tuple[int, str], SendPolicy] = field(default_factory=dict)
    seal_proofs: dict[int, int] = field(default_factory=dict)      # the miners' configured SealProof

    def chain_endpoint(self) -> Endpoint:
        return parse_endpoint(self.chain, self.token, "[Common.API].Chain")

    def messager_endpoint(self) -> Endpoint | None:
        return parse_endpoint(self.messager, self.token, "[Common.API].Messager") if self.messager else None


def _section(miner: dict, path: str) -> dict:
    table = miner
    for key in path.split("."):
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else {}


def chain_api_config(api: dict, miners: list, seal_proofs: dict[int, int]) -> ChainAPIConfig | None:
    """None when `[Common.API] Chain` is unset (the embedded devnet); ValueError naming the key
    for a bad address, sender or fee."""
    if not isinstance(api, dict) or not api.get("Chain"):
        return None
    token = api.get("Token")
    if token is not None and not isinstance(token, str):
        raise ChainError("[Common.API].Token: expected a string")
    for key in ("Chain", "Messager"):
        if api.get(key) is not None and not isinstance(api[key], str):
            raise ChainError(f"[Common.API].{key}: expected an address string")
    policies = {}
    for i, m in enumerate(miners if isinstance(miners, list) else []):
        if not isinstance(m, dict) or not isinstance(m.get("Actor"), int):
            continue
        for section in sorted(set(SECTIONS.values())):
            table = _section(m, section)
            if table:
                policies[(m["Actor"], section)] = policy_from_config(table, f"[[Miners]][{i}].{section}")
    return ChainAPIConfig(api["Chain"], token, api.get("Messager") or None, policies, dict(seal_proofs))
