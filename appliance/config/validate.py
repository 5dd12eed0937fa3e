"""Small validators shared by the role configs (worker, prover): unknown keys become warnings,
wrong types and values become ConfigErrors that name the key."""

from __future__ import annotations

import re

from . import ConfigError


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


def manager_url(addr: str, where: str) -> str:
    """A URL or Damocles' multiaddr form /ip4/HOST/tcp/PORT[/http] -> http://HOST:PORT/rpc/v0."""
    m = re.fullmatch(r"/(?:ip4|ip6|dns|dns4|dns6)/([^/]+)/tcp/(\d+)(?:/https?)?/?", addr or "")
    if m:
        host = m.group(1)
        return f"http://{'[' + host + ']' if ':' in host else host}:{m.group(2)}/rpc/v0"
    if re.match(r"https?://", addr or ""):
        return addr if addr.rstrip("/").endswith("/rpc/v0") else addr.rstrip("/") + "/rpc/v0"
    raise ConfigError(f"{where}: {addr!r} is neither a URL nor a multiaddr like /ip4/127.0.0.1/tcp/1789")
