"""`[Common.API] Chain` (and `Messager`) as Damocles accepts them (damocles-manager/dep/util.go
extractAPIInfo, Lotus cli/util/apiinfo.go ParseApiInfo/DialArgs):

- `http(s)://host:port[/rpc/v0|/rpc/v1]` as given (without a /rpc/ path, /rpc/v1 is added);
- `ws(s)://...` the same, mapped to http(s): plain calls go over HTTP POST, which Lotus serves
  on the same path;
- a Lotus multiaddr `/ip4/1.2.3.4/tcp/1234[/http|/https|/ws|/wss|/tls]` (also /ip6, /dns,
  /dns4, /dns6), `http` unless the address says TLS;
- any of these as `TOKEN:ADDRESS`, the token a JWT (three dot-separated base64url parts), which
  overrides `[Common.API] Token`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# Damocles' infoWithToken: a JWT before the first colon
_TOKEN_PREFIX = re.compile(r"^([A-Za-z0-9\-_]+?\.[A-Za-z0-9\-_]+?\.[A-Za-z0-9\-_]*):(.+)$")
_HOST_PROTOCOLS = {"ip4", "ip6", "dns", "dns4", "dns6"}
_TRANSPORTS = {"http": "http", "ws": "http", "https": "https", "wss": "https", "tls": "https"}
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class EndpointError(ValueError):
    """An API address in none of the accepted forms (the message names the form expected)."""


@dataclass(frozen=True)
class Endpoint:
    url: str              # where JSON-RPC requests are POSTed
    token: str | None

    def __repr__(self) -> str:          # never print the token
        return f"Endpoint({self.url!r}, token={'set' if self.token else 'none'})"


def parse_endpoint(raw: str, common_token: str | None = None, field: str = "[Common.API] Chain") -> Endpoint:
    if not isinstance(raw, str) or not raw.strip():
        raise EndpointError(f"{field}: expected an address such as http://127.0.0.1:1234/rpc/v1 or "
                            f"/ip4/127.0.0.1/tcp/1234/http, got {raw!r}")
    raw, token = raw.strip(), common_token or None
    m = _TOKEN_PREFIX.match(raw)
    if m:
        token, raw = m.group(1), m.group(2)
    url = _from_multiaddr(raw, field) if raw.startswith("/") else _from_url(raw, field)
    return Endpoint(url, token)


def _host(proto: str, value: str, field: str) -> str:
    if proto in ("ip4", "ip6"):
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise EndpointError(f"{field}: /{proto}/{value} is not an IP address") from None
        if (ip.version == 4) != (proto == "ip4"):
            raise EndpointError(f"{field}: /{proto}/{value} is not an IPv{proto[-1]} address")
        return f"[{ip}]" if ip.version == 6 else str(ip)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value):
        raise EndpointError(f"{field}: /{proto}/{value} is not a host name")
    return value


def _from_multiaddr(raw: str, field: str) -> str:
    parts = raw.strip("/").split("/")
    if len(parts) < 4 or parts[0] not in _HOST_PROTOCOLS or parts[2] != "tcp":
        raise EndpointError(f"{field}: multiaddr {raw!r} must start /ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT")
    host = _host(parts[0], parts[1], field)
    if not parts[3].isdigit() or not 0 < int(parts[3]) < 65536:
        raise EndpointError(f"{field}: multiaddr {raw!r}: port {parts[3]!r} is not a number from 1 to 65535")
    scheme = "http"
    for p in parts[4:]:
        if p not in _TRANSPORTS:
            raise EndpointError(f"{field}: multiaddr {raw!r}: unsupported component /{p} "
                                f"(expected /http, /https, /ws, /wss or /tls)")
        if _TRANSPORTS[p] == "https":
            scheme = "https"
    return f"{scheme}://{host}:{int(parts[3])}/rpc/v1"


def _from_url(raw: str, field: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme.lower() not in SCHEMES:
        raise EndpointError(f"{field}: {raw!r}: expected http://, https://, ws://, wss:// or a multiaddr /ip4/.../tcp/PORT")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise EndpointError(f"{field}: {raw!r}: no user, query or fragment (put the token in [Common.API] Token)")
    try:
        port = parts.port
    except ValueError:
        raise EndpointError(f"{field}: {raw!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise EndpointError(f"{field}: {raw!r} has no host")
    path = parts.path.rstrip("/")
    if not re.search(r"/rpc/v[01]$", path):
        path += "/rpc/v1"
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return urlunsplit((SCHEMES[parts.scheme.lower()], netloc + (f":{port}" if port else ""), path, "", ""))
