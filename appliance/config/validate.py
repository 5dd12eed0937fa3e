"""Small validators shared by the role configs (worker, prover): unknown keys become warnings,
wrong types and values become ConfigErrors that name the key."""

from __future__ import annotations

from . import ConfigError
from .address import manager_endpoint


def warn_unknown(raw: dict, keys: set[str], where: str, warnings: list[str]) -> None:
    for k in raw:
        if k not in keys:
            warnings.append(f"{where}: unknown key {k!r} ignored")


def table(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    return raw


def positive_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{v!r} is not a positive integer")
    return v


def manager_url(addr, where: str) -> str:
    """A URL (http, https, ws, wss) or a multiaddr such as /ip4/HOST/tcp/PORT[/http] -> the
    manager's JSON-RPC endpoint `<scheme>://HOST:PORT/rpc/v0`, as Damocles' worker builds it."""
    try:
        return manager_endpoint(addr)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
