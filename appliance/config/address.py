"""The manager's address as Damocles' worker reads `[sector_manager] rpc_client.addr`: a
multiaddr (`/ip4/1.2.3.4/tcp/1789`, `/dns/host/tcp/1789/http`) or a URL (`http://`, `https://`,
`ws://`, `wss://`), turned into the HTTP JSON-RPC endpoint `<scheme>://<host>[:<port>]/rpc/v0`.

As in Damocles, a URL's path is replaced by `/rpc/v0`, a multiaddr's host is the last ip4/ip6/
dns* part and its port the last tcp part (none: the scheme's default port), and parts that do
not name a host, port or scheme (`/p2p/...`, `/ws`) are skipped. We speak HTTP only, so a
WebSocket address means the same endpoint over HTTP: `ws://` is `http://`, and `wss://` (and a
multiaddr with `/wss` or `/tls`) is `https://`, where Damocles would stay on plain http."""

from __future__ import annotations

import ipaddress
import urllib.parse

# multiaddr protocols that take a value (unix takes the rest of the address)
_WITH_VALUE = {"ip4", "ip6", "dns", "dns4", "dns6", "dnsaddr", "tcp", "udp", "sctp", "dccp", "p2p", "ipfs",
               "ip6zone", "sni", "certhash", "onion", "onion3", "garlic32", "garlic64", "memory"}
_FLAGS = {"http", "https", "ws", "wss", "tls", "noise", "quic", "quic-v1", "webtransport", "webrtc",
          "webrtc-direct", "p2p-circuit", "p2p-webrtc-direct", "utp", "udt", "plaintextv2"}
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
EXAMPLE = "/ip4/127.0.0.1/tcp/1789 or http://127.0.0.1:1789"


def _endpoint(scheme: str, host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}{'' if port is None else f':{port}'}/rpc/v0"


def _port(text: str, addr: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{addr!r}: tcp port {text!r} is not a number from 0 to 65535")
    return int(text)


def from_multiaddr(addr: str) -> str:
    parts = addr.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()                          # a trailing slash
    scheme, host, port = "http", None, None
    i = 0
    while i < len(parts):
        proto = parts[i]
        if proto == "unix":
            break                            # the rest is a path
        if proto in _FLAGS:
            if proto in ("https", "wss", "tls"):
                scheme = "https"
            elif proto == "http":
                scheme = "http"
            i += 1
            continue
        if proto not in _WITH_VALUE:
            raise ValueError(f"{addr!r}: {proto!r} is not a multiaddr protocol")
        if i + 1 >= len(parts) or parts[i + 1] == "":
            raise ValueError(f"{addr!r}: /{proto} needs a value")
        value = parts[i + 1]
        if proto == "ip4":
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError(f"{addr!r}: {value!r} is not an IPv4 address") from None
            host = value
        elif proto == "ip6":
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                raise ValueError(f"{addr!r}: {value!r} is not an IPv6 address") from None
            host = value
        elif proto in ("dns", "dns4", "dns6"):
            host = value
        elif proto == "tcp":
            port = _port(value, addr)
        i += 2
    if host is None:
        raise ValueError(f"{addr!r}: the multiaddr names no host (/ip4, /ip6, /dns, /dns4 or /dns6)")
    return _endpoint(scheme, host, port)


def from_url(addr: str) -> str:
    try:
        url = urllib.parse.urlsplit(addr)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{addr!r}: {exc}") from None
    scheme = _SCHEMES.get(url.scheme.lower())
    if scheme is None:
        raise ValueError(f"{addr!r}: the scheme must be http, https, ws or wss")
    if not url.hostname:
        raise ValueError(f"{addr!r}: the URL names no host")
    return _endpoint(scheme, url.hostname, port)


def manager_endpoint(addr) -> str:
    """`rpc_client.addr` -> the JSON-RPC endpoint; ValueError naming what is wrong."""
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"{addr!r} is not an address (e.g. {EXAMPLE})")
    addr = addr.strip()
    if addr.startswith("/"):
        return from_multiaddr(addr)
    if "://" in addr:
        return from_url(addr)
    raise ValueError(f"{addr!r} is neither a URL nor a multiaddr (e.g. {EXAMPLE})")
