"""Bearer tokens: JWTs signed (HS256) with the manager's secret, carrying Lotus' "Allow" claim.
Permissions are ordered read < write < sign < admin; a token allows its level and those below.
Workers and provers need write, dashboards read, operator actions admin."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import jwt

PERMISSIONS = ("read", "write", "sign", "admin")


class AuthError(Exception):
    pass


def check_permission(perm: str) -> str:
    if perm not in PERMISSIONS:
        raise ValueError(f"unknown permission {perm!r}: expected one of {', '.join(PERMISSIONS)}")
    return perm


def allows(have: str, need: str) -> bool:
    return PERMISSIONS.index(have) >= PERMISSIONS.index(need)


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The manager's signing secret (32 random bytes, hex, mode 0600), created once."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    try:
        secret = bytes.fromhex(p.read_text().strip())
    except ValueError:
        raise AuthError(f"secret file {p} is not hex") from None
    if len(secret) < 32:
        raise AuthError(f"secret file {p} holds {len(secret)} bytes, at least 32 needed")
    return secret


def issue_token(secret: bytes, perm: str, name: str = "") -> str:
    check_permission(perm)
    allow = list(PERMISSIONS[: PERMISSIONS.index(perm) + 1])
    claims = {"Allow": allow}
    if name:
        claims["Name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: bytes, token: str) -> str:
    """The token's highest permission; AuthError if the token is not one of ours."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    allow = claims.get("Allow")
    if not isinstance(allow, list) or not allow or not all(a in PERMISSIONS for a in allow):
        raise AuthError("invalid token: no valid Allow claim")
    return max(allow, key=PERMISSIONS.index)


class NetworkAllowList:
    """Networks whose requests need no token (for workers that cannot send one); they get `perm`."""

    def __init__(self, networks: list[str], perm: str = "write"):
        try:
            self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        except ValueError as exc:
            raise ValueError(f"invalid network in the token-free list: {exc}") from None
        self.perm = check_permission(perm)

    def permission_for(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return self.perm if any(ip in n for n in self.networks) else None


def cli_token(token: str | None, home) -> str:
    """The token a CLI command uses: --token, else $DAMOCLES_TOKEN, else an admin token minted
    from the secret of a manager home on this machine."""
    token = token or os.environ.get("DAMOCLES_TOKEN")
    if token:
        return token
    secret_file = Path(home) / "secret"
    if not secret_file.exists():
        raise ValueError(f"no token: pass --token, set DAMOCLES_TOKEN, or point --home at a manager home ({secret_file} not found)")
    return issue_token(load_or_create_secret(secret_file), "admin", "cli")
