"""A worker's RPC address (`Dest` in Venus.WorkerPing): where the manager sends the operator's
Pause and Resume. Scheme, host and port only: a path, query, fragment or user part would let
the address steer the manager's request somewhere else, so WorkerPing refuses it (-32602) and
the manager builds its URL from the parts it checked."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from . import INVALID_PARAMS, RPCError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
SCHEMES = ("http", "https")


def worker_url(dest: str) -> str:
    """`scheme://host:port` for a Dest of the form HOST:PORT, [IPV6]:PORT or http(s)://HOST:PORT;
    ValueError naming what is wrong for anything else."""
    if not isinstance(dest, str) or not dest:
        raise ValueError("expected HOST:PORT")
    if any(c in dest for c in "?#@\\") or any(c.isspace() or ord(c) < 32 for c in dest):
        raise ValueError(f"{dest!r} is not HOST:PORT (no path, query, fragment, user or spaces)")
    parts = urlsplit(dest if "://" in dest else f"http://{dest}")
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{dest!r}: scheme must be one of {', '.join(SCHEMES)}")
    if parts.path not in ("", "/"):
        raise ValueError(f"{dest!r} is not HOST:PORT (it has a path)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{dest!r}: the port is not a number from 1 to 65535") from None
    if not port:
        raise ValueError(f"{dest!r}: a port is needed (HOST:PORT)")
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise ValueError(f"{dest!r}: {host!r} is not a host name or IP address") from None
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{f'[{ip}]' if ip.version == 6 else ip}:{port}"


def worker_dest(value, field: str) -> str:
    """The RPC converter for Dest: the address as given, if worker_url accepts it."""
    try:
        worker_url(value)
    except ValueError as exc:
        raise RPCError(INVALID_PARAMS, f"{field}: {exc}") from None
    return value
