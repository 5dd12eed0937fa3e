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


def manager_urls(client: dict, where: str = "[sector_manager.rpc_client]") -> list[str]:
    """`rpc_client.addr` (Damocles' one address) and our `rpc_client.addrs` (every manager's, for a
    standby manager beside the active one): the JSON-RPC endpoints, `addr` first, each once."""
    urls = []
    if "addr" in client:
        urls.append(manager_url(client["addr"], f"{where}.addr"))
    addrs = client.get("addrs", [])
    if not isinstance(addrs, list) or ("addrs" in client and not addrs):
        raise ConfigError(f"{where}.addrs: {addrs!r} is not a non-empty list of addresses (URLs or multiaddrs)")
    urls += [manager_url(a, f"{where}.addrs[{i}]") for i, a in enumerate(addrs)]
    if not urls:
        raise ConfigError(f"{where}.addr is required (the manager's URL or multiaddr; or addrs, a list of every "
                          f"manager's)")
    return list(dict.fromkeys(urls))


def manager_url(addr, where: str) -> str:
    """A URL (http, https, ws, wss) or a multiaddr such as /ip4/HOST/tcp/PORT[/http] -> the
    manager's JSON-RPC endpoint `<scheme>://HOST:PORT/rpc/v0`, as Damocles' worker builds it."""
    try:
        return manager_endpoint(addr)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
